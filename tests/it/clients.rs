//! What real clients send, driven by the platforms' own SDKs (from `tests/.venv`) against the
//! real server: Bland's Python SDK, which sends its key without `x-bland-org-id`.

use serde_json::{json, Value};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::*;

const BLAND_ORG: &str = "5f0c2a61-9b7e-4d3a-8c1f-2e6b4a9d7c30";
const BLAND_KEY: &str = "org_sdk_customer_bland_key";

/// Bland's SDK (`bland` on PyPI) with only its base URL changed, as its README sets it up:
/// the active calls (a route the SDK has no method for, so asked through the SDK's own client
/// and headers), `calls.list()` and `calls.stop()`. Each answer, or the SDK's error.
const SDK_SCRIPT: &str = r#"
import json, sys, urllib.parse
from bland.client import BlandAI
from bland.core.api_error import ApiError

a = json.load(sys.stdin)
client = BlandAI(api_key=a["key"], base_url=a["base_url"])
wrapper = client._client_wrapper

def active():
    url = urllib.parse.urljoin(wrapper.get_base_url() + "/", "v1/calls/active")
    r = wrapper.httpx_client.request(method="GET", url=url, headers=wrapper.get_headers())
    return {"status": r.status_code, "body": r.json()}

def attempt(f):
    try:
        return f()
    except ApiError as e:
        return {"status": e.status_code, "body": e.body}

print(json.dumps({
    "headers": sorted(k.lower() for k in wrapper.get_headers()),
    "active": active(),
    "list": attempt(lambda: [c.call_id for c in client.calls.list().calls]),
    "stop": attempt(lambda: client.calls.stop(call_id=a["stop"]).status),
}))
"#;

/// Runs the SDK beside the server: on a thread of its own, as the SDK's calls block.
async fn bland_sdk(app: &TestApp, stop: &str) -> Value {
    let input = json!({"key": BLAND_KEY, "base_url": format!("http://{}", app.addr), "stop": stop});
    let out = tokio::task::spawn_blocking(move || run_python(SDK_SCRIPT, &input.to_string()))
        .await
        .unwrap();
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// A Bland API for `BLAND_KEY` in `BLAND_ORG`: two live calls, stopped on request, and its
/// call log (`GET /v1/calls`, as Bland documents it), each only with that key and org id.
async fn bland() -> MockServer {
    let (server, _) = live_bland_server(
        BLAND_KEY,
        BLAND_ORG,
        vec![
            bland_call("sdk-1", "IN_PROGRESS", "1758656900740"),
            bland_call("sdk-2", "IN_PROGRESS", "1758656900741"),
        ],
    )
    .await;
    Mock::given(method("GET"))
        .and(path("/v1/calls"))
        .and(header("authorization", BLAND_KEY))
        .and(header("x-bland-org-id", BLAND_ORG))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "count": 1,
            "calls": [{
                "call_id": "old-1",
                "createdAt": "2025-09-23T19:48:21.000Z",
                "call_length": 1.5,
                "to": "+13105100966",
                "from": "+18475586665",
                "completed": true,
                "queue_status": "complete",
                "answered_by": "human"
            }]
        })))
        .with_priority(1)
        .mount(&server)
        .await;
    server
}

fn config(bland_url: &str, default_org: bool) -> String {
    let mut c = TestConfig::new()
        .org(OrgB::bland_keys(BLAND_ORG, "bland").providers(&["bland"]))
        .provider(ProviderB::bland_forwarding("bland", bland_url));
    if default_org {
        c = c.server("bland_default_org", BLAND_ORG);
    }
    c.toml()
}

#[tokio::test]
async fn blands_python_sdk_works_with_only_its_base_url_changed_once_a_default_org_is_named() {
    let upstream = bland().await;
    let app = spawn_app(&config(&upstream.uri(), true)).await;
    let got = bland_sdk(&app, "sdk-2").await;
    // What the SDK sends: its key, and no org id.
    let headers = got["headers"].as_array().unwrap();
    assert!(headers.contains(&json!("authorization")), "{got:#}");
    assert!(!headers.contains(&json!("x-bland-org-id")), "{got:#}");

    assert_eq!(got["active"]["status"], 200, "{got:#}");
    let ids: Vec<&str> = got["active"]["body"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["call_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["sdk-1", "sdk-2"], "{got:#}");
    assert_eq!(got["list"], json!(["old-1"]), "{got:#}");
    assert_eq!(got["stop"], "success", "{got:#}");

    // Bland heard the key with the default org's id, so Bland still checks it is that org's.
    for r in upstream.received_requests().await.unwrap() {
        assert_eq!(r.headers["authorization"], BLAND_KEY, "{}", r.url);
        assert_eq!(r.headers["x-bland-org-id"], BLAND_ORG, "{}", r.url);
    }
    let after = app
        .get("/v1/calls/active", &[("authorization", BLAND_KEY)])
        .await;
    assert_eq!(
        after.body["data"][0]["call_id"], "sdk-1",
        "{:?}",
        after.body
    );
    assert_eq!(after.body["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn without_a_default_org_the_sdks_requests_are_400_missing_org_id_and_reach_no_upstream() {
    let upstream = bland().await;
    let app = spawn_app(&config(&upstream.uri(), false)).await;
    let got = bland_sdk(&app, "sdk-2").await;
    for op in ["active", "list", "stop"] {
        assert_eq!(got[op]["status"], 400, "{op}: {got:#}");
    }
    assert_eq!(
        got["active"]["body"]["errors"][0]["error"], "MISSING_ORG_ID",
        "{got:#}"
    );
    assert_eq!(hits(&upstream).await, 0);
}

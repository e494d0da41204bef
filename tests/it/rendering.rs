//! A merged body is built once per change of the providers' answers, not once per client.
//!
//! The count read is a process-wide metric that every app in the process moves: each test
//! counts the bodies of an org of its own, named by `unique`, so tests beside it cannot move it.

use std::time::Duration;

use crate::common::*;
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "acme-key";
/// Enough calls that the body is built on the blocking pool, as large answers are.
const CALLS: usize = 5_000;
const CLIENTS: usize = 24;

fn built(metrics: &str, org: &str, shape: &str) -> u64 {
    let prefix = format!(r#"callmux_bodies_built_total{{org="{org}",shape="{shape}"}} "#);
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |n| n.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_arriving_at_once_after_a_change_share_one_built_body() {
    let calls: Vec<_> = (0..CALLS)
        .map(|i| agent_call(&format!("c{i:05}"), "+15550001", "in-progress", "outbound"))
        .collect();
    let agents = MockServer::start().await;
    // Slow enough that every client's request joins the one upstream ask in flight, so
    // they all get the same new answer at the same moment.
    Mock::given(method("GET"))
        .and(path("/api/calls"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"calls": calls, "count": CALLS}))
                .set_delay(Duration::from_millis(400)),
        )
        .mount(&agents)
        .await;
    let (org, provider) = (unique("render"), unique("render-agents"));
    let toml = TestConfig::new()
        .org(OrgB::key(&org, KEY).providers(&[&provider]))
        .provider(ProviderB::agent(&provider, &agents.uri()).set("cache_ttl_ms", 0))
        .toml();
    let app = spawn_app(&toml).await;

    let replies = futures::future::join_all((0..CLIENTS).map(|_| app.calls(KEY, &org))).await;
    for reply in &replies {
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        assert_eq!(reply.body["count"], CALLS);
    }
    assert_eq!(
        hits(&agents).await,
        1,
        "the clients shared one upstream ask"
    );
    let metrics = metrics_text(&app).await;
    assert_eq!(built(&metrics, &org, "calls"), 1, "{metrics}");
    assert_eq!(built(&metrics, &org, "bland"), 0, "{metrics}");

    // A second round in the other shape: the upstream answers the same bytes, so the calls
    // are the same; that shape's body is built once, the first one's not again.
    let replies = futures::future::join_all((0..CLIENTS).map(|_| app.bland(KEY, &org))).await;
    assert!(replies.iter().all(|r| r.status == 200));
    let metrics = metrics_text(&app).await;
    assert_eq!(built(&metrics, &org, "bland"), 1, "{metrics}");
    assert_eq!(built(&metrics, &org, "calls"), 1, "{metrics}");
}

#[tokio::test]
async fn callers_bringing_their_own_bland_keys_each_reuse_their_own_body_while_taking_turns() {
    let org = unique("turns-org");
    let callers = [("key-alice", "alice-call"), ("key-bob", "bob-call")];
    let keys = callers.map(|(key, call)| (key, json!([bland_call(call, "IN_PROGRESS", "1")])));
    let bland = bland_server_for_keys(&org, &keys).await;
    // Coalescing only: every request asks Bland, which answers each key the same bytes.
    let app = spawn_app(&passthrough_org(&org, &bland.uri(), 0)).await;
    for _ in 0..3 {
        for (key, call) in callers {
            let reply = app.bland(key, &org).await;
            assert_eq!(reply.body["data"][0]["call_id"], call, "{:?}", reply.body);
            assert_eq!(reply.body["data"].as_array().unwrap().len(), 1);
        }
    }
    assert_eq!(hits(&bland).await, 6);
    let metrics = metrics_text(&app).await;
    assert_eq!(
        built(&metrics, &org, "bland"),
        2,
        "one per caller: {metrics}"
    );
}

async fn metrics_text(app: &TestApp) -> String {
    let resp = app.http.get(app.url("/metrics")).send().await.unwrap();
    resp.text().await.unwrap()
}

//! Stopping every call: `POST /v1/calls/active/stop` ends every active call the org sees, on
//! every provider at once, and reports the count and each provider's failure in Bland's
//! envelope.

use serde_json::{json, Value};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, ResponseTemplate};

use crate::common::*;

const KEY: &str = "acme-key";
const BLAND_KEY: &str = "sk-bland";
const BLAND_ORG: &str = "bland-org-1";

impl TestApp {
    /// `POST /v1/calls/active/stop` as a Bland SDK sends it.
    async fn stop_all(&self, key: &str, org: &str) -> Reply {
        self.post(
            "/v1/calls/active/stop",
            &[("authorization", key), ("x-bland-org-id", org)],
        )
        .await
    }
}

fn agent_calls(ids: &[&str]) -> Vec<Value> {
    ids.iter()
        .map(|id| agent_call(id, "+1555", "in-progress", "outbound"))
        .collect()
}

#[tokio::test]
async fn every_active_call_on_every_provider_is_ended_and_counted() {
    let (a, a_listed) = live_agent_server(agent_calls(&["a1", "a2"])).await;
    let (b, b_listed) = live_agent_server(agent_calls(&["b1"])).await;
    let (bland, bland_listed) = live_bland_server(
        BLAND_KEY,
        BLAND_ORG,
        vec![bland_call("bl1", "in-progress", "2025-09-23T19:48:20.740Z")],
    )
    .await;
    let toml = TestConfig::new()
        .org(OrgB::key("acme", KEY).providers(&["a", "b", "bland"]))
        .provider(ProviderB::agent("a", &a.uri()))
        .provider(ProviderB::agent("b", &b.uri()))
        .provider(ProviderB::bland(
            "bland",
            &bland.uri(),
            "STOP_BLAND_KEY",
            BLAND_ORG,
        ))
        .toml();
    let app = spawn_app_with_env(&toml, &[("STOP_BLAND_KEY", BLAND_KEY)]).await;

    let stopped = app.stop_all(KEY, "acme").await;
    assert_eq!(stopped.status, 200, "{}", stopped.body);
    assert_eq!(
        stopped.body,
        json!({"status": "success", "message": "Stopped 4 active calls.", "num_calls": 4, "errors": null})
    );
    assert!(a_listed.lock().unwrap().is_empty());
    assert!(b_listed.lock().unwrap().is_empty());
    assert!(bland_listed.lock().unwrap().is_empty());
    assert_eq!(
        (ends(&a).await, ends(&b).await, ends(&bland).await),
        (2, 1, 1)
    );
    assert_eq!(app.calls(KEY, "acme").await.body["count"], 0);

    let again = app.stop_all(KEY, "acme").await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["num_calls"], 0);
    assert_eq!(again.body["message"], "Stopped 0 active calls.");
}

#[tokio::test]
async fn a_provider_that_cannot_be_listed_makes_the_stop_partial_and_is_named() {
    let (a, a_listed) = live_agent_server(agent_calls(&["a1"])).await;
    let down = raw_server(500, "oops").await;
    let toml = TestConfig::new()
        .org(OrgB::key("acme", KEY).providers(&["a", "down"]))
        .provider(ProviderB::agent("a", &a.uri()))
        .provider(ProviderB::agent("down", &down.uri()).set("retries", 0))
        .toml();
    let app = spawn_app(&toml).await;
    let stopped = app.stop_all(KEY, "acme").await;
    assert_eq!(stopped.status, 200, "{}", stopped.body);
    assert_eq!(stopped.body["status"], "partial");
    assert_eq!(stopped.body["num_calls"], 1);
    let errors = stopped.body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["provider"], "down");
    assert_eq!(errors[0]["error"], "UPSTREAM_ERROR");
    let message = errors[0]["message"].as_str().unwrap();
    assert!(message.contains("could not be listed"), "{message}");
    assert!(!message.contains("127.0.0.1"), "{message}");
    assert!(a_listed.lock().unwrap().is_empty());
}

#[tokio::test]
async fn calls_a_provider_fails_to_end_are_counted_out_and_reported_per_provider() {
    let (a, _) = live_agent_server(agent_calls(&["a1"])).await;
    let b = agent_server(json!(agent_calls(&["b1", "b2", "b3"]))).await;
    Mock::given(method("POST"))
        .and(path("/api/calls/b2/end"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"success": false, "error": "boom"})),
        )
        .mount(&b)
        .await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/api/calls/b[13]/end$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"success": true})))
        .mount(&b)
        .await;
    let toml = TestConfig::new()
        .org(OrgB::key("acme", KEY).providers(&["a", "b"]))
        .provider(ProviderB::agent("a", &a.uri()))
        .provider(ProviderB::agent("b", &b.uri()))
        .toml();
    let app = spawn_app(&toml).await;
    let stopped = app.stop_all(KEY, "acme").await;
    assert_eq!(stopped.status, 200, "{}", stopped.body);
    assert_eq!(stopped.body["status"], "partial");
    assert_eq!(stopped.body["num_calls"], 3);
    let errors = stopped.body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["provider"], "b");
    assert_eq!(errors[0]["error"], "UPSTREAM_REPORTED_ERROR");
    let message = errors[0]["message"].as_str().unwrap();
    assert!(
        message.starts_with("1 of its 3 calls were not ended"),
        "{message}"
    );
    assert!(message.contains("boom"), "{message}");
    assert_eq!(ends(&b).await, 3, "each call's end sent once");
}

#[tokio::test]
async fn when_every_provider_fails_the_stop_is_a_502_with_each_named() {
    let one = raw_server(503, "").await;
    let two = raw_server(500, "").await;
    let toml = TestConfig::new()
        .org(OrgB::key("acme", KEY).providers(&["one", "two"]))
        .provider(ProviderB::agent("one", &one.uri()).set("retries", 0))
        .provider(ProviderB::agent("two", &two.uri()).set("retries", 0))
        .toml();
    let app = spawn_app(&toml).await;
    let stopped = app.stop_all(KEY, "acme").await;
    assert_eq!(stopped.status, 502, "{}", stopped.body);
    assert_eq!(stopped.body["status"], "error");
    assert_eq!(stopped.body["num_calls"], 0);
    let named: Vec<&str> = stopped.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["provider"].as_str().unwrap())
        .collect();
    assert_eq!(named, ["one", "two"]);
}

#[tokio::test]
async fn stop_all_ends_only_what_the_org_sees_and_refuses_a_wrong_key_before_anything() {
    let (mine, mine_listed) = live_agent_server(agent_calls(&["m1"])).await;
    let (theirs, theirs_listed) = live_agent_server(agent_calls(&["t1"])).await;
    let toml = TestConfig::new()
        .org(OrgB::key("acme", KEY).providers(&["mine"]))
        .org(OrgB::key("globex", "globex-key").providers(&["theirs"]))
        .provider(ProviderB::agent("mine", &mine.uri()))
        .provider(ProviderB::agent("theirs", &theirs.uri()))
        .toml();
    let app = spawn_app(&toml).await;

    let refused = app.stop_all("wrong", "acme").await;
    assert_eq!(refused.status, 401, "{}", refused.body);
    assert_eq!(refused.body["status"], "error");
    assert_eq!(refused.body["code"], "AUTH_FAILURE");
    assert_eq!(refused.headers["www-authenticate"], "Bearer");
    assert_eq!(hits(&mine).await + hits(&theirs).await, 0);

    let stopped = app.stop_all(KEY, "acme").await;
    assert_eq!(stopped.body["num_calls"], 1, "{}", stopped.body);
    assert!(mine_listed.lock().unwrap().is_empty());
    assert_eq!(theirs_listed.lock().unwrap().len(), 1);
    assert_eq!(
        hits(&theirs).await,
        0,
        "the other org's provider never hears of it"
    );
}

#[tokio::test]
async fn a_caller_with_their_own_bland_key_stops_their_calls_with_that_key() {
    let (bland, listed) = live_bland_server(
        BLAND_KEY,
        "acme",
        vec![bland_call("bl1", "in-progress", "2025-09-23T19:48:20.740Z")],
    )
    .await;
    let app = spawn_app(&passthrough_org("acme", &bland.uri(), 0)).await;
    let refused = app.stop_all("sk-wrong", "acme").await;
    assert_eq!(refused.status, 401, "{}", refused.body);
    assert_eq!(ends(&bland).await, 0);

    let stopped = app.stop_all(BLAND_KEY, "acme").await;
    assert_eq!(stopped.status, 200, "{}", stopped.body);
    assert_eq!(stopped.body["num_calls"], 1);
    assert!(listed.lock().unwrap().is_empty());
}

#[tokio::test]
async fn each_call_stopped_is_counted_in_metrics_under_the_stop_all_route() {
    let provider = unique("stopped");
    let (a, _) = live_agent_server(agent_calls(&["a1", "a2"])).await;
    let toml = TestConfig::new()
        .org(OrgB::key("acme", KEY).providers(&[&provider]))
        .provider(ProviderB::agent(&provider, &a.uri()))
        .toml();
    let app = spawn_app(&toml).await;
    assert_eq!(app.stop_all(KEY, "acme").await.body["num_calls"], 2);
    let metrics = app.metrics().await;
    let counted = metrics.lines().any(|l| {
        l.starts_with("callmux_control_actions_total{")
            && l.contains("route=\"stop_all\"")
            && l.contains(&format!("provider=\"{provider}\""))
            && l.contains("outcome=\"ended\"")
            && l.ends_with(" 2")
    });
    assert!(counted, "not counted:\n{metrics}");
    assert!(!metrics.contains(KEY));
}

#[tokio::test]
async fn a_listed_call_whose_id_callmux_will_not_pass_on_is_reported_not_counted_as_stopped() {
    let (a, a_listed) = live_agent_server(agent_calls(&["a1", ".", ".."])).await;
    let (b, _) = live_agent_server(agent_calls(&["b1"])).await;
    let toml = TestConfig::new()
        .org(OrgB::key("acme", KEY).providers(&["a", "b"]))
        .provider(ProviderB::agent("a", &a.uri()))
        .provider(ProviderB::agent("b", &b.uri()))
        .toml();
    let app = spawn_app(&toml).await;
    let stopped = app.stop_all(KEY, "acme").await;
    assert_eq!(stopped.status, 200, "{}", stopped.body);
    assert_eq!(stopped.body["status"], "partial", "{}", stopped.body);
    assert_eq!(stopped.body["num_calls"], 2);
    let errors = stopped.body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["provider"], "a");
    assert_eq!(errors[0]["error"], "INVALID_CALL_ID");
    let message = errors[0]["message"].as_str().unwrap();
    assert!(
        message.starts_with("2 of its 3 calls were not ended"),
        "{message}"
    );
    assert_eq!(ends(&a).await, 1, "only the valid id's end is sent");
    assert_eq!(
        a_listed.lock().unwrap().len(),
        2,
        "the odd ids are still live"
    );
}

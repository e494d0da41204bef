//! The agent server reference document's usage examples, run against callmux.

use crate::common::*;
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "acme-key";

fn config(agents: &str, bland: &str) -> String {
    TestConfig::new()
        .org(OrgB::key("acme", KEY).providers(&["agents", "bland"]))
        .provider(ProviderB::agent("agents", agents))
        .provider(ProviderB::bland("bland", bland, "BLAND_KEY", "bland-org").set("timeout_ms", 500))
        .toml()
}

/// "Monitor Call Status": poll until the call is no longer listed.
#[tokio::test]
async fn polling_shows_a_call_progress_and_then_disappear_when_it_ends() {
    let agents = MockServer::start().await;
    // The agent server reports the call ringing, then in progress, then ended.
    for (priority, status) in [(1, "ringing"), (2, "in-progress")] {
        Mock::given(method("GET"))
            .and(path("/api/calls"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "calls": [agent_call("my-call", "+1234567890", status, "outbound")], "count": 1})))
            .up_to_n_times(1)
            .with_priority(priority)
            .mount(&agents)
            .await;
    }
    Mock::given(method("GET"))
        .and(path("/api/calls"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "calls": [agent_call("my-call", "+1234567890", "completed", "outbound")], "count": 1})))
        .with_priority(3)
        .mount(&agents)
        .await;
    let bland = bland_server(
        "bk",
        "bland-org",
        json!([bland_call("other", "IN_PROGRESS", "1758656900740")]),
    )
    .await;
    let app =
        spawn_app_with_env(&config(&agents.uri(), &bland.uri()), &[("BLAND_KEY", "bk")]).await;

    // The loop from the document, as written: find the call by id; stop when it is gone.
    let mut seen = Vec::new();
    for _ in 0..10 {
        let calls = app.calls(KEY, "acme").await.body;
        let active_call = calls["calls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["call_id"] == "my-call")
            .cloned();
        match active_call {
            None => break, // "Call ended"
            Some(call) => seen.push(call["status"].as_str().unwrap().to_string()),
        }
    }
    assert_eq!(seen, ["ringing", "in-progress"]);
}

/// "Load Balancing Check": place a call only while `count` is under the limit.
#[tokio::test]
async fn the_capacity_check_counts_the_calls_of_every_provider() {
    const MAX_CONCURRENT_CALLS: u64 = 3;
    let agents = agent_server(json!([
        agent_call("a1", "+1", "in-progress", "outbound"),
        agent_call("a2", "+2", "ringing", "outbound"),
    ]))
    .await;
    let bland_one = bland_server(
        "bk",
        "bland-org",
        json!([bland_call("b1", "IN_PROGRESS", "1")]),
    )
    .await;
    let app = spawn_app_with_env(
        &config(&agents.uri(), &bland_one.uri()),
        &[("BLAND_KEY", "bk")],
    )
    .await;
    let calls = app.calls(KEY, "acme").await.body;
    assert_eq!(calls["count"], 3);
    assert!(
        calls["count"].as_u64().unwrap() >= MAX_CONCURRENT_CALLS,
        "at capacity: no new call"
    );

    let bland_none = bland_server("bk", "bland-org", json!([])).await;
    let app = spawn_app_with_env(
        &config(&agents.uri(), &bland_none.uri()),
        &[("BLAND_KEY", "bk")],
    )
    .await;
    let calls = app.calls(KEY, "acme").await.body;
    assert_eq!(calls["count"], 2);
    assert!(
        calls["count"].as_u64().unwrap() < MAX_CONCURRENT_CALLS,
        "safe to initiate"
    );
}

/// A count is never silently short: when a provider failed, the answer says so, so the
/// capacity check can refuse to trust a low count.
#[tokio::test]
async fn a_capacity_check_can_tell_a_partial_count_from_a_full_one() {
    let agents = agent_server(json!([agent_call("a1", "+1", "in-progress", "outbound")])).await;
    let bland_down = silent_server().await;
    let app = spawn_app_with_env(&config(&agents.uri(), &bland_down), &[("BLAND_KEY", "bk")]).await;
    let calls = app.calls(KEY, "acme").await.body;
    assert_eq!(calls["count"], 1);
    let errors = calls["errors"]
        .as_array()
        .expect("a partial answer carries errors");
    assert_eq!(errors[0]["provider"], "bland");
    assert_eq!(errors[0]["error"], "UPSTREAM_TIMEOUT");
}

/// "Dashboard Display": the list, an End Call button on a row, and the next polls, all
/// through callmux, over two agent servers and a Bland account.
#[tokio::test]
async fn the_dashboard_ends_a_call_from_its_list_and_polls_until_it_is_gone() {
    let (one, _) = live_agent_server(vec![
        agent_call("a1", "+1234567890", "in-progress", "outbound"),
        agent_call("a2", "+19876543210", "ringing", "outbound"),
    ])
    .await;
    let (two, _) = live_agent_server(vec![agent_call(
        "b1",
        "+15555555555",
        "in-progress",
        "incoming",
    )])
    .await;
    let (bland, _) = live_bland_server(
        "sk-bland",
        "bland-org",
        vec![bland_call("bl1", "in-progress", "2025-09-23T19:48:20.740Z")],
    )
    .await;
    let toml = TestConfig::new()
        .org(OrgB::key("acme", KEY).providers(&["one", "two", "bland"]))
        .provider(ProviderB::agent("one", &one.uri()))
        .provider(ProviderB::agent("two", &two.uri()))
        .provider(ProviderB::bland(
            "bland",
            &bland.uri(),
            "FLOW_BLAND_KEY",
            "bland-org",
        ))
        .toml();
    let app = spawn_app_with_env(&toml, &[("FLOW_BLAND_KEY", "sk-bland")]).await;

    let ids = |reply: &Reply| -> Vec<String> {
        reply.body["calls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["call_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let listed = app.calls(KEY, "acme").await;
    assert_eq!(listed.status, 200);
    let mut shown = ids(&listed);
    shown.sort();
    assert_eq!(shown, ["a1", "a2", "b1", "bl1"]);

    // The buttons of two rows, one an agent server's call and one Bland's, pressed in turn.
    for (row, owner) in [("a2", "one"), ("bl1", "bland")] {
        let ended = app.end(row, KEY, "acme").await;
        assert_eq!(ended.status, 200, "{}", ended.body);
        assert_eq!(
            ended.body,
            json!({"success": true, "message": format!("Call {row} ended"), "provider": owner})
        );
        let gone = async {
            loop {
                if !ids(&app.calls(KEY, "acme").await)
                    .iter()
                    .any(|id| id == row)
                {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), gone)
            .await
            .unwrap_or_else(|_| panic!("{row} still listed after 10 s"));
    }
    let mut left = ids(&app.calls(KEY, "acme").await);
    left.sort();
    assert_eq!(left, ["a1", "b1"]);
}

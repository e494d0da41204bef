//! End to end: a failing provider costs only its own calls, and is named in `errors`.

use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::json;
use wiremock::MockServer;

const KEY: &str = "acme-key";

/// Org `acme` sees a healthy agent server `good` and the upstream at `bad_url` as `bad`
/// (of `bad_kind`), with `timeout_ms` on `bad`. The healthy server is returned to keep it up.
async fn good_and_bad(bad_kind: &str, bad_url: &str, timeout_ms: u64) -> (TestApp, MockServer) {
    let good = agent_server(json!([agent_call("g1", "+1", "in-progress", "outbound")])).await;
    let mut bad = ProviderB::new("bad", bad_kind, bad_url).set("timeout_ms", timeout_ms);
    if bad_kind == "bland" {
        bad = bad.set("api_key_env", "BLAND_KEY").set("org_id", "o");
    }
    let toml = TestConfig::new()
        .org(OrgB::key("acme", KEY).providers(&["good", "bad"]))
        .provider(ProviderB::agent("good", &good.uri()))
        .provider(bad)
        .toml();
    (spawn_app_with_env(&toml, &[("BLAND_KEY", "k")]).await, good)
}

/// Asserts a 200 partial answer in both shapes: `g1` listed, `bad` named with `code`.
async fn assert_partial(app: &TestApp, code: &str) {
    let calls = app.calls(KEY, "acme").await;
    assert_eq!(calls.status, 200, "{:#}", calls.body);
    assert_eq!(calls.body["count"], 1);
    assert_eq!(calls.body["calls"][0]["call_id"], "g1");
    assert_eq!(
        calls.body["errors"].as_array().unwrap().len(),
        1,
        "{:#}",
        calls.body
    );
    assert_eq!(calls.body["errors"][0]["provider"], "bad");
    assert_eq!(calls.body["errors"][0]["error"], code, "{:#}", calls.body);
    assert!(!calls.body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .is_empty());

    let bland = app.bland(KEY, "acme").await;
    assert_eq!(bland.status, 200);
    assert_eq!(bland.body["data"][0]["call_id"], "g1");
    assert_eq!(bland.body["errors"], calls.body["errors"]);
}

#[tokio::test]
async fn an_upstream_500_leaves_the_other_providers_calls_and_is_named() {
    for kind in ["twilio-media-stream", "bland"] {
        let bad = raw_server(500, "oops").await;
        assert_partial(
            &good_and_bad(kind, &bad.uri(), 2000).await.0,
            "UPSTREAM_ERROR",
        )
        .await;
    }
}

#[tokio::test]
async fn malformed_json_is_that_providers_error() {
    for kind in ["twilio-media-stream", "bland"] {
        let bad = raw_server(200, "{\"calls\": [ {").await;
        assert_partial(
            &good_and_bad(kind, &bad.uri(), 2000).await.0,
            "UPSTREAM_BAD_RESPONSE",
        )
        .await;
    }
}

#[tokio::test]
async fn json_of_the_wrong_shape_is_that_providers_error() {
    for (kind, body) in [
        ("twilio-media-stream", r#"{"data": [], "errors": null}"#),
        (
            "twilio-media-stream",
            r#"{"calls": [{"to_number": "+1"}], "count": 1}"#,
        ),
        ("bland", r#"{"calls": [], "count": 0}"#),
        ("bland", r#"{"data": {"call_id": "x"}}"#),
        ("bland", r#"[1, 2, 3]"#),
    ] {
        let bad = raw_server(200, body).await;
        assert_partial(
            &good_and_bad(kind, &bad.uri(), 2000).await.0,
            "UPSTREAM_BAD_RESPONSE",
        )
        .await;
    }
}

#[tokio::test]
async fn a_refused_connection_is_that_providers_error() {
    let url = refused_url().await;
    assert_partial(
        &good_and_bad("twilio-media-stream", &url, 2000).await.0,
        "UPSTREAM_UNREACHABLE",
    )
    .await;
}

#[tokio::test]
async fn an_upstream_that_never_answers_delays_the_answer_only_by_its_own_timeout() {
    let url = silent_server().await;
    let (app, _good) = good_and_bad("twilio-media-stream", &url, 300).await;
    let started = Instant::now();
    assert_partial(&app, "UPSTREAM_TIMEOUT").await; // two requests, one per shape
                                                    // Generous bound: 2 × 300 ms timeout plus ample slack for a loaded machine.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_upstream_error_envelope_is_reported_with_its_message() {
    let bad = raw_server(
        200,
        r#"{"data": null, "errors": [{"error": "RATE_LIMITED", "message": "slow down"}]}"#,
    )
    .await;
    let (app, _good) = good_and_bad("bland", &bad.uri(), 2000).await;
    assert_partial(&app, "UPSTREAM_REPORTED_ERROR").await;
    let reply = app.calls(KEY, "acme").await;
    assert!(reply.body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("RATE_LIMITED: slow down"));
}

#[tokio::test]
async fn an_answer_over_the_body_cap_is_that_providers_error() {
    let good = agent_server(json!([agent_call("g1", "+1", "in-progress", "outbound")])).await;
    let big = raw_server(
        200,
        format!(
            "{{\"calls\": [], \"count\": 0, \"pad\": \"{}\"}}",
            "x".repeat(4096)
        ),
    )
    .await;
    let toml = TestConfig::new()
        .org(OrgB::key("acme", KEY).providers(&["good", "bad"]))
        .provider(ProviderB::agent("good", &good.uri()))
        .provider(ProviderB::agent("bad", &big.uri()).set("max_body_bytes", 1024))
        .toml();
    let app = spawn_app(&toml).await;
    assert_partial(&app, "UPSTREAM_TOO_LARGE").await;
}

#[tokio::test]
async fn when_every_provider_fails_the_answer_is_502_in_each_shape() {
    let down = raw_server(500, "").await;
    let silent = silent_server().await;
    let toml = TestConfig::new()
        .org(OrgB::key("acme", KEY).providers(&["down", "silent"]))
        .provider(ProviderB::agent("down", &down.uri()))
        .provider(ProviderB::bland("silent", &silent, "K", "o").set("timeout_ms", 200))
        .toml();
    let app = spawn_app_with_env(&toml, &[("K", "k")]).await;
    let expected_errors = |body: &serde_json::Value| {
        let errors = body["errors"].as_array().unwrap();
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0]["provider"], "down");
        assert_eq!(errors[0]["error"], "UPSTREAM_ERROR");
        assert_eq!(errors[1]["provider"], "silent");
        assert_eq!(errors[1]["error"], "UPSTREAM_TIMEOUT");
    };
    let calls = app.calls(KEY, "acme").await;
    assert_eq!(calls.status, 502);
    assert_eq!(calls.body["calls"], json!([]));
    assert_eq!(calls.body["count"], 0);
    expected_errors(&calls.body);
    let bland = app.bland(KEY, "acme").await;
    assert_eq!(bland.status, 502);
    assert_eq!(bland.body["data"], json!(null));
    expected_errors(&bland.body);
}

#[tokio::test]
async fn on_full_success_the_calls_shape_has_no_errors_key_and_bland_errors_is_null() {
    let good = agent_server(json!([])).await;
    let toml = TestConfig::new()
        .org(OrgB::key("acme", KEY).providers(&["good"]))
        .provider(ProviderB::agent("good", &good.uri()))
        .toml();
    let app = spawn_app(&toml).await;
    assert_eq!(
        app.calls(KEY, "acme").await.body,
        json!({"calls": [], "count": 0})
    );
    assert_eq!(
        app.bland(KEY, "acme").await.body,
        json!({"data": [], "errors": null})
    );
}

#[tokio::test]
async fn an_unknown_route_is_a_json_404_that_names_the_routes() {
    let (app, _good) = good_and_bad("twilio-media-stream", &refused_url().await, 100).await;
    let reply = app.get("/v1/calls", &[]).await;
    assert_eq!(reply.status, 404);
    let message = reply.body["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("/v1/calls/active") && message.contains("/api/calls"),
        "{message}"
    );
}

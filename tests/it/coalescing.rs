//! Concurrent requests share upstream requests; `cache_ttl_ms` serves recent answers; errors
//! are never kept; no caller gets an answer fetched with another caller's credentials.

use std::time::Duration;

use crate::common::*;
use serde_json::json;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "acme-key";

async fn slow_agent_server(delay: Duration) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(
                    json!({"calls": [agent_call("c1", "+1", "ringing", "outbound")], "count": 1}),
                )
                .set_delay(delay),
        )
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn concurrent_requests_share_one_upstream_request() {
    let upstream = slow_agent_server(Duration::from_millis(1500)).await;
    let app = spawn_app(&one_agent_org(KEY, "agents", &upstream.uri(), 0)).await;
    let replies = futures::future::join_all((0..20).map(|i| {
        let app = &app;
        async move {
            if i % 2 == 0 {
                app.calls(KEY, "acme").await
            } else {
                app.bland(KEY, "acme").await
            }
        }
    }))
    .await;
    for r in &replies {
        assert_eq!(r.status, 200, "{:#}", r.body);
    }
    // All twenty arrive while the first upstream request is in flight; allow one straggler.
    let hits = hits(&upstream).await;
    assert!(
        hits <= 2,
        "{hits} upstream requests for 20 concurrent client requests"
    );
}

#[tokio::test]
async fn without_a_ttl_every_later_request_asks_the_upstream_again() {
    let upstream = agent_server(json!([agent_call("c1", "+1", "ringing", "outbound")])).await;
    let app = spawn_app(&one_agent_org(KEY, "agents", &upstream.uri(), 0)).await;
    for _ in 0..3 {
        assert_eq!(app.calls(KEY, "acme").await.body["count"], 1);
    }
    assert_eq!(hits(&upstream).await, 3);
}

#[tokio::test]
async fn with_a_ttl_a_recent_answer_is_served_without_asking_again() {
    let upstream = agent_server(json!([agent_call("c1", "+1", "ringing", "outbound")])).await;
    let app = spawn_app(&one_agent_org(KEY, "agents", &upstream.uri(), 60_000)).await;
    for _ in 0..5 {
        assert_eq!(app.calls(KEY, "acme").await.body["count"], 1);
        assert_eq!(
            app.bland(KEY, "acme").await.body["data"][0]["call_id"],
            "c1"
        );
    }
    assert_eq!(hits(&upstream).await, 1);
}

#[tokio::test]
async fn an_error_is_never_cached() {
    let upstream = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&upstream)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"calls": [agent_call("c1", "+1", "ringing", "outbound")], "count": 1}),
        ))
        .with_priority(2)
        .mount(&upstream)
        .await;
    let app = spawn_app(&one_agent_org(KEY, "agents", &upstream.uri(), 60_000)).await;
    assert_eq!(app.calls(KEY, "acme").await.status, 502);
    let reply = app.calls(KEY, "acme").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["count"], 1);
    assert_eq!(hits(&upstream).await, 2);
}

#[tokio::test]
async fn a_cached_answer_fetched_with_one_callers_bland_key_never_reaches_another_caller() {
    const ORG: &str = "bland-org";
    let keys = [("key-alice", "alice-call"), ("key-bob", "bob-call")]
        .map(|(key, call)| (key, json!([bland_call(call, "IN_PROGRESS", "1")])));
    let bland = bland_server_for_keys(ORG, &keys).await;
    let app = spawn_app(&passthrough_org(ORG, &bland.uri(), 60_000)).await;
    for _ in 0..3 {
        assert_eq!(
            app.bland("key-alice", ORG).await.body["data"][0]["call_id"],
            "alice-call"
        );
        assert_eq!(
            app.bland("key-bob", ORG).await.body["data"][0]["call_id"],
            "bob-call"
        );
        assert_eq!(app.bland("key-mallory", ORG).await.status, 401);
    }
    // Alice and Bob were each fetched once and then cached; Mallory was asked about once, and
    // Bland's rejection refused Mallory's later requests (`auth_rejection_ttl_ms`).
    assert_eq!(hits(&bland).await, 2 + 1);
}

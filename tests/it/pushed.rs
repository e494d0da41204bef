//! A pushed change shows at once in every view (DESIGN §17): the three list shapes,
//! `/capacity` and the streams, on every replica, with no new upstream ask, until the
//! provider's next answer, which stays the authority. Platforms' webhooks signed as each
//! platform signs them; fake platforms on loopback count what callmux asks them.

use serde_json::{json, Value};

use crate::common::kinds::{Backend, Fixture, RETELL, VAPI};
use crate::common::*;
use crate::platform_hooks::{
    config_with, ended_body, hook_env, post, signed_headers, HOOK_SECRET, PLATFORMS,
};

/// Answers kept long enough that nothing in a test comes from a new upstream ask.
const CACHED: &str = "cache_ttl_ms = 3600000";

const AUTH: [(&str, &str); 2] = [("authorization", "org-key"), ("x-bland-org-id", "o")];

/// Every list shape's calls, as (route, call id, status as that shape writes it).
async fn listed(app: &TestApp) -> Vec<(&'static str, String, String)> {
    let mut rows = Vec::new();
    for route in ["/calls", "/api/calls", "/v1/calls/active"] {
        let reply = app.get(route, &AUTH).await;
        assert_eq!(reply.status, 200, "{route}: {:#}", reply.body);
        let calls = reply.body.get("data").or(reply.body.get("calls"));
        for call in calls.and_then(Value::as_array).into_iter().flatten() {
            let status = call.get("status").or(call.get("queue_status"));
            rows.push((
                route,
                call["call_id"].as_str().unwrap_or_default().to_owned(),
                status.map(|s| s.to_string()).unwrap_or_default(),
            ));
        }
    }
    rows
}

/// The ids each list shape lists, in route order.
async fn ids(app: &TestApp) -> Vec<Vec<String>> {
    let rows = listed(app).await;
    ["/calls", "/api/calls", "/v1/calls/active"]
        .iter()
        .map(|route| {
            rows.iter()
                .filter(|(r, ..)| r == route)
                .map(|(_, id, _)| id.clone())
                .collect()
        })
        .collect()
}

/// The list requests `platform` was sent (not capacity's, which it may answer too).
async fn list_asks(platform: &wiremock::MockServer, fixture: &Backend) -> usize {
    let requests = platform.received_requests().await.unwrap_or_default();
    requests
        .iter()
        .filter(|r| r.url.path() == fixture.path)
        .count()
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

/// Provider `p`'s active calls as `/capacity` counts them.
async fn active_on_p(app: &TestApp) -> Value {
    let reply = app.get("/capacity", &AUTH).await;
    assert_eq!(reply.status, 200, "{:#}", reply.body);
    reply.body["providers"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["provider"] == "p"))
        .map(|p| p["active"].clone())
        .unwrap_or(Value::Null)
}

/// Callmux with providers `p` (listing `c1`) and `q` of `fixture`'s kind, its answers
/// cached for an hour; and the platform `p` lists from.
async fn cached_app(fixture: &Backend) -> (TestApp, [wiremock::MockServer; 2]) {
    let (toml, servers) = config_with(fixture, CACHED).await;
    (spawn_app_with_env(&toml, &hook_env()).await, servers)
}

async fn push(app: &TestApp, kind: &str, body: &[u8]) {
    let headers = signed_headers(kind, HOOK_SECRET, body);
    let (status, text) = post(app, &format!("/hooks/{kind}/p"), body, &headers).await;
    assert_eq!(status, 204, "{kind}: {text}");
}

#[tokio::test]
async fn a_signed_end_event_leaves_every_list_shape_and_capacity_at_once_without_an_upstream_ask() {
    for fixture in PLATFORMS {
        let kind = fixture.kind();
        let (app, [platform, _]) = cached_app(fixture).await;
        let one = vec!["c1".to_owned()];
        assert_eq!(ids(&app).await, [one.clone(), one.clone(), one], "{kind}");
        assert_eq!(active_on_p(&app).await, 1, "{kind}");
        let asked = list_asks(&platform, fixture).await;

        push(&app, kind, &ended_body(kind)).await;
        let none: Vec<String> = Vec::new();
        assert_eq!(
            ids(&app).await,
            [none.clone(), none.clone(), none],
            "{kind}"
        );
        assert_eq!(active_on_p(&app).await, 0, "{kind}");
        assert_eq!(
            list_asks(&platform, fixture).await,
            asked,
            "{kind}: callmux asked again"
        );
    }
}

/// Retell's `call_started` for `c2`, its call object as Retell's webhook sends it.
fn retell_started() -> Vec<u8> {
    json!({"event": "call_started", "call": {
        "call_type": "phone_call", "call_id": "c2", "agent_id": "agent_1",
        "call_status": "ongoing", "from_number": "+14155550100", "to_number": "+14155550123",
        "direction": "outbound", "start_timestamp": 1_703_302_407_333_u64,
        "telephony_identifier": {"twilio_call_sid": "CA-c2"}}})
    .to_string()
    .into_bytes()
}

/// Vapi's `status-update` moving `c2` to `in-progress`, with its Call object.
fn vapi_started() -> Vec<u8> {
    json!({"message": {"type": "status-update", "status": "in-progress",
        "timestamp": 1_703_302_407_333_u64,
        "call": {"id": "c2", "orgId": "org-1", "type": "outboundPhoneCall", "status": "queued",
            "createdAt": "2024-09-10T11:14:12.339Z",
            "phoneNumber": {"number": "+14155550100"},
            "customer": {"number": "+14155550123"}}}})
    .to_string()
    .into_bytes()
}

#[tokio::test]
async fn a_started_event_adds_its_call_with_what_its_body_carries_to_lists_streams_and_capacity() {
    for (fixture, body) in [(&RETELL, retell_started()), (&VAPI, vapi_started())] {
        let kind = fixture.kind();
        let (app, [platform, _]) = cached_app(fixture).await;
        let mut stream = app
            .stream("/calls/stream", "org-key", "o", None)
            .await
            .unwrap();
        stream.next_of("snapshot").await;
        assert_eq!(active_on_p(&app).await, 1, "{kind}");
        let asked = list_asks(&platform, fixture).await;

        push(&app, kind, &body).await;
        let change = stream.next_of("change").await.json();
        assert_eq!(change["added"][0]["call_id"], "c2", "{kind}: {change}");
        let reply = app.get("/calls", &AUTH).await;
        let calls = reply.body["calls"].as_array().unwrap();
        let c2 = calls
            .iter()
            .find(|c| c["call_id"] == "c2")
            .unwrap_or_else(|| panic!("{kind}: {:#}", reply.body));
        assert_eq!(c2["provider"], "p", "{kind}");
        assert_eq!(c2["status"], "in-progress", "{kind}");
        assert_eq!(c2["to"], "+14155550123", "{kind}");
        assert_eq!(c2["from"], "+14155550100", "{kind}");
        assert_eq!(c2["direction"], "outbound", "{kind}");
        for shape in ids(&app).await {
            assert!(shape.contains(&"c2".to_owned()), "{kind}: {shape:?}");
        }
        assert_eq!(active_on_p(&app).await, 2, "{kind}");
        assert_eq!(
            list_asks(&platform, fixture).await,
            asked,
            "{kind}: callmux asked again"
        );
        // The stream's next poll would find the same list: nothing is sent twice.
        assert_eq!(change["added"].as_array().unwrap().len(), 1);
    }
}

#[tokio::test]
async fn the_providers_next_answer_replaces_what_was_pushed() {
    // No cache: every list asks the platform, whose answer is the authority.
    let (toml, [platform, _]) = config_with(&RETELL, "").await;
    let app = spawn_app_with_env(&toml, &hook_env()).await;
    let mut stream = app
        .stream("/calls/stream", "org-key", "o", None)
        .await
        .unwrap();
    stream.next_of("snapshot").await;
    push(&app, "retell", &ended_body("retell")).await;
    assert_eq!(stream.next_of("change").await.json()["ended"][0], "c1");
    let asked = list_asks(&platform, &RETELL).await;
    // Retell still lists c1 live: its answer, asked after the push, wins.
    let one = vec!["c1".to_owned()];
    assert_eq!(ids(&app).await, [one.clone(), one.clone(), one]);
    assert!(list_asks(&platform, &RETELL).await > asked);
}

#[tokio::test]
async fn a_push_taken_by_one_replica_shows_in_the_other_replicas_lists_and_capacity() {
    for (fixture, body, after) in [
        (&RETELL, ended_body("retell"), Vec::<String>::new()),
        (
            &VAPI,
            vapi_started(),
            vec!["c1".to_owned(), "c2".to_owned()],
        ),
    ] {
        let kind = fixture.kind();
        // A Redis of its own each time: the stored answers are named by provider id.
        let redis = RedisServer::start().await;
        let (toml, [platform, _]) = config_with(fixture, CACHED).await;
        let toml = format!("{toml}\n{}", state_toml());
        let redis_env = redis.env();
        let env: Vec<(&str, &str)> = hook_env()
            .into_iter()
            .chain(redis_env.iter().map(|(k, v)| (*k, v.as_str())))
            .collect();
        let a = spawn_app_with_env(&toml, &env).await;
        let b = spawn_app_with_env(&toml, &env).await;
        for app in [&a, &b] {
            crate::replicas::state_becomes(app, "ok").await;
            assert_eq!(ids(app).await[0], ["c1"], "{kind}");
        }
        let channel = callmux::state::seal::Sealer::key("live", "pushed");
        crate::replicas::subscribed(&redis, &channel, 2).await;
        let asked = list_asks(&platform, fixture).await;

        push(&a, kind, &body).await;
        let expected = sorted(after.clone());
        until(
            &format!("{kind}: the push reaches the other replica"),
            async || ids(&b).await.into_iter().all(|ids| sorted(ids) == expected),
        )
        .await;
        for app in [&a, &b] {
            for shape in ids(app).await {
                assert_eq!(sorted(shape), expected, "{kind}");
            }
            assert_eq!(active_on_p(app).await, expected.len(), "{kind}");
        }
        assert_eq!(
            list_asks(&platform, fixture).await,
            asked,
            "{kind}: a replica asked again"
        );
    }
}

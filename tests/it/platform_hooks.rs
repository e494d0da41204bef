//! Retell's, Vapi's and Bland's webhooks (`POST /hooks/{kind}/{provider_id}`) against the
//! real server, fake platforms on loopback and live streams: signed as each platform's SDK
//! verifies them (Retell's `verify`: HMAC-SHA256 over the body followed by the `v=` digits,
//! hex, within 5 minutes; Vapi's server secret in `x-vapi-secret` or a Bearer
//! `authorization`; Bland's hex HMAC-SHA256 of the body), and forged, stale, replayed and
//! other-provider cases, each of which must move nothing.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use serde_json::json;

use crate::common::kinds::{Backend, Fixture, BLAND, RETELL, SECRET, SECRET_VAR, VAPI};
use crate::common::*;

pub(crate) const HOOK_VAR: &str = "HOOK_TEST_SECRET";
pub(crate) const HOOK_SECRET: &str = "whook-SECRET-7c1f0e93ab24d5";
const OTHER_VAR: &str = "HOOK_TEST_OTHER_SECRET";
const OTHER_SECRET: &str = "whook-OTHER-SECRET-0b8e27c4";

fn hex_hmac(key: &str, parts: &[&[u8]]) -> String {
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key.as_bytes()).unwrap();
    for p in parts {
        mac.update(p);
    }
    hex::encode(mac.finalize().into_bytes())
}

pub(crate) fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// Retell's `x-retell-signature` for `body` at `millis`, as retell-sdk's `sign` makes it.
pub(crate) fn retell_signature(key: &str, body: &[u8], millis: u128) -> String {
    let digits = millis.to_string();
    format!("v={digits},d={}", hex_hmac(key, &[body, digits.as_bytes()]))
}

/// The setting that turns each kind's webhooks on.
fn secret_setting(kind: &str) -> &'static str {
    match kind {
        "retell" => "webhook_key_env",
        "vapi" => "server_secret_env",
        _ => "webhook_secret_env",
    }
}

/// A platform listing call `c1` live, and callmux with providers `p` and `q` of its kind
/// (`p` checking `HOOK_SECRET` and listing `c1`, `q` checking `OTHER_SECRET` and listing
/// nothing), polled so rarely that every change after the first snapshot comes from a
/// webhook.
async fn app_for(fixture: &Backend) -> (TestApp, [wiremock::MockServer; 2]) {
    let (toml, servers) = config_for(fixture).await;
    (spawn_app_with_env(&toml, &hook_env()).await, servers)
}

/// The environment the configs read their secrets from.
pub(crate) fn hook_env() -> [(&'static str, &'static str); 3] {
    [
        (SECRET_VAR, SECRET),
        (HOOK_VAR, HOOK_SECRET),
        (OTHER_VAR, OTHER_SECRET),
    ]
}

/// `app_for`'s config, and its two platforms.
async fn config_for(fixture: &Backend) -> (String, [wiremock::MockServer; 2]) {
    config_with(fixture, "").await
}

/// `config_for`'s config with `extra` lines in each provider's table.
pub(crate) async fn config_with(
    fixture: &Backend,
    extra: &str,
) -> (String, [wiremock::MockServer; 2]) {
    let server = fixture.server(&[("c1", fixture.live())]).await;
    let empty = fixture.server(&[]).await;
    let setting = secret_setting(fixture.kind());
    let lines = |var: &str, server: &wiremock::MockServer| {
        fixture.lines(
            &server.uri(),
            &format!("{setting} = \"{var}\"\npoll_interval_ms = 3600000\n{extra}"),
        )
    };
    let toml = kinds::org_toml(&[
        ("p", &lines(HOOK_VAR, &server)),
        ("q", &lines(OTHER_VAR, &empty)),
    ]);
    (toml, [server, empty])
}

pub(crate) async fn post(
    app: &TestApp,
    path: &str,
    body: &[u8],
    headers: &[(&str, String)],
) -> (u16, String) {
    let mut request = app
        .http
        .post(app.url(path))
        .header("content-type", "application/json")
        .body(body.to_vec());
    for (name, value) in headers {
        request = request.header(*name, value.as_str());
    }
    let response = tokio::time::timeout(Duration::from_secs(30), request.send())
        .await
        .expect("callmux answers within 30 s")
        .expect("callmux is reachable");
    (response.status().as_u16(), response.text().await.unwrap())
}

/// The body each platform sends when call `c1` ends.
pub(crate) fn ended_body(kind: &str) -> Vec<u8> {
    match kind {
        "retell" => json!({"event": "call_ended", "call": {"call_id": "c1", "call_type": "phone_call", "agent_id": "agent_1", "call_status": "ended", "end_timestamp": 1_703_302_428_855_u64, "disconnection_reason": "user_hangup"}}),
        "vapi" => json!({"message": {"type": "end-of-call-report", "endedReason": "customer-ended-call", "call": {"id": "c1", "orgId": "org-1"}, "timestamp": 1_703_302_428_855_u64}}),
        _ => json!({"call_id": "c1", "c_id": "c1", "completed": true, "status": "completed", "queue_status": "complete", "call_length": 1.2}),
    }
    .to_string()
    .into_bytes()
}

/// The headers a platform signs `body` with for the provider whose secret is `secret`.
pub(crate) fn signed_headers(kind: &str, secret: &str, body: &[u8]) -> Vec<(&'static str, String)> {
    match kind {
        "retell" => vec![(
            "x-retell-signature",
            retell_signature(secret, body, now_ms()),
        )],
        "vapi" => vec![("x-vapi-secret", secret.to_string())],
        _ => vec![("x-webhook-signature", hex_hmac(secret, &[body]))],
    }
}

pub(crate) const PLATFORMS: [&Backend; 3] = [&RETELL, &VAPI, &BLAND];

#[tokio::test]
async fn a_signed_end_event_from_each_platform_ends_the_call_in_the_stream_at_once() {
    for fixture in PLATFORMS {
        let kind = fixture.kind();
        let (app, _server) = app_for(fixture).await;
        let mut s = app
            .stream("/calls/stream", "org-key", "o", None)
            .await
            .unwrap();
        assert_eq!(
            s.next_of("snapshot").await.json()["calls"][0]["call_id"],
            "c1"
        );
        let body = ended_body(kind);
        let (status, text) = post(
            &app,
            &format!("/hooks/{kind}/p"),
            &body,
            &signed_headers(kind, HOOK_SECRET, &body),
        )
        .await;
        assert_eq!(status, 204, "{kind}: {text}");
        let change = s.next_of("change").await.json();
        assert_eq!(change["ended"][0], "c1", "{kind}: {change}");
    }
}

#[tokio::test]
async fn forged_missing_and_other_provider_signatures_are_403_and_move_nothing() {
    for fixture in PLATFORMS {
        let kind = fixture.kind();
        let (app, _server) = app_for(fixture).await;
        let mut s = app
            .stream("/calls/stream", "org-key", "o", None)
            .await
            .unwrap();
        s.next_of("snapshot").await;
        let body = ended_body(kind);
        let path = format!("/hooks/{kind}/p");
        // Signed with the other provider's secret, and sent to this one.
        let (status, text) = post(
            &app,
            &path,
            &body,
            &signed_headers(kind, OTHER_SECRET, &body),
        )
        .await;
        assert_eq!(status, 403, "{kind}: {text}");
        assert!(text.contains("INVALID_SIGNATURE"), "{kind}: {text}");
        // No signature at all.
        let (status, text) = post(&app, &path, &body, &[]).await;
        assert_eq!(status, 403, "{kind}: {text}");
        assert!(text.contains("MISSING_SIGNATURE"), "{kind}: {text}");
        // Signed for another body (Vapi's secret does not depend on the body).
        let other = ended_body(kind)
            .into_iter()
            .chain(*b" ")
            .collect::<Vec<u8>>();
        if kind != "vapi" {
            let (status, _) = post(
                &app,
                &path,
                &body,
                &signed_headers(kind, HOOK_SECRET, &other),
            )
            .await;
            assert_eq!(status, 403, "{kind}");
        }
        // Odd signature headers.
        for odd in ["", "v=", "zz", "v=1,d=", "Bearer"] {
            let name = signed_headers(kind, HOOK_SECRET, &body)[0].0;
            let (status, text) = post(&app, &path, &body, &[(name, odd.to_string())]).await;
            assert!(
                matches!(status, 400 | 403),
                "{kind} {odd:?}: {status} {text}"
            );
        }
        // A hook of another kind, or another provider's path, is not this provider's.
        let elsewhere = if kind == "vapi" { "retell" } else { "vapi" };
        let (status, text) = post(
            &app,
            &format!("/hooks/{elsewhere}/p"),
            &body,
            &signed_headers(kind, HOOK_SECRET, &body),
        )
        .await;
        assert_eq!(status, 404, "{kind}: {text}");
        assert!(text.contains("UNKNOWN_HOOK"), "{kind}: {text}");
        // Nothing moved: the first change the stream sees is the genuine event's.
        let (status, _) = post(
            &app,
            &path,
            &body,
            &signed_headers(kind, HOOK_SECRET, &body),
        )
        .await;
        assert_eq!(status, 204, "{kind}");
        let change = s.next_of("change").await.json();
        assert_eq!(change["ended"][0], "c1", "{kind}: {change}");
    }
}

#[tokio::test]
async fn a_retell_signature_more_than_five_minutes_old_or_ahead_is_refused() {
    let (app, _server) = app_for(&RETELL).await;
    let body = ended_body("retell");
    let six_minutes = 6 * 60 * 1000;
    for millis in [now_ms() - six_minutes, now_ms() + six_minutes] {
        let signature = retell_signature(HOOK_SECRET, &body, millis);
        let (status, text) = post(
            &app,
            "/hooks/retell/p",
            &body,
            &[("x-retell-signature", signature)],
        )
        .await;
        assert_eq!(status, 403, "{text}");
        assert!(text.contains("5 minutes"), "{text}");
    }
    // Within the window, by a little: taken.
    let signature = retell_signature(HOOK_SECRET, &body, now_ms() - 60_000);
    let (status, text) = post(
        &app,
        "/hooks/retell/p",
        &body,
        &[("x-retell-signature", signature)],
    )
    .await;
    assert_eq!(status, 204, "{text}");
}

#[tokio::test]
async fn a_replayed_or_late_event_moves_nothing_back() {
    let (app, _server) = app_for(&RETELL).await;
    let mut s = app
        .stream("/calls/stream", "org-key", "o", None)
        .await
        .unwrap();
    s.next_of("snapshot").await;
    let ended = ended_body("retell");
    let headers = signed_headers("retell", HOOK_SECRET, &ended);
    assert_eq!(post(&app, "/hooks/retell/p", &ended, &headers).await.0, 204);
    assert_eq!(s.next_of("change").await.json()["ended"][0], "c1");
    // The same event again, then a late call_started: signed, so taken, but nothing moves.
    assert_eq!(post(&app, "/hooks/retell/p", &ended, &headers).await.0, 204);
    let started =
        json!({"event": "call_started", "call": {"call_id": "c1", "call_status": "ongoing"}})
            .to_string()
            .into_bytes();
    let headers = signed_headers("retell", HOOK_SECRET, &started);
    assert_eq!(
        post(&app, "/hooks/retell/p", &started, &headers).await.0,
        204
    );
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("callmux_callbacks_total{provider=\"p\",outcome=\"ignored\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn vapi_takes_its_secret_as_a_bearer_authorization_too() {
    let (app, _server) = app_for(&VAPI).await;
    let mut s = app
        .stream("/calls/stream", "org-key", "o", None)
        .await
        .unwrap();
    s.next_of("snapshot").await;
    let body = ended_body("vapi");
    let wrong = [("authorization", format!("Bearer {OTHER_SECRET}"))];
    assert_eq!(post(&app, "/hooks/vapi/p", &body, &wrong).await.0, 403);
    let right = [("authorization", format!("Bearer {HOOK_SECRET}"))];
    let (status, text) = post(&app, "/hooks/vapi/p", &body, &right).await;
    assert_eq!(status, 204, "{text}");
    assert_eq!(s.next_of("change").await.json()["ended"][0], "c1");
}

#[tokio::test]
async fn signed_bodies_that_are_not_the_platforms_are_400_with_what_is_missing() {
    for fixture in PLATFORMS {
        let kind = fixture.kind();
        let (app, _server) = app_for(fixture).await;
        let no_id = match kind {
            "retell" => json!({"event": "call_ended", "call": {}}),
            "vapi" => json!({"message": {"type": "end-of-call-report", "call": {}}}),
            _ => json!({"completed": true}),
        }
        .to_string()
        .into_bytes();
        for body in [no_id, b"not json".to_vec(), b"[1,2]".to_vec()] {
            let headers = signed_headers(kind, HOOK_SECRET, &body);
            let (status, text) = post(&app, &format!("/hooks/{kind}/p"), &body, &headers).await;
            assert_eq!(status, 400, "{kind}: {text}");
            assert!(text.contains("INVALID_BODY"), "{kind}: {text}");
        }
        // An event type callmux does not use is signed and harmless: taken, moving nothing.
        let unused = match kind {
            "retell" => json!({"event": "transcript_updated", "call": {"call_id": "c1"}}),
            "vapi" => json!({"message": {"type": "transcript", "call": {"id": "c1"}}}),
            _ => json!({"call_id": "c1", "status": "in-progress"}),
        }
        .to_string()
        .into_bytes();
        let headers = signed_headers(kind, HOOK_SECRET, &unused);
        assert_eq!(
            post(&app, &format!("/hooks/{kind}/p"), &unused, &headers)
                .await
                .0,
            204,
            "{kind}"
        );
    }
}

#[tokio::test]
async fn a_body_over_one_mib_is_413() {
    let (app, _server) = app_for(&BLAND).await;
    let body = vec![b' '; 1024 * 1024 + 1];
    let headers = signed_headers("bland", HOOK_SECRET, &body);
    let (status, text) = post(&app, "/hooks/bland/p", &body, &headers).await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("1 MiB"), "{text}");
}

#[tokio::test]
async fn a_webhook_taken_by_one_replica_moves_the_call_in_streams_on_another() {
    let redis = RedisServer::start().await;
    let (toml, _servers) = config_for(&BLAND).await;
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
    }
    let mut on_b = b
        .stream("/calls/stream", "org-key", "o", None)
        .await
        .unwrap();
    assert_eq!(
        on_b.next_of("snapshot").await.json()["calls"][0]["call_id"],
        "c1"
    );
    let body = ended_body("bland");
    let (status, text) = post(
        &a,
        "/hooks/bland/p",
        &body,
        &signed_headers("bland", HOOK_SECRET, &body),
    )
    .await;
    assert_eq!(status, 204, "{text}");
    let change = on_b.next_of("change").await.json();
    assert_eq!(change["ended"][0], "c1", "{change}");
}

#[tokio::test]
async fn a_webhook_secret_never_shows_in_debug_check_config_or_metrics() {
    for fixture in PLATFORMS {
        let (toml, _servers) = config_for(fixture).await;
        let config = load_config(&toml, &hook_env()).expect("valid config");
        let shown = format!("{config:?}\n{}", config.summary());
        for secret in [HOOK_SECRET, OTHER_SECRET] {
            assert!(!shown.contains(secret), "{}: {shown}", fixture.kind());
        }
        assert!(
            shown.contains(HOOK_VAR),
            "{}: the variable is named",
            fixture.kind()
        );
        let (app, _servers) = app_for(fixture).await;
        let body = ended_body(fixture.kind());
        let headers = signed_headers(fixture.kind(), HOOK_SECRET, &body);
        post(
            &app,
            &format!("/hooks/{}/p", fixture.kind()),
            &body,
            &headers,
        )
        .await;
        let metrics = app.metrics().await;
        assert!(!metrics.contains(HOOK_SECRET) && !metrics.contains(&headers[0].1));
    }
}

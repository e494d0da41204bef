//! Twilio status callbacks (`POST /hooks/twilio/{provider_id}`) against the real server, a
//! fake Twilio REST API, and live streams that must see a signed callback at once.

use std::time::Duration;

use callmux::provider::twilio::signature::{sign, Algorithm};
use serde_json::Value;

use crate::common::*;
use crate::twilio::{sid, twilio_call, twilio_server, ACCOUNT, ENV};

pub(crate) const KEY: &str = "hooks-key";
const SHA1: Algorithm = Algorithm::HmacSha1;
/// The auth token the test environment holds (`TWILIO_TEST_AUTH_TOKEN`).
pub(crate) const TOKEN: &str = "twilio-SECRET-auth-token-8d2f4b6a0c1e";

fn public_url(provider: &str) -> String {
    format!("https://callmux.example.com/hooks/twilio/{provider}")
}

/// An org seeing twilio providers `ids` at `base_url`, each taking callbacks at its own
/// public URL, polled so rarely that nothing in a test comes from a poll after the first.
pub(crate) fn config(org: &str, ids: &[&str], base_url: &str) -> String {
    config_cached(org, ids, base_url, 0)
}

/// `config`, with answers kept `cache_ttl_ms`.
fn config_cached(org: &str, ids: &[&str], base_url: &str, cache_ttl_ms: u64) -> String {
    let mut c = TestConfig::new().org(OrgB::key(org, KEY).providers(ids));
    for id in ids {
        c = c.provider(
            ProviderB::new(id, "twilio", base_url)
                .set("account_sid", ACCOUNT)
                .set("auth_token_env", "TWILIO_TEST_AUTH_TOKEN")
                .set("public_url", public_url(id).as_str())
                .set("poll_interval_ms", 3_600_000)
                .set("cache_ttl_ms", cache_ttl_ms),
        );
    }
    c.toml()
}

fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A status callback as Twilio sends one for `call` (its documented parameters).
pub(crate) fn callback(call: &str, status: &str) -> Vec<(String, String)> {
    form(&[
        ("AccountSid", ACCOUNT),
        ("ApiVersion", "2010-04-01"),
        ("CallSid", call),
        ("CallStatus", status),
        ("Called", "+14155550123"),
        ("Caller", "+15005550006"),
        ("Direction", "outbound-api"),
        ("From", "+15005550006"),
        ("To", "+14155550123"),
        ("Timestamp", "Tue, 23 Sep 2025 19:48:21 +0000"),
        ("SequenceNumber", "1"),
    ])
}

/// POSTs `params` to the hook of `provider` with `signature` (none if `None`).
async fn post(
    app: &TestApp,
    provider: &str,
    params: &[(String, String)],
    signature: Option<&str>,
) -> (u16, String) {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    post_raw(
        app,
        &format!("/hooks/twilio/{provider}"),
        body.into_bytes(),
        signature,
    )
    .await
}

async fn post_raw(
    app: &TestApp,
    path: &str,
    body: Vec<u8>,
    signature: Option<&str>,
) -> (u16, String) {
    let signature: Vec<_> = signature
        .map(|s| ("x-twilio-signature", s))
        .into_iter()
        .collect();
    post_with_headers(app, path, body, &signature).await
}

async fn post_with_headers(
    app: &TestApp,
    path: &str,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let mut request = app
        .http
        .post(app.url(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = tokio::time::timeout(Duration::from_secs(30), request.send())
        .await
        .expect("callmux answers within 30 s")
        .expect("callmux is reachable");
    (response.status().as_u16(), response.text().await.unwrap())
}

/// A signed callback for `provider`.
pub(crate) async fn signed(
    app: &TestApp,
    provider: &str,
    params: &[(String, String)],
) -> (u16, String) {
    let signature = sign(SHA1, TOKEN.as_bytes(), &public_url(provider), params);
    post(app, provider, params, Some(&signature)).await
}

async fn ringing_call_app(org: &str, ids: &[&str]) -> (TestApp, wiremock::MockServer) {
    let twilio = twilio_server(&[(
        "ringing",
        vec![twilio_call(&sid(1), "ringing", "outbound-api")],
    )])
    .await;
    let app = spawn_app_with_env(&config(org, ids, &twilio.uri()), ENV).await;
    (app, twilio)
}

#[tokio::test]
async fn a_signed_callback_reaches_every_subscriber_at_once_without_asking_twilio() {
    let org = unique("push");
    let (app, twilio) = ringing_call_app(&org, &["tw"]).await;
    let mut own = app.stream("/calls/stream", KEY, &org, None).await.unwrap();
    let mut bland = app
        .stream("/v1/calls/active/stream", KEY, &org, None)
        .await
        .unwrap();
    assert_eq!(
        own.next_of("snapshot").await.json()["calls"][0]["status"],
        "ringing"
    );
    bland.next_of("snapshot").await;
    let asked = hits(&twilio).await;

    let (status, _) = signed(&app, "tw", &callback(&sid(1), "in-progress")).await;
    assert_eq!(status, 204);
    let change = own.next_of("change").await.json();
    assert_eq!(change["updated"][0]["call_id"], sid(1).as_str());
    assert_eq!(change["updated"][0]["status"], "in-progress");
    let change = bland.next_of("change").await.json();
    assert_eq!(change["updated"][0]["status"], "IN_PROGRESS");

    let (status, _) = signed(&app, "tw", &callback(&sid(1), "completed")).await;
    assert_eq!(status, 204);
    let change = own.next_of("change").await.json();
    assert_eq!(change["ended"][0], sid(1).as_str());
    assert_eq!(
        hits(&twilio).await,
        asked,
        "a callback made callmux ask Twilio"
    );
}

#[tokio::test]
async fn a_signed_callback_shows_in_every_list_shape_without_asking_twilio() {
    let org = unique("pushed_lists");
    let twilio = twilio_server(&[(
        "ringing",
        vec![twilio_call(&sid(1), "ringing", "outbound-api")],
    )])
    .await;
    let app =
        spawn_app_with_env(&config_cached(&org, &["tw"], &twilio.uri(), 3_600_000), ENV).await;
    let auth = [("authorization", KEY), ("x-bland-org-id", org.as_str())];
    let statuses = async |app: &TestApp| {
        let mut seen = Vec::new();
        for route in ["/calls", "/api/calls", "/v1/calls/active"] {
            let body = app.get(route, &auth).await.body;
            let calls = body.get("data").or(body.get("calls")).cloned();
            let calls = calls
                .and_then(|c| c.as_array().cloned())
                .unwrap_or_default();
            seen.push(
                calls
                    .iter()
                    .map(|c| c["status"].clone())
                    .collect::<Vec<Value>>(),
            );
        }
        seen
    };
    assert_eq!(
        statuses(&app).await,
        [
            vec![Value::from("ringing")],
            vec![Value::from("ringing")],
            // Bland's shape has no ringing of its own.
            vec![Value::from("QUEUED")]
        ]
    );
    let asked = hits(&twilio).await;

    let (status, _) = signed(&app, "tw", &callback(&sid(1), "in-progress")).await;
    assert_eq!(status, 204);
    assert_eq!(
        statuses(&app).await,
        [
            vec![Value::from("in-progress")],
            vec![Value::from("in-progress")],
            vec![Value::from("IN_PROGRESS")]
        ]
    );
    let (status, _) = signed(&app, "tw", &callback(&sid(1), "completed")).await;
    assert_eq!(status, 204);
    let none: Vec<Value> = Vec::new();
    assert_eq!(statuses(&app).await, [none.clone(), none.clone(), none]);
    assert_eq!(
        hits(&twilio).await,
        asked,
        "a callback made callmux ask Twilio"
    );
}

#[tokio::test]
async fn a_replayed_or_backward_callback_moves_nothing_back() {
    let org = unique("replay");
    let (app, _twilio) = ringing_call_app(&org, &["tw"]).await;
    let mut s = app.stream("/calls/stream", KEY, &org, None).await.unwrap();
    s.next_of("snapshot").await;
    let in_progress = callback(&sid(1), "in-progress");
    assert_eq!(signed(&app, "tw", &in_progress).await.0, 204);
    assert_eq!(
        s.next_of("change").await.json()["updated"][0]["status"],
        "in-progress"
    );
    // Replays, and an older status: accepted (they are Twilio's) but change nothing.
    assert_eq!(signed(&app, "tw", &in_progress).await.0, 204);
    assert_eq!(
        signed(&app, "tw", &callback(&sid(1), "ringing")).await.0,
        204
    );
    assert_eq!(
        signed(&app, "tw", &callback(&sid(1), "queued")).await.0,
        204
    );
    // An unknown call is not invented.
    assert_eq!(
        signed(&app, "tw", &callback(&sid(9), "in-progress"))
            .await
            .0,
        204
    );
    assert_eq!(
        signed(&app, "tw", &callback(&sid(1), "no-answer")).await.0,
        204
    );
    let next = s.next_of("change").await.json();
    assert_eq!(next["ended"][0], sid(1).as_str(), "{next}");
    assert_eq!(next["updated"], Value::Array(vec![]));
    assert_eq!(next["added"], Value::Array(vec![]));
}

#[tokio::test]
async fn a_forged_or_missing_signature_is_refused_with_403_and_changes_nothing() {
    let org = unique("forged");
    let (app, _twilio) = ringing_call_app(&org, &["tw"]).await;
    let mut s = app.stream("/calls/stream", KEY, &org, None).await.unwrap();
    s.next_of("snapshot").await;
    let params = callback(&sid(1), "completed");
    let wrong_token = sign(SHA1, b"not-the-token", &public_url("tw"), &params);
    let other_params = sign(
        SHA1,
        TOKEN.as_bytes(),
        &public_url("tw"),
        &callback(&sid(1), "ringing"),
    );
    for signature in [
        Some(wrong_token.as_str()),
        Some(other_params.as_str()),
        Some("garbage"),
        Some(""),
        None,
    ] {
        let (status, body) = post(&app, "tw", &params, signature).await;
        assert_eq!(status, 403, "{signature:?}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["success"], false);
        assert!(
            ["INVALID_SIGNATURE", "MISSING_SIGNATURE"].contains(&v["code"].as_str().unwrap()),
            "{body}"
        );
        assert!(!body.contains(TOKEN));
    }
    // Signed for another URL (a query Twilio did not call with).
    let signature = sign(SHA1, TOKEN.as_bytes(), &public_url("tw"), &params);
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&params)
        .finish();
    let (status, _) = post_raw(
        &app,
        "/hooks/twilio/tw?extra=1",
        body.into_bytes(),
        Some(&signature),
    )
    .await;
    assert_eq!(status, 403);
    // The call is still ringing: the first change is the valid callback's.
    assert_eq!(
        signed(&app, "tw", &callback(&sid(1), "in-progress"))
            .await
            .0,
        204
    );
    let change = s.next_of("change").await.json();
    assert_eq!(change["updated"][0]["status"], "in-progress", "{change}");
}

#[tokio::test]
async fn a_valid_signature_replayed_for_another_provider_id_is_refused() {
    let org = unique("other-id");
    let (app, _twilio) = ringing_call_app(&org, &["tw", "tw2"]).await;
    let mut s = app.stream("/calls/stream", KEY, &org, None).await.unwrap();
    s.next_of("snapshot").await;
    let params = callback(&sid(1), "completed");
    let for_tw = sign(SHA1, TOKEN.as_bytes(), &public_url("tw"), &params);
    let (status, body) = post(&app, "tw2", &params, Some(&for_tw)).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("INVALID_SIGNATURE"));
    assert_eq!(
        signed(&app, "tw", &callback(&sid(1), "in-progress"))
            .await
            .0,
        204
    );
    let change = s.next_of("change").await.json();
    assert_eq!(change["updated"][0]["status"], "in-progress", "{change}");
}

#[tokio::test]
async fn a_signed_callback_of_another_account_is_refused_with_403() {
    let org = unique("account");
    let (app, _twilio) = ringing_call_app(&org, &["tw"]).await;
    let mut params = callback(&sid(1), "completed");
    params[0].1 = "AC00000000000000000000000000000000".into();
    let (status, body) = signed(&app, "tw", &params).await;
    assert_eq!(status, 403);
    assert!(body.contains("WRONG_ACCOUNT"), "{body}");
}

#[tokio::test]
async fn a_10_mb_callback_body_is_refused_with_413() {
    let org = unique("huge");
    let (app, _twilio) = ringing_call_app(&org, &["tw"]).await;
    let body = format!(
        "CallSid={}&CallStatus=completed&Pad={}",
        sid(1),
        "x".repeat(10 << 20)
    );
    let (status, answer) = post_raw(&app, "/hooks/twilio/tw", body.into_bytes(), Some("x")).await;
    assert_eq!(status, 413, "{answer}");
    assert!(answer.contains("BODY_TOO_LARGE"));
    // The server carries on.
    assert_eq!(
        signed(&app, "tw", &callback(&sid(1), "in-progress"))
            .await
            .0,
        204
    );
}

#[tokio::test]
async fn an_unknown_provider_or_one_without_callbacks_is_404_and_a_bad_form_400() {
    let org = unique("unknown");
    let agent = LiveAgent::start(serde_json::json!([])).await;
    let twilio = twilio_server(&[]).await;
    let toml = TestConfig::new()
        .org(OrgB::key(&org, KEY).providers(&["agents", "plain"]))
        .provider(ProviderB::agent("agents", &agent.url))
        .provider(
            ProviderB::new("plain", "twilio", &twilio.uri())
                .set("account_sid", ACCOUNT)
                .set("auth_token_env", "TWILIO_TEST_AUTH_TOKEN"),
        )
        .toml();
    let app = spawn_app_with_env(&toml, ENV).await;
    for id in ["nope", "agents", "plain"] {
        let params = callback(&sid(1), "completed");
        let (status, body) = signed(&app, id, &params).await;
        assert_eq!(status, 404, "{id}: {body}");
        assert!(body.contains("UNKNOWN_HOOK"), "{id}: {body}");
    }
    let (app, _twilio) = ringing_call_app(&org, &["tw"]).await;
    let (status, body) = signed(&app, "tw", &form(&[("AccountSid", ACCOUNT)])).await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn callbacks_are_counted_by_provider_and_outcome_and_neither_token_nor_signature_shows() {
    let org = unique("counted");
    let provider = unique("tw");
    let (app, _twilio) = ringing_call_app(&org, &[&provider]).await;
    let mut s = app.stream("/calls/stream", KEY, &org, None).await.unwrap();
    s.next_of("snapshot").await;
    let params = callback(&sid(1), "in-progress");
    let signature = sign(SHA1, TOKEN.as_bytes(), &public_url(&provider), &params);
    assert_eq!(
        post(&app, &provider, &params, Some(&signature)).await.0,
        204
    );
    assert_eq!(
        post(&app, &provider, &params, Some(&signature)).await.0,
        204
    );
    assert_eq!(post(&app, &provider, &params, Some("forged")).await.0, 403);
    let metrics = app.metrics().await;
    let line = |outcome: &str| {
        format!("callmux_callbacks_total{{provider=\"{provider}\",outcome=\"{outcome}\"}} 1")
    };
    for outcome in ["applied", "ignored", "bad_signature"] {
        assert!(metrics.contains(&line(outcome)), "{outcome}:\n{metrics}");
    }
    assert!(!metrics.contains(TOKEN) && !metrics.contains(&signature));
}

#[tokio::test]
async fn no_key_token_or_signature_appears_in_the_binary_s_logs_at_trace_or_in_any_event() {
    let org = unique("nolog");
    let twilio = twilio_server(&[(
        "ringing",
        vec![twilio_call(&sid(1), "ringing", "outbound-api")],
    )])
    .await;
    let mut env: Vec<(&str, &str)> = ENV.to_vec();
    env.push(("RUST_LOG", "trace"));
    let server = Binary::start(config(&org, &["tw"], &twilio.uri()).as_str(), &env, &[]);
    let mut s = server
        .app
        .stream("/calls/stream", KEY, &org, None)
        .await
        .unwrap();
    let mut events = vec![s.next_of("snapshot").await];
    let params = callback(&sid(1), "in-progress");
    let signature = sign(SHA1, TOKEN.as_bytes(), &public_url("tw"), &params);
    assert_eq!(
        post(&server.app, "tw", &params, Some("forged-signature"))
            .await
            .0,
        403
    );
    assert_eq!(
        post(&server.app, "tw", &params, Some(&signature)).await.0,
        204
    );
    events.push(s.next_of("change").await);
    let Err((status, _)) = server
        .app
        .stream("/calls/stream", "typed-wrong-key", &org, None)
        .await
    else {
        panic!("a wrong key streamed");
    };
    assert_eq!(status, 401);
    drop(s);
    let logs = server.stop();
    assert!(
        logs.contains("webhook") && logs.contains("kind=\"twilio\""),
        "{logs}"
    );
    for secret in [
        KEY,
        TOKEN,
        &signature,
        "forged-signature",
        "typed-wrong-key",
    ] {
        assert!(!logs.contains(secret), "{secret} in the logs");
        for e in &events {
            assert!(!format!("{e:?}").contains(secret), "{secret} in an event");
        }
    }
}

// ---- signed with HMAC-SHA256, as Twilio's current libraries validate ----

const SHARED_KEY: &str = "twilio-SECRET-shared-key-51c0e7a9d3b2";
const SHA256_SETTINGS: &str = "key=webhooks_sharedkey_0a1b2c3d,algorithm=HMAC_SHA256";

/// The signature twilio-python's own `RequestValidator(secret).compute_signature(url,
/// params, algorithm)` gives: Twilio's library, not callmux's code.
fn twilio_python_signature(
    secret: &str,
    url: &str,
    params: &[(String, String)],
    algorithm: &str,
) -> String {
    let script = "import json, sys\n\
                  from twilio.request_validator import RequestValidator\n\
                  a = json.load(sys.stdin)\n\
                  print(RequestValidator(a['secret']).compute_signature(\
                  a['url'], dict(a['params']), a['algorithm']))";
    let input = serde_json::json!({
        "secret": secret, "url": url, "params": params, "algorithm": algorithm,
    });
    run_python(script, &input.to_string()).trim().to_string()
}

#[tokio::test]
async fn callbacks_signed_as_twilios_library_signs_them_with_hmac_sha256_or_sha1_are_taken() {
    let twilio = twilio_server(&[(
        "ringing",
        vec![twilio_call(&sid(1), "ringing", "outbound-api")],
    )])
    .await;
    let org = unique("sha256");
    let provider = |id: &str| {
        ProviderB::new(id, "twilio", &twilio.uri())
            .set("account_sid", ACCOUNT)
            .set("auth_token_env", "TWILIO_TEST_AUTH_TOKEN")
            .set("public_url", public_url(id).as_str())
            .set("poll_interval_ms", 3_600_000)
    };
    // `shared` holds a SharedKey's secret; `plain` has only the auth token.
    let toml = TestConfig::new()
        .org(OrgB::key(&org, KEY).providers(&["shared", "plain"]))
        .provider(provider("shared").set("signing_key_env", "TWILIO_TEST_SHARED_KEY"))
        .provider(provider("plain"))
        .toml();
    let mut env = ENV.to_vec();
    env.push(("TWILIO_TEST_SHARED_KEY", SHARED_KEY));
    let app = spawn_app_with_env(&toml, &env).await;
    let params = callback(&sid(1), "in-progress");
    let body = || {
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&params)
            .finish()
            .into_bytes()
    };
    let send = |id: &'static str, secret: &'static str, algorithm: &'static str, settings| {
        let signature = twilio_python_signature(secret, &public_url(id), &params, algorithm);
        let app = &app;
        let body = body();
        async move {
            let mut headers = vec![("x-twilio-signature", signature.as_str())];
            if let Some(settings) = settings {
                headers.push(("x-twilio-webhooks-signature-settings", settings));
            }
            post_with_headers(app, &format!("/hooks/twilio/{id}"), body, &headers)
                .await
                .0
        }
    };
    let sha256 = Some(SHA256_SETTINGS);
    // With its SharedKey where the provider has one, else with the auth token.
    assert_eq!(send("shared", SHARED_KEY, "HMAC_SHA256", sha256).await, 204);
    assert_eq!(send("plain", TOKEN, "HMAC_SHA256", sha256).await, 204);
    // HMAC-SHA1 with the auth token, announced or not, as before.
    assert_eq!(send("shared", TOKEN, "HMAC_SHA1", None).await, 204);
    assert_eq!(
        send(
            "plain",
            TOKEN,
            "HMAC_SHA1",
            Some("key=k,algorithm=HMAC_SHA1")
        )
        .await,
        204
    );

    // Refused: the auth token where a SharedKey signs, an algorithm the header does not
    // name, and one callmux does not know.
    assert_eq!(send("shared", TOKEN, "HMAC_SHA256", sha256).await, 403);
    assert_eq!(send("plain", TOKEN, "HMAC_SHA256", None).await, 403);
    assert_eq!(send("plain", TOKEN, "HMAC_SHA1", sha256).await, 403);
    let sha512 = Some("key=k,algorithm=HMAC_SHA512");
    assert_eq!(send("plain", TOKEN, "HMAC_SHA256", sha512).await, 403);
    let metrics = app.metrics().await;
    for (provider, outcome) in [("shared", "bad_signature"), ("plain", "bad_signature")] {
        let line =
            format!("callmux_callbacks_total{{provider=\"{provider}\",outcome=\"{outcome}\"}}");
        assert!(metrics.contains(&line), "{line} in:\n{metrics}");
    }
}

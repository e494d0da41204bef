//! The `twilio` kind against fake Twilio REST APIs on loopback that answer in the shape
//! Twilio documents for its Call resource: one list per live status, pages followed by
//! `next_page_uri`, Basic auth, ending by `Status=completed`, and the config that builds it.
//! What every kind shares (rate limits, paging bounds, one row per call) is the conformance
//! suite's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use callmux::call::{CallStatus, Direction};
use callmux::provider::{Backend, EndError, ProviderError, RequestContext};
use serde_json::{json, Value};
use wiremock::matchers::{body_string, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

pub use crate::common::bodies::twilio::{
    next_uri, sid, twilio_call, twilio_page, ACCOUNT, CALLS_PATH,
};
use crate::common::*;

/// An API key SID (`SK` and 32 hex digits) and its secret, as the environment holds them.
const KEY_SID: &str = "SK3b9d21e0c7f64a58b1d2e3f4a5b6c7d8";
const KEY_SECRET: &str = "twilio-SECRET-api-key-secret-5c1e9a7b";
const AUTH_TOKEN: &str = "twilio-SECRET-auth-token-8d2f4b6a0c1e";

/// The environment every test config reads its credentials from.
pub const ENV: &[(&str, &str)] = &[
    ("TWILIO_TEST_KEY_SID", KEY_SID),
    ("TWILIO_TEST_KEY_SECRET", KEY_SECRET),
    ("TWILIO_TEST_AUTH_TOKEN", AUTH_TOKEN),
];

/// Twilio's error body.
fn twilio_error(code: u32, message: &str, status: u16) -> Value {
    json!({
        "code": code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status,
    })
}

/// A fake Twilio answering each status's first page with these calls (and an empty page
/// for a status not given).
pub async fn twilio_server(by_status: &[(&str, Vec<Value>)]) -> MockServer {
    let server = MockServer::start().await;
    mount_statuses(&server, by_status).await;
    server
}

async fn mount_statuses(server: &MockServer, by_status: &[(&str, Vec<Value>)]) {
    for status in ["queued", "ringing", "in-progress"] {
        let calls = by_status
            .iter()
            .find(|(s, _)| *s == status)
            .map(|(_, c)| c.clone())
            .unwrap_or_default();
        Mock::given(method("GET"))
            .and(path(CALLS_PATH))
            .and(query_param("Status", status))
            .and(query_param("PageSize", "1000"))
            .respond_with(ResponseTemplate::new(200).set_body_json(twilio_page(calls, None)))
            .with_priority(5)
            .mount(server)
            .await;
    }
}

/// A `twilio` provider's TOML lines against `base_url`, authenticating with the auth token.
pub fn token_lines(base_url: &str) -> String {
    format!(
        "kind = \"twilio\"\nbase_url = \"{base_url}\"\naccount_sid = \"{ACCOUNT}\"\nauth_token_env = \"TWILIO_TEST_AUTH_TOKEN\"\n"
    )
}

fn key_lines(base_url: &str) -> String {
    format!(
        "kind = \"twilio\"\nbase_url = \"{base_url}\"\naccount_sid = \"{ACCOUNT}\"\napi_key_sid_env = \"TWILIO_TEST_KEY_SID\"\napi_key_secret_env = \"TWILIO_TEST_KEY_SECRET\"\n"
    )
}

fn config_with(lines: &str) -> Result<callmux::Config, callmux::config::ConfigError> {
    let toml = format!(
        "[orgs.o]\napi_key_sha256 = \"{}\"\nproviders = [\"tw\"]\n[providers.tw]\n{lines}",
        "a".repeat(64)
    );
    load_config(&toml, ENV)
}

/// Provider `tw` built from its TOML lines through the public config path.
fn build(lines: &str) -> Backend {
    let config = config_with(lines).unwrap_or_else(|e| panic!("{e}"));
    let spec = config.provider("tw").unwrap();
    spec.kind.build(Arc::from("tw"), &spec.common).unwrap()
}

fn config_error(lines: &str) -> String {
    match config_with(lines) {
        Ok(_) => panic!("accepted:\n{lines}"),
        Err(e) => e.to_string(),
    }
}

fn ctx() -> RequestContext {
    RequestContext {
        org_id: Arc::from("o"),
        forwarded: None,
    }
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

fn ids(calls: &[callmux::call::Call]) -> Vec<String> {
    let mut ids: Vec<String> = calls.iter().map(|c| c.call_id.to_string()).collect();
    ids.sort();
    ids
}

// ---- listing: the requests on the wire ----

#[tokio::test]
async fn each_live_status_is_asked_for_once_with_the_documented_query_and_the_api_key() {
    let server = twilio_server(&[]).await;
    let got = build(&key_lines(&server.uri()))
        .list
        .active_calls(&ctx())
        .await
        .unwrap();
    assert!(got.is_empty());
    let requests = server.received_requests().await.unwrap();
    let mut statuses: Vec<String> = requests
        .iter()
        .map(|r| {
            assert_eq!(r.method.as_str(), "GET");
            assert_eq!(r.url.path(), CALLS_PATH);
            let query: Vec<(String, String)> = r.url.query_pairs().into_owned().collect();
            assert_eq!(query.len(), 2, "{query:?}");
            assert_eq!(query[1], ("PageSize".into(), "1000".into()));
            assert_eq!(
                r.headers["authorization"].to_str().unwrap(),
                basic(KEY_SID, KEY_SECRET)
            );
            assert!(r.body.is_empty());
            query[0].1.clone()
        })
        .collect();
    statuses.sort();
    assert_eq!(statuses, ["in-progress", "queued", "ringing"]);
}

#[tokio::test]
async fn an_auth_token_alone_authenticates_as_the_account_sid_with_the_token() {
    let server = twilio_server(&[]).await;
    build(&token_lines(&server.uri()))
        .list
        .active_calls(&ctx())
        .await
        .unwrap();
    for r in server.received_requests().await.unwrap() {
        assert_eq!(
            r.headers["authorization"].to_str().unwrap(),
            basic(ACCOUNT, AUTH_TOKEN)
        );
    }
}

#[tokio::test]
async fn with_an_api_key_and_an_auth_token_the_rest_api_is_asked_with_the_key() {
    let server = twilio_server(&[]).await;
    let lines = format!(
        "{}auth_token_env = \"TWILIO_TEST_AUTH_TOKEN\"\n",
        key_lines(&server.uri())
    );
    build(&lines).list.active_calls(&ctx()).await.unwrap();
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 3);
    for r in requests {
        assert_eq!(
            r.headers["authorization"].to_str().unwrap(),
            basic(KEY_SID, KEY_SECRET)
        );
    }
}

#[tokio::test]
async fn the_three_status_lists_are_asked_at_once_not_one_after_another() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(twilio_page(vec![], None))
                .set_delay(Duration::from_millis(600)),
        )
        .mount(&server)
        .await;
    let p = build(&token_lines(&server.uri())).list;
    let started = Instant::now();
    p.active_calls(&ctx()).await.unwrap();
    let took = started.elapsed();
    assert_eq!(hits(&server).await, 3);
    // One after another would take 1.8 s.
    assert!(took < Duration::from_millis(1_500), "{took:?}");
}

// ---- listing: the documented bodies, mapped ----

#[tokio::test]
async fn a_documented_page_maps_every_field_as_design_section_8_says() {
    let mut inbound = twilio_call(&sid(2), "in-progress", "inbound");
    inbound["from"] = json!("+14155550199");
    inbound["to"] = json!("+15005550006");
    let server = twilio_server(&[
        (
            "ringing",
            vec![twilio_call(&sid(1), "ringing", "outbound-api")],
        ),
        (
            "in-progress",
            vec![
                inbound,
                twilio_call(&sid(3), "in-progress", "outbound-dial"),
            ],
        ),
    ])
    .await;
    let got = build(&token_lines(&server.uri()))
        .list
        .active_calls(&ctx())
        .await
        .unwrap();
    assert_eq!(ids(&got), [sid(1), sid(2), sid(3)]);
    let by_id = |id: String| got.iter().find(|c| c.call_id == id).unwrap().clone();
    let out = by_id(sid(1));
    assert_eq!(&*out.provider, "tw");
    assert_eq!(out.status, CallStatus::Ringing);
    assert_eq!(out.direction, Some(Direction::Outbound));
    assert_eq!(out.from.as_deref(), Some("+15005550006"));
    assert_eq!(out.to.as_deref(), Some("+14155550123"));
    assert_eq!(out.telephony_id.as_deref(), Some(sid(1).as_str()));
    // Tue, 23 Sep 2025 19:48:17 / 19:48:20 +0000.
    assert_eq!(out.created_at, Some(1_758_656_897_000));
    assert_eq!(out.started_at, Some(1_758_656_900_000));
    assert_eq!(out.org, None);
    let inb = by_id(sid(2));
    assert_eq!(inb.status, CallStatus::InProgress);
    assert_eq!(inb.direction, Some(Direction::Inbound));
    assert_eq!(inb.from.as_deref(), Some("+14155550199"));
    assert_eq!(inb.to.as_deref(), Some("+15005550006"));
    assert_eq!(by_id(sid(3)).direction, Some(Direction::Outbound));
}

#[tokio::test]
async fn missing_optional_fields_empty_times_and_unreadable_dates_are_unknown_not_errors() {
    let bare = json!({"sid": sid(1), "status": "queued"});
    let mut empty = twilio_call(&sid(2), "queued", "outbound-api");
    empty["start_time"] = json!("");
    empty["date_created"] = json!("2025-09-23T19:48:17Z");
    empty["from"] = json!(null);
    empty["to"] = json!("");
    let server = twilio_server(&[("queued", vec![bare, empty])]).await;
    let got = build(&token_lines(&server.uri()))
        .list
        .active_calls(&ctx())
        .await
        .unwrap();
    for c in got.iter() {
        assert_eq!(c.status, CallStatus::Queued);
        assert_eq!((c.from.as_ref(), c.to.as_ref()), (None, None), "{c:?}");
        assert_eq!((c.created_at, c.started_at), (None, None), "{c:?}");
    }
    assert_eq!(got[0].direction, None);
    assert_eq!(got[1].direction, Some(Direction::Outbound));
}

#[tokio::test]
async fn an_unknown_status_is_kept_verbatim_and_an_undocumented_direction_is_unknown() {
    let server = twilio_server(&[(
        "in-progress",
        vec![
            twilio_call(&sid(1), "paused", "trunking-originating"),
            twilio_call(&sid(2), "in-progress", "sideways"),
        ],
    )])
    .await;
    let got = build(&token_lines(&server.uri()))
        .list
        .active_calls(&ctx())
        .await
        .unwrap();
    assert_eq!(got[0].status, CallStatus::Other("paused".into()));
    assert!(got[0].status.is_active());
    assert_eq!(got[0].direction, None);
    assert_eq!(got[1].direction, None);
}

#[tokio::test]
async fn numbers_where_twilio_writes_strings_are_read_as_text() {
    let mut call = twilio_call(&sid(1), "ringing", "outbound-api");
    call["from"] = json!(15005550006u64);
    call["to"] = json!(14155550123u64);
    call["duration"] = json!(0);
    call["queue_time"] = json!(1000);
    call["price"] = json!(-0.02);
    let server = twilio_server(&[("ringing", vec![call])]).await;
    let got = build(&token_lines(&server.uri()))
        .list
        .active_calls(&ctx())
        .await
        .unwrap();
    assert_eq!(got[0].from.as_deref(), Some("15005550006"));
    assert_eq!(got[0].to.as_deref(), Some("14155550123"));
}

#[tokio::test]
async fn ended_calls_are_read_and_then_left_out_of_the_merged_list() {
    let server = twilio_server(&[(
        "in-progress",
        vec![
            twilio_call(&sid(1), "in-progress", "inbound"),
            // Ended between Twilio's filter and its answer.
            twilio_call(&sid(2), "completed", "inbound"),
            twilio_call(&sid(3), "canceled", "inbound"),
        ],
    )])
    .await;
    let got = build(&token_lines(&server.uri()))
        .list
        .active_calls(&ctx())
        .await
        .unwrap();
    assert_eq!(got.len(), 3);
    let app = spawn_app_with_env(&one_twilio_org(&server.uri()), ENV).await;
    let listed = app.calls("k", "acme").await;
    assert_eq!(listed.status, 200, "{:?}", listed.body);
    assert_eq!(listed.body["count"], 1, "{:?}", listed.body);
    assert_eq!(listed.body["calls"][0]["call_id"], sid(1));
}

#[tokio::test]
async fn a_call_listed_under_two_statuses_is_one_call_in_its_later_status() {
    let server = twilio_server(&[
        (
            "queued",
            vec![twilio_call(&sid(1), "queued", "outbound-api")],
        ),
        (
            "ringing",
            vec![twilio_call(&sid(1), "ringing", "outbound-api")],
        ),
    ])
    .await;
    let got = build(&token_lines(&server.uri()))
        .list
        .active_calls(&ctx())
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].status, CallStatus::Ringing);
}

#[tokio::test]
async fn unchanged_lists_hand_out_the_same_calls_and_one_changed_status_list_new_ones() {
    let server = twilio_server(&[
        (
            "queued",
            vec![twilio_call(&sid(1), "queued", "outbound-api")],
        ),
        (
            "ringing",
            vec![twilio_call(&sid(2), "ringing", "outbound-api")],
        ),
    ])
    .await;
    let p = build(&token_lines(&server.uri())).list;
    let first = p.active_calls(&ctx()).await.unwrap();
    let second = p.active_calls(&ctx()).await.unwrap();
    assert!(
        Arc::ptr_eq(&first, &second),
        "an unchanged account was combined again"
    );
    server.reset().await;
    mount_statuses(
        &server,
        &[
            (
                "queued",
                vec![twilio_call(&sid(1), "queued", "outbound-api")],
            ),
            ("ringing", vec![]),
            (
                "in-progress",
                vec![twilio_call(&sid(2), "in-progress", "outbound-api")],
            ),
        ],
    )
    .await;
    let changed = p.active_calls(&ctx()).await.unwrap();
    assert!(!Arc::ptr_eq(&first, &changed));
    assert_eq!(ids(&changed), [sid(1), sid(2)]);
    assert_eq!(
        changed.iter().find(|c| c.call_id == sid(2)).unwrap().status,
        CallStatus::InProgress
    );
}

// ---- listing: pages ----

#[tokio::test]
async fn pages_are_followed_by_next_page_uri_to_the_last_on_the_base_urls_own_host() {
    let server = MockServer::start().await;
    mount_statuses(&server, &[]).await;
    Mock::given(method("GET"))
        .and(path(CALLS_PATH))
        .and(query_param("Status", "ringing"))
        .and(query_param("PageSize", "1000"))
        .and(query_param("Page", "1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(twilio_page(
            vec![twilio_call(&sid(2), "ringing", "inbound")],
            Some(&next_uri("ringing", 2)),
        )))
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(CALLS_PATH))
        .and(query_param("Page", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(twilio_page(
            vec![twilio_call(&sid(3), "ringing", "inbound")],
            None,
        )))
        .with_priority(1)
        .mount(&server)
        .await;
    // The first page is asked under the base URL's own path; the next pages where Twilio's
    // links say, on the same host.
    Mock::given(method("GET"))
        .and(path(format!("/proxy{CALLS_PATH}")))
        .and(query_param("Status", "ringing"))
        .respond_with(ResponseTemplate::new(200).set_body_json(twilio_page(
            vec![twilio_call(&sid(1), "ringing", "inbound")],
            Some(&next_uri("ringing", 1)),
        )))
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/proxy{CALLS_PATH}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(twilio_page(vec![], None)))
        .with_priority(2)
        .mount(&server)
        .await;
    let got = build(&token_lines(&format!("{}/proxy/", server.uri())))
        .list
        .active_calls(&ctx())
        .await
        .unwrap();
    assert_eq!(ids(&got), [sid(1), sid(2), sid(3)]);
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 5);
    for r in &requests {
        assert_eq!(
            r.headers["authorization"].to_str().unwrap(),
            basic(ACCOUNT, AUTH_TOKEN),
            "{}",
            r.url
        );
    }
}

#[tokio::test]
async fn a_next_page_uri_naming_another_host_is_the_providers_error_and_never_followed() {
    let elsewhere = twilio_server(&[]).await;
    let server = twilio_server(&[]).await;
    for link in [
        format!("{}{}", elsewhere.uri(), next_uri("queued", 1)),
        format!("//{}{}", elsewhere.address(), next_uri("queued", 1)),
        format!("/\\{}{}", elsewhere.address(), next_uri("queued", 1)),
        format!("/\t/{}{}", elsewhere.address(), next_uri("queued", 1)),
        "Calls.json?Page=1".to_string(),
        "javascript:alert(1)".to_string(),
    ] {
        Mock::given(method("GET"))
            .and(query_param("Status", "queued"))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(twilio_page(vec![], Some(&link))),
            )
            .with_priority(1)
            .mount(&server)
            .await;
        let got = build(&token_lines(&server.uri()))
            .list
            .active_calls(&ctx())
            .await;
        assert!(
            matches!(&got, Err(ProviderError::BadBody(m)) if m.contains("next_page_uri")),
            "{link:?}: {got:?}"
        );
        assert_eq!(hits(&elsewhere).await, 0, "{link:?} was followed");
        server.reset().await;
        mount_statuses(&server, &[]).await;
    }
}

// ---- listing: failures ----

#[tokio::test]
async fn one_failing_status_list_fails_the_provider_rather_than_shortening_its_list() {
    let server = MockServer::start().await;
    mount_statuses(
        &server,
        &[("queued", vec![twilio_call(&sid(1), "queued", "inbound")])],
    )
    .await;
    Mock::given(method("GET"))
        .and(query_param("Status", "ringing"))
        .respond_with(ResponseTemplate::new(500))
        .with_priority(1)
        .mount(&server)
        .await;
    let got = build(&token_lines(&server.uri()))
        .list
        .active_calls(&ctx())
        .await;
    assert_eq!(got, Err(ProviderError::Status(500)));
}

#[tokio::test]
async fn a_malformed_page_is_a_bad_response_and_twilios_error_body_at_200_is_reported() {
    for (body, reported) in [
        (json!({"calls": [{"status": "ringing"}]}).to_string(), false),
        (json!({"calls": [{"sid": sid(1)}]}).to_string(), false),
        (json!({"calls": {"sid": sid(1)}}).to_string(), false),
        (json!({"page": 0, "next_page_uri": null}).to_string(), false),
        ("<Response/>".to_string(), false),
        (twilio_error(20003, "Authenticate", 401).to_string(), true),
    ] {
        let server = raw_server(200, body.clone()).await;
        let got = build(&token_lines(&server.uri()))
            .list
            .active_calls(&ctx())
            .await;
        if reported {
            assert_eq!(
                got,
                Err(ProviderError::Reported("20003: Authenticate".into())),
                "{body}"
            );
        } else {
            assert!(
                matches!(got, Err(ProviderError::BadBody(_))),
                "{body}: {got:?}"
            );
        }
    }
}

// ---- ending a call ----

/// A fake Twilio that ends the call `sid` and answers 404 for any other call.
async fn ending_server(sid: &str) -> MockServer {
    let server = MockServer::start().await;
    let mut ended = twilio_call(sid, "completed", "outbound-api");
    ended["end_time"] = json!("Tue, 23 Sep 2025 19:50:02 +0000");
    ended["duration"] = json!("102");
    Mock::given(method("POST"))
        .and(path(format!(
            "/2010-04-01/Accounts/{ACCOUNT}/Calls/{sid}.json"
        )))
        .and(body_string("Status=completed"))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .respond_with(ResponseTemplate::new(200).set_body_json(ended))
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(404).set_body_json(twilio_error(
            20404,
            "The requested resource was not found",
            404,
        )))
        .with_priority(5)
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn ending_a_call_posts_status_completed_to_the_calls_own_resource() {
    let server = ending_server(&sid(7)).await;
    let end = build(&key_lines(&server.uri()))
        .end
        .expect("twilio ends calls");
    end.end_call(&ctx(), &sid(7)).await.unwrap();
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.method.as_str(), "POST");
    assert_eq!(
        r.url.path(),
        format!("/2010-04-01/Accounts/{ACCOUNT}/Calls/{}.json", sid(7))
    );
    assert_eq!(r.url.query(), None);
    assert_eq!(r.body, b"Status=completed");
    assert_eq!(
        r.headers["authorization"].to_str().unwrap(),
        basic(KEY_SID, KEY_SECRET)
    );
}

#[tokio::test]
async fn ending_a_call_twilio_does_not_know_is_not_found() {
    let server = ending_server(&sid(7)).await;
    let end = build(&token_lines(&server.uri())).end.unwrap();
    assert_eq!(end.end_call(&ctx(), &sid(8)).await, Err(EndError::NotFound));
    assert_eq!(hits(&server).await, 1);
}

#[tokio::test]
async fn a_failure_to_end_a_call_is_the_providers_failure_and_is_never_retried() {
    for (status, expected) in [
        (500, ProviderError::Status(500)),
        (503, ProviderError::Status(503)),
        (401, ProviderError::Rejected(401)),
        (429, ProviderError::RateLimited),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(status)
                    .insert_header("retry-after", "0")
                    .set_body_json(twilio_error(20000 + u32::from(status), "failed", status)),
            )
            .mount(&server)
            .await;
        let end = build(&format!("{}retries = 3\n", token_lines(&server.uri())))
            .end
            .unwrap();
        assert_eq!(
            end.end_call(&ctx(), &sid(7)).await,
            Err(EndError::Failed(expected)),
            "{status}"
        );
        assert_eq!(hits(&server).await, 1, "{status} was retried");
    }
}

#[tokio::test]
async fn an_id_that_is_not_a_call_sid_is_not_found_and_never_reaches_twilio() {
    let server = ending_server(&sid(7)).await;
    let end = build(&token_lines(&server.uri())).end.unwrap();
    let seven = sid(7);
    let tail = &seven[2..];
    for id in [
        "a/../b".to_string(),
        "x?y".to_string(),
        "".to_string(),
        "..".to_string(),
        format!("CA{}/x", &tail[..30]),
        format!("CA{}?a", &tail[..31]),
        format!("CA{}%2F", &tail[..29]),
        format!("{}/../../Accounts", sid(7)),
        format!("PN{tail}"),
        format!("ca{tail}"),
        format!("CA{}g", &tail[..31]),
    ] {
        assert_eq!(
            end.end_call(&ctx(), &id).await,
            Err(EndError::NotFound),
            "{id:?}"
        );
    }
    assert_eq!(hits(&server).await, 0);
}

// ---- configuration ----

#[test]
fn a_credential_missing_from_the_environment_is_a_config_error_naming_provider_and_field() {
    for (lines, field, var) in [
        (
            format!("kind = \"twilio\"\naccount_sid = \"{ACCOUNT}\"\nauth_token_env = \"TWILIO_UNSET_TOKEN\""),
            "providers.tw.auth_token_env",
            "TWILIO_UNSET_TOKEN",
        ),
        (
            format!("kind = \"twilio\"\naccount_sid = \"{ACCOUNT}\"\napi_key_sid_env = \"TWILIO_UNSET_SID\"\napi_key_secret_env = \"TWILIO_TEST_KEY_SECRET\""),
            "providers.tw.api_key_sid_env",
            "TWILIO_UNSET_SID",
        ),
        (
            format!("kind = \"twilio\"\naccount_sid = \"{ACCOUNT}\"\napi_key_sid_env = \"TWILIO_TEST_KEY_SID\"\napi_key_secret_env = \"TWILIO_UNSET_SECRET\""),
            "providers.tw.api_key_secret_env",
            "TWILIO_UNSET_SECRET",
        ),
    ] {
        let e = config_error(&lines);
        assert!(e.contains(field), "{e}");
        assert!(e.contains(&format!("{var} is not set")), "{e}");
    }
}

#[test]
fn the_account_sid_is_required_and_one_of_another_shape_is_refused_without_being_shown() {
    let e = config_error("kind = \"twilio\"\nauth_token_env = \"TWILIO_TEST_AUTH_TOKEN\"");
    assert!(
        e.contains("providers.tw.account_sid") && e.contains("required"),
        "{e}"
    );
    // An auth token pasted where the SID belongs: refused, and not repeated.
    for wrong in [
        "5c1e9a7b8d2f4b6a0c1e5c1e9a7b8d2f",
        "AC123",
        "ac7e1c02f6a58b4d3e9f10c2d4b6a8e0f1",
    ] {
        let e = config_error(&format!(
            "kind = \"twilio\"\naccount_sid = \"{wrong}\"\nauth_token_env = \"TWILIO_TEST_AUTH_TOKEN\""
        ));
        assert!(e.contains("providers.tw.account_sid"), "{e}");
        assert!(!e.contains(wrong), "{e}");
    }
}

#[test]
fn half_an_api_key_or_no_credentials_at_all_is_refused_naming_what_is_missing() {
    let e = config_error(&format!(
        "kind = \"twilio\"\naccount_sid = \"{ACCOUNT}\"\napi_key_sid_env = \"TWILIO_TEST_KEY_SID\""
    ));
    assert!(e.contains("providers.tw.api_key_secret_env"), "{e}");
    let e = config_error(&format!(
        "kind = \"twilio\"\naccount_sid = \"{ACCOUNT}\"\napi_key_secret_env = \"TWILIO_TEST_KEY_SECRET\"\nauth_token_env = \"TWILIO_TEST_AUTH_TOKEN\""
    ));
    assert!(e.contains("providers.tw.api_key_sid_env"), "{e}");
    let e = config_error(&format!("kind = \"twilio\"\naccount_sid = \"{ACCOUNT}\""));
    assert!(e.contains("providers.tw.auth_token_env"), "{e}");
    assert!(e.contains("api_key_sid_env"), "{e}");
}

#[test]
fn an_api_key_sid_and_secret_exported_the_wrong_way_round_are_refused_without_being_shown() {
    let e = config_error(&format!(
        "kind = \"twilio\"\naccount_sid = \"{ACCOUNT}\"\napi_key_sid_env = \"TWILIO_TEST_KEY_SECRET\"\napi_key_secret_env = \"TWILIO_TEST_KEY_SID\""
    ));
    assert!(e.contains("providers.tw.api_key_sid_env"), "{e}");
    assert!(!e.contains(KEY_SECRET) && !e.contains(KEY_SID), "{e}");
}

#[test]
fn public_url_must_be_an_http_url_and_needs_the_auth_token_that_signs_callbacks() {
    let good = format!(
        "{}public_url = \"https://callmux.example.com/hooks/twilio/tw\"\n",
        token_lines("http://127.0.0.1:1")
    );
    assert!(config_with(&good).is_ok());
    for url in [
        "ftp://example.com/x",
        "not a url",
        "https://user:pw@example.com/x",
    ] {
        let e = config_error(&format!(
            "{}public_url = \"{url}\"\n",
            token_lines("http://127.0.0.1:1")
        ));
        assert!(e.contains("providers.tw.public_url"), "{e}");
        assert!(!e.contains("pw@"), "{e}");
    }
    let e = config_error(&format!(
        "{}public_url = \"https://callmux.example.com/hooks/twilio/tw\"\n",
        key_lines("http://127.0.0.1:1")
    ));
    assert!(
        e.contains("providers.tw.public_url") && e.contains("auth_token_env"),
        "{e}"
    );
}

#[test]
fn signing_key_env_needs_public_url_and_its_secret_never_shows() {
    let base = token_lines("http://127.0.0.1:1");
    let public = "public_url = \"https://callmux.example.com/hooks/twilio/tw\"\n";
    let e = config_error(&format!(
        "{base}signing_key_env = \"TWILIO_TEST_KEY_SECRET\"\n"
    ));
    assert!(
        e.contains("providers.tw.signing_key_env") && e.contains("public_url"),
        "{e}"
    );
    let e = config_error(&format!(
        "{base}{public}signing_key_env = \"TWILIO_TEST_NOT_SET\"\n"
    ));
    assert!(
        e.contains("providers.tw.signing_key_env") && e.contains("TWILIO_TEST_NOT_SET"),
        "{e}"
    );
    let config = config_with(&format!(
        "{base}{public}signing_key_env = \"TWILIO_TEST_KEY_SECRET\"\n"
    ))
    .unwrap();
    let summary = config.summary();
    assert!(
        summary.contains("webhook SharedKey secret from $TWILIO_TEST_KEY_SECRET"),
        "{summary}"
    );
    for text in [format!("{config:?}"), format!("{config:#?}"), summary] {
        assert_eq!(shows_a_credential(&text), None, "{text}");
    }
}

#[test]
fn an_unknown_setting_is_refused_naming_the_settings_twilio_takes() {
    let e = config_error(&format!(
        "{}auth_token = \"x\"\n",
        token_lines("http://127.0.0.1:1")
    ));
    assert!(e.contains("providers.tw.auth_token"), "{e}");
    assert!(e.contains("auth_token_env"), "{e}");
}

#[test]
fn base_url_defaults_to_twilios_api() {
    let config = config_with(&format!(
        "kind = \"twilio\"\naccount_sid = \"{ACCOUNT}\"\nauth_token_env = \"TWILIO_TEST_AUTH_TOKEN\""
    ))
    .unwrap();
    assert!(
        config.summary().contains("at https://api.twilio.com/"),
        "{}",
        config.summary()
    );
}

/// Every credential, whole or by its distinctive tail, and the account SID.
fn shows_a_credential(text: &str) -> Option<&'static str> {
    [KEY_SID, KEY_SECRET, AUTH_TOKEN, ACCOUNT]
        .into_iter()
        .find(|s| text.contains(s) || text.contains(&s[s.len() - 12..]))
}

#[test]
fn debug_output_and_the_check_config_summary_never_show_a_credential() {
    use base64::Engine;
    let lines = format!(
        "{}auth_token_env = \"TWILIO_TEST_AUTH_TOKEN\"\npublic_url = \"https://callmux.example.com/hooks/twilio/tw\"\n",
        key_lines("http://127.0.0.1:1")
    );
    let config = config_with(&lines).unwrap();
    let key_pair =
        base64::engine::general_purpose::STANDARD.encode(format!("{KEY_SID}:{KEY_SECRET}"));
    for text in [
        format!("{config:?}"),
        format!("{config:#?}"),
        format!("{:?}", config.provider("tw").unwrap()),
        config.summary(),
    ] {
        assert_eq!(shows_a_credential(&text), None, "{text}");
        assert!(!text.contains(&key_pair[..16]), "{text}");
    }
    let summary = config.summary();
    for shown in [
        "twilio at http://127.0.0.1:1/",
        "TWILIO_TEST_KEY_SID",
        "TWILIO_TEST_KEY_SECRET",
        "TWILIO_TEST_AUTH_TOKEN",
        "status callbacks at https://callmux.example.com/hooks/twilio/tw",
    ] {
        assert!(summary.contains(shown), "{shown}: {summary}");
    }

    // The real binary, credentials in its environment.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("providers.toml");
    std::fs::write(
        &file,
        format!(
            "[orgs.o]\napi_key_sha256 = \"{}\"\nproviders = [\"tw\"]\n[providers.tw]\n{lines}",
            "a".repeat(64)
        ),
    )
    .unwrap();
    let out = callmux()
        .args(["check-config", "--config"])
        .arg(&file)
        .envs(ENV.iter().copied())
        .output()
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{printed}");
    assert!(printed.contains("tw: twilio at"), "{printed}");
    assert_eq!(shows_a_credential(&printed), None, "{printed}");
}

// ---- through the server ----

fn one_twilio_org(url: &str) -> String {
    TestConfig::new()
        .org(OrgB::key("acme", "k").providers(&["tw"]))
        .provider(twilio_provider("tw", url))
        .toml()
}

/// A `twilio` provider at `url`, authenticating with the auth token in [`ENV`].
pub fn twilio_provider(id: &str, url: &str) -> ProviderB {
    ProviderB::new(id, "twilio", url)
        .set("account_sid", ACCOUNT)
        .set("auth_token_env", "TWILIO_TEST_AUTH_TOKEN")
}

#[tokio::test]
async fn a_twilio_account_is_listed_through_the_server_merged_with_an_agent_server() {
    let twilio = twilio_server(&[
        (
            "ringing",
            vec![twilio_call(&sid(1), "ringing", "outbound-api")],
        ),
        (
            "in-progress",
            vec![twilio_call(&sid(2), "in-progress", "inbound")],
        ),
    ])
    .await;
    let agents = agent_server(json!([agent_call(
        "a1",
        "+15550000001",
        "ringing",
        "outbound"
    )]))
    .await;
    let toml = TestConfig::new()
        .org(OrgB::key("acme", "k").providers(&["agents", "tw"]))
        .provider(ProviderB::agent("agents", &agents.uri()))
        .provider(twilio_provider("tw", &twilio.uri()))
        .toml();
    let app = spawn_app_with_env(&toml, ENV).await;
    let listed = app.calls("k", "acme").await;
    assert_eq!(listed.status, 200, "{:?}", listed.body);
    assert_eq!(listed.body["count"], 3, "{:?}", listed.body);
    assert!(listed.body.get("errors").is_none(), "{:?}", listed.body);
    let calls = listed.body["calls"].as_array().unwrap();
    // Twilio's calls have creation times and come first; the agent server's has none.
    assert_eq!(calls[2]["call_id"], "a1");
    let inbound = calls.iter().find(|c| c["call_id"] == sid(2)).unwrap();
    assert_eq!(inbound["direction"], "incoming");
    assert_eq!(inbound["to_number"], "+15005550006");
    let bland = app.bland("k", "acme").await;
    let row = bland.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["call_id"] == sid(1))
        .unwrap()
        .clone();
    assert_eq!(row["status"], "QUEUED");
    assert_eq!(row["from"], "+15005550006");
    assert_eq!(row["to"], "+14155550123");
    assert_eq!(row["start_time"], "2025-09-23T19:48:20.000Z");
    assert_eq!(row["timestamp"], "1758656897000");
    assert_eq!(row["user_id"], "acme");
}

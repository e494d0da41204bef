//! The `retell` kind against fake Retell APIs on loopback that answer with the bodies Retell's
//! API reference documents: paging by `pagination_key`, the mapping into canonical calls,
//! failures, configuration, ending calls, and the merged list through the real server. What
//! every kind shares (rate limits, paging bounds, one row per call, secrets) is the
//! conformance suite's.
//!
//! The bodies follow docs.retellai.com/api-references/list-calls (`POST /v3/list-calls`:
//! `{"pagination_key": ..., "has_more": ..., "items": [...]}`, its example item a `web_call`)
//! and the call object of Retell's SDK (`V3PhoneCallResponse`: `from_number`, `to_number`,
//! `direction`, `telephony_identifier.twilio_call_sid`, times in epoch ms).

use std::sync::Arc;

use callmux::call::{CallStatus, Direction};
use callmux::provider::{Backend, EndError, ProviderError, RequestContext};
use serde_json::{json, Value};
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

pub use crate::common::bodies::retell::{documented_web_call, page, phone_call};
use crate::common::*;

/// A fake key: the tests look for it, and for its tail, in everything callmux shows.
const KEY: &str = "key_SECRET_retell_5d0c7a91e3f2b8";
const KEY_VAR: &str = "RETELL_TEST_API_KEY";
const ORG_KEY: &str = "acme-key";

/// The request body callmux sends for a page: the first without a key, later ones with the
/// key the page before gave.
fn list_body(pagination_key: Option<&str>) -> Value {
    let mut body = json!({
        "filter_criteria": {"call_status": {"op": "in", "type": "enum", "value": ["ongoing"]}},
        "limit": 1000,
    });
    if let Some(key) = pagination_key {
        body["pagination_key"] = key.into();
    }
    body
}

/// A fake Retell answering every list request with `body`.
async fn retell_serving(body: Value) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/list-calls"))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(&server)
        .await;
    server
}

/// A fake Retell answering list requests with these pages, in order, each asked for by the
/// body callmux must send for it.
async fn retell_paging(pages: &[(Option<&str>, Value)]) -> MockServer {
    let server = MockServer::start().await;
    for (key, body) in pages {
        Mock::given(method("POST"))
            .and(path("/v3/list-calls"))
            .and(body_json(list_body(*key)))
            .respond_with(ResponseTemplate::new(200).set_body_json(body.clone()))
            .mount(&server)
            .await;
    }
    server
}

fn retell(id: &str, base_url: &str) -> ProviderB {
    ProviderB::new(id, "retell", base_url).set("api_key_env", KEY_VAR)
}

/// Provider `p` built through the public config path, with these extra settings.
fn backend(base_url: &str, extra: &[(&str, u64)]) -> Backend {
    let mut p = retell("p", base_url);
    for (k, v) in extra {
        p = p.set(k, *v);
    }
    let toml = TestConfig::new()
        .org(OrgB::key("o", ORG_KEY).providers(&["p"]))
        .provider(p)
        .toml();
    let config = load_config(&toml, &[(KEY_VAR, KEY)]).expect("valid config");
    let spec = config.provider("p").unwrap();
    spec.kind
        .build(Arc::from("p"), &spec.common)
        .expect("builds")
}

fn ctx() -> RequestContext {
    RequestContext {
        org_id: Arc::from("o"),
        forwarded: None,
    }
}

async fn list(
    server: &MockServer,
    extra: &[(&str, u64)],
) -> Result<callmux::provider::Calls, ProviderError> {
    backend(&server.uri(), extra)
        .list
        .active_calls(&ctx())
        .await
}

fn ids(calls: &[callmux::call::Call]) -> Vec<&str> {
    calls.iter().map(|c| c.call_id.as_str()).collect()
}

// ---- listing and mapping ----

#[tokio::test]
async fn the_documented_page_is_read_with_every_field_mapped() {
    let server = retell_serving(json!({
        "pagination_key": "Jabr9TXYYJHfvl6Syypi88rdAHYHmcq6",
        "has_more": false,
        "items": [documented_web_call(), phone_call("call_ph1", "ongoing", "CA1234567890abcdef1234567890abcdef")],
    }))
    .await;
    let calls = list(&server, &[]).await.unwrap();
    assert_eq!(
        ids(&calls),
        ["Jabr9TXYYJHfvl6Syypi88rdAHYHmcq6", "call_ph1"]
    );

    let web = &calls[0];
    assert_eq!(web.status, CallStatus::Queued);
    assert_eq!((web.from.as_deref(), web.to.as_deref()), (None, None));
    assert_eq!(web.direction, None);
    assert_eq!(web.started_at, Some(1_703_302_407_333));
    assert_eq!(web.created_at, Some(1_703_302_407_333));
    assert_eq!(web.telephony_id, None);
    assert_eq!(&*web.provider, "p");

    let phone = &calls[1];
    assert_eq!(phone.status, CallStatus::InProgress);
    assert_eq!(phone.from.as_deref(), Some("+14157774444"));
    assert_eq!(phone.to.as_deref(), Some("+12137774445"));
    assert_eq!(phone.direction, Some(Direction::Outbound));
    assert_eq!(
        phone.telephony_id.as_deref(),
        Some("CA1234567890abcdef1234567890abcdef")
    );
    assert_eq!(phone.org, None);
}

#[tokio::test]
async fn an_inbound_call_keeps_its_caller_as_from_and_other_directions_are_unknown() {
    let mut inbound = phone_call("in", "ongoing", "CA1");
    inbound["direction"] = "inbound".into();
    inbound["from_number"] = "+15550001111".into();
    let mut odd = phone_call("odd", "ongoing", "CA2");
    odd["direction"] = "sideways".into();
    let server = retell_serving(page(vec![inbound, odd], false, None)).await;
    let calls = list(&server, &[]).await.unwrap();
    assert_eq!(calls[0].direction, Some(Direction::Inbound));
    assert_eq!(calls[0].from.as_deref(), Some("+15550001111"));
    assert_eq!(calls[1].direction, None);
}

#[tokio::test]
async fn pages_are_followed_by_pagination_key_while_has_more_is_true() {
    let server = retell_paging(&[
        (
            None,
            page(vec![phone_call("c1", "ongoing", "CA1")], true, Some("c1")),
        ),
        (
            Some("c1"),
            page(vec![phone_call("c2", "ongoing", "CA2")], true, Some("c2")),
        ),
        // The last page still names a key; has_more false ends the list all the same.
        (
            Some("c2"),
            page(vec![phone_call("c3", "ongoing", "CA3")], false, Some("c3")),
        ),
    ])
    .await;
    let calls = list(&server, &[]).await.unwrap();
    assert_eq!(ids(&calls), ["c1", "c2", "c3"]);
    assert_eq!(hits(&server).await, 3);
}

#[tokio::test]
async fn ended_calls_are_read_but_left_out_of_the_merged_list() {
    let server = retell_serving(page(
        vec![
            phone_call("live", "ongoing", "CA1"),
            phone_call("done", "ended", "CA2"),
            phone_call("broke", "error", "CA3"),
            phone_call("never", "not_connected", "CA4"),
            documented_web_call(),
        ],
        false,
        None,
    ))
    .await;
    let calls = list(&server, &[]).await.unwrap();
    let statuses: Vec<_> = calls.iter().map(|c| c.status.clone()).collect();
    assert_eq!(
        statuses,
        [
            CallStatus::InProgress,
            CallStatus::Completed,
            CallStatus::Failed,
            CallStatus::NoAnswer,
            CallStatus::Queued
        ]
    );

    let app = one_retell_org(&server.uri()).await;
    let listed = app.calls(ORG_KEY, "acme").await;
    assert_eq!(listed.status, 200, "{:#}", listed.body);
    // Both began at the same millisecond, so they sort by call_id.
    let listed: Vec<(&str, &str)> = listed.body["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["call_id"].as_str().unwrap(),
                c["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("Jabr9TXYYJHfvl6Syypi88rdAHYHmcq6", "initiating"),
            ("live", "in-progress")
        ]
    );
}

#[tokio::test]
async fn a_call_with_only_its_id_and_status_is_listed_with_the_rest_unknown() {
    let server = retell_serving(json!({"items": [
        {"call_id": "bare", "call_status": "ongoing"},
        {"call_id": "nulls", "call_status": "ongoing", "from_number": null, "to_number": "",
         "direction": null, "start_timestamp": null, "telephony_identifier": null},
        {"call_id": "empty-id", "call_status": "ongoing", "telephony_identifier": {}},
    ]}))
    .await;
    let calls = list(&server, &[]).await.unwrap();
    assert_eq!(calls.len(), 3);
    for c in calls.iter() {
        assert_eq!(c.status, CallStatus::InProgress);
        assert_eq!((&c.from, &c.to, c.direction), (&None, &None, None));
        assert_eq!((c.started_at, c.created_at), (None, None));
        assert_eq!(c.telephony_id, None);
    }
}

#[tokio::test]
async fn an_unknown_status_is_kept_verbatim_and_listed() {
    let server = retell_serving(page(
        vec![phone_call("x", "transferring", "CA1")],
        false,
        None,
    ))
    .await;
    let calls = list(&server, &[]).await.unwrap();
    assert_eq!(calls[0].status, CallStatus::Other("transferring".into()));
    let app = one_retell_org(&server.uri()).await;
    let listed = app.calls(ORG_KEY, "acme").await;
    assert_eq!(listed.body["calls"][0]["status"], "transferring");
    let bland = app.bland(ORG_KEY, "acme").await;
    assert_eq!(bland.body["data"][0]["status"], "transferring");
}

#[tokio::test]
async fn numbers_where_strings_are_usual_are_read_as_text_and_times_as_either() {
    let server = retell_serving(json!({"items": [
        {"call_id": 42, "call_status": "ongoing", "from_number": 14157774444u64,
         "to_number": "+12137774445", "direction": "outbound",
         "start_timestamp": "1703302407333",
         "telephony_identifier": {"twilio_call_sid": 7}},
        {"call_id": "n", "call_status": "ongoing", "start_timestamp": 1703302407333u64},
    ], "has_more": false, "pagination_key": 42}))
    .await;
    let calls = list(&server, &[]).await.unwrap();
    assert_eq!(calls[0].call_id, "42");
    assert_eq!(calls[0].from.as_deref(), Some("14157774444"));
    assert_eq!(calls[0].telephony_id.as_deref(), Some("7"));
    assert_eq!(calls[0].started_at, Some(1_703_302_407_333));
    assert_eq!(calls[1].started_at, Some(1_703_302_407_333));
}

#[tokio::test]
async fn a_time_that_is_negative_fractional_or_past_the_year_9999_is_unknown_never_a_panic() {
    let times = [
        json!(-1),
        json!(-1703302407333i64),
        json!(1703302407333.5),
        json!(1e300),
        json!(253402207200001u64),
        json!(253402300799999u64),
        json!(u64::MAX),
        json!("-5"),
        json!("1703302407333.5"),
        json!("2023-12-23T03:33:27Z"),
        json!("soon"),
    ];
    let items: Vec<Value> = times
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"call_id": format!("t{i}"), "call_status": "ongoing", "start_timestamp": t}))
        .collect();
    let server = retell_serving(page(items, false, None)).await;
    let calls = list(&server, &[]).await.unwrap();
    assert_eq!(calls.len(), times.len());
    for (c, t) in calls.iter().zip(&times) {
        assert_eq!((c.started_at, c.created_at), (None, None), "{t}");
    }
    // And written out as unknown, not as a broken date.
    let app = one_retell_org(&server.uri()).await;
    let bland = app.bland(ORG_KEY, "acme").await;
    assert_eq!(bland.status, 200);
    for c in bland.body["data"].as_array().unwrap() {
        assert_eq!(c["start_time"], "", "{c}");
        assert_eq!(c["timestamp"], "", "{c}");
    }
}

#[tokio::test]
async fn the_latest_time_callmux_takes_is_written_out_as_it_was_read() {
    let server = retell_serving(page(
        vec![
            json!({"call_id": "edge", "call_status": "ongoing", "start_timestamp": 253402207200000u64}),
            // A millisecond later, and on the last day of 9999: past what callmux can write.
            json!({"call_id": "past", "call_status": "ongoing", "start_timestamp": 253402207200001u64}),
            json!({"call_id": "last", "call_status": "ongoing", "start_timestamp": 253402300799999u64}),
        ],
        false,
        None,
    ))
    .await;
    let app = one_retell_org(&server.uri()).await;
    let bland = app.bland(ORG_KEY, "acme").await;
    let data = bland.body["data"].as_array().unwrap();
    let edge = data.iter().find(|c| c["call_id"] == "edge").unwrap();
    assert_eq!(edge["start_time"], "9999-12-30T22:00:00.000Z");
    assert_eq!(edge["timestamp"], "253402207200000");
    for id in ["past", "last"] {
        let c = data.iter().find(|c| c["call_id"] == id).unwrap();
        assert_eq!(
            (&c["start_time"], &c["timestamp"]),
            (&json!(""), &json!("")),
            "{id}"
        );
    }
}

// ---- the request on the wire ----

#[tokio::test]
async fn the_list_request_is_a_post_of_the_documented_body_with_bearer_auth() {
    let server = retell_paging(&[
        (None, page(vec![], true, Some("next key/1"))),
        (Some("next key/1"), page(vec![], false, None)),
    ])
    .await;
    list(&server, &[]).await.unwrap();
    let sent = server.received_requests().await.unwrap();
    assert_eq!(sent.len(), 2);
    for (req, key) in sent.iter().zip([None, Some("next key/1")]) {
        assert_eq!(req.method.as_str(), "POST");
        assert_eq!(req.url.path(), "/v3/list-calls");
        assert_eq!(req.url.query(), None);
        assert_eq!(
            req.headers["authorization"],
            format!("Bearer {KEY}").as_str()
        );
        assert_eq!(req.headers["content-type"], "application/json");
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(body, list_body(key));
    }
}

// ---- failures ----

#[tokio::test]
async fn a_malformed_page_anywhere_in_the_list_is_the_providers_bad_response() {
    for bad in [
        json!({"has_more": false}),
        json!({"items": [{"call_status": "ongoing"}]}),
        json!({"items": [], "has_more": true}),
        json!({"items": [], "has_more": "maybe", "pagination_key": "k"}),
        json!([phone_call("plain-array", "ongoing", "CA1")]),
    ] {
        let server = retell_paging(&[
            (
                None,
                page(vec![phone_call("c1", "ongoing", "CA1")], true, Some("k1")),
            ),
            (Some("k1"), bad.clone()),
        ])
        .await;
        let got = list(&server, &[]).await;
        assert!(
            matches!(got, Err(ProviderError::BadBody(_))),
            "{bad}: {got:?}"
        );
    }
}

// ---- configuration and secrets ----

fn config_error(toml: &str, env: &[(&str, &str)]) -> String {
    load_config(toml, env).expect_err("refused").to_string()
}

fn one_provider_toml(lines: &str) -> String {
    format!(
        "[orgs.o]\napi_key_sha256 = \"{}\"\nproviders = [\"calls_r\"]\n[providers.calls_r]\nkind = \"retell\"\n{lines}",
        "a".repeat(64)
    )
}

#[test]
fn a_key_variable_missing_from_the_environment_is_a_config_error_naming_the_provider_and_field() {
    let err = config_error(
        &one_provider_toml("api_key_env = \"NOT_SET_RETELL_KEY\""),
        &[],
    );
    assert!(err.contains("providers.calls_r.api_key_env"), "{err}");
    assert!(err.contains("NOT_SET_RETELL_KEY is not set"), "{err}");

    let err = config_error(
        &one_provider_toml("api_key_env = \"EMPTY_KEY\""),
        &[("EMPTY_KEY", " ")],
    );
    assert!(
        err.contains("providers.calls_r.api_key_env") && err.contains("empty"),
        "{err}"
    );

    let err = config_error(
        &one_provider_toml("api_key_env = \"BAD_KEY\""),
        &[("BAD_KEY", "key\nwith-newline")],
    );
    assert!(
        err.contains("providers.calls_r.api_key_env") && err.contains("HTTP header"),
        "{err}"
    );
    assert!(!err.contains("with-newline"), "{err}");
}

#[test]
fn a_retell_provider_without_api_key_env_or_with_unknown_fields_is_refused_by_name() {
    let err = config_error(&one_provider_toml(""), &[]);
    assert!(
        err.contains("providers.calls_r.api_key_env: is required for kind retell"),
        "{err}"
    );
    assert!(err.contains("RETELL_API_KEY"), "{err}");

    let err = config_error(
        &one_provider_toml("api_key = \"key_pasted_here\"\nbase_url = \"ftp://x\""),
        &[],
    );
    assert!(err.contains("providers.calls_r.api_key"), "{err}");
    assert!(!err.contains("key_pasted_here"), "{err}");

    // Every problem at once: a bad URL and a missing variable.
    let err = config_error(
        &one_provider_toml("base_url = \"ftp://x\"\napi_key_env = \"NOT_SET_RETELL_KEY\""),
        &[],
    );
    assert!(err.contains("providers.calls_r.base_url"), "{err}");
    assert!(err.contains("providers.calls_r.api_key_env"), "{err}");

    // A key pasted where the variable's name belongs is refused without being shown.
    let err = config_error(
        &one_provider_toml(&format!("api_key_env = \"{KEY}-x\"")),
        &[],
    );
    assert!(!err.contains("SECRET"), "{err}");
}

// The key's absence from `Debug` and the summary is the conformance suite's.
#[test]
fn the_check_config_summary_says_where_the_key_is_read_from() {
    let toml = one_provider_toml(&format!("api_key_env = \"{KEY_VAR}\""));
    let config = load_config(&toml, &[(KEY_VAR, KEY)]).unwrap();
    let summary = config.summary();
    assert!(
        summary.contains(&format!("calls_r: retell at https://api.retellai.com/; api key from ${KEY_VAR} (set, value hidden)")),
        "{summary}"
    );
}

#[test]
fn check_config_from_the_binary_masks_the_retell_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    std::fs::write(
        &path,
        one_provider_toml(&format!("api_key_env = \"{KEY_VAR}\"")),
    )
    .unwrap();
    let out = callmux()
        .args(["check-config", "--config"])
        .arg(&path)
        .env(KEY_VAR, KEY)
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{all}");
    assert!(
        all.contains("api key from $RETELL_TEST_API_KEY (set, value hidden)"),
        "{all}"
    );
    for secret in [KEY, &KEY[KEY.len() - 12..]] {
        assert!(!all.contains(secret), "{secret} shown: {all}");
    }
}

// ---- ending a call ----

/// A fake Retell whose stop-call answers `status`.
async fn stopping(status: u16) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(status))
        .mount(&server)
        .await;
    server
}

async fn end(server: &MockServer, call_id: &str, extra: &[(&str, u64)]) -> Result<(), EndError> {
    let end = backend(&server.uri(), extra)
        .end
        .expect("retell ends calls");
    end.end_call(&ctx(), call_id).await
}

#[tokio::test]
async fn ending_a_call_posts_to_stop_call_with_its_id_bearer_auth_and_no_body() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v2/stop-call/call_a4441234567890777c4a4a123e6"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    assert_eq!(
        end(&server, "call_a4441234567890777c4a4a123e6", &[]).await,
        Ok(())
    );
    let sent = &server.received_requests().await.unwrap()[0];
    assert!(sent.body.is_empty());
    assert_eq!(sent.url.query(), None);
    // Any 2xx is an end.
    assert_eq!(end(&stopping(200).await, "c", &[]).await, Ok(()));
}

#[tokio::test]
async fn ending_a_call_retell_does_not_know_is_not_found_and_other_failures_are_the_providers() {
    // Retell documents 422 for a call it cannot find; 404 is taken the same way.
    for status in [404, 422] {
        assert_eq!(
            end(&stopping(status).await, "gone", &[]).await,
            Err(EndError::NotFound),
            "{status}"
        );
    }
    for (status, want) in [
        (401, ProviderError::Rejected(401)),
        (500, ProviderError::Status(500)),
    ] {
        assert_eq!(
            end(&stopping(status).await, "c", &[]).await,
            Err(EndError::Failed(want)),
            "{status}"
        );
    }
    let refused = refused_url().await;
    let end_refused = backend(&refused, &[]).end.unwrap();
    assert!(matches!(
        end_refused.end_call(&ctx(), "c").await,
        Err(EndError::Failed(ProviderError::Unreachable(_)))
    ));
}

#[tokio::test]
async fn ending_a_call_is_never_sent_twice_once_a_byte_was_sent() {
    let server = stopping(503).await;
    assert_eq!(
        end(&server, "c", &[("retries", 3)]).await,
        Err(EndError::Failed(ProviderError::Status(503)))
    );
    assert_eq!(hits(&server).await, 1);
}

#[tokio::test]
async fn a_hostile_call_id_reaches_the_upstream_only_as_one_encoded_segment() {
    let server = stopping(204).await;
    for (id, want) in [
        ("a/../b", "/v2/stop-call/a%2F..%2Fb"),
        ("x?y", "/v2/stop-call/x%3Fy"),
        ("x#y", "/v2/stop-call/x%23y"),
        ("%2e%2e", "/v2/stop-call/%252e%252e"),
        ("a b", "/v2/stop-call/a%20b"),
    ] {
        server.reset().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(204))
            .mount(&server)
            .await;
        assert_eq!(end(&server, id, &[]).await, Ok(()), "{id}");
        let sent = &server.received_requests().await.unwrap()[0];
        assert_eq!(sent.url.path(), want, "{id}");
        assert_eq!(sent.url.query(), None, "{id}");
        assert_eq!(sent.url.fragment(), None, "{id}");
    }
    server.reset().await;
    for id in ["", ".", ".."] {
        assert_eq!(
            end(&server, id, &[]).await,
            Err(EndError::NotFound),
            "{id:?}"
        );
    }
    assert_eq!(
        hits(&server).await,
        0,
        "an unencodable id reached the upstream"
    );
}

// ---- through the real server ----

/// Org `acme` (key [`ORG_KEY`]) listing one retell provider `retell` at `url`.
async fn one_retell_org(url: &str) -> TestApp {
    let toml = TestConfig::new()
        .org(OrgB::key("acme", ORG_KEY).providers(&["retell"]))
        .provider(retell("retell", url))
        .toml();
    spawn_app_with_env(&toml, &[(KEY_VAR, KEY)]).await
}

#[tokio::test]
async fn a_retell_provider_is_listed_through_the_server_merged_with_another_provider() {
    let server = retell_serving(page(
        vec![
            phone_call("r1", "ongoing", "CA1"),
            phone_call("r2", "ended", "CA2"),
        ],
        false,
        None,
    ))
    .await;
    let agents = agent_server(json!([agent_call(
        "a1",
        "+15550000001",
        "ringing",
        "outbound"
    )]))
    .await;
    let toml = TestConfig::new()
        .org(OrgB::key("acme", ORG_KEY).providers(&["agents", "retell"]))
        .provider(ProviderB::agent("agents", &agents.uri()))
        .provider(retell("retell", &server.uri()))
        .toml();
    let app = spawn_app_with_env(&toml, &[(KEY_VAR, KEY)]).await;

    let calls = app.calls(ORG_KEY, "acme").await;
    assert_eq!(calls.status, 200, "{:#}", calls.body);
    assert_eq!(calls.body["count"], 2);
    assert_eq!(calls.body["errors"], Value::Null);
    // r1 has a creation time, a1 none: r1 first.
    assert_eq!(calls.body["calls"][0]["call_id"], "r1");
    assert_eq!(calls.body["calls"][0]["to_number"], "+12137774445");
    assert_eq!(calls.body["calls"][0]["direction"], "outbound");
    assert_eq!(calls.body["calls"][1]["call_id"], "a1");

    let bland = app.bland(ORG_KEY, "acme").await;
    let r1 = &bland.body["data"][0];
    assert_eq!(r1["call_id"], "r1");
    assert_eq!(r1["from"], "+14157774444");
    assert_eq!(r1["to"], "+12137774445");
    assert_eq!(r1["status"], "IN_PROGRESS");
    assert_eq!(r1["user_id"], "acme");
    assert_eq!(r1["start_time"], "2023-12-23T03:33:27.333Z");
    assert_eq!(r1["timestamp"], "1703302407333");
}

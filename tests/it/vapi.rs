//! The `vapi` kind against loopback fakes answering with the bodies Vapi documents: the list
//! request on the wire, the mapping, paging by creation time, configuration, ending a call
//! through its control URL and the host rule that guards it, and the kind through the real
//! server. What every kind shares (rate limits, paging bounds, one row per call, secrets) is
//! the conformance suite's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use callmux::call::{time, CallStatus, Direction};
use callmux::provider::{Backend, EndError, ProviderError, RequestContext};
use serde_json::{json, Value};
use wiremock::matchers::{header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::*;

const KEY: &str = "vapi-private-SECRET-key-4be0c7d19a23";
const KEY_VAR: &str = "VAPI_TEST_KEY";

fn env() -> [(&'static str, &'static str); 1] {
    [(KEY_VAR, KEY)]
}

fn ctx() -> RequestContext {
    RequestContext {
        org_id: Arc::from("o"),
        forwarded: None,
    }
}

/// Provider `v` of kind `vapi` at `base_url`, with `extra` settings, built as a config
/// file builds it.
fn vapi(base_url: &str, extra: &str) -> Backend {
    let toml = format!(
        "[orgs.o]\napi_key_sha256 = \"{}\"\nproviders = [\"v\"]\n[providers.v]\nkind = \"vapi\"\n\
         base_url = \"{base_url}\"\napi_key_env = \"{KEY_VAR}\"\n{extra}",
        "a".repeat(64)
    );
    let config = load_config(&toml, &env()).unwrap_or_else(|e| panic!("{e}"));
    let spec = config.provider("v").unwrap();
    spec.kind.build(Arc::from("v"), &spec.common).unwrap()
}

/// A Vapi API listing `calls` (a plain JSON array) to requests carrying the key.
async fn vapi_server(calls: Value) -> MockServer {
    let server = MockServer::start().await;
    list_answers(&server, ResponseTemplate::new(200).set_body_json(calls)).await;
    server
}

async fn list_answers(server: &MockServer, answer: ResponseTemplate) {
    Mock::given(method("GET"))
        .and(path("/call"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .respond_with(answer)
        .mount(server)
        .await;
}

fn iso(ms: u64) -> String {
    time::to_iso8601(ms).unwrap()
}

/// `n` live calls, newest first, one second apart, the newest created at `newest` (epoch ms).
fn calls_from(prefix: &str, n: usize, newest: u64) -> Vec<Value> {
    (0..n)
        .map(|i| {
            vapi_call(
                &format!("{prefix}-{i}"),
                "in-progress",
                "outboundPhoneCall",
                &iso(newest - i as u64 * 1000),
            )
        })
        .collect()
}

/// 2024-09-10T11:14:12.339Z, the `createdAt` of the documented sample call.
const SAMPLE_CREATED: u64 = 1_725_966_852_339;

async fn requests(server: &MockServer, verb: &str) -> Vec<wiremock::Request> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.method.as_str() == verb)
        .collect()
}

// ---- the list ----

#[tokio::test]
async fn the_documented_sample_call_is_read_into_a_canonical_call() {
    // The sample response of Vapi's "Live Call Control" guide, as printed there except that
    // the guide wraps `controlUrl` in angle brackets.
    let body = json!([{
        "id": "7420f27a-30fd-4f49-a995-5549ae7cc00d",
        "assistantId": "5b0a4a08-133c-4146-9315-0984f8c6be80",
        "phoneNumberId": "42b4b25d-031e-4786-857f-63b346c9580f",
        "type": "outboundPhoneCall",
        "createdAt": "2024-09-10T11:14:12.339Z",
        "updatedAt": "2024-09-10T11:14:12.339Z",
        "orgId": "eb166faa-7145-46ef-8044-589b47ae3b56",
        "cost": 0,
        "customer": {"number": "+12345678913"},
        "status": "queued",
        "phoneCallProvider": "twilio",
        "phoneCallProviderId": "CA4c6793d069ef42f4ccad69a0957451ec",
        "phoneCallTransport": "pstn",
        "monitor": {
            "listenUrl": "wss://aws-us-west-2-production1-phone-call-websocket.vapi.ai/7420f27a-30fd-4f49-a995-5549ae7cc00d/transport",
            "controlUrl": "https://phone-call-websocket.aws-us-west-2-backend-production2.vapi.ai/7420f27a-30fd-4f49-a995-5549ae7cc00d/control"
        }
    }]);
    let server = vapi_server(body).await;
    let calls = vapi(&server.uri(), "")
        .list
        .active_calls(&ctx())
        .await
        .unwrap();
    assert_eq!(calls.len(), 1);
    let c = &calls[0];
    assert_eq!(c.call_id, "7420f27a-30fd-4f49-a995-5549ae7cc00d");
    assert_eq!(&*c.provider, "v");
    assert_eq!(c.status, CallStatus::Queued);
    assert_eq!(c.direction, Some(Direction::Outbound));
    assert_eq!(c.to.as_deref(), Some("+12345678913"));
    // Only `phoneNumberId` is given: callmux does not look the number up.
    assert_eq!(c.from, None);
    assert_eq!(c.created_at, Some(SAMPLE_CREATED));
    assert_eq!(c.started_at, None);
    assert_eq!(
        c.telephony_id.as_deref(),
        Some("CA4c6793d069ef42f4ccad69a0957451ec")
    );
    assert_eq!(c.objective, None);
    assert_eq!(c.org, None);
}

#[tokio::test]
async fn the_list_request_carries_the_key_the_limit_and_the_lookback_window() {
    let server = vapi_server(json!([])).await;
    let before = time::now_ms();
    vapi(&server.uri(), "lookback_ms = 3600000")
        .list
        .active_calls(&ctx())
        .await
        .unwrap();
    let after = time::now_ms();
    let sent = requests(&server, "GET").await;
    assert_eq!(sent.len(), 1);
    let r = &sent[0];
    assert_eq!(r.url.path(), "/call");
    assert_eq!(r.headers["authorization"], format!("Bearer {KEY}").as_str());
    assert!(r.body.is_empty());
    let query: Vec<(String, String)> = r.url.query_pairs().into_owned().collect();
    let names: Vec<&str> = query.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["limit", "createdAtGt"]);
    assert_eq!(query[0].1, "1000");
    let since = time::from_iso8601(&query[1].1).expect("createdAtGt is ISO 8601");
    assert!(
        (before - 3_600_000..=after - 3_600_000).contains(&since),
        "createdAtGt {} is not an hour before the ask",
        query[1].1
    );
}

#[tokio::test]
async fn inbound_calls_are_from_the_customer_and_outbound_calls_are_to_them() {
    let mut inbound = vapi_call(
        "in",
        "in-progress",
        "inboundPhoneCall",
        "2024-09-10T11:14:12.339Z",
    );
    inbound["phoneNumber"] = json!({"number": "+15550001111"});
    let mut outbound = vapi_call(
        "out",
        "ringing",
        "outboundPhoneCall",
        "2024-09-10T11:14:13.339Z",
    );
    // A transient Twilio number, as the API reference's Call schema spells it.
    outbound["phoneNumber"] =
        json!({"twilioPhoneNumber": "+15550002222", "twilioAccountSid": "AC1"});
    let mut web = vapi_call("web", "in-progress", "webCall", "2024-09-10T11:14:14.339Z");
    web.as_object_mut().unwrap().remove("customer");
    let server = vapi_server(json!([inbound, outbound, web])).await;
    let calls = vapi(&server.uri(), "")
        .list
        .active_calls(&ctx())
        .await
        .unwrap();
    let got: Vec<_> = calls
        .iter()
        .map(|c| {
            (
                c.call_id.as_str(),
                c.direction,
                c.from.as_deref(),
                c.to.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "in",
                Some(Direction::Inbound),
                Some("+12345678913"),
                Some("+15550001111")
            ),
            (
                "out",
                Some(Direction::Outbound),
                Some("+15550002222"),
                Some("+12345678913")
            ),
            ("web", None, None, None),
        ]
    );
}

#[tokio::test]
async fn an_inbound_sip_caller_keeps_its_sip_address_as_the_twilio_kind_keeps_sip_addresses() {
    // A call to a Vapi SIP number (`provider: "vapi"`, dialled at its `sipUri`) from a
    // softphone: the API reference's Call schema gives the caller as `customer.sipUri` and
    // the number as `phoneNumber.sipUri`, with no `number` in either.
    let mut sip = vapi_call(
        "sip-in",
        "in-progress",
        "inboundPhoneCall",
        "2024-09-10T11:14:12.339Z",
    );
    sip["phoneCallProvider"] = json!("vapi");
    sip["phoneCallTransport"] = json!("sip");
    sip["customer"] = json!({"sipUri": "sip:alice@pbx.example.com"});
    sip["phoneNumber"] = json!({
        "provider": "vapi",
        "sipUri": "sip:acme-support@sip.vapi.ai",
        "assistantId": "5b0a4a08-133c-4146-9315-0984f8c6be80"
    });
    // A caller with both keeps the number, as before.
    let mut both = vapi_call(
        "both",
        "in-progress",
        "inboundPhoneCall",
        "2024-09-10T11:14:13.339Z",
    );
    both["customer"] = json!({"number": "+12345678913", "sipUri": "sip:bob@pbx.example.com"});
    let server = vapi_server(json!([sip, both])).await;
    let calls = vapi(&server.uri(), "")
        .list
        .active_calls(&ctx())
        .await
        .unwrap();
    let got: Vec<_> = calls
        .iter()
        .map(|c| (c.call_id.as_str(), c.from.as_deref(), c.to.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            (
                "sip-in",
                Some("sip:alice@pbx.example.com"),
                Some("sip:acme-support@sip.vapi.ai")
            ),
            ("both", Some("+12345678913"), None),
        ]
    );
    assert_eq!(calls[0].telephony_id, None);
}

#[tokio::test]
async fn the_twilio_call_sid_is_the_telephony_id_only_of_calls_placed_through_twilio() {
    let twilio = vapi_call(
        "t",
        "in-progress",
        "outboundPhoneCall",
        "2024-09-10T11:14:12.339Z",
    );
    let mut vonage = vapi_call(
        "v",
        "in-progress",
        "outboundPhoneCall",
        "2024-09-10T11:14:12.339Z",
    );
    vonage["phoneCallProvider"] = json!("vonage");
    vonage["phoneCallProviderId"] = json!("7b3f0c2e-vonage-conversation");
    // Newer answers carry the CallSid in `transport`; `phoneCallProviderId` is deprecated.
    let mut by_transport = vapi_call(
        "x",
        "in-progress",
        "inboundPhoneCall",
        "2024-09-10T11:14:12.339Z",
    );
    let fields = by_transport.as_object_mut().unwrap();
    fields.remove("phoneCallProvider");
    fields.remove("phoneCallProviderId");
    fields.insert(
        "transport".into(),
        json!({"provider": "twilio", "callSid": "CAfromtransport", "accountSid": "AC1"}),
    );
    let mut sip = vapi_call(
        "s",
        "in-progress",
        "inboundPhoneCall",
        "2024-09-10T11:14:12.339Z",
    );
    sip.as_object_mut().unwrap().remove("phoneCallProviderId");
    sip["transport"] = json!({"provider": "vapi.sip", "callSid": "sip-call-id"});
    let server = vapi_server(json!([twilio, vonage, by_transport, sip])).await;
    let calls = vapi(&server.uri(), "")
        .list
        .active_calls(&ctx())
        .await
        .unwrap();
    let ids: Vec<Option<&str>> = calls.iter().map(|c| c.telephony_id.as_deref()).collect();
    assert_eq!(ids, [Some("CAt"), None, Some("CAfromtransport"), None]);
}

#[tokio::test]
async fn missing_optional_fields_and_unreadable_dates_are_unknown_not_errors() {
    let body = json!([
        {"id": "bare", "status": "in-progress"},
        {"id": "nulls", "status": "queued", "type": null, "customer": null, "phoneNumber": null,
         "monitor": null, "createdAt": null, "startedAt": null, "transport": null},
        {"id": "odd-dates", "status": "ringing", "createdAt": "yesterday", "startedAt": "",
         "customer": {}, "phoneNumber": {"id": "pn-1"}}
    ]);
    let server = vapi_server(body).await;
    let calls = vapi(&server.uri(), "")
        .list
        .active_calls(&ctx())
        .await
        .unwrap();
    assert_eq!(calls.len(), 3);
    for c in calls.iter() {
        assert_eq!(
            (
                c.from.as_ref(),
                c.to.as_ref(),
                c.direction,
                c.created_at,
                c.started_at
            ),
            (None, None, None, None, None),
            "{}",
            c.call_id
        );
        assert_eq!(c.telephony_id, None);
    }
}

#[tokio::test]
async fn numbers_where_strings_are_usual_are_read_as_text() {
    let body = json!([{
        "id": 42, "status": "in-progress", "type": "inboundPhoneCall",
        "customer": {"number": 15550001111_u64}, "phoneNumber": {"number": 15550002222_u64},
        "phoneCallProvider": "twilio", "phoneCallProviderId": 123
    }]);
    let server = vapi_server(body).await;
    let calls = vapi(&server.uri(), "")
        .list
        .active_calls(&ctx())
        .await
        .unwrap();
    let c = &calls[0];
    assert_eq!(c.call_id, "42");
    assert_eq!(c.from.as_deref(), Some("15550001111"));
    assert_eq!(c.to.as_deref(), Some("15550002222"));
    assert_eq!(c.telephony_id.as_deref(), Some("123"));
}

#[tokio::test]
async fn a_call_without_an_id_or_status_or_an_answer_that_is_not_an_array_is_a_bad_response() {
    for body in [
        json!([{"status": "in-progress"}]),
        json!([{"id": "x"}]),
        json!([{"id": "", "status": "queued"}]),
        json!({"message": "Unauthorized", "statusCode": 401}),
        json!([{"id": "x", "status": "queued", "customer": "+1555"}]),
    ] {
        let server = vapi_server(body.clone()).await;
        let got = vapi(&server.uri(), "").list.active_calls(&ctx()).await;
        assert!(
            matches!(got, Err(ProviderError::BadBody(_))),
            "{body}: {got:?}"
        );
    }
}

// ---- paging ----

#[tokio::test]
async fn a_full_page_is_followed_by_the_calls_created_before_its_oldest() {
    let server = MockServer::start().await;
    let newest = SAMPLE_CREATED;
    let oldest_on_first = iso(newest - 999 * 1000);
    Mock::given(method("GET"))
        .and(path("/call"))
        .and(query_param("createdAtLt", oldest_on_first.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(calls_from(
            "older",
            3,
            newest - 1_000_000,
        )))
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/call"))
        .and(query_param_is_missing("createdAtLt"))
        .respond_with(ResponseTemplate::new(200).set_body_json(calls_from("page1", 1000, newest)))
        .with_priority(5)
        .mount(&server)
        .await;
    let calls = vapi(&server.uri(), "")
        .list
        .active_calls(&ctx())
        .await
        .unwrap();
    assert_eq!(calls.len(), 1003);
    assert_eq!(calls[1000].call_id, "older-0");
    let sent = requests(&server, "GET").await;
    assert_eq!(sent.len(), 2);
    let second: Vec<(String, String)> = sent[1].url.query_pairs().into_owned().collect();
    let first: Vec<(String, String)> = sent[0].url.query_pairs().into_owned().collect();
    // The same window, and the same key, with the bound added.
    assert_eq!(&second[..2], &first[..2]);
    assert_eq!(second[2], ("createdAtLt".to_string(), oldest_on_first));
    assert_eq!(
        sent[1].headers["authorization"],
        format!("Bearer {KEY}").as_str()
    );
}

#[tokio::test]
async fn a_full_page_mixing_live_and_ended_calls_is_still_followed() {
    let server = MockServer::start().await;
    let mut page: Vec<Value> = calls_from("p", 1000, SAMPLE_CREATED);
    for call in page.iter_mut().step_by(2) {
        call["status"] = json!("ended");
    }
    Mock::given(method("GET"))
        .and(query_param(
            "createdAtLt",
            iso(SAMPLE_CREATED - 999_000).as_str(),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page))
        .with_priority(5)
        .mount(&server)
        .await;
    let calls = vapi(&server.uri(), "")
        .list
        .active_calls(&ctx())
        .await
        .unwrap();
    assert_eq!(calls.len(), 1000);
    assert_eq!(calls.iter().filter(|c| c.status.is_active()).count(), 500);
    assert_eq!(requests(&server, "GET").await.len(), 2);
}

#[tokio::test]
async fn a_full_page_without_a_readable_created_at_cannot_be_followed_and_says_so() {
    let mut page = calls_from("p", 1000, SAMPLE_CREATED);
    for call in page.iter_mut() {
        call["createdAt"] = json!("not a date");
    }
    let server = vapi_server(json!(page)).await;
    let got = vapi(&server.uri(), "").list.active_calls(&ctx()).await;
    assert!(
        matches!(&got, Err(ProviderError::BadBody(m)) if m.contains("createdAt")),
        "{got:?}"
    );
}

// ---- configuration ----

fn refused(settings: &str, env: &[(&str, &str)]) -> String {
    let toml = format!(
        "[orgs.o]\napi_key_sha256 = \"{}\"\nproviders = [\"v\"]\n[providers.v]\nkind = \"vapi\"\n{settings}",
        "a".repeat(64)
    );
    match load_config(&toml, env) {
        Ok(_) => panic!("accepted: {settings}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_missing_or_unusable_key_is_a_config_error_naming_the_provider_and_the_field() {
    for (settings, env, problem) in [
        ("", vec![], "is required for kind vapi"),
        (
            "api_key_env = \"VAPI_TEST_KEY\"",
            vec![],
            "environment variable VAPI_TEST_KEY is not set",
        ),
        (
            "api_key_env = \"VAPI_TEST_KEY\"",
            vec![(KEY_VAR, " ")],
            "environment variable VAPI_TEST_KEY is empty",
        ),
        (
            "api_key_env = \"VAPI_TEST_KEY\"",
            vec![(KEY_VAR, "two\nlines")],
            "holds characters not allowed in an HTTP header",
        ),
        (
            "api_key_env = \"sk-live-pasted key\"",
            vec![],
            "is not an environment variable name",
        ),
    ] {
        let err = refused(settings, &env);
        assert!(err.contains("providers.v.api_key_env"), "{settings}: {err}");
        assert!(err.contains(problem), "{settings}: {err}");
        assert!(
            !err.contains("two\nlines") && !err.contains("pasted"),
            "{err}"
        );
    }
}

#[test]
fn bad_settings_are_refused_by_name_with_their_fix() {
    let key = "api_key_env = \"VAPI_TEST_KEY\"\n";
    for (settings, field, problem) in [
        (
            "lookback_ms = 1000",
            "providers.v.lookback_ms",
            "outside 60000..=2592000000",
        ),
        (
            "lookback_ms = 2592000001",
            "providers.v.lookback_ms",
            "outside 60000..=2592000000",
        ),
        (
            "control_hosts = []",
            "providers.v.control_hosts",
            "is empty",
        ),
        (
            "control_hosts = [\"vapi.ai\"]",
            "providers.v.control_hosts",
            "is not a host suffix",
        ),
        (
            "control_hosts = [\".ai\"]",
            "providers.v.control_hosts",
            "is not a host suffix",
        ),
        (
            "control_hosts = [\".vapi..ai\"]",
            "providers.v.control_hosts",
            "is not a host suffix",
        ),
        (
            "control_hosts = [\".vapi.ai/x\"]",
            "providers.v.control_hosts",
            "is not a host suffix",
        ),
        (
            "control_hosts = \".vapi.ai\"",
            "providers.v.control_hosts",
            "invalid type",
        ),
        (
            "base_url = \"ftp://api.vapi.ai\"",
            "providers.v.base_url",
            "not an http or https URL",
        ),
        (
            "assistant_id = \"a\"",
            "providers.v",
            "unknown field `assistant_id`",
        ),
    ] {
        let err = refused(&format!("{key}{settings}"), &env());
        assert!(
            err.contains(field) && err.contains(problem),
            "{settings}: {err}"
        );
        assert!(err.contains("fix:"), "{err}");
    }
}

#[test]
fn the_defaults_are_vapis_api_a_day_of_calls_and_vapis_control_hosts() {
    let config = load_config(
        &format!(
            "[orgs.o]\napi_key_sha256 = \"{}\"\nproviders = [\"v\"]\n[providers.v]\nkind = \"vapi\"\napi_key_env = \"{KEY_VAR}\"\n",
            "a".repeat(64)
        ),
        &env(),
    )
    .unwrap();
    let summary = config.provider("v").unwrap().kind.summary();
    assert!(summary.starts_with("at https://api.vapi.ai/;"), "{summary}");
    assert!(
        summary.contains("created in the last 86400000 ms"),
        "{summary}"
    );
    assert!(
        summary.contains("on hosts ending in .vapi.ai or at base_url"),
        "{summary}"
    );
}

// The key's absence from `Debug` is the conformance suite's; this is the binary's own output.
#[test]
fn check_config_shows_where_the_key_is_read_from_never_the_key() {
    let toml = format!(
        "[orgs.o]\napi_key_env = \"ORG_KEY\"\nproviders = [\"v\"]\n[providers.v]\nkind = \"vapi\"\n\
         api_key_env = \"{KEY_VAR}\"\nbase_url = \"http://127.0.0.1:1\"\n"
    );
    let distinctive = &KEY[KEY.len() - 12..];
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.toml");
    std::fs::write(&file, &toml).unwrap();
    let out = callmux()
        .args(["check-config", "--config"])
        .arg(&file)
        .env("ORG_KEY", "org-key-0123456789")
        .env(KEY_VAR, KEY)
        .output()
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{printed}");
    assert!(
        printed.contains(
            "v: vapi at http://127.0.0.1:1/; api key from $VAPI_TEST_KEY (set, value hidden)"
        ),
        "{printed}"
    );
    for shown in [KEY, distinctive, &KEY[..12]] {
        assert!(!printed.contains(shown), "{shown} shown: {printed}");
    }
}

// ---- ending a call ----

/// A Vapi fake listing one call `id` in `status`, whose control URL is on the fake itself,
/// and answering a POST there with `answer`.
async fn with_control(id: &str, status: &str, answer: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    let mut call = vapi_call(id, status, "outboundPhoneCall", "2024-09-10T11:14:12.339Z");
    call["monitor"]["controlUrl"] = json!(format!("{}/ctl/{id}/control", server.uri()));
    list_answers(
        &server,
        ResponseTemplate::new(200).set_body_json(json!([call])),
    )
    .await;
    Mock::given(method("POST"))
        .and(path(format!("/ctl/{id}/control")))
        .respond_with(answer)
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn ending_a_call_posts_end_call_to_its_control_url_without_credentials() {
    let server = with_control("c1", "in-progress", ResponseTemplate::new(200)).await;
    let backend = vapi(&server.uri(), "");
    backend.list.active_calls(&ctx()).await.unwrap();
    backend
        .end
        .as_ref()
        .unwrap()
        .end_call(&ctx(), "c1")
        .await
        .unwrap();
    let posts = requests(&server, "POST").await;
    assert_eq!(posts.len(), 1);
    let p = &posts[0];
    assert_eq!(p.url.path(), "/ctl/c1/control");
    assert_eq!(p.url.query(), None);
    assert_eq!(p.headers["content-type"], "application/json");
    assert_eq!(
        serde_json::from_slice::<Value>(&p.body).unwrap(),
        json!({"type": "end-call"})
    );
    assert!(p.headers.get("authorization").is_none(), "{:?}", p.headers);
    assert!(!format!("{:?}", p.headers).contains(KEY));
    // The index from the list was used: no second list.
    assert_eq!(requests(&server, "GET").await.len(), 1);
}

#[tokio::test]
async fn a_call_not_in_the_last_list_is_listed_once_more_before_it_is_not_found() {
    let server = with_control("c1", "in-progress", ResponseTemplate::new(200)).await;
    let backend = vapi(&server.uri(), "");
    let end = backend.end.clone().unwrap();
    // Never listed yet: one list finds it.
    end.end_call(&ctx(), "c1").await.unwrap();
    assert_eq!(requests(&server, "GET").await.len(), 1);
    assert_eq!(end.end_call(&ctx(), "nope").await, Err(EndError::NotFound));
    assert_eq!(requests(&server, "GET").await.len(), 2);
    assert_eq!(requests(&server, "POST").await.len(), 1);
}

#[tokio::test]
async fn an_ended_call_cannot_be_ended_again() {
    let server = with_control("done", "ended", ResponseTemplate::new(200)).await;
    let backend = vapi(&server.uri(), "");
    let end = backend.end.unwrap();
    assert_eq!(end.end_call(&ctx(), "done").await, Err(EndError::NotFound));
    assert!(requests(&server, "POST").await.is_empty());
}

#[tokio::test]
async fn a_control_url_that_answers_404_is_not_found_and_any_other_failure_is_the_providers() {
    let server = with_control("gone", "in-progress", ResponseTemplate::new(404)).await;
    let end = vapi(&server.uri(), "").end.unwrap();
    assert_eq!(end.end_call(&ctx(), "gone").await, Err(EndError::NotFound));

    let server = with_control("broken", "in-progress", ResponseTemplate::new(503)).await;
    let end = vapi(&server.uri(), "retries = 3").end.unwrap();
    assert_eq!(
        end.end_call(&ctx(), "broken").await,
        Err(EndError::Failed(ProviderError::Status(503)))
    );
    // A mutation is never sent twice after an answer.
    assert_eq!(requests(&server, "POST").await.len(), 1);
}

#[tokio::test]
async fn a_hostile_call_id_never_reaches_an_upstream_path() {
    let server = with_control("c1", "in-progress", ResponseTemplate::new(200)).await;
    let end = vapi(&server.uri(), "").end.unwrap();
    for id in [
        "a/../b",
        "x?y",
        "../ctl/c1/control",
        "c1/../c1",
        "",
        ".",
        "..",
    ] {
        assert_eq!(
            end.end_call(&ctx(), id).await,
            Err(EndError::NotFound),
            "{id:?}"
        );
    }
    for r in server.received_requests().await.unwrap() {
        assert_eq!((r.method.as_str(), r.url.path()), ("GET", "/call"));
    }
}

#[tokio::test]
async fn a_live_call_without_a_control_url_cannot_be_ended_and_says_why() {
    let server = MockServer::start().await;
    let mut call = vapi_call(
        "c1",
        "in-progress",
        "outboundPhoneCall",
        "2024-09-10T11:14:12.339Z",
    );
    call.as_object_mut().unwrap().remove("monitor");
    list_answers(
        &server,
        ResponseTemplate::new(200).set_body_json(json!([call])),
    )
    .await;
    let end = vapi(&server.uri(), "").end.unwrap();
    match end.end_call(&ctx(), "c1").await {
        Err(EndError::Failed(e @ ProviderError::ControlRefused(_))) => {
            let m = e.to_string();
            assert!(m.starts_with("has no control URL"), "{m}");
            assert_eq!(e.code(), "UPSTREAM_CONTROL_REFUSED");
        }
        other => panic!("{other:?}"),
    }
    assert!(requests(&server, "POST").await.is_empty());
}

#[tokio::test]
async fn a_control_url_anywhere_else_is_refused_and_nothing_is_sent() {
    // Stands in for anything a hostile upstream might name: it must never be asked.
    let elsewhere = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(200))
        .mount(&elsewhere)
        .await;
    let port = elsewhere.address().port();
    let listing = MockServer::start().await;
    let own_port = listing.address().port();
    // Suffixes that let IP literals through the host rule, so that the address check is
    // what refuses them (no name here is looked up in DNS).
    let hosts = "control_hosts = [\".vapi.ai\", \".0.0.1\", \".2.3\", \".169.254\", \".1.1\"]";
    let hostile = [
        format!("{}/ctl/h/control", elsewhere.uri()),
        format!("https://127.0.0.1:{port}/ctl/h/control"),
        format!("https://127.0.0.1:{own_port}/ctl/h/control"),
        "https://10.1.2.3/ctl/h/control".to_string(),
        "https://169.254.169.254/latest/meta-data".to_string(),
        "https://192.168.1.1/ctl".to_string(),
        format!("https://[::1]:{port}/ctl/h/control"),
        format!("https://[::ffff:127.0.0.1]:{port}/ctl"),
        "https://evilvapi.ai/ctl/h/control".to_string(),
        "https://vapi.ai/ctl/h/control".to_string(),
        "https://phone-call-websocket.vapi.ai.evil.example/ctl".to_string(),
        "http://phone-call-websocket.aws-us-west-2-backend-production2.vapi.ai/h/control"
            .to_string(),
        "<https://phone-call-websocket.aws-us-west-2-backend-production2.vapi.ai/h/control>"
            .to_string(),
        format!("http://user:secret-pw@127.0.0.1:{own_port}/ctl/h/control"),
        "file:///etc/passwd".to_string(),
        "not a url at all".to_string(),
        format!("ws://127.0.0.1:{own_port}/ctl/h/control"),
    ];
    for url in &hostile {
        listing.reset().await;
        let mut call = vapi_call(
            "h",
            "in-progress",
            "inboundPhoneCall",
            "2024-09-10T11:14:12.339Z",
        );
        call["monitor"]["controlUrl"] = json!(url);
        list_answers(
            &listing,
            ResponseTemplate::new(200).set_body_json(json!([call])),
        )
        .await;
        let end = vapi(&listing.uri(), hosts).end.unwrap();
        match end.end_call(&ctx(), "h").await {
            Err(EndError::Failed(e @ ProviderError::ControlRefused(_))) => {
                let m = e.to_string();
                assert!(
                    m.starts_with("refused the call's control URL: "),
                    "{url}: {m}"
                );
                for part in [
                    "ctl",
                    "meta-data",
                    "secret-pw",
                    "passwd",
                    "evil",
                    "169.254",
                    "10.1",
                ] {
                    assert!(!m.contains(part), "{url}: the message shows {part:?}: {m}");
                }
            }
            other => panic!("{url}: {other:?}"),
        }
        assert!(requests(&listing, "POST").await.is_empty(), "{url}");
    }
    assert!(elsewhere.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_redirect_from_the_control_url_is_not_followed() {
    let elsewhere = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(200))
        .mount(&elsewhere)
        .await;
    let server = with_control(
        "c1",
        "in-progress",
        ResponseTemplate::new(307)
            .insert_header("location", format!("{}/stolen", elsewhere.uri()).as_str()),
    )
    .await;
    let end = vapi(&server.uri(), "").end.unwrap();
    assert_eq!(
        end.end_call(&ctx(), "c1").await,
        Err(EndError::Failed(ProviderError::Status(307)))
    );
    assert!(elsewhere.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn ending_a_call_gives_up_at_the_providers_timeout() {
    // The control URL is on the provider's own origin, which does not answer in time.
    let answer = ResponseTemplate::new(200).set_delay(Duration::from_secs(30));
    let server = with_control("slow", "in-progress", answer).await;
    let end = vapi(&server.uri(), "timeout_ms = 300").end.unwrap();
    let started = Instant::now();
    assert_eq!(
        end.end_call(&ctx(), "slow").await,
        Err(EndError::Failed(ProviderError::Timeout(300)))
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

// ---- through the real server ----

fn org_toml(providers: &[(&str, &str)], extra: &str) -> String {
    let ids: Vec<String> = providers
        .iter()
        .map(|(id, _)| format!("\"{id}\""))
        .collect();
    let mut toml = format!(
        "[orgs.acme]\napi_key_sha256 = \"{}\"\nproviders = [{}]\n",
        sha256_hex("k"),
        ids.join(", ")
    );
    for (id, url) in providers {
        toml += &format!(
            "[providers.{id}]\nkind = \"vapi\"\nbase_url = \"{url}\"\napi_key_env = \"{KEY_VAR}\"\n"
        );
    }
    toml + extra
}

#[tokio::test]
async fn vapi_calls_are_listed_merged_with_another_providers_and_ended_ones_left_out() {
    let mut inbound = vapi_call(
        "v-in",
        "in-progress",
        "inboundPhoneCall",
        "2024-09-10T11:14:12.339Z",
    );
    inbound["phoneNumber"] = json!({"number": "+15550001111"});
    let calls = json!([
        inbound,
        vapi_call(
            "v-ended",
            "ended",
            "outboundPhoneCall",
            "2024-09-10T11:14:10.000Z"
        ),
        vapi_call(
            "v-lost",
            "not-found",
            "outboundPhoneCall",
            "2024-09-10T11:14:10.000Z"
        ),
        vapi_call(
            "v-undeleted",
            "deletion-failed",
            "outboundPhoneCall",
            "2024-09-10T11:14:10.000Z"
        ),
        vapi_call(
            "v-odd",
            "on-hold",
            "outboundPhoneCall",
            "2024-09-10T11:14:11.000Z"
        ),
        vapi_call(
            "v-queued",
            "scheduled",
            "outboundPhoneCall",
            "2024-09-10T11:14:13.000Z"
        ),
    ]);
    let server = vapi_server(calls).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agents.json");
    std::fs::write(
        &file,
        json!({"calls": [agent_call("agent-1", "+1999", "ringing", "outbound")]}).to_string(),
    )
    .unwrap();
    let toml = org_toml(&[("vapi", &server.uri())], "").replace(
        "providers = [\"vapi\"]",
        "providers = [\"vapi\", \"files\"]",
    ) + &format!(
        "[providers.files]\nkind = \"static\"\npath = \"{}\"\n",
        file.display()
    );
    let app = spawn_app_with_env(&toml, &env()).await;

    let r = app.calls("k", "acme").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        r.body,
        json!({"calls": [
            {"call_id": "v-odd", "to_number": "+12345678913", "status": "on-hold", "direction": "outbound"},
            {"call_id": "v-in", "to_number": "+12345678913", "status": "in-progress", "direction": "incoming"},
            {"call_id": "v-queued", "to_number": "+12345678913", "status": "initiating", "direction": "outbound"},
            {"call_id": "agent-1", "to_number": "+1999", "status": "ringing", "direction": "outbound"},
        ], "count": 4})
    );
    let b = app.bland("k", "acme").await;
    let v_in = &b.body["data"][1];
    assert_eq!(v_in["call_id"], "v-in");
    assert_eq!(v_in["from"], "+12345678913");
    assert_eq!(v_in["to"], "+15550001111");
    assert_eq!(v_in["status"], "IN_PROGRESS");
    assert_eq!(v_in["timestamp"], "1725966852339");
    assert_eq!(v_in["user_id"], "acme");
    // Neither the control nor the listen URL is ever listed.
    for body in [r.body.to_string(), b.body.to_string()] {
        assert!(
            !body.contains("vapi.ai") && !body.contains("control"),
            "{body}"
        );
    }
}

#[tokio::test]
async fn a_call_that_cannot_be_ended_is_refused_naming_the_provider_once() {
    let mut call = vapi_call(
        "c1",
        "in-progress",
        "outboundPhoneCall",
        "2024-09-10T11:14:12.339Z",
    );
    call.as_object_mut().unwrap().remove("monitor");
    let server = vapi_server(json!([call])).await;
    let app = spawn_app_with_env(&org_toml(&[("vapi", &server.uri())], ""), &env()).await;
    let expected = "provider `vapi` has no control URL for this call (Vapi gives one while \
                    the assistant's monitorPlan.controlEnabled is on); nothing was sent";
    let ended = app.end("c1", "k", "acme").await;
    assert_eq!(ended.status, 502, "{:?}", ended.body);
    assert_eq!(ended.body["code"], "UPSTREAM_CONTROL_REFUSED");
    assert_eq!(ended.body["error"], expected);
    let stopped = app.stop("c1", "k", "acme").await;
    assert_eq!(stopped.status, 502, "{:?}", stopped.body);
    assert_eq!(stopped.body["message"], expected);
    assert!(requests(&server, "POST").await.is_empty());
}

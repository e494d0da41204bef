//! Placing a call on every kind, driven through each kind's built backend against loopback
//! fakes answering as each platform documents its create-call endpoint: the exact request
//! each kind sends (body and headers), and how each answer reads (placed, refused before the
//! call exists, rejected with the platform's message, or unknown), including that a request
//! that timed out after sending is never sent again. Also `[routes.<id>]` refusals, each
//! naming its field. `POST /calls` over routes comes next, on top of capacity.
//!
//! Bodies follow: Retell `POST /v2/create-phone-call` (201, the call object with `call_id`),
//! Vapi `POST /call` (201, the call with `id`, and `subscriptionLimits` with
//! `concurrencyBlocked`, `concurrencyLimit`, `remainingConcurrentCalls`), Bland
//! `POST /v1/calls` (`{"status": "success", "call_id", "message"}`, errors
//! `{"status": "error", "message", "errors"}`), Twilio `POST .../Calls.json` (201, the call
//! resource with `sid`; errors `{"code", "message", "more_info", "status"}`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use callmux::call::CallStatus;
use callmux::provider::place::{Limits, PlaceOutcome, PlaceRequest};
use callmux::provider::{Backend, RequestContext};
use serde_json::{json, Value};
use wiremock::matchers::{body_json, body_string, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::*;

const RETELL_KEY: &str = "key_SECRET_retell_place_1";
const VAPI_KEY: &str = "vapi-SECRET-place-key-2";
const BLAND_KEY: &str = "bland-SECRET-place-key-3";
const TWILIO_TOKEN: &str = "twilio-SECRET-place-token-4";
const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const ENV: &[(&str, &str)] = &[
    ("P_RETELL", RETELL_KEY),
    ("P_VAPI", VAPI_KEY),
    ("P_BLAND", BLAND_KEY),
    ("P_TWILIO", TWILIO_TOKEN),
];

fn retell(base: &str) -> String {
    format!("kind = \"retell\"\nbase_url = \"{base}\"\napi_key_env = \"P_RETELL\"\n")
}
fn vapi(base: &str) -> String {
    format!("kind = \"vapi\"\nbase_url = \"{base}\"\napi_key_env = \"P_VAPI\"\n")
}
fn bland(base: &str) -> String {
    format!(
        "kind = \"bland\"\nbase_url = \"{base}\"\napi_key_env = \"P_BLAND\"\norg_id = \"org_1\"\n"
    )
}
fn twilio(base: &str) -> String {
    format!(
        "kind = \"twilio\"\nbase_url = \"{base}\"\naccount_sid = \"{ACCOUNT}\"\nauth_token_env = \"P_TWILIO\"\n"
    )
}

const RETELL_TARGET: &str = "agent_id = \"agent_123\", from_number = \"+14155550100\"";
const VAPI_TARGET: &str = "assistant_id = \"asst_1\", phone_number_id = \"pn_1\"";
const BLAND_TARGET: &str = "pathway_id = \"pw_1\", from = \"+14155550101\"";
const TWILIO_TARGET: &str = "url = \"https://example.com/twiml\", from = \"+14155550102\"";

/// The config for provider `p` (its TOML lines) and route `r` over one target of it.
fn config_toml(provider: &str, target: &str) -> String {
    let target = if target.is_empty() {
        String::new()
    } else {
        format!(", {target}")
    };
    format!(
        "[orgs.o]\napi_key_sha256 = \"{}\"\nproviders = [\"p\"]\nroutes = [\"r\"]\n\
         [providers.p]\n{provider}\n[routes.r]\ntargets = [{{ provider = \"p\"{target} }}]\n",
        "a".repeat(64)
    )
}

/// Provider `p` built through the public config path, and a request for route `r`'s target.
fn placer(provider: &str, target: &str) -> (Backend, PlaceRequest) {
    let config = load_config(&config_toml(provider, target), ENV).unwrap_or_else(|e| panic!("{e}"));
    let spec = config.provider("p").unwrap();
    let backend = spec.kind.build(Arc::from("p"), &spec.common).unwrap();
    let request = PlaceRequest {
        to: "+14155550123".into(),
        variables: BTreeMap::from([("name".to_owned(), "Ada".to_owned())]),
        metadata: json!({"lead": "42"}).as_object().cloned(),
        prompt: None,
        webhook_url: None,
        target: config.route("r").unwrap().targets[0].settings.clone(),
    };
    (backend, request)
}

fn ctx() -> RequestContext {
    RequestContext {
        org_id: Arc::from("o"),
        forwarded: None,
    }
}

async fn place(backend: &Backend, request: &PlaceRequest) -> PlaceOutcome {
    backend
        .places
        .as_ref()
        .expect("the kind places calls")
        .place(&ctx(), request)
        .await
}

fn placed(id: &str) -> PlaceOutcome {
    PlaceOutcome::Placed {
        call_id: id.into(),
        limits: None,
    }
}

/// A fake answering `POST {path}` with `answer`, expecting exactly `times` requests.
async fn fake(at: &str, answer: ResponseTemplate, times: u64) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(at))
        .respond_with(answer)
        .expect(times)
        .mount(&server)
        .await;
    server
}

/// A kind that speaks HTTP to a platform: its name, provider lines, target, create path and
/// a documented 201 answer.
type Platform = (
    &'static str,
    fn(&str) -> String,
    &'static str,
    String,
    Value,
);

fn platforms() -> Vec<Platform> {
    vec![
        (
            "retell",
            retell,
            RETELL_TARGET,
            "/v2/create-phone-call".into(),
            json!({"call_id": "Jabr9TXYYJHfvl6Syypi88rdAHYHmcq6", "call_type": "phone_call", "call_status": "registered"}),
        ),
        (
            "vapi",
            vapi,
            VAPI_TARGET,
            "/call".into(),
            json!({"id": "vapi-call-1", "orgId": "org", "type": "outboundPhoneCall", "status": "queued"}),
        ),
        (
            "bland",
            bland,
            BLAND_TARGET,
            "/v1/calls".into(),
            json!({"status": "success", "message": "Call successfully queued.", "call_id": "9d404c1b-6a23-4426-953a-a52c392ff8f1", "batch_id": null}),
        ),
        (
            "twilio",
            twilio,
            TWILIO_TARGET,
            format!("/2010-04-01/Accounts/{ACCOUNT}/Calls.json"),
            json!({"sid": "CAafd57f1f7d8d8cd79d3e5b6d8a8c5f1e", "status": "queued"}),
        ),
    ]
}

// ---- the request each kind sends ----

#[tokio::test]
async fn retell_is_sent_the_documented_create_phone_call_body_with_its_key() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v2/create-phone-call"))
        .and(header(
            "authorization",
            format!("Bearer {RETELL_KEY}").as_str(),
        ))
        .and(body_json(json!({
            "from_number": "+14155550100",
            "to_number": "+14155550123",
            "override_agent_id": "agent_123",
            "retell_llm_dynamic_variables": {"name": "Ada"},
            "metadata": {"lead": "42"},
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"call_id": "call_r1"})))
        .expect(1)
        .mount(&server)
        .await;
    let (backend, request) = placer(&retell(&server.uri()), RETELL_TARGET);
    assert_eq!(place(&backend, &request).await, placed("call_r1"));
}

#[tokio::test]
async fn vapi_is_sent_the_documented_call_body_and_its_limits_are_read() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/call"))
        .and(header("authorization", format!("Bearer {VAPI_KEY}").as_str()))
        .and(body_json(json!({
            "assistantId": "asst_1",
            "phoneNumberId": "pn_1",
            "customer": {"number": "+14155550123"},
            "assistantOverrides": {"variableValues": {"name": "Ada"}},
            "metadata": {"lead": "42"},
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "id": "vapi-call-1",
            "subscriptionLimits": {"concurrencyBlocked": false, "concurrencyLimit": 10, "remainingConcurrentCalls": 3},
        })))
        .expect(1)
        .mount(&server)
        .await;
    let (backend, request) = placer(&vapi(&server.uri()), VAPI_TARGET);
    assert_eq!(
        place(&backend, &request).await,
        PlaceOutcome::Placed {
            call_id: "vapi-call-1".into(),
            limits: Some(Limits {
                concurrency_limit: Some(10),
                remaining: Some(3),
                blocked: false
            }),
        }
    );
}

#[tokio::test]
async fn bland_is_sent_its_pathway_or_task_with_the_providers_credentials() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/calls"))
        .and(header("authorization", BLAND_KEY))
        .and(header("x-bland-org-id", "org_1"))
        .and(body_json(json!({
            "phone_number": "+14155550123",
            "pathway_id": "pw_1",
            "from": "+14155550101",
            "request_data": {"name": "Ada"},
            "metadata": {"lead": "42"},
        })))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"status": "success", "call_id": "b1"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/calls"))
        .and(body_json(json!({
            "phone_number": "+14155550123",
            "task": "Book a table",
            "request_data": {"name": "Ada"},
            "metadata": {"lead": "42"},
        })))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"status": "success", "call_id": "b2"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let (backend, request) = placer(&bland(&server.uri()), BLAND_TARGET);
    assert_eq!(place(&backend, &request).await, placed("b1"));
    let (backend, request) = placer(&bland(&server.uri()), "task = \"Book a table\"");
    assert_eq!(place(&backend, &request).await, placed("b2"));
}

#[tokio::test]
async fn twilio_is_sent_the_create_call_form_with_status_callbacks_when_public_url_is_set() {
    use base64::Engine;
    let server = MockServer::start().await;
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{ACCOUNT}:{TWILIO_TOKEN}"));
    let calls = format!("/2010-04-01/Accounts/{ACCOUNT}/Calls.json");
    Mock::given(method("POST"))
        .and(path(calls.as_str()))
        .and(header("authorization", format!("Basic {basic}").as_str()))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .and(body_string(
            "To=%2B14155550123&From=%2B14155550102&Url=https%3A%2F%2Fexample.com%2Ftwiml\
             &StatusCallback=https%3A%2F%2Fcallmux.example.com%2Fhooks%2Ftwilio%2Fp\
             &StatusCallbackEvent=initiated+ringing+answered+completed",
        ))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"sid": "CA1"})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(calls.as_str()))
        .and(body_string(
            "To=%2B14155550123&From=%2B14155550102&Url=https%3A%2F%2Fexample.com%2Ftwiml",
        ))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"sid": "CA2"})))
        .expect(1)
        .mount(&server)
        .await;
    let with_callback = format!(
        "{}public_url = \"https://callmux.example.com/hooks/twilio/p\"\n",
        twilio(&server.uri())
    );
    let (backend, request) = placer(&with_callback, TWILIO_TARGET);
    assert_eq!(place(&backend, &request).await, placed("CA1"));
    let (backend, request) = placer(&twilio(&server.uri()), TWILIO_TARGET);
    assert_eq!(place(&backend, &request).await, placed("CA2"));
}

#[tokio::test]
async fn twilio_placements_are_paced_to_calls_per_second() {
    let answer = ResponseTemplate::new(201).set_body_json(json!({"sid": "CA1"}));
    let server = fake(
        &format!("/2010-04-01/Accounts/{ACCOUNT}/Calls.json"),
        answer,
        3,
    )
    .await;
    let lines = format!("{}calls_per_second = 2\n", twilio(&server.uri()));
    let (backend, request) = placer(&lines, TWILIO_TARGET);
    let start = Instant::now();
    for _ in 0..3 {
        assert_eq!(place(&backend, &request).await, placed("CA1"));
    }
    // Three calls at two a second: the third waits for its turn, a second after the first.
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn an_agent_server_target_is_sent_the_part_two_body() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/call"))
        .and(body_json(
            json!({"to": "+14155550123", "metadata": {"lead": "42"}}),
        ))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"success": true, "call_id": "a1"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let lines = format!(
        "kind = \"twilio-media-stream\"\nbase_url = \"{}\"\nplace_calls = true\n",
        server.uri()
    );
    let (backend, request) = placer(&lines, "");
    assert_eq!(place(&backend, &request).await, placed("a1"));
}

#[tokio::test]
async fn a_call_placed_on_a_static_provider_is_listed_queued_then_in_progress() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("calls.json");
    std::fs::write(&file, r#"{"calls": []}"#).unwrap();
    let lines = format!("kind = \"static\"\npath = \"{}\"\n", file.display());
    let (backend, request) = placer(&lines, "");
    let PlaceOutcome::Placed { call_id, .. } = place(&backend, &request).await else {
        panic!("not placed")
    };
    let listed = backend.list.active_calls(&ctx()).await.unwrap();
    let call = listed
        .iter()
        .find(|c| c.call_id == call_id.as_str())
        .expect("listed");
    assert_eq!(call.status, CallStatus::Queued);
    assert_eq!(call.to.as_deref(), Some("+14155550123"));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let listed = backend.list.active_calls(&ctx()).await.unwrap();
    let call = listed
        .iter()
        .find(|c| c.call_id == call_id.as_str())
        .expect("listed");
    assert_eq!(call.status, CallStatus::InProgress);
}

// ---- how answers read, on every platform ----

#[tokio::test]
async fn a_documented_201_reads_as_placed_on_every_platform() {
    for (kind, lines, target, at, answer) in platforms() {
        let server = fake(
            &at,
            ResponseTemplate::new(201).set_body_json(answer.clone()),
            1,
        )
        .await;
        let (backend, request) = placer(&lines(&server.uri()), target);
        let id = ["call_id", "id", "sid"]
            .iter()
            .find_map(|k| answer[k].as_str())
            .unwrap();
        assert_eq!(place(&backend, &request).await, placed(id), "{kind}");
    }
}

#[tokio::test]
async fn http_429_and_503_are_refusals_that_may_fail_over_on_every_platform() {
    for (kind, lines, target, at, _) in platforms() {
        for status in [429, 503] {
            let body = json!({"status": "error", "message": "Too many concurrent calls"});
            let server = fake(&at, ResponseTemplate::new(status).set_body_json(body), 1).await;
            let (backend, request) = placer(&lines(&server.uri()), target);
            let outcome = place(&backend, &request).await;
            assert!(
                matches!(&outcome, PlaceOutcome::Refused { reason, .. } if reason.contains(&status.to_string())),
                "{kind} {status}: {outcome:?}"
            );
        }
    }
}

#[tokio::test]
async fn vapi_concurrency_blocked_is_a_refusal_carrying_its_limits() {
    let answer = json!({"subscriptionLimits": {"concurrencyBlocked": true, "concurrencyLimit": 10, "remainingConcurrentCalls": 0}});
    let server = fake("/call", ResponseTemplate::new(400).set_body_json(answer), 1).await;
    let (backend, request) = placer(&vapi(&server.uri()), VAPI_TARGET);
    let outcome = place(&backend, &request).await;
    let PlaceOutcome::Refused { limits, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(
        limits,
        Some(Limits {
            concurrency_limit: Some(10),
            remaining: Some(0),
            blocked: true
        })
    );
}

#[tokio::test]
async fn a_400_for_a_bad_number_is_rejected_with_the_platforms_own_message() {
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "retell",
            json!({"status": 400, "message": "to_number is not a valid E.164 number"}),
            "to_number is not a valid E.164 number",
        ),
        (
            "vapi",
            json!({"message": ["customer.number must be a valid phone number in the E.164 format."], "error": "Bad Request", "statusCode": 400}),
            "Bad Request",
        ),
        (
            "bland",
            json!({"status": "error", "message": "Invalid phone number", "errors": ["phone_number"]}),
            "Invalid phone number",
        ),
        (
            "twilio",
            json!({"code": 21211, "message": "The 'To' number +1415 is not a valid phone number.", "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400}),
            "The 'To' number +1415 is not a valid phone number.",
        ),
    ];
    for ((kind, lines, target, at, _), (name, body, message)) in platforms().into_iter().zip(cases)
    {
        assert_eq!(kind, name);
        let server = fake(&at, ResponseTemplate::new(400).set_body_json(body), 1).await;
        let (backend, request) = placer(&lines(&server.uri()), target);
        assert_eq!(
            place(&backend, &request).await,
            PlaceOutcome::Rejected {
                message: message.into()
            },
            "{kind}"
        );
    }
}

#[tokio::test]
async fn a_500_or_a_2xx_without_a_readable_call_id_is_unknown_on_every_platform() {
    for (kind, lines, target, at, _) in platforms() {
        for answer in [
            ResponseTemplate::new(500).set_body_string("oops"),
            ResponseTemplate::new(201).set_body_json(json!({"status": "queued"})),
            ResponseTemplate::new(201).set_body_string("{\"call_id\": "),
            ResponseTemplate::new(200).set_body_json(json!({"call_id": 7, "id": 7, "sid": 7})),
        ] {
            let server = fake(&at, answer, 1).await;
            let (backend, request) = placer(&lines(&server.uri()), target);
            let outcome = place(&backend, &request).await;
            assert!(
                matches!(outcome, PlaceOutcome::Unknown { .. }),
                "{kind}: {outcome:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_2xx_over_the_body_cap_is_unknown() {
    for (kind, lines, target, at, answer) in platforms() {
        let mut huge = answer.clone();
        huge["padding"] = "x".repeat(4096).into();
        let server = fake(&at, ResponseTemplate::new(201).set_body_json(huge), 1).await;
        let lines = format!("{}max_body_bytes = 1024\n", lines(&server.uri()));
        let (backend, request) = placer(&lines, target);
        let outcome = place(&backend, &request).await;
        assert!(
            matches!(outcome, PlaceOutcome::Unknown { .. }),
            "{kind}: {outcome:?}"
        );
    }
}

#[tokio::test]
async fn a_timeout_after_sending_is_unknown_and_never_sent_again() {
    for (kind, lines, target, at, answer) in platforms() {
        let slow = ResponseTemplate::new(201)
            .set_body_json(answer)
            .set_delay(Duration::from_secs(3));
        // `expect(1)`: checked when the fake drops, so a second send fails the test.
        let server = fake(&at, slow, 1).await;
        let lines = format!("{}timeout_ms = 300\nretries = 3\n", lines(&server.uri()));
        let (backend, request) = placer(&lines, target);
        let outcome = place(&backend, &request).await;
        assert!(
            matches!(outcome, PlaceOutcome::Unknown { .. }),
            "{kind}: {outcome:?}"
        );
        assert_eq!(server.received_requests().await.unwrap().len(), 1, "{kind}");
    }
}

#[tokio::test]
async fn a_refused_connection_is_a_refusal_before_the_call_exists() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    for (kind, lines, target, _, _) in platforms() {
        let (backend, request) = placer(&lines(&base), target);
        let outcome = place(&backend, &request).await;
        assert!(
            matches!(outcome, PlaceOutcome::Refused { .. }),
            "{kind}: {outcome:?}"
        );
    }
}

// ---- routes in the config ----

/// The error a config with these providers, route and org lines is refused with.
fn refused(toml: &str) -> String {
    match load_config(toml, ENV) {
        Ok(_) => panic!("accepted:\n{toml}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_target_lacking_its_kinds_required_setting_is_refused_naming_the_field() {
    let base = "http://127.0.0.1:1";
    for (lines, target, field) in [
        (
            retell(base),
            "from_number = \"+14155550100\"",
            "routes.r.targets[0].agent_id",
        ),
        (
            retell(base),
            "agent_id = \"a\"",
            "routes.r.targets[0].from_number",
        ),
        (
            vapi(base),
            "assistant_id = \"a\"",
            "routes.r.targets[0].phone_number_id",
        ),
        (
            vapi(base),
            "phone_number_id = \"p\"",
            "routes.r.targets[0].assistant_id",
        ),
        (
            bland(base),
            "from = \"+14155550101\"",
            "routes.r.targets[0].pathway_id",
        ),
        (
            bland(base),
            "pathway_id = \"p\", task = \"t\"",
            "routes.r.targets[0].task",
        ),
        (twilio(base), "from = \"+1\"", "routes.r.targets[0].url"),
        (
            twilio(base),
            "url = \"ftp://x\", from = \"+1\"",
            "routes.r.targets[0].url",
        ),
        (
            twilio(base),
            "url = \"https://example.com/t\"",
            "routes.r.targets[0].from",
        ),
        (
            retell(base),
            "agent_id = \"a\", from_number = \"+1\", colour = \"red\"",
            "routes.r.targets[0]",
        ),
        (
            retell(base),
            "agent_id = \"a\", from_number = \"+1\", weight = 0",
            "routes.r.targets[0].weight",
        ),
        (
            format!("kind = \"twilio-media-stream\"\nbase_url = \"{base}\"\n"),
            "",
            "routes.r.targets[0].provider",
        ),
        (
            "kind = \"static\"\npath = \"demo/agent-calls.json\"\n".to_owned(),
            "agent_id = \"a\"",
            "routes.r.targets[0]",
        ),
    ] {
        let e = refused(&config_toml(&lines, target));
        assert!(e.contains(field), "{target}: {e}");
    }
}

#[test]
fn a_route_naming_an_unknown_provider_or_one_the_org_does_not_list_is_refused() {
    let base = "http://127.0.0.1:1";
    let toml = config_toml(&retell(base), RETELL_TARGET)
        + "[routes.other]\ntargets = [{ provider = \"nowhere\" }]\n";
    let e = refused(&toml);
    assert!(
        e.contains("routes.other.targets[0].provider") && e.contains("nowhere"),
        "{e}"
    );

    let toml = format!(
        "{}[providers.q]\n{}[orgs.o2]\napi_key_sha256 = \"{}\"\nproviders = [\"q\"]\nroutes = [\"r\"]\n",
        config_toml(&retell(base), RETELL_TARGET),
        vapi(base),
        "b".repeat(64)
    );
    let e = refused(&toml);
    assert!(
        e.contains("routes.r.targets[0].provider") && e.contains("o2"),
        "{e}"
    );

    let toml = config_toml(&retell(base), RETELL_TARGET)
        .replace("routes = [\"r\"]", "routes = [\"r\", \"missing\"]");
    let e = refused(&toml);
    assert!(e.contains("orgs.o.routes") && e.contains("missing"), "{e}");
}

#[test]
fn route_settings_out_of_range_or_unknown_are_refused_naming_the_field() {
    let base = "http://127.0.0.1:1";
    let ok = config_toml(&retell(base), RETELL_TARGET);
    for (line, field) in [
        ("strategy = \"fastest\"", "routes.r.strategy"),
        (
            "queue_timeout_ms = 100000000000",
            "routes.r.queue_timeout_ms",
        ),
        ("colour = \"red\"", "routes.r"),
    ] {
        let toml = ok.replace("[routes.r]\n", &format!("[routes.r]\n{line}\n"));
        let e = refused(&toml);
        assert!(e.contains(field), "{line}: {e}");
    }
    let e = refused(&ok.replace("targets = [{ provider = \"p\", agent_id = \"agent_123\", from_number = \"+14155550100\" }]", "targets = []"));
    assert!(e.contains("routes.r.targets"), "{e}");
}

#[test]
fn check_config_summarises_routes_and_the_orgs_that_use_them() {
    let toml = config_toml(&retell("http://127.0.0.1:1"), RETELL_TARGET).replace(
        "[routes.r]\n",
        "[routes.r]\nstrategy = \"weighted\"\nqueue_timeout_ms = 500\n",
    );
    let config = load_config(&toml, ENV).unwrap();
    let route = config.route("r").unwrap();
    assert_eq!(route.strategy, callmux::config::Strategy::Weighted);
    assert_eq!(route.max_queued, 100);
    let s = config.summary();
    assert!(s.contains("places calls on routes r (default `r`)"), "{s}");
    assert!(s.contains("r: Weighted; queue 500 ms, at most 100; targets: p (agent agent_123 from +14155550100) weight 1"), "{s}");
    assert!(!s.contains(RETELL_KEY), "{s}");
}

//! The provider conformance suite: one set of checks that every kind runs through its
//! fixture (`common::kinds`), plus the checks every HTTP kind, and every kind that pages,
//! runs against a real upstream on loopback: what the shared machinery promises, checked
//! once per kind instead of in each kind's own tests.
//!
//! Adding a kind: a fixture for it in `common::kinds`, and one line in `suite!` (and in
//! `http_suite!` if it speaks HTTP, in `paging_suite!` if it pages). A kind in the registry
//! without a line in `suite!` fails `every_kind_in_the_registry_has_a_conformance_fixture`,
//! and an HTTP or paging fixture without its line in the others fails the test after it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use callmux::call::CallStatus;
use callmux::provider::{ProviderError, RequestContext};
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::kinds::*;
use crate::common::*;

// ---- every kind ----

async fn reports_every_call_it_serves_with_its_id_and_status(f: &dyn Fixture) {
    let calls: Vec<(String, &str)> = f
        .statuses()
        .iter()
        .enumerate()
        .map(|(i, (s, _))| (format!("c{i}"), *s))
        .collect();
    let refs: Vec<(&str, &str)> = calls.iter().map(|(id, s)| (id.as_str(), *s)).collect();
    let upstream = f.start(&refs).await;
    let got = upstream.provider().active_calls(&ctx()).await.unwrap();
    assert_eq!(got.len(), f.statuses().len());
    // By id, not position: a kind that lists in several requests puts them together in its
    // own order.
    for (i, (_, status)) in f.statuses().iter().enumerate() {
        let id = format!("c{i}");
        let call = got
            .iter()
            .find(|c| c.call_id == id)
            .unwrap_or_else(|| panic!("{id} missing"));
        assert_eq!(&call.status, status);
        assert_eq!(&*call.provider, "p");
    }
}

async fn keeps_an_unknown_status_verbatim(f: &dyn Fixture) {
    let upstream = f.start(&[("x", "Warming-Up")]).await;
    let got = upstream.provider().active_calls(&ctx()).await.unwrap();
    assert_eq!(got[0].status, CallStatus::Other("Warming-Up".into()));
}

async fn hands_out_the_same_calls_for_an_unchanged_answer_and_new_ones_for_a_changed_one(
    f: &dyn Fixture,
) {
    let status = f.statuses()[0].0;
    let upstream = f.start(&[("x", status)]).await;
    let p = upstream.provider();
    let first = p.active_calls(&ctx()).await.unwrap();
    let second = p.active_calls(&ctx()).await.unwrap();
    assert!(
        Arc::ptr_eq(&first, &second),
        "an unchanged answer was parsed again"
    );
    upstream.set(&[("y", status)]).await;
    let changed = p.active_calls(&ctx()).await.unwrap();
    assert_eq!(changed[0].call_id, "y");
}

async fn reads_an_empty_list_as_no_calls(f: &dyn Fixture) {
    let upstream = f.start(&[]).await;
    let got = upstream.provider().active_calls(&ctx()).await.unwrap();
    assert!(got.is_empty());
}

async fn turns_an_unreadable_answer_into_a_bad_response_and_recovers(f: &dyn Fixture) {
    let status = f.statuses()[0].0;
    let upstream = f.start(&[("x", status)]).await;
    let p = upstream.provider();
    for body in [
        "",
        "null",
        "{",
        "<html>",
        "{\"calls\": 5, \"data\": 5}",
        "\u{feff}{}",
    ] {
        upstream.set_raw(body).await;
        let got = p.active_calls(&ctx()).await;
        assert!(
            matches!(got, Err(ProviderError::BadBody(_))),
            "{body:?}: {got:?}"
        );
    }
    upstream.set(&[("back", status)]).await;
    assert_eq!(p.active_calls(&ctx()).await.unwrap()[0].call_id, "back");
}

async fn is_listed_through_the_server_merged_with_another_providers_calls(f: &dyn Fixture) {
    let upstream = f.start(&[("k1", f.live()), ("k2", f.live())]).await;
    let agents = agent_server(json!([agent_call("a1", "+1", "in-progress", "outbound")])).await;
    let agents_lines = format!(
        "kind = \"twilio-media-stream\"\nbase_url = \"{}\"",
        agents.uri()
    );
    let toml = org_toml(&[("agents", &agents_lines), ("p", &upstream.lines())]);
    let app = spawn_app_with_env(&toml, &env()).await;

    let calls = app.calls("org-key", "o").await;
    assert_eq!(calls.status, 200, "{:#}", calls.body);
    assert_eq!(calls.body["errors"], Value::Null, "{:#}", calls.body);
    let mut ids: Vec<&str> = calls.body["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["call_id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ["a1", "k1", "k2"]);

    let bland = app.bland("org-key", "o").await;
    assert_eq!(bland.status, 200, "{:#}", bland.body);
    assert_eq!(
        bland.body["data"].as_array().unwrap().len(),
        3,
        "{:#}",
        bland.body
    );
}

async fn costs_only_its_own_calls_when_it_fails_and_is_named(f: &dyn Fixture) {
    let upstream = f.start(&[]).await;
    upstream.set_raw("<html>oops</html>").await;
    let agents = agent_server(json!([agent_call("a1", "+1", "in-progress", "outbound")])).await;
    let agents_lines = format!(
        "kind = \"twilio-media-stream\"\nbase_url = \"{}\"",
        agents.uri()
    );
    let toml = org_toml(&[("p", &upstream.lines()), ("agents", &agents_lines)]);
    let app = spawn_app_with_env(&toml, &env()).await;
    let listed = app.calls("org-key", "o").await;
    assert_eq!(listed.status, 200, "{:#}", listed.body);
    assert_eq!(listed.body["count"], 1, "{:#}", listed.body);
    assert_eq!(listed.body["calls"][0]["call_id"], "a1");
    assert_eq!(listed.body["errors"][0]["provider"], "p");
    assert_eq!(listed.body["errors"][0]["error"], "UPSTREAM_BAD_RESPONSE");
}

/// What `/api/calls` lists for an org whose providers are upstreams of the fixture, each
/// given as its id and the calls it lists, in the org's order; `/v1/calls/active` must list
/// as many.
async fn listed_by(f: &dyn Fixture, providers: &[(&str, &[(&str, &str)])]) -> Value {
    let mut upstreams = Vec::new();
    for (_, calls) in providers {
        upstreams.push(f.start(calls).await);
    }
    let lines: Vec<String> = upstreams.iter().map(|u| u.lines()).collect();
    let tables: Vec<(&str, &str)> = providers
        .iter()
        .zip(&lines)
        .map(|((id, _), lines)| (*id, lines.as_str()))
        .collect();
    let app = spawn_app_with_env(&org_toml(&tables), &env()).await;
    let calls = app.calls("org-key", "o").await;
    assert_eq!(calls.status, 200, "{:#}", calls.body);
    let bland = app.bland("org-key", "o").await;
    assert_eq!(
        bland.body["data"].as_array().unwrap().len(),
        calls.body["calls"].as_array().unwrap().len(),
        "{:#}",
        bland.body
    );
    calls.body
}

async fn one_call_listed_by_two_providers_is_one_row_as_the_first_in_the_org_listed_it(
    f: &dyn Fixture,
) {
    // Both list the call, each in a status of its own, so the row tells who it came from.
    let [in_a, in_b] = f.live_two();
    let a: &[(&str, &str)] = &[("same", in_a)];
    let b: &[(&str, &str)] = &[("same", in_b)];
    let a_alone = listed_by(f, &[("a", a)]).await["calls"][0]["status"].clone();
    let b_alone = listed_by(f, &[("b", b)]).await["calls"][0]["status"].clone();
    assert_ne!(a_alone, b_alone);
    for (order, first) in [
        ([("a", a), ("b", b)], &a_alone),
        ([("b", b), ("a", a)], &b_alone),
    ] {
        let body = listed_by(f, &order).await;
        assert_eq!(body["count"], 1, "{body:#}");
        assert_eq!(&body["calls"][0]["status"], first, "{body:#}");
    }
    let body = listed_by(f, &[("a", &[("one", in_a)]), ("b", &[("two", in_a)])]).await;
    assert_eq!(
        body["count"], 2,
        "different calls are different rows: {body:#}"
    );
}

async fn shows_its_credential_neither_in_debug_output_nor_in_the_check_config_summary(
    f: &dyn Fixture,
) {
    let upstream = f.start(&[]).await;
    let config = load_config(&org_toml(&[("p", &upstream.lines())]), &env()).unwrap();
    let spec = config.provider("p").unwrap();
    let summary = config.summary();
    let built = spec.kind.build(Arc::from("p"), &spec.common).unwrap();
    let shown = format!(
        "{config:?}\n{spec:?}\n{:?}\n{summary}\n{:?}",
        spec.kind,
        built.list.active_calls(&ctx()).await,
    );
    for secret in [SECRET, &SECRET[SECRET.len() - 12..], "SECRET"] {
        assert!(!shown.contains(secret), "{secret} shown: {shown}");
    }
}

// ---- every HTTP kind ----

async fn asks_the_upstream_on_every_ask_it_does_not_share(b: &Backend) {
    let (server, p) = b.serving(&[("x", b.statuses[0].0)]).await;
    p.active_calls(&ctx()).await.unwrap();
    p.active_calls(&ctx()).await.unwrap();
    assert_eq!(hits(&server).await, 2 * b.requests_per_list);
}

async fn asks_its_documented_path_under_a_base_url_with_a_path_and_a_slash(b: &Backend) {
    let server = MockServer::start().await;
    Mock::given(method(b.method))
        .and(path(format!("/prefix{}", b.path)))
        .respond_with(b.answering(&[("x", b.statuses[0].0)]))
        .mount(&server)
        .await;
    let p = b.build(&format!("{}/prefix/", server.uri()), "");
    assert_eq!(p.active_calls(&ctx()).await.unwrap().len(), 1);
}

async fn turns_an_error_status_into_an_error_and_401_or_403_into_a_rejection(b: &Backend) {
    for (status, expected) in [
        (500, ProviderError::Status(500)),
        (404, ProviderError::Status(404)),
        (401, ProviderError::Rejected(401)),
        (403, ProviderError::Rejected(403)),
    ] {
        let server = b.raw(status, "{}").await;
        assert_eq!(
            b.build(&server.uri(), "").active_calls(&ctx()).await,
            Err(expected)
        );
    }
}

async fn gives_up_on_a_silent_upstream_at_its_timeout(b: &Backend) {
    let url = silent_server().await;
    let p = b.build(&url, "timeout_ms = 200");
    let started = Instant::now();
    assert_eq!(
        p.active_calls(&ctx()).await,
        Err(ProviderError::Timeout(200))
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

async fn reports_a_refused_connection_as_unreachable(b: &Backend) {
    let p = b.build(&refused_url().await, "");
    assert!(matches!(
        p.active_calls(&ctx()).await,
        Err(ProviderError::Unreachable(_))
    ));
}

async fn refuses_an_answer_over_its_body_cap(b: &Backend) {
    let big: Vec<(String, &str)> = (0..200)
        .map(|i| (format!("call-{i}"), b.statuses[0].0))
        .collect();
    let refs: Vec<(&str, &str)> = big.iter().map(|(id, s)| (id.as_str(), *s)).collect();
    let (server, _) = b.serving(&refs).await;
    let p = b.build(&server.uri(), "max_body_bytes = 2048");
    assert_eq!(
        p.active_calls(&ctx()).await,
        Err(ProviderError::TooLarge(2048))
    );
}

async fn waits_out_a_429s_retry_after_within_its_deadline(b: &Backend) {
    let server = MockServer::start().await;
    Mock::given(method(b.method))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "1"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method(b.method))
        .and(path(b.path))
        .respond_with(b.answering(&[("after", b.statuses[0].0)]))
        .with_priority(5)
        .mount(&server)
        .await;
    let started = Instant::now();
    let calls = b
        .build(&server.uri(), "timeout_ms = 5000")
        .active_calls(&ctx())
        .await
        .unwrap();
    assert_eq!(calls[0].call_id, "after");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(900), "{waited:?}");
}

async fn retries_a_429_without_retry_after_once_then_is_rate_limited(b: &Backend) {
    let server = b.raw(429, "{}").await;
    let got = b
        .build(&server.uri(), "retries = 1")
        .active_calls(&ctx())
        .await;
    assert_eq!(got, Err(ProviderError::RateLimited));
    // At least one list asked twice; a kind asking in several requests may give up on the
    // others once one is rate limited.
    let asked = hits(&server).await;
    assert!(
        (2..=2 * b.requests_per_list).contains(&asked),
        "{asked} requests"
    );
}

async fn fails_at_once_on_a_429_whose_retry_after_outlasts_its_deadline(b: &Backend) {
    let server = MockServer::start().await;
    Mock::given(method(b.method))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "30"))
        .mount(&server)
        .await;
    let started = Instant::now();
    let got = b
        .build(&server.uri(), "timeout_ms = 2000\nretries = 3")
        .active_calls(&ctx())
        .await;
    assert_eq!(got, Err(ProviderError::RateLimited));
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1_500), "{took:?}");
    assert!(hits(&server).await <= b.requests_per_list);
}

// ---- every kind that pages ----

fn paging(b: &Backend) -> Paging {
    b.paging.expect("a kind in paging_suite! has paging")
}

async fn stops_an_endless_list_at_max_pages_as_its_error(b: &Backend) {
    let server = b.paging(paging(b).endless, Duration::ZERO).await;
    let got = b
        .build(&server.uri(), "max_pages = 4")
        .active_calls(&ctx())
        .await;
    assert!(
        matches!(&got, Err(ProviderError::Paging(m)) if m.contains("max_pages")),
        "{got:?}"
    );
    assert_eq!(got.unwrap_err().code(), "UPSTREAM_ENDLESS_LIST");
    let asked = hits(&server).await;
    assert!(
        (4..=4 * b.requests_per_list).contains(&asked),
        "{asked} requests"
    );
}

async fn refuses_a_link_to_a_page_it_was_given_already(b: &Backend) {
    let server = b.paging(paging(b).looping, Duration::ZERO).await;
    let got = b.build(&server.uri(), "").active_calls(&ctx()).await;
    assert!(
        matches!(&got, Err(ProviderError::Paging(m)) if m.contains("twice")),
        "{got:?}"
    );
    let asked = hits(&server).await;
    assert!(
        (2..=2 * b.requests_per_list).contains(&asked),
        "{asked} requests"
    );
}

async fn gives_every_page_one_deadline_not_one_each(b: &Backend) {
    // Each page alone answers well within the timeout; all of them do not.
    let server = b
        .paging(paging(b).endless, Duration::from_millis(150))
        .await;
    let started = Instant::now();
    let got = b
        .build(&server.uri(), "timeout_ms = 400")
        .active_calls(&ctx())
        .await;
    assert_eq!(got, Err(ProviderError::Timeout(400)));
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "{took:?}");
    let asked = hits(&server).await;
    assert!(asked <= 3 * b.requests_per_list, "{asked} requests");
}

macro_rules! checks {
    ($name:ident, $fixture:ident, $arg:ty: $($check:ident),+ $(,)?) => {
        #[allow(non_snake_case)]
        mod $name {
            $(
                #[tokio::test]
                async fn $check() {
                    let fixture: $arg = &super::$fixture;
                    super::$check(fixture).await;
                }
            )+
        }
    };
}

/// Every kind's checks, per fixture; and the fixtures, for the registry's check.
macro_rules! suite {
    ($($name:ident = $fixture:ident),+ $(,)?) => {
        $(
            checks!($name, $fixture, &dyn super::Fixture:
                reports_every_call_it_serves_with_its_id_and_status,
                keeps_an_unknown_status_verbatim,
                hands_out_the_same_calls_for_an_unchanged_answer_and_new_ones_for_a_changed_one,
                reads_an_empty_list_as_no_calls,
                turns_an_unreadable_answer_into_a_bad_response_and_recovers,
                is_listed_through_the_server_merged_with_another_providers_calls,
                costs_only_its_own_calls_when_it_fails_and_is_named,
                one_call_listed_by_two_providers_is_one_row_as_the_first_in_the_org_listed_it,
                shows_its_credential_neither_in_debug_output_nor_in_the_check_config_summary,
            );
        )+
        const FIXTURES: &[&dyn Fixture] = &[$(&$fixture),+];
    };
}

/// The HTTP checks, per HTTP kind.
macro_rules! http_suite {
    ($($name:ident = $backend:ident),+ $(,)?) => {
        $(
            checks!($name, $backend, &super::Backend:
                asks_the_upstream_on_every_ask_it_does_not_share,
                asks_its_documented_path_under_a_base_url_with_a_path_and_a_slash,
                turns_an_error_status_into_an_error_and_401_or_403_into_a_rejection,
                gives_up_on_a_silent_upstream_at_its_timeout,
                reports_a_refused_connection_as_unreachable,
                refuses_an_answer_over_its_body_cap,
                waits_out_a_429s_retry_after_within_its_deadline,
                retries_a_429_without_retry_after_once_then_is_rate_limited,
                fails_at_once_on_a_429_whose_retry_after_outlasts_its_deadline,
            );
        )+
        const HTTP_KINDS: &[&str] = &[$($backend.kind),+];
    };
}

/// The paging checks, per kind whose list can take several pages.
macro_rules! paging_suite {
    ($($name:ident = $backend:ident),+ $(,)?) => {
        $(
            checks!($name, $backend, &super::Backend:
                stops_an_endless_list_at_max_pages_as_its_error,
                refuses_a_link_to_a_page_it_was_given_already,
                gives_every_page_one_deadline_not_one_each,
            );
        )+
        const PAGING_KINDS: &[&str] = &[$($backend.kind),+];
    };
}

suite!(
    TWILIO_MEDIA_STREAM = TWILIO,
    BLAND_ = BLAND,
    RETELL_ = RETELL,
    STATIC_IN_THE_CALLS_SHAPE = STATIC_CALLS,
    STATIC_IN_THE_BLAND_SHAPE = STATIC_BLAND,
    TWILIO_REST_API = TWILIO_REST,
    VAPI_ = VAPI,
);
http_suite!(
    TWILIO_MEDIA_STREAM_HTTP = TWILIO,
    BLAND_HTTP = BLAND,
    TWILIO_REST_API_HTTP = TWILIO_REST,
    RETELL_HTTP = RETELL,
    VAPI_HTTP = VAPI,
);
paging_suite!(
    TWILIO_REST_API_PAGING = TWILIO_REST,
    RETELL_PAGING = RETELL,
    VAPI_PAGING = VAPI,
);

#[test]
fn every_kind_in_the_registry_has_a_conformance_fixture() {
    for name in callmux::provider::registry::names() {
        assert!(
            FIXTURES.iter().any(|f| f.kind() == name),
            "kind {name} has no fixture in the conformance suite: add one to tests/it/common/kinds.rs \
             and a line to suite! in tests/it/conformance.rs"
        );
    }
}

#[test]
fn every_http_kind_runs_the_http_checks_and_every_kind_that_pages_the_paging_checks() {
    for http in FIXTURES.iter().filter_map(|f| f.http()) {
        assert!(
            HTTP_KINDS.contains(&http.kind),
            "kind {} speaks HTTP but has no line in http_suite!",
            http.kind
        );
        assert_eq!(
            http.paging.is_some(),
            PAGING_KINDS.contains(&http.kind),
            "kind {}: its fixture's paging and its line in paging_suite! disagree",
            http.kind
        );
    }
}

// ---- backend-specific ----

#[tokio::test]
async fn a_bland_provider_with_its_own_key_never_forwards_the_callers() {
    let server = bland_server(SECRET, "conformance-org", json!([])).await;
    BLAND
        .build(&server.uri(), "")
        .active_calls(&ctx())
        .await
        .unwrap();
    let req = &server.received_requests().await.unwrap()[0];
    assert_eq!(req.headers["authorization"], SECRET);
    assert_eq!(req.headers["x-bland-org-id"], "conformance-org");
}

#[tokio::test]
async fn a_bland_provider_without_a_key_forwards_the_callers_or_refuses_without_one() {
    let server = bland_server("caller-key", "caller-org", json!([])).await;
    let toml = format!(
        "[orgs.o]\nauth = \"p\"\nproviders = [\"p\"]\n[providers.p]\nkind = \"bland\"\nbase_url = \"{}\"",
        server.uri()
    );
    let config = load_config(&toml, &[]).unwrap();
    let spec = config.provider("p").unwrap();
    let p = spec.kind.build(Arc::from("p"), &spec.common).unwrap().list;
    assert!(p.active_calls(&ctx()).await.unwrap().is_empty());
    let no_creds = RequestContext {
        org_id: Arc::from("o"),
        forwarded: None,
    };
    assert_eq!(
        p.active_calls(&no_creds).await,
        Err(ProviderError::NoCredentials)
    );
}

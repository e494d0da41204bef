//! The provider conformance suite: one set of checks that every backend kind runs, each
//! against a real HTTP upstream on loopback.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;
use callmux::call::CallStatus;
use callmux::provider::{self, ForwardedCredentials, Provider, ProviderError, RequestContext};
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// What the suite needs to know of a backend kind.
struct Backend {
    kind: &'static str,
    /// The path the backend must GET, relative to its base URL.
    path: &'static str,
    /// Extra TOML lines the provider table needs.
    settings: &'static str,
    /// The upstream's answer listing `calls`, given as (call_id, wire status).
    body: fn(&[(&str, &str)]) -> Value,
    /// Wire statuses and the canonical status each reads as.
    statuses: &'static [(&'static str, CallStatus)],
}

const TWILIO: Backend = Backend {
    kind: "twilio-media-stream",
    path: "/api/calls",
    settings: "",
    body: |calls| {
        let calls: Vec<Value> = calls
            .iter()
            .map(|(id, s)| agent_call(id, "+1", s, "outbound"))
            .collect();
        json!({"calls": calls, "count": calls.len()})
    },
    statuses: &[
        ("initiating", CallStatus::Queued),
        ("ringing", CallStatus::Ringing),
        ("in-progress", CallStatus::InProgress),
        ("completed", CallStatus::Completed),
        ("failed", CallStatus::Failed),
        ("busy", CallStatus::Busy),
        ("no-answer", CallStatus::NoAnswer),
        ("canceled", CallStatus::Canceled),
    ],
};

const BLAND: Backend = Backend {
    kind: "bland",
    path: "/v1/calls/active",
    settings: "api_key_env = \"CONFORMANCE_KEY\"\norg_id = \"conformance-org\"",
    body: |calls| {
        let calls: Vec<Value> = calls
            .iter()
            .map(|(id, s)| bland_call(id, s, "1758656817432"))
            .collect();
        json!({"data": calls, "errors": null})
    },
    statuses: &[
        ("QUEUED", CallStatus::Queued),
        ("IN_PROGRESS", CallStatus::InProgress),
        ("COMPLETED", CallStatus::Completed),
        ("FAILED", CallStatus::Failed),
        ("BUSY", CallStatus::Busy),
        ("NO_ANSWER", CallStatus::NoAnswer),
        ("CANCELED", CallStatus::Canceled),
    ],
};

impl Backend {
    /// Builds the backend against `base_url` through the public config path.
    fn build(&self, base_url: &str, extra: &str) -> Arc<dyn Provider> {
        let toml = format!(
            "[orgs.o]\napi_key_sha256 = \"{}\"\nproviders = [\"p\"]\n[providers.p]\nkind = \"{}\"\nbase_url = \"{base_url}\"\n{}\n{extra}",
            "a".repeat(64),
            self.kind,
            self.settings,
        );
        let config = load_config(&toml, &[("CONFORMANCE_KEY", "k")]).expect("valid config");
        provider::build(config.provider("p").unwrap()).expect("builds")
    }

    async fn serving(&self, body: Value) -> (MockServer, Arc<dyn Provider>) {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path(self.path))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
            .mount(&server)
            .await;
        let p = self.build(&server.uri(), "");
        (server, p)
    }
}

fn ctx() -> RequestContext {
    RequestContext {
        org_id: Arc::from("o"),
        forwarded: Some(ForwardedCredentials::new(
            "caller-key".parse().unwrap(),
            "caller-org".parse().unwrap(),
        )),
    }
}

async fn reports_every_call_it_serves_with_its_id_and_status(b: &Backend) {
    let calls: Vec<(String, &str)> = b
        .statuses
        .iter()
        .enumerate()
        .map(|(i, (s, _))| (format!("c{i}"), *s))
        .collect();
    let refs: Vec<(&str, &str)> = calls.iter().map(|(id, s)| (id.as_str(), *s)).collect();
    let (_server, p) = b.serving((b.body)(&refs)).await;
    let got = p.active_calls(&ctx()).await.unwrap();
    assert_eq!(got.len(), b.statuses.len());
    for (call, (i, (_, status))) in got.iter().zip(b.statuses.iter().enumerate()) {
        assert_eq!(call.call_id, format!("c{i}"));
        assert_eq!(&call.status, status);
        assert_eq!(&*call.provider, "p");
    }
}

async fn keeps_an_unknown_status_verbatim(b: &Backend) {
    let (_server, p) = b.serving((b.body)(&[("x", "Warming-Up")])).await;
    let got = p.active_calls(&ctx()).await.unwrap();
    assert_eq!(got[0].status, CallStatus::Other("Warming-Up".into()));
}

async fn hands_out_the_same_calls_for_an_unchanged_answer_without_parsing_again(b: &Backend) {
    let (server, p) = b.serving((b.body)(&[("x", b.statuses[0].0)])).await;
    let first = p.active_calls(&ctx()).await.unwrap();
    let second = p.active_calls(&ctx()).await.unwrap();
    assert_eq!(hits(&server).await, 2);
    assert!(
        Arc::ptr_eq(&first, &second),
        "an unchanged body was parsed again"
    );

    server.reset().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json((b.body)(&[("y", b.statuses[0].0)])))
        .mount(&server)
        .await;
    let changed = p.active_calls(&ctx()).await.unwrap();
    assert_eq!(changed[0].call_id, "y");
}

async fn reads_an_empty_list_as_no_calls(b: &Backend) {
    let (_server, p) = b.serving((b.body)(&[])).await;
    assert!(p.active_calls(&ctx()).await.unwrap().is_empty());
}

async fn asks_its_documented_path_under_a_base_url_with_a_path_and_a_slash(b: &Backend) {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("/prefix{}", b.path)))
        .respond_with(ResponseTemplate::new(200).set_body_json((b.body)(&[("x", b.statuses[0].0)])))
        .mount(&server)
        .await;
    let p = b.build(&format!("{}/prefix/", server.uri()), "");
    assert_eq!(p.active_calls(&ctx()).await.unwrap().len(), 1);
}

async fn turns_an_error_status_into_an_error_and_401_into_a_rejection(b: &Backend) {
    for (status, expected) in [
        (500, ProviderError::Status(500)),
        (404, ProviderError::Status(404)),
        (401, ProviderError::Rejected(401)),
    ] {
        let server = raw_server(status, "{}").await;
        assert_eq!(
            b.build(&server.uri(), "").active_calls(&ctx()).await,
            Err(expected)
        );
    }
}

async fn turns_an_unreadable_body_into_a_bad_response(b: &Backend) {
    for body in [
        "",
        "null",
        "{",
        "<html>",
        "{\"calls\": 5, \"data\": 5}",
        "\u{feff}{}",
    ] {
        let server = raw_server(200, body).await;
        let got = b.build(&server.uri(), "").active_calls(&ctx()).await;
        assert!(
            matches!(got, Err(ProviderError::BadBody(_))),
            "{body:?}: {got:?}"
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
    let (server, _) = b.serving((b.body)(&refs)).await;
    let p = b.build(&server.uri(), "max_body_bytes = 2048");
    assert_eq!(
        p.active_calls(&ctx()).await,
        Err(ProviderError::TooLarge(2048))
    );
}

macro_rules! conformance {
    ($backend:ident: $($check:ident),+ $(,)?) => {
        #[allow(non_snake_case)]
        mod $backend {
            $(
                #[tokio::test]
                async fn $check() {
                    super::$check(&super::$backend).await;
                }
            )+
        }
    };
}

macro_rules! suite {
    ($($backend:ident),+) => {
        $(
            conformance!($backend:
                reports_every_call_it_serves_with_its_id_and_status,
                keeps_an_unknown_status_verbatim,
                hands_out_the_same_calls_for_an_unchanged_answer_without_parsing_again,
                reads_an_empty_list_as_no_calls,
                asks_its_documented_path_under_a_base_url_with_a_path_and_a_slash,
                turns_an_error_status_into_an_error_and_401_into_a_rejection,
                turns_an_unreadable_body_into_a_bad_response,
                gives_up_on_a_silent_upstream_at_its_timeout,
                reports_a_refused_connection_as_unreachable,
                refuses_an_answer_over_its_body_cap,
            );
        )+
    };
}

suite!(TWILIO, BLAND);

// ---- backend-specific ----

#[tokio::test]
async fn a_bland_provider_with_its_own_key_never_forwards_the_callers() {
    let server = bland_server("k", "conformance-org", json!([])).await;
    BLAND
        .build(&server.uri(), "")
        .active_calls(&ctx())
        .await
        .unwrap();
    let req = &server.received_requests().await.unwrap()[0];
    assert_eq!(req.headers["authorization"], "k");
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
    let p = provider::build(config.provider("p").unwrap()).unwrap();
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

//! The provider conformance suite: one set of checks that every kind runs through a
//! fixture — an upstream of the kind's own protocol that lists the calls it is given, in the
//! kind's documented wire shape — plus the checks every HTTP kind runs against a real
//! upstream on loopback.
//!
//! Adding a kind: a `Fixture` for it, and one line in `suite!` (and in `http_suite!` if it
//! speaks HTTP).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use callmux::call::CallStatus;
use callmux::provider::{ForwardedCredentials, ListCalls, ProviderError, RequestContext};
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::*;

/// A kind as the suite sees it.
#[async_trait]
trait Fixture: Sync {
    /// Wire statuses and the canonical status each reads as.
    fn statuses(&self) -> &'static [(&'static str, CallStatus)];
    /// An upstream listing `calls`, given as (call_id, wire status), and the provider `p`
    /// built against it through the public config path.
    async fn start(&self, calls: &[(&str, &str)]) -> Box<dyn Upstream>;
}

/// A running upstream of a fixture.
#[async_trait]
trait Upstream: Send + Sync {
    fn provider(&self) -> Arc<dyn ListCalls>;
    /// From now on, lists these calls instead.
    async fn set(&self, calls: &[(&str, &str)]);
    /// From now on, answers with exactly this body.
    async fn set_raw(&self, body: &str);
}

/// Builds provider `p` from its kind's TOML lines, as a config file would.
fn build(kind_lines: &str) -> Arc<dyn ListCalls> {
    let toml = format!(
        "[orgs.o]\napi_key_sha256 = \"{}\"\nproviders = [\"p\"]\n[providers.p]\n{kind_lines}",
        "a".repeat(64),
    );
    let config = load_config(&toml, &[("CONFORMANCE_KEY", "k")]).expect("valid config");
    let spec = config.provider("p").unwrap();
    spec.kind
        .build(Arc::from("p"), &spec.common)
        .expect("builds")
        .list
}

// ---- HTTP kinds ----

/// What the suite needs to know of an HTTP kind.
struct Backend {
    kind: &'static str,
    /// The method the backend lists with: `GET`, or `POST` for an upstream whose list
    /// request carries a body (Retell's filter).
    method: &'static str,
    /// The path the backend must ask, relative to its base URL.
    path: &'static str,
    /// Extra TOML lines the provider table needs.
    settings: &'static str,
    /// The upstream's answer listing `calls`, given as (call_id, wire status).
    body: fn(&[(&str, &str)]) -> Value,
    /// Whether a call in this wire status is in the answer to this request: a kind that
    /// lists in several requests (one per status) finds each call in one of them.
    answers: fn(&wiremock::Request, &str) -> bool,
    /// How many requests one list of calls that fits in one page takes.
    requests_per_list: usize,
    /// Wire statuses and the canonical status each reads as.
    statuses: &'static [(&'static str, CallStatus)],
}

/// A kind that lists in one request finds every call in its answer.
fn one_request(_: &wiremock::Request, _: &str) -> bool {
    true
}

const TWILIO: Backend = Backend {
    kind: "twilio-media-stream",
    method: "GET",
    path: "/api/calls",
    settings: "",
    body: |calls| {
        let calls: Vec<Value> = calls
            .iter()
            .map(|(id, s)| agent_call(id, "+1", s, "outbound"))
            .collect();
        json!({"calls": calls, "count": calls.len()})
    },
    answers: one_request,
    requests_per_list: 1,
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
    method: "GET",
    path: "/v1/calls/active",
    settings: "api_key_env = \"CONFORMANCE_KEY\"\norg_id = \"conformance-org\"",
    body: |calls| {
        let calls: Vec<Value> = calls
            .iter()
            .map(|(id, s)| bland_call(id, s, "1758656817432"))
            .collect();
        json!({"data": calls, "errors": null})
    },
    answers: one_request,
    requests_per_list: 1,
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

/// `twilio`: the REST API's Calls list, one request per live status.
const TWILIO_REST: Backend = Backend {
    kind: "twilio",
    method: "GET",
    path: crate::twilio::CALLS_PATH,
    settings: concat!(
        "account_sid = \"AC7e1c02f6a58b4d3e9f10c2d4b6a8e0f1\"\n",
        "auth_token_env = \"CONFORMANCE_KEY\"",
    ),
    body: |calls| {
        let calls = calls
            .iter()
            .map(|(id, s)| crate::twilio::twilio_call(id, s, "outbound-api"))
            .collect();
        crate::twilio::twilio_page(calls, None)
    },
    // Each live status's call in the answer to its own `Status`; ended and unknown ones, as
    // if they moved on while Twilio answered, in the answer for `queued`.
    answers: |request, status| {
        let asked = request
            .url
            .query_pairs()
            .find(|(k, _)| k == "Status")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        match status {
            "queued" | "ringing" | "in-progress" => asked == status,
            _ => asked == "queued",
        }
    },
    requests_per_list: 3,
    statuses: &[
        ("queued", CallStatus::Queued),
        ("ringing", CallStatus::Ringing),
        ("in-progress", CallStatus::InProgress),
        ("completed", CallStatus::Completed),
        ("busy", CallStatus::Busy),
        ("failed", CallStatus::Failed),
        ("no-answer", CallStatus::NoAnswer),
        ("canceled", CallStatus::Canceled),
    ],
};

/// Retell lists in pages; the suite's lists fit on one, as the documented last page: its
/// `pagination_key` set, `has_more` false.
const RETELL: Backend = Backend {
    kind: "retell",
    method: "POST",
    path: "/v3/list-calls",
    settings: "api_key_env = \"CONFORMANCE_KEY\"",
    body: |calls| {
        let items: Vec<Value> = calls
            .iter()
            .map(|(id, s)| crate::retell::phone_call(id, s, &format!("CA-{id}")))
            .collect();
        let last = calls.last().map(|(id, _)| *id).unwrap_or("none");
        json!({"pagination_key": last, "has_more": false, "items": items})
    },
    answers: one_request,
    requests_per_list: 1,
    statuses: &[
        ("registered", CallStatus::Queued),
        ("ongoing", CallStatus::InProgress),
        ("ended", CallStatus::Completed),
        ("error", CallStatus::Failed),
        ("not_connected", CallStatus::NoAnswer),
    ],
};

const VAPI: Backend = Backend {
    kind: "vapi",
    method: "GET",
    path: "/call",
    settings: "api_key_env = \"CONFORMANCE_KEY\"",
    body: |calls| {
        let calls: Vec<Value> = calls
            .iter()
            .map(|(id, s)| vapi_call(id, s, "outboundPhoneCall", "2024-09-10T11:14:12.339Z"))
            .collect();
        json!(calls)
    },
    answers: one_request,
    requests_per_list: 1,
    statuses: &[
        ("scheduled", CallStatus::Queued),
        ("queued", CallStatus::Queued),
        ("ringing", CallStatus::Ringing),
        ("in-progress", CallStatus::InProgress),
        ("forwarding", CallStatus::InProgress),
        ("ended", CallStatus::Completed),
        ("not-found", CallStatus::Canceled),
        ("deletion-failed", CallStatus::Failed),
    ],
};

impl Backend {
    /// Answers each request with the upstream's body listing those of `calls` it holds.
    fn answering(&self, calls: &[(&str, &str)]) -> impl wiremock::Respond {
        answering(self.body, self.answers, calls)
    }

    /// Builds the backend against `base_url` through the public config path.
    fn build(&self, base_url: &str, extra: &str) -> Arc<dyn ListCalls> {
        build(&format!(
            "kind = \"{}\"\nbase_url = \"{base_url}\"\n{}\n{extra}",
            self.kind, self.settings,
        ))
    }

    async fn serving(&self, calls: &[(&str, &str)]) -> (MockServer, Arc<dyn ListCalls>) {
        let server = MockServer::start().await;
        Mock::given(method(self.method))
            .and(path(self.path))
            .respond_with(self.answering(calls))
            .mount(&server)
            .await;
        let p = self.build(&server.uri(), "");
        (server, p)
    }

    /// An upstream answering every request of the kind's method with this status and body.
    async fn raw(&self, status: u16, body: &str) -> MockServer {
        let server = MockServer::start().await;
        Mock::given(method(self.method))
            .respond_with(
                ResponseTemplate::new(status).set_body_raw(body.to_owned(), "application/json"),
            )
            .mount(&server)
            .await;
        server
    }
}

fn answering(
    body: fn(&[(&str, &str)]) -> Value,
    answers: fn(&wiremock::Request, &str) -> bool,
    calls: &[(&str, &str)],
) -> impl wiremock::Respond {
    let calls: Vec<(String, String)> = calls
        .iter()
        .map(|(id, s)| (id.to_string(), s.to_string()))
        .collect();
    move |request: &wiremock::Request| {
        let held: Vec<(&str, &str)> = calls
            .iter()
            .filter(|(_, s)| answers(request, s))
            .map(|(id, s)| (id.as_str(), s.as_str()))
            .collect();
        ResponseTemplate::new(200).set_body_json(body(&held))
    }
}

struct HttpUpstream {
    server: MockServer,
    method: &'static str,
    path: &'static str,
    body: fn(&[(&str, &str)]) -> Value,
    answers: fn(&wiremock::Request, &str) -> bool,
    provider: Arc<dyn ListCalls>,
}

#[async_trait]
impl Fixture for Backend {
    fn statuses(&self) -> &'static [(&'static str, CallStatus)] {
        self.statuses
    }

    async fn start(&self, calls: &[(&str, &str)]) -> Box<dyn Upstream> {
        let (server, provider) = self.serving(calls).await;
        Box::new(HttpUpstream {
            server,
            method: self.method,
            path: self.path,
            body: self.body,
            answers: self.answers,
            provider,
        })
    }
}

#[async_trait]
impl Upstream for HttpUpstream {
    fn provider(&self) -> Arc<dyn ListCalls> {
        self.provider.clone()
    }

    async fn set(&self, calls: &[(&str, &str)]) {
        self.server.reset().await;
        Mock::given(method(self.method))
            .and(path(self.path))
            .respond_with(answering(self.body, self.answers, calls))
            .mount(&self.server)
            .await;
    }

    async fn set_raw(&self, body: &str) {
        self.server.reset().await;
        Mock::given(method(self.method))
            .respond_with(
                ResponseTemplate::new(200).set_body_raw(body.to_owned(), "application/json"),
            )
            .mount(&self.server)
            .await;
    }
}

// ---- the static kind ----

/// `static`: the calls in a file, in the calls shape or in Bland's.
struct Static {
    shape: &'static Backend,
}

const STATIC_CALLS: Static = Static { shape: &TWILIO };
const STATIC_BLAND: Static = Static { shape: &BLAND };

struct StaticUpstream {
    _dir: tempfile::TempDir,
    file: std::path::PathBuf,
    body: fn(&[(&str, &str)]) -> Value,
    provider: Arc<dyn ListCalls>,
}

#[async_trait]
impl Fixture for Static {
    fn statuses(&self) -> &'static [(&'static str, CallStatus)] {
        self.shape.statuses
    }

    async fn start(&self, calls: &[(&str, &str)]) -> Box<dyn Upstream> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("calls.json");
        std::fs::write(&file, (self.shape.body)(calls).to_string()).unwrap();
        let provider = build(&format!("kind = \"static\"\npath = \"{}\"", file.display()));
        Box::new(StaticUpstream {
            _dir: dir,
            file,
            body: self.shape.body,
            provider,
        })
    }
}

#[async_trait]
impl Upstream for StaticUpstream {
    fn provider(&self) -> Arc<dyn ListCalls> {
        self.provider.clone()
    }

    async fn set(&self, calls: &[(&str, &str)]) {
        std::fs::write(&self.file, (self.body)(calls).to_string()).unwrap();
    }

    async fn set_raw(&self, body: &str) {
        std::fs::write(&self.file, body).unwrap();
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

async fn turns_an_error_status_into_an_error_and_401_into_a_rejection(b: &Backend) {
    for (status, expected) in [
        (500, ProviderError::Status(500)),
        (404, ProviderError::Status(404)),
        (401, ProviderError::Rejected(401)),
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

/// Every kind's checks, per fixture.
macro_rules! suite {
    ($($name:ident = $fixture:ident),+ $(,)?) => {
        $(
            checks!($name, $fixture, &dyn super::Fixture:
                reports_every_call_it_serves_with_its_id_and_status,
                keeps_an_unknown_status_verbatim,
                hands_out_the_same_calls_for_an_unchanged_answer_and_new_ones_for_a_changed_one,
                reads_an_empty_list_as_no_calls,
                turns_an_unreadable_answer_into_a_bad_response_and_recovers,
            );
        )+
    };
}

/// The HTTP checks, per HTTP kind.
macro_rules! http_suite {
    ($($name:ident = $backend:ident),+ $(,)?) => {
        $(
            checks!($name, $backend, &super::Backend:
                asks_the_upstream_on_every_ask_it_does_not_share,
                asks_its_documented_path_under_a_base_url_with_a_path_and_a_slash,
                turns_an_error_status_into_an_error_and_401_into_a_rejection,
                gives_up_on_a_silent_upstream_at_its_timeout,
                reports_a_refused_connection_as_unreachable,
                refuses_an_answer_over_its_body_cap,
            );
        )+
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

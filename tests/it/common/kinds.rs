//! One conformance fixture per kind: an upstream of the kind's own protocol on loopback (or
//! its file) that lists the calls it is given in the kind's documented wire shape, fails,
//! rate-limits and pages as the conformance suite asks, and the provider built against it
//! through the public config path.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use callmux::call::{time, CallStatus};
use callmux::provider::{ForwardedCredentials, ListCalls, RequestContext};
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::{agent_call, bland_call, load_config, sha256_hex, vapi_call};

/// The variable every fixture's credential is read from, and the credential: the suite looks
/// for it, and for its tail, in everything callmux shows.
pub const SECRET_VAR: &str = "CONFORMANCE_KEY";
pub const SECRET: &str = "conformance-SECRET-key-5d0c7a91e3f2b8";

/// A kind as the suite sees it.
#[async_trait]
pub trait Fixture: Sync {
    /// The kind's name in the registry.
    fn kind(&self) -> &'static str;
    /// Wire statuses and the canonical status each reads as.
    fn statuses(&self) -> &'static [(&'static str, CallStatus)];
    /// An upstream listing `calls`, given as (call_id, wire status).
    async fn start(&self, calls: &[(&str, &str)]) -> Box<dyn Upstream>;
    /// The kind as an HTTP upstream, for a kind that speaks HTTP.
    fn http(&self) -> Option<&Backend> {
        None
    }

    /// A wire status of a call that is still going on.
    fn live(&self) -> &'static str {
        self.live_two()[0]
    }

    /// Two wire statuses of calls still going on, that read as different statuses.
    fn live_two(&self) -> [&'static str; 2] {
        let mut live = self.statuses().iter().filter(|(_, s)| s.is_active());
        let (first, status) = live.next().expect("a kind lists live calls");
        let (second, _) = live
            .find(|(_, s)| s != status)
            .expect("a kind has two live statuses");
        [first, second]
    }
}

/// A running upstream of a fixture.
#[async_trait]
pub trait Upstream: Send + Sync {
    /// The provider table's lines for a provider of this upstream (without `[providers.x]`).
    fn lines(&self) -> String;
    /// Provider `p` built from [`Upstream::lines`].
    fn provider(&self) -> Arc<dyn ListCalls>;
    /// From now on, lists these calls instead.
    async fn set(&self, calls: &[(&str, &str)]);
    /// From now on, answers with exactly this body.
    async fn set_raw(&self, body: &str);
}

/// A config of org `o` (key `org-key`) listing `providers`, each given as (id, table lines),
/// in that order.
pub fn org_toml(providers: &[(&str, &str)]) -> String {
    let ids: Vec<String> = providers.iter().map(|(id, _)| format!("{id:?}")).collect();
    let mut toml = format!(
        "[orgs.o]\napi_key_sha256 = \"{}\"\nproviders = [{}]\n",
        sha256_hex("org-key"),
        ids.join(", "),
    );
    for (id, lines) in providers {
        toml.push_str(&format!("[providers.{id}]\n{lines}\n"));
    }
    toml
}

/// The environment the fixtures' configs read their credential from.
pub fn env() -> [(&'static str, &'static str); 1] {
    [(SECRET_VAR, SECRET)]
}

/// Builds provider `p` from its kind's TOML lines, as a config file would.
pub fn build(kind_lines: &str) -> Arc<dyn ListCalls> {
    let config = load_config(&org_toml(&[("p", kind_lines)]), &env()).expect("valid config");
    let spec = config.provider("p").unwrap();
    spec.kind
        .build(Arc::from("p"), &spec.common)
        .expect("builds")
        .list
}

/// What a caller of callmux sends: its own upstream credentials too, for a kind that
/// forwards them.
pub fn ctx() -> RequestContext {
    RequestContext {
        org_id: Arc::from("o"),
        forwarded: Some(ForwardedCredentials::new(
            "caller-key".parse().unwrap(),
            "caller-org".parse().unwrap(),
        )),
    }
}

// ---- HTTP kinds ----

/// What the suite needs to know of an HTTP kind.
#[derive(Clone, Copy)]
pub struct Backend {
    pub kind: &'static str,
    /// The method the backend lists with: `GET`, or `POST` for an upstream whose list
    /// request carries a body (Retell's filter).
    pub method: &'static str,
    /// The path the backend must ask, relative to its base URL.
    pub path: &'static str,
    /// Extra TOML lines the provider table needs.
    pub settings: &'static str,
    /// The upstream's answer listing `calls`, given as (call_id, wire status).
    pub body: fn(&[(&str, &str)]) -> Value,
    /// Whether a call in this wire status is in the answer to this request: a kind that
    /// lists in several requests (one per status) finds each call in one of them.
    pub answers: fn(&wiremock::Request, &str) -> bool,
    /// How many requests one list of calls that fits in one page takes.
    pub requests_per_list: usize,
    /// Wire statuses and the canonical status each reads as.
    pub statuses: &'static [(&'static str, CallStatus)],
    /// How the kind follows pages, for a kind whose list can take more than one.
    pub paging: Option<Paging>,
}

/// Pages of an upstream that never stops linking to more.
#[derive(Clone, Copy)]
pub struct Paging {
    /// The `n`th answer (from 0) of an upstream whose list never ends: a page that links to
    /// one not seen before.
    pub endless: fn(&wiremock::Request, usize) -> Value,
    /// A page whose link leads back to a page already asked for.
    pub looping: fn(&wiremock::Request, usize) -> Value,
}

/// A kind that lists in one request finds every call in its answer.
fn one_request(_: &wiremock::Request, _: &str) -> bool {
    true
}

/// The query parameter `name` of a request, or "".
fn query(request: &wiremock::Request, name: &str) -> String {
    request
        .url
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

pub const TWILIO: Backend = Backend {
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
    paging: None,
};

pub const BLAND: Backend = Backend {
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
    paging: None,
};

/// `twilio`: the REST API's Calls list, one request per live status.
pub const TWILIO_REST: Backend = Backend {
    kind: "twilio",
    method: "GET",
    path: super::bodies::twilio::CALLS_PATH,
    settings: concat!(
        "account_sid = \"AC7e1c02f6a58b4d3e9f10c2d4b6a8e0f1\"\n",
        "auth_token_env = \"CONFORMANCE_KEY\"",
    ),
    body: |calls| {
        let calls = calls
            .iter()
            .map(|(id, s)| super::bodies::twilio::twilio_call(id, s, "outbound-api"))
            .collect();
        super::bodies::twilio::twilio_page(calls, None)
    },
    // Each live status's call in the answer to its own `Status`; ended and unknown ones, as
    // if they moved on while Twilio answered, in the answer for `queued`.
    answers: |request, status| {
        let asked = query(request, "Status");
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
    // Every status's list links on by `next_page_uri`, as Twilio writes it.
    paging: Some(Paging {
        endless: |request, n| {
            let status = query(request, "Status");
            let call = super::bodies::twilio::twilio_call(
                &super::bodies::twilio::sid(n as u32),
                &status,
                "inbound",
            );
            let next = super::bodies::twilio::next_uri(&status, n as u32 + 1);
            super::bodies::twilio::twilio_page(vec![call], Some(&next))
        },
        looping: |request, _| {
            let status = query(request, "Status");
            let next = super::bodies::twilio::next_uri(&status, 1);
            super::bodies::twilio::twilio_page(vec![], Some(&next))
        },
    }),
};

/// Retell lists in pages; the suite's lists fit on one, as the documented last page: its
/// `pagination_key` set, `has_more` false.
pub const RETELL: Backend = Backend {
    kind: "retell",
    method: "POST",
    path: "/v3/list-calls",
    settings: "api_key_env = \"CONFORMANCE_KEY\"",
    body: |calls| {
        let items: Vec<Value> = calls
            .iter()
            .map(|(id, s)| super::bodies::retell::phone_call(id, s, &format!("CA-{id}")))
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
    // `has_more` with a `pagination_key` for the next request's body.
    paging: Some(Paging {
        endless: |_, n| {
            let call =
                super::bodies::retell::phone_call(&format!("c{n}"), "ongoing", &format!("CA{n}"));
            super::bodies::retell::page(vec![call], true, Some(&format!("k{n}")))
        },
        looping: |_, _| {
            let call = super::bodies::retell::phone_call("c", "ongoing", "CA1");
            super::bodies::retell::page(vec![call], true, Some("same"))
        },
    }),
};

/// A full Vapi page (its limit, 1,000 calls), live calls one second apart, the newest
/// created `newest` ms after the documented sample call's epoch.
fn vapi_full_page(prefix: &str, newest: u64) -> Value {
    let calls: Vec<Value> = (0..1000u64)
        .map(|i| {
            let created = time::to_iso8601(newest - i * 1000).unwrap();
            vapi_call(
                &format!("{prefix}-{i}"),
                "in-progress",
                "outboundPhoneCall",
                &created,
            )
        })
        .collect();
    json!(calls)
}

/// 2024-09-10T11:14:12.339Z, the `createdAt` of Vapi's documented sample call.
const VAPI_SAMPLE_CREATED: u64 = 1_725_966_852_339;

pub const VAPI: Backend = Backend {
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
    // A full page asks for the calls created before its oldest.
    paging: Some(Paging {
        endless: |_, n| {
            vapi_full_page(
                &format!("p{n}"),
                VAPI_SAMPLE_CREATED - n as u64 * 10_000_000,
            )
        },
        looping: |_, _| vapi_full_page("same", VAPI_SAMPLE_CREATED),
    }),
};

impl Backend {
    /// Answers each request with the upstream's body listing those of `calls` it holds.
    pub fn answering(&self, calls: &[(&str, &str)]) -> impl wiremock::Respond {
        answering(self.body, self.answers, calls)
    }

    /// The provider table's lines for this kind at `base_url`, with `extra` settings.
    pub fn lines(&self, base_url: &str, extra: &str) -> String {
        format!(
            "kind = \"{}\"\nbase_url = \"{base_url}\"\n{}\n{extra}",
            self.kind, self.settings,
        )
    }

    /// Builds the backend against `base_url` through the public config path.
    pub fn build(&self, base_url: &str, extra: &str) -> Arc<dyn ListCalls> {
        build(&self.lines(base_url, extra))
    }

    /// An upstream listing `calls`, on the kind's method and path.
    pub async fn server(&self, calls: &[(&str, &str)]) -> MockServer {
        let server = MockServer::start().await;
        Mock::given(method(self.method))
            .and(path(self.path))
            .respond_with(self.answering(calls))
            .mount(&server)
            .await;
        server
    }

    pub async fn serving(&self, calls: &[(&str, &str)]) -> (MockServer, Arc<dyn ListCalls>) {
        let server = self.server(calls).await;
        let p = self.build(&server.uri(), "");
        (server, p)
    }

    /// An upstream answering every request of the kind's method with this status and body.
    pub async fn raw(&self, status: u16, body: &str) -> MockServer {
        let server = MockServer::start().await;
        Mock::given(method(self.method))
            .respond_with(
                ResponseTemplate::new(status).set_body_raw(body.to_owned(), "application/json"),
            )
            .mount(&server)
            .await;
        server
    }

    /// An upstream whose every list links to another page, the `n`th request answered with
    /// `page(request, n)` after `delay`.
    pub async fn paging(
        &self,
        page: fn(&wiremock::Request, usize) -> Value,
        delay: std::time::Duration,
    ) -> MockServer {
        let server = MockServer::start().await;
        let n = AtomicUsize::new(0);
        Mock::given(method(self.method))
            .respond_with(move |request: &wiremock::Request| {
                let n = n.fetch_add(1, Ordering::SeqCst);
                ResponseTemplate::new(200)
                    .set_body_json(page(request, n))
                    .set_delay(delay)
            })
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
    backend: Backend,
    provider: Arc<dyn ListCalls>,
}

#[async_trait]
impl Fixture for Backend {
    fn kind(&self) -> &'static str {
        self.kind
    }

    fn http(&self) -> Option<&Backend> {
        Some(self)
    }

    fn statuses(&self) -> &'static [(&'static str, CallStatus)] {
        self.statuses
    }

    async fn start(&self, calls: &[(&str, &str)]) -> Box<dyn Upstream> {
        let (server, provider) = self.serving(calls).await;
        Box::new(HttpUpstream {
            server,
            backend: *self,
            provider,
        })
    }
}

#[async_trait]
impl Upstream for HttpUpstream {
    fn lines(&self) -> String {
        self.backend.lines(&self.server.uri(), "")
    }

    fn provider(&self) -> Arc<dyn ListCalls> {
        self.provider.clone()
    }

    async fn set(&self, calls: &[(&str, &str)]) {
        self.server.reset().await;
        Mock::given(method(self.backend.method))
            .and(path(self.backend.path))
            .respond_with(self.backend.answering(calls))
            .mount(&self.server)
            .await;
    }

    async fn set_raw(&self, body: &str) {
        self.server.reset().await;
        Mock::given(method(self.backend.method))
            .respond_with(
                ResponseTemplate::new(200).set_body_raw(body.to_owned(), "application/json"),
            )
            .mount(&self.server)
            .await;
    }
}

// ---- the static kind ----

/// `static`: the calls in a file, in the calls shape or in Bland's.
pub struct Static {
    shape: &'static Backend,
}

pub const STATIC_CALLS: Static = Static { shape: &TWILIO };
pub const STATIC_BLAND: Static = Static { shape: &BLAND };

struct StaticUpstream {
    _dir: tempfile::TempDir,
    file: std::path::PathBuf,
    body: fn(&[(&str, &str)]) -> Value,
    provider: Arc<dyn ListCalls>,
}

impl StaticUpstream {
    fn lines_for(file: &std::path::Path) -> String {
        format!("kind = \"static\"\npath = \"{}\"", file.display())
    }
}

#[async_trait]
impl Fixture for Static {
    fn kind(&self) -> &'static str {
        "static"
    }

    fn statuses(&self) -> &'static [(&'static str, CallStatus)] {
        self.shape.statuses
    }

    async fn start(&self, calls: &[(&str, &str)]) -> Box<dyn Upstream> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("calls.json");
        std::fs::write(&file, (self.shape.body)(calls).to_string()).unwrap();
        let provider = build(&StaticUpstream::lines_for(&file));
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
    fn lines(&self) -> String {
        Self::lines_for(&self.file)
    }

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

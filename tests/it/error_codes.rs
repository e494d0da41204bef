//! Every error code callmux can send, each provoked through a real route (real server, loopback
//! upstreams), and each answer checked against the served `/openapi.json`. Driven by the
//! `ErrorCode` enum: a new code has no arm in [`provoke`] until it is given a scenario, and its
//! answer fails the document until the document lists it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use callmux::error_code::ErrorCode;
use serde_json::{json, Value};
use strum::IntoEnumIterator;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use wiremock::matchers::{method, path as at, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::*;
use crate::openapi::Spec;

const KEY: &str = "codes-key";
const BLAND_KEY: &str = "bland-secret";
const VAPI_KEY: &str = "vapi-secret";

/// The documented path and the real answer of one scenario.
struct Provoked {
    path: &'static str,
    reply: Reply,
}

/// Where every scenario runs: one callmux over an org per failure, and one whose requests
/// time out.
struct World {
    app: TestApp,
    slow: TestApp,
    _upstreams: Vec<MockServer>,
    /// How many requests the routed org's silent place target has read.
    silent_reads: Arc<AtomicUsize>,
}

/// An upstream that answers a 200 whose body breaks off before its declared length.
async fn breaking_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = sock.read(&mut buf).await;
            let _ = sock
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"calls\": [")
                .await;
        }
    });
    format!("http://{addr}")
}

/// An org `name` (key `KEY`) seeing only `provider`.
fn org(name: &str, providers: &[&str]) -> String {
    format!(
        "[orgs.{name}]\napi_key_sha256 = \"{}\"\nproviders = {providers:?}\n",
        sha256_hex(KEY)
    )
}

async fn world() -> World {
    let agents = agent_server(json!([agent_call(
        "c1",
        "+1555",
        "in-progress",
        "outbound"
    )]))
    .await;
    let full = agent_server(json!([agent_call(
        "f1",
        "+1555",
        "in-progress",
        "outbound"
    )]))
    .await;
    let slow_end = agent_server(json!([agent_call(
        "s1",
        "+1555",
        "in-progress",
        "outbound"
    )]))
    .await;
    Mock::given(method("POST"))
        .and(path_regex("/end$"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(30)))
        .mount(&slow_end)
        .await;
    let rejected = raw_server(401, "{}").await;
    let limited = raw_server(429, "{}").await;
    let failing = raw_server(500, "{}").await;
    let circuit = raw_server(500, "{}").await;
    let bad = raw_server(200, "not json").await;
    let large = raw_server(200, vec![b' '; 4096]).await;
    let reported = raw_server(
        200,
        r#"{"data":null,"errors":[{"error":"BOOM","message":"boom"}]}"#,
    )
    .await;
    let endless = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(crate::twilio::twilio_page(
                vec![],
                Some(&format!(
                    "{}?Page=1&PageToken=PAsame",
                    crate::twilio::CALLS_PATH
                )),
            )),
        )
        .mount(&endless)
        .await;
    let vapi = MockServer::start().await;
    let mut uncontrolled = vapi_call(
        "v1",
        "in-progress",
        "outboundPhoneCall",
        "2024-09-10T11:14:12.339Z",
    );
    uncontrolled.as_object_mut().unwrap().remove("monitor");
    Mock::given(method("GET"))
        .and(at("/call"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([uncontrolled])))
        .mount(&vapi)
        .await;
    let bland = bland_server(BLAND_KEY, "bland-org", json!([])).await;
    let rejecting = agent_server(json!([])).await;
    Mock::given(method("POST"))
        .and(at("/api/call"))
        .respond_with(
            ResponseTemplate::new(400).set_body_json(json!({"error": "Invalid phone number"})),
        )
        .mount(&rejecting)
        .await;
    let (hanging, silent_reads) = counted_silent_server().await;

    let silent = silent_server().await;
    let refused = refused_url().await;
    let breaking = breaking_server().await;
    let wallboard = sha256_hex("wallboard-key");
    let dialer = sha256_hex("dialer-key");
    let mut toml = String::from("[server]\nmax_streams = 1\nforward_max_request_bytes = 64\n");
    for (name, providers) in [
        ("acme", &["agents"][..]),
        ("timeout", &["silent"]),
        ("unreachable", &["refused"]),
        ("rejected", &["rejected"]),
        ("limited", &["limited"]),
        ("failing", &["failing"]),
        ("bad", &["bad"]),
        ("reported", &["reported"]),
        ("large", &["large"]),
        ("broken", &["breaking"]),
        ("endless", &["endless"]),
        ("circuit", &["circuit"]),
        ("vapi", &["vapi"]),
        ("full", &["full"]),
        ("slowend", &["slowend"]),
    ] {
        toml.push_str(&org(name, providers));
    }
    toml.push_str(&format!(
        r#"
        [orgs.viabland]
        auth = "blandfwd"
        providers = ["blandfwd"]

        [orgs.scoped]
        providers = ["agents"]
        [[orgs.scoped.keys]]
        name = "wallboard"
        sha256 = "{wallboard}"
        scopes = ["read"]
        [[orgs.scoped.keys]]
        name = "dialer"
        sha256 = "{dialer}"
        scopes = ["read", "place"]
        requests_per_second = 1

        [orgs.forwarding]
        api_key_sha256 = "{key}"
        providers = ["bland"]
        bland_passthrough = "bland"

        [orgs.hooked]
        api_key_sha256 = "{key}"
        providers = ["tw"]

        [orgs.routed]
        api_key_sha256 = "{key}"
        providers = ["rejecting"]
        routes = ["rejects"]

        [orgs.hangs]
        api_key_sha256 = "{key}"
        providers = ["hanging"]
        routes = ["hangs"]

        [routes.rejects]
        targets = [{{ provider = "rejecting" }}]

        [routes.hangs]
        targets = [{{ provider = "hanging" }}]

        [providers.rejecting]
        kind = "twilio-media-stream"
        base_url = "{rejecting}"
        place_calls = true

        [providers.hanging]
        kind = "twilio-media-stream"
        base_url = "{hanging}"
        place_calls = true
        timeout_ms = 5000

        [providers.agents]
        kind = "twilio-media-stream"
        base_url = "{agents}"

        [providers.silent]
        kind = "twilio-media-stream"
        base_url = "{silent}"
        timeout_ms = 300

        [providers.refused]
        kind = "twilio-media-stream"
        base_url = "{refused}"

        [providers.rejected]
        kind = "twilio-media-stream"
        base_url = "{rejected}"

        [providers.limited]
        kind = "twilio-media-stream"
        base_url = "{limited}"
        retries = 0

        [providers.failing]
        kind = "twilio-media-stream"
        base_url = "{failing}"

        [providers.circuit]
        kind = "twilio-media-stream"
        base_url = "{circuit}"
        circuit_failures = 1
        circuit_cooldown_ms = 600000

        [providers.bad]
        kind = "twilio-media-stream"
        base_url = "{bad}"

        [providers.large]
        kind = "twilio-media-stream"
        base_url = "{large}"
        max_body_bytes = 64

        [providers.breaking]
        kind = "twilio-media-stream"
        base_url = "{breaking}"

        [providers.reported]
        kind = "bland"
        base_url = "{reported}"
        api_key_env = "BLAND_KEY"
        org_id = "bland-org"

        [providers.endless]
        {endless}

        [providers.vapi]
        kind = "vapi"
        base_url = "{vapi}"
        api_key_env = "VAPI_KEY"

        [providers.full]
        kind = "twilio-media-stream"
        base_url = "{full}"
        place_calls = true
        max_active_calls = 1

        [providers.slowend]
        kind = "twilio-media-stream"
        base_url = "{slow_end}"
        timeout_ms = 300

        [providers.blandfwd]
        kind = "bland"
        base_url = "{refused}"

        [providers.bland]
        kind = "bland"
        base_url = "{bland}"
        api_key_env = "BLAND_KEY"
        org_id = "bland-org"
        max_body_bytes = 64

        [providers.tw]
        {tw}
        public_url = "https://callmux.example.com/hooks/twilio/tw"
        poll_interval_ms = 3600000
        "#,
        key = sha256_hex(KEY),
        agents = agents.uri(),
        rejected = rejected.uri(),
        limited = limited.uri(),
        failing = failing.uri(),
        circuit = circuit.uri(),
        bad = bad.uri(),
        large = large.uri(),
        reported = reported.uri(),
        endless = crate::twilio::token_lines(&endless.uri()),
        bland = bland.uri(),
        vapi = vapi.uri(),
        full = full.uri(),
        slow_end = slow_end.uri(),
        tw = crate::twilio::token_lines(&agents.uri()),
        rejecting = rejecting.uri(),
    ));
    let mut env = vec![("BLAND_KEY", BLAND_KEY), ("VAPI_KEY", VAPI_KEY)];
    env.extend_from_slice(crate::twilio::ENV);
    let app = spawn_app_with_env(&toml, &env).await;

    let held = silent_server().await;
    let slow = spawn_app(&format!(
        "[server]\nrequest_timeout_ms = 300\n{}[providers.held]\nkind = \"twilio-media-stream\"\nbase_url = \"{held}\"\ntimeout_ms = 30000\n",
        org("held", &["held"])
    ))
    .await;
    World {
        app,
        slow,
        _upstreams: vec![
            agents, full, slow_end, rejected, limited, failing, circuit, bad, large, reported,
            endless, vapi, bland, rejecting,
        ],
        silent_reads,
    }
}

fn creds(org: &str) -> [(&'static str, String); 2] {
    [
        ("authorization", KEY.to_owned()),
        ("x-bland-org-id", org.to_owned()),
    ]
}

impl World {
    /// `method path` on `app` with the org's credentials, extra headers and a body.
    async fn ask(
        &self,
        app: &TestApp,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, String)],
        body: Option<(&str, Vec<u8>)>,
    ) -> Reply {
        let mut request = app.http.request(method, app.url(path));
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        if let Some((content_type, body)) = body {
            request = request.header("content-type", content_type).body(body);
        }
        let response = tokio::time::timeout(Duration::from_secs(60), request.send())
            .await
            .expect("callmux answers in time")
            .expect("callmux is reachable");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "{path}: not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        Reply {
            status,
            headers,
            body,
        }
    }

    /// `GET /api/calls` as `org`.
    async fn list(&self, org: &str) -> Provoked {
        let reply = self
            .ask(
                &self.app,
                reqwest::Method::GET,
                "/api/calls",
                &creds(org),
                None,
            )
            .await;
        Provoked {
            path: "/api/calls",
            reply,
        }
    }

    async fn post(
        &self,
        path: &'static str,
        url: &str,
        org: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Provoked {
        let reply = self
            .ask(&self.app, reqwest::Method::POST, url, &creds(org), body)
            .await;
        Provoked { path, reply }
    }

    /// `POST /calls` on `route` as org `routed`.
    async fn place_on(&self, route: &str) -> Provoked {
        let body = format!(r#"{{"to": "+14155550123", "route": "{route}"}}"#).into_bytes();
        self.post(
            "POST /calls",
            "/calls",
            "routed",
            Some(("application/json", body)),
        )
        .await
    }

    async fn hook(
        &self,
        provider: &str,
        signature: Option<&str>,
        params: &[(&str, &str)],
    ) -> Provoked {
        let mut headers = Vec::new();
        if let Some(s) = signature {
            headers.push(("x-twilio-signature", s.to_owned()));
        }
        let form = serde_urlencoded(params);
        let reply = self
            .ask(
                &self.app,
                reqwest::Method::POST,
                &format!("/hooks/twilio/{provider}"),
                &headers,
                Some(("application/x-www-form-urlencoded", form.into_bytes())),
            )
            .await;
        Provoked {
            path: "/hooks/{kind}/{provider_id}",
            reply,
        }
    }
}

fn serde_urlencoded(params: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish()
}

/// Provokes `code` through a real route; for a code no request can provoke, why not (then only
/// its place in the document is checked).
async fn provoke(w: &World, code: ErrorCode) -> Result<Provoked, &'static str> {
    use ErrorCode::*;
    let end = "/api/calls/{call_id}/end";
    let place = "/api/call";
    let calls = "/calls";
    // The document's name for the operation these answers are checked against.
    let place_on_route = "POST /calls";
    Ok(match code {
        UpstreamTimeout => w.list("timeout").await,
        UpstreamUnreachable => w.list("unreachable").await,
        UpstreamAuthRejected => w.list("rejected").await,
        UpstreamRateLimited => w.list("limited").await,
        UpstreamError => w.list("failing").await,
        UpstreamBadResponse => w.list("bad").await,
        UpstreamReportedError => w.list("reported").await,
        UpstreamTooLarge => w.list("large").await,
        UpstreamBrokenResponse => w.list("broken").await,
        UpstreamEndlessList => w.list("endless").await,
        UpstreamNoCredentials => {
            return Err(
                "a bland provider without a key of its own is refused in every org whose \
                callers hold callmux keys, so only a configuration callmux refuses could send it",
            )
        }
        UpstreamControlRefused => w.post(end, "/api/calls/v1/end", "vapi", None).await,
        CircuitOpen => {
            let first = w.list("circuit").await;
            assert_eq!(first.reply.body["errors"][0]["error"], "UPSTREAM_ERROR");
            w.list("circuit").await
        }
        InternalError => {
            return Err(
                "sent only when callmux fails inside (a provider's task panicked, the \
                blocking pool is gone), which no request provokes",
            )
        }
        AuthFailure => {
            let reply = w
                .ask(
                    &w.app,
                    reqwest::Method::GET,
                    "/api/calls",
                    &[
                        ("authorization", "wrong".to_owned()),
                        ("x-bland-org-id", "acme".to_owned()),
                    ],
                    None,
                )
                .await;
            Provoked {
                path: "/api/calls",
                reply,
            }
        }
        MethodNotAllowed => {
            let reply = w.ask(&w.app, reqwest::Method::GET, place, &[], None).await;
            assert_eq!(reply.headers["allow"], "POST");
            Provoked { path: place, reply }
        }
        MissingOrgId => {
            let reply = w
                .ask(
                    &w.app,
                    reqwest::Method::GET,
                    "/api/calls",
                    &[("authorization", "nobody's".to_owned())],
                    None,
                )
                .await;
            Provoked {
                path: "/api/calls",
                reply,
            }
        }
        Forbidden => {
            let reply = w
                .ask(
                    &w.app,
                    reqwest::Method::POST,
                    "/api/calls/c1/end",
                    &[
                        ("authorization", "wallboard-key".to_owned()),
                        ("x-bland-org-id", "scoped".to_owned()),
                    ],
                    None,
                )
                .await;
            assert!(
                reply.body["error"]
                    .as_str()
                    .is_some_and(|m| m.contains("`wallboard`") && m.contains("`end`")),
                "{:?}",
                reply.body
            );
            Provoked { path: end, reply }
        }
        RateLimited => {
            let headers = [
                ("authorization", "dialer-key".to_owned()),
                ("x-bland-org-id", "scoped".to_owned()),
            ];
            let mut reply = None;
            // One request a second: the second of two at once is over it.
            for _ in 0..2 {
                reply = Some(
                    w.ask(&w.app, reqwest::Method::GET, "/api/calls", &headers, None)
                        .await,
                );
            }
            Provoked {
                path: "/api/calls",
                reply: reply.unwrap(),
            }
        }
        AuthUnavailable => {
            let reply = w
                .ask(
                    &w.app,
                    reqwest::Method::GET,
                    "/api/calls",
                    &[
                        ("authorization", "a-bland-key".to_owned()),
                        ("x-bland-org-id", "viabland".to_owned()),
                    ],
                    None,
                )
                .await;
            Provoked {
                path: "/api/calls",
                reply,
            }
        }
        HeadersTooLarge => {
            let mut headers = creds("acme").to_vec();
            headers.push(("x-padding", "x".repeat(20_000)));
            let reply = w
                .ask(&w.app, reqwest::Method::GET, "/api/calls", &headers, None)
                .await;
            Provoked {
                path: "/api/calls",
                reply,
            }
        }
        Overloaded => {
            // `max_streams = 1`: one stream open, the next is refused.
            let _open = w
                .app
                .stream("/api/calls/stream", KEY, "acme", None)
                .await
                .expect("the first stream opens");
            let reply = w
                .ask(
                    &w.app,
                    reqwest::Method::GET,
                    "/api/calls/stream",
                    &creds("acme"),
                    None,
                )
                .await;
            Provoked {
                path: "/api/calls/stream",
                reply,
            }
        }
        RequestTimeout => {
            let reply = w
                .ask(
                    &w.slow,
                    reqwest::Method::GET,
                    "/api/calls",
                    &creds("held"),
                    None,
                )
                .await;
            Provoked {
                path: "/api/calls",
                reply,
            }
        }
        InvalidCallId => w.post(end, "/api/calls/%20/end", "acme", None).await,
        CallNotFound => w.post(end, "/api/calls/nope/end", "acme", None).await,
        NotSupported => {
            w.post(
                place,
                place,
                "acme",
                Some(("application/json", br#"{"to":"+1555"}"#.to_vec())),
            )
            .await
        }
        AtCapacity => {
            w.post(
                place,
                place,
                "full",
                Some(("application/json", br#"{"to":"+1555"}"#.to_vec())),
            )
            .await
        }
        OutcomeUnknown => w.post(end, "/api/calls/s1/end", "slowend", None).await,
        RouteNotFound => w.place_on("nope").await,
        PlaceRejected => w.place_on("rejects").await,
        IdempotencyKeyReused => {
            let mut headers = creds("routed").to_vec();
            headers.push(("idempotency-key", "reused-1".to_owned()));
            let mut reply = None;
            for to in ["+14155550123", "+14155550124"] {
                let body = format!(r#"{{"to": "{to}", "route": "rejects"}}"#).into_bytes();
                reply = Some(
                    w.ask(
                        &w.app,
                        reqwest::Method::POST,
                        calls,
                        &headers,
                        Some(("application/json", body)),
                    )
                    .await,
                );
            }
            Provoked {
                path: place_on_route,
                reply: reply.unwrap(),
            }
        }
        IdempotencyInFlight => {
            let mut headers = creds("hangs").to_vec();
            headers.push(("idempotency-key", "in-flight-1".to_owned()));
            let before = w.silent_reads.load(Ordering::SeqCst);
            let body = br#"{"to": "+14155550123", "route": "hangs"}"#.to_vec();
            let first = {
                let request = w
                    .app
                    .http
                    .post(w.app.url(calls))
                    .header("content-type", "application/json")
                    .body(body.clone());
                let request = headers
                    .iter()
                    .fold(request, |r, (name, value)| r.header(*name, value));
                tokio::spawn(request.send())
            };
            // The first is in flight once the target has been asked anything.
            until("the first placement to reach its target", async || {
                w.silent_reads.load(Ordering::SeqCst) > before
            })
            .await;
            let reply = w
                .ask(
                    &w.app,
                    reqwest::Method::POST,
                    calls,
                    &headers,
                    Some(("application/json", body)),
                )
                .await;
            first.abort();
            Provoked {
                path: place_on_route,
                reply,
            }
        }
        InvalidBody => {
            w.post(
                place,
                place,
                "full",
                Some(("application/json", b"{}".to_vec())),
            )
            .await
        }
        BodyTooLarge => {
            w.post(
                "POST /v1/{path}",
                "/v1/calls",
                "forwarding",
                Some(("application/json", vec![b' '; 1000])),
            )
            .await
        }
        InvalidPath => w.post("POST /v1/{path}", "/v1/a%2Fb", "acme", None).await,
        NotFound => w.post("POST /v1/{path}", "/v1/pathway", "acme", None).await,
        UnknownHook => {
            w.hook(
                "nope",
                None,
                &[("CallSid", "CA1"), ("CallStatus", "ringing")],
            )
            .await
        }
        MissingSignature => {
            w.hook("tw", None, &[("CallSid", "CA1"), ("CallStatus", "ringing")])
                .await
        }
        InvalidSignature => {
            w.hook(
                "tw",
                Some("bm90IGEgc2lnbmF0dXJl"),
                &[("CallSid", "CA1"), ("CallStatus", "ringing")],
            )
            .await
        }
        WrongAccount => {
            let params = [
                ("AccountSid", "AC00000000000000000000000000000000"),
                ("CallSid", "CA1"),
                ("CallStatus", "ringing"),
            ];
            let owned: Vec<(String, String)> = params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let (status, text) = crate::hooks::signed(&w.app, "tw", &owned).await;
            Provoked {
                path: "/hooks/{kind}/{provider_id}",
                reply: Reply {
                    status,
                    headers: json_headers(),
                    body: serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")),
                },
            }
        }
    })
}

/// `content-type: application/json`, for an answer read through a helper that keeps only the
/// body (callmux writes every JSON answer so; the other scenarios check it for real).
fn json_headers() -> reqwest::header::HeaderMap {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("content-type", "application/json".parse().unwrap());
    headers
}

/// The codes an answer carries, wherever its envelope puts them.
fn codes_in(body: &Value) -> Vec<String> {
    let mut found: Vec<String> = body["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["error"].as_str().map(str::to_owned))
        .collect();
    found.extend(body["code"].as_str().map(str::to_owned));
    found
}

#[tokio::test]
async fn every_error_code_is_sent_by_a_real_route_in_an_answer_the_document_describes() {
    let w = world().await;
    let spec = Spec::fetch(&w.app).await;
    let documented = |family: &str| -> Vec<Value> {
        spec.0["components"]["schemas"][family]["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("the document has no {family} enum"))
            .clone()
    };
    let (mut provoked, mut unprovokable) = (0, 0);
    for code in ErrorCode::iter() {
        let Provoked { path, reply } = match provoke(&w, code).await {
            Ok(provoked) => provoked,
            Err(why) => {
                assert!(
                    documented("ProviderErrorCode").contains(&json!(code.as_str())),
                    "{code} is {why}; yet the document does not list it"
                );
                unprovokable += 1;
                continue;
            }
        };
        assert!(
            codes_in(&reply.body).iter().any(|c| c == code.as_str()),
            "{code}: {path} answered {} without it: {:#}",
            reply.status,
            reply.body
        );
        spec.assert_matches(path, &reply);
        provoked += 1;
    }
    assert_eq!(provoked + unprovokable, ErrorCode::iter().count());
    assert!(unprovokable <= 2, "{unprovokable} codes without a scenario");
}

#[tokio::test]
async fn a_rate_limited_provider_beside_a_healthy_one_gives_both_lists_a_partial_200_the_document_describes(
) {
    // The drift this enum ended: such answers named a code the document did not list.
    let agents = agent_server(json!([agent_call(
        "c1",
        "+1555",
        "in-progress",
        "outbound"
    )]))
    .await;
    let limited = raw_server(429, "{}").await;
    let app = spawn_app(&format!(
        "{}[providers.agents]\nkind = \"twilio-media-stream\"\nbase_url = \"{}\"\n\
         [providers.limited]\nkind = \"twilio-media-stream\"\nbase_url = \"{}\"\nretries = 0\n",
        org("acme", &["agents", "limited"]),
        agents.uri(),
        limited.uri()
    ))
    .await;
    let spec = Spec::fetch(&app).await;
    for path in ["/v1/calls/active", "/api/calls"] {
        let reply = app
            .get(path, &[("authorization", KEY), ("x-bland-org-id", "acme")])
            .await;
        assert_eq!(reply.status, 200, "{path}: {:#}", reply.body);
        assert_eq!(
            reply.body["errors"][0]["error"], "UPSTREAM_RATE_LIMITED",
            "{path}: {:#}",
            reply.body
        );
        spec.assert_matches(path, &reply);
    }
}

//! No secret leaves callmux: the real binary at `RUST_LOG=trace`, driven down every error path,
//! never shows an org key, a Bland key or a presented key in its logs, answers or check-config,
//! and `Debug` of the loaded config holds none of them.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::{json, Value};

/// Org `acme`'s key, read from the environment (`api_key_env`).
const ACME_KEY: &str = "sk-live-SECRET-org-key-7f3a9c41e2d8";
/// Org `beta`'s key, configured by its digest; clients still send it in plain text.
const BETA_KEY: &str = "sk-live-SECRET-digest-org-key-b81d06f4c3a7";
/// Provider `bland_own`'s own Bland key (`api_key_env` + `org_id`).
const BLAND_PROVIDER_KEY: &str = "sk-live-SECRET-bland-provider-key-5e92aa18b0c4";
/// A Bland key that the passthrough org's callers send, accepted by Bland.
const PASSTHROUGH_KEY: &str = "sk-live-SECRET-caller-bland-key-c4470f9d21e6";
/// A Bland key that Bland rejects, sent to the passthrough org.
const REJECTED_BLAND_KEY: &str = "sk-live-SECRET-rejected-bland-key-2f6e8d7a5b13";
/// A key callmux never issued, presented to orgs with callmux keys.
const WRONG_KEY: &str = "sk-live-SECRET-wrong-presented-key-9d13be60f7a2";

/// A key sent where no key belongs: in a query string.
const QUERY_KEY: &str = "sk-live-SECRET-query-string-key-80be4c2d91f5";

const SECRETS: [(&str, &str); 7] = [
    ("acme's org key (api_key_env)", ACME_KEY),
    ("beta's org key (api_key_sha256)", BETA_KEY),
    ("bland_own's provider key", BLAND_PROVIDER_KEY),
    ("a caller's accepted Bland key", PASSTHROUGH_KEY),
    ("a caller's rejected Bland key", REJECTED_BLAND_KEY),
    ("a wrong presented key", WRONG_KEY),
    ("a key in a query string", QUERY_KEY),
];

/// `bland_own`'s Bland org id: not a key, but check-config documents it as hidden.
const BLAND_PROVIDER_ORG_ID: &str = "bland-org-own-61c2e0";

const ACME_KEY_VAR: &str = "SECRETS_TEST_ACME_KEY";
const BLAND_KEY_VAR: &str = "SECRETS_TEST_BLAND_KEY";

/// Where `text` shows any secret: the whole value or its distinctive last 12 characters.
fn leaks(text: &str) -> Vec<&'static str> {
    SECRETS
        .iter()
        .filter(|(_, secret)| text.contains(secret) || text.contains(&secret[secret.len() - 12..]))
        .map(|(name, _)| *name)
        .collect()
}

/// Every fake upstream, kept alive for the test.
struct Upstreams {
    agents: wiremock::MockServer,
    garbled: wiremock::MockServer,
    bland_own: wiremock::MockServer,
    bland_down: wiremock::MockServer,
    bland_slow: String,
    bland_fwd: wiremock::MockServer,
    bland_fwd_down: wiremock::MockServer,
}

impl Upstreams {
    async fn start() -> Self {
        Self {
            agents: agent_server(json!([agent_call("a1", "+1", "in-progress", "outbound")])).await,
            garbled: raw_server(200, "<html>certainly not json</html>").await,
            bland_own: bland_server(
                BLAND_PROVIDER_KEY,
                BLAND_PROVIDER_ORG_ID,
                json!([bland_call("b1", "IN_PROGRESS", "1700000000000")]),
            )
            .await,
            bland_down: raw_server(500, r#"{"data": null, "errors": null}"#).await,
            bland_slow: silent_server().await,
            bland_fwd: bland_server(
                PASSTHROUGH_KEY,
                "pass-org",
                json!([bland_call("p1", "QUEUED", "1700000000001")]),
            )
            .await,
            bland_fwd_down: raw_server(500, "internal error").await,
        }
    }

    /// Org `acme` (key from the environment) sees `agents` and `bland_own`; org `beta` (key by
    /// digest) sees `agents` and three failing providers, two of them with the Bland key;
    /// `pass-org` authenticates its callers' Bland keys through `bland_fwd`; `pass-down` through
    /// a Bland that answers 500.
    fn config(&self) -> String {
        let own_key =
            |id: &str, url: &str| ProviderB::bland(id, url, BLAND_KEY_VAR, BLAND_PROVIDER_ORG_ID);
        TestConfig::new()
            .org(OrgB::key_env("acme", ACME_KEY_VAR).providers(&["agents", "bland_own"]))
            .org(OrgB::key("beta", BETA_KEY).providers(&[
                "agents",
                "bland_down",
                "bland_slow",
                "garbled",
            ]))
            .org(OrgB::bland_keys("pass-org", "bland_fwd").providers(&["bland_fwd", "agents"]))
            .org(OrgB::bland_keys("pass-down", "bland_fwd_down").providers(&["bland_fwd_down"]))
            .provider(ProviderB::agent("agents", &self.agents.uri()))
            .provider(ProviderB::agent("garbled", &self.garbled.uri()))
            .provider(own_key("bland_own", &self.bland_own.uri()))
            .provider(own_key("bland_down", &self.bland_down.uri()))
            .provider(own_key("bland_slow", &self.bland_slow).set("timeout_ms", 300))
            .provider(ProviderB::bland_forwarding(
                "bland_fwd",
                &self.bland_fwd.uri(),
            ))
            .provider(ProviderB::bland_forwarding(
                "bland_fwd_down",
                &self.bland_fwd_down.uri(),
            ))
            .toml()
    }
}

fn env() -> [(&'static str, &'static str); 2] {
    [
        (ACME_KEY_VAR, ACME_KEY),
        (BLAND_KEY_VAR, BLAND_PROVIDER_KEY),
    ]
}

/// `callmux` with the keys' variables set.
fn callmux_with_keys() -> Command {
    let mut cmd = callmux();
    cmd.envs(env());
    cmd
}

/// `callmux serve` at `RUST_LOG=trace` with the keys' variables set, everything it writes kept.
fn serve_at_trace(config: &Path, log_format: &str) -> Binary {
    let [acme, bland] = env();
    Binary::start(
        config,
        &[acme, bland, ("RUST_LOG", "trace")],
        &["--log-format", log_format],
    )
}

/// Sends SIGHUP and waits (bounded) until callmux says it reloaded its configuration.
async fn reload(server: &Binary) {
    let before = server.output().matches("configuration reloaded").count();
    server.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.output().matches("configuration reloaded").count() == before {
        assert!(
            Instant::now() < deadline,
            "callmux did not reload on SIGHUP:\n{}",
            server.output()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One answer, kept whole: status, every header, the raw body.
struct Seen {
    what: &'static str,
    status: u16,
    headers: String,
    body: String,
}

impl Seen {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {}", self.what, self.body))
    }

    /// The `error` code of the first `errors` entry.
    fn code(&self) -> String {
        self.json()["errors"][0]["error"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

async fn send(
    http: &reqwest::Client,
    base: &str,
    what: &'static str,
    method: reqwest::Method,
    path: &str,
    headers: &[(&str, &str)],
) -> Seen {
    let mut request = http.request(method, format!("{base}{path}"));
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = tokio::time::timeout(Duration::from_secs(30), request.send())
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within 30 s"))
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())))
        .collect();
    let body = tokio::time::timeout(Duration::from_secs(30), response.text())
        .await
        .unwrap_or_else(|_| panic!("{what}: body not sent within 30 s"))
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    Seen {
        what,
        status,
        headers,
        body,
    }
}

/// Header names and values to send (or, for a command, environment variables to set).
type Headers<'a> = Vec<(&'a str, &'a str)>;

/// What is sent — described, method, path, headers — and the status and `errors[0].error`
/// expected (status 0: any; code "": none checked).
type Case<'a> = (
    &'static str,
    reqwest::Method,
    &'a str,
    Headers<'a>,
    u16,
    &'a str,
);

/// Drives every path — success in both shapes, every refusal, every upstream failure — and
/// returns each answer, checking that each took the path it was meant to.
async fn drive(base: &str) -> Vec<Seen> {
    use reqwest::Method;
    let http = reqwest::Client::new();
    let bearer = |key: &str| format!("Bearer {key}");
    let (acme_bearer, wrong_bearer, rejected_bearer) = (
        bearer(ACME_KEY),
        bearer(WRONG_KEY),
        bearer(REJECTED_BLAND_KEY),
    );
    let get = Method::GET;
    let acme_query = format!("/api/calls?api_key={QUERY_KEY}");
    let nope_query = format!("/nope?key={QUERY_KEY}&authorization={QUERY_KEY}");
    let mut cases: Vec<Case<'_>> = vec![
        (
            "acme, calls shape",
            get.clone(),
            "/api/calls",
            vec![("authorization", ACME_KEY), ("x-bland-org-id", "acme")],
            200,
            "",
        ),
        (
            "acme, Bland shape, Bearer",
            get.clone(),
            "/v1/calls/active",
            vec![
                ("authorization", acme_bearer.as_str()),
                ("x-bland-org-id", "acme"),
            ],
            200,
            "",
        ),
        (
            "acme's key without an org id",
            get.clone(),
            "/api/calls",
            vec![("authorization", ACME_KEY)],
            200,
            "",
        ),
        (
            "beta, calls shape, three providers failing",
            get.clone(),
            "/api/calls",
            vec![("authorization", BETA_KEY), ("x-bland-org-id", "beta")],
            200,
            "UPSTREAM_ERROR",
        ),
        (
            "beta, Bland shape, three providers failing",
            get.clone(),
            "/v1/calls/active",
            vec![("authorization", BETA_KEY), ("x-bland-org-id", "beta")],
            200,
            "UPSTREAM_ERROR",
        ),
        (
            "passthrough, Bland shape",
            get.clone(),
            "/v1/calls/active",
            vec![
                ("authorization", PASSTHROUGH_KEY),
                ("x-bland-org-id", "pass-org"),
            ],
            200,
            "",
        ),
        (
            "passthrough, calls shape (verdict cached)",
            get.clone(),
            "/api/calls",
            vec![
                ("authorization", PASSTHROUGH_KEY),
                ("x-bland-org-id", "pass-org"),
            ],
            200,
            "",
        ),
        (
            "wrong key for acme",
            get.clone(),
            "/api/calls",
            vec![("authorization", WRONG_KEY), ("x-bland-org-id", "acme")],
            401,
            "AUTH_FAILURE",
        ),
        (
            "wrong Bearer key for beta, Bland shape",
            get.clone(),
            "/v1/calls/active",
            vec![
                ("authorization", wrong_bearer.as_str()),
                ("x-bland-org-id", "beta"),
            ],
            401,
            "AUTH_FAILURE",
        ),
        (
            "wrong key without an org id",
            get.clone(),
            "/v1/calls/active",
            vec![("authorization", WRONG_KEY)],
            400,
            "MISSING_ORG_ID",
        ),
        (
            "acme's key for beta",
            get.clone(),
            "/api/calls",
            vec![("authorization", ACME_KEY), ("x-bland-org-id", "beta")],
            401,
            "AUTH_FAILURE",
        ),
        (
            "beta's key for acme",
            get.clone(),
            "/v1/calls/active",
            vec![("authorization", BETA_KEY), ("x-bland-org-id", "acme")],
            401,
            "AUTH_FAILURE",
        ),
        (
            "acme's key for an unknown org",
            get.clone(),
            "/api/calls",
            vec![("authorization", ACME_KEY), ("x-bland-org-id", "nobody")],
            401,
            "AUTH_FAILURE",
        ),
        (
            "a Bland key Bland rejects (401), passthrough",
            get.clone(),
            "/v1/calls/active",
            vec![
                ("authorization", REJECTED_BLAND_KEY),
                ("x-bland-org-id", "pass-org"),
            ],
            401,
            "AUTH_FAILURE",
        ),
        (
            "a Bland key Bland rejects, Bearer, calls shape",
            get.clone(),
            "/api/calls",
            vec![
                ("authorization", rejected_bearer.as_str()),
                ("x-bland-org-id", "pass-org"),
            ],
            401,
            "AUTH_FAILURE",
        ),
        (
            "a Bland key while Bland answers 500",
            get.clone(),
            "/v1/calls/active",
            vec![
                ("authorization", PASSTHROUGH_KEY),
                ("x-bland-org-id", "pass-down"),
            ],
            502,
            "AUTH_UNAVAILABLE",
        ),
        (
            "no key",
            get.clone(),
            "/api/calls",
            vec![("x-bland-org-id", "acme")],
            401,
            "AUTH_FAILURE",
        ),
        (
            "an unknown route, with a key",
            get.clone(),
            "/v1/calls",
            vec![("authorization", ACME_KEY), ("x-bland-org-id", "acme")],
            404,
            "NOT_FOUND",
        ),
        (
            "an unknown route, with a wrong key",
            get.clone(),
            "/nope",
            vec![("authorization", WRONG_KEY)],
            404,
            "NOT_FOUND",
        ),
        (
            "POST to a list route, with a key",
            Method::POST,
            "/api/calls",
            vec![("authorization", ACME_KEY), ("x-bland-org-id", "acme")],
            405,
            "",
        ),
        (
            "a key in the query string of a list route",
            get.clone(),
            &acme_query,
            vec![("authorization", ACME_KEY), ("x-bland-org-id", "acme")],
            200,
            "",
        ),
        (
            "a key in the query string of an unknown route",
            get.clone(),
            &nope_query,
            vec![("authorization", WRONG_KEY)],
            404,
            "NOT_FOUND",
        ),
    ];
    // The operator's endpoints, after all of the above: whatever they answer, it holds no key.
    for path in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
        let headers = [("authorization", ACME_KEY), ("x-bland-org-id", "acme")];
        cases.push((path, get.clone(), path, headers.to_vec(), 0, ""));
    }
    let mut seen = Vec::new();
    for (what, method, path, headers, status, code) in cases {
        let answer = send(&http, base, what, method, path, &headers).await;
        if status != 0 {
            assert_eq!(answer.status, status, "{what}: {}", answer.body);
        }
        if !code.is_empty() {
            assert_eq!(answer.code(), code, "{what}: {}", answer.body);
        }
        seen.push(answer);
    }

    // Each path was the one meant: the lists hold what they should.
    let by = |what: &str| seen.iter().find(|s| s.what == what).unwrap().json();
    assert_eq!(by("acme, calls shape")["count"], 2);
    assert_eq!(by("acme, Bland shape, Bearer")["errors"], Value::Null);
    let beta = by("beta, calls shape, three providers failing");
    let codes: Vec<&str> = beta["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["error"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        [
            "UPSTREAM_ERROR",
            "UPSTREAM_TIMEOUT",
            "UPSTREAM_BAD_RESPONSE"
        ],
        "{beta:#}"
    );
    assert_eq!(
        by("passthrough, Bland shape")["data"][0]["call_id"],
        "p1",
        "the passthrough org sees its Bland calls"
    );
    seen
}

/// Every request each upstream received: its `authorization` header, or "" without one.
async fn authorizations(server: &wiremock::MockServer) -> Vec<String> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| {
            r.headers
                .get("authorization")
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .unwrap_or_default()
        })
        .collect()
}

/// Runs callmux with `log_format`, drives every path, reloads on SIGHUP, drives them again,
/// and checks the log, every answer, check-config, `Debug` of the config, and where each key
/// was sent.
async fn no_secret_leaks_with_log_format(log_format: &str) {
    let upstreams = Upstreams::start().await;
    let toml = upstreams.config();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("providers.toml");
    std::fs::write(&path, &toml).unwrap();

    let server = serve_at_trace(&path, log_format);
    let mut answers = drive(&server.url("")).await;
    reload(&server).await;
    answers.extend(drive(&server.url("")).await);
    let log = server.stop();

    // The log is the trace-level one, and it saw the requests.
    assert!(log.contains("TRACE"), "not a trace-level log:\n{log}");
    assert!(log.contains("listed active calls"), "{log}");
    assert!(log.contains("request refused"), "{log}");
    assert!(log.contains("configuration reloaded"), "{log}");
    let leaked = leaks(&log);
    assert!(leaked.is_empty(), "the log shows {leaked:?}:\n{log}");

    for answer in &answers {
        let leaked = leaks(&answer.headers);
        assert!(
            leaked.is_empty(),
            "{}: headers show {leaked:?}:\n{}",
            answer.what,
            answer.headers
        );
        let leaked = leaks(&answer.body);
        assert!(
            leaked.is_empty(),
            "{}: body shows {leaked:?}:\n{}",
            answer.what,
            answer.body
        );
    }

    // Each key went only where it belongs: the provider's key to its own Bland, the callers'
    // Bland keys to the Bland that checks them, and callmux's own keys nowhere.
    let own = authorizations(&upstreams.bland_own).await;
    assert!(!own.is_empty());
    assert!(own.iter().all(|a| a == BLAND_PROVIDER_KEY), "{own:?}");
    assert!(authorizations(&upstreams.bland_down)
        .await
        .iter()
        .all(|a| a == BLAND_PROVIDER_KEY));
    let fwd = authorizations(&upstreams.bland_fwd).await;
    assert!(fwd.iter().any(|a| a == PASSTHROUGH_KEY), "{fwd:?}");
    assert!(
        fwd.iter()
            .all(|a| a.ends_with(PASSTHROUGH_KEY) || a.ends_with(REJECTED_BLAND_KEY)),
        "{fwd:?}"
    );
    for agent in [&upstreams.agents, &upstreams.garbled] {
        let sent = authorizations(agent).await;
        assert!(sent.iter().all(String::is_empty), "{sent:?}");
    }

    let out = callmux_with_keys()
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{printed}");
    assert!(
        printed.contains(ACME_KEY_VAR) && printed.contains("bland_own"),
        "{printed}"
    );
    let leaked = leaks(&printed);
    assert!(
        leaked.is_empty(),
        "check-config shows {leaked:?}:\n{printed}"
    );
    assert!(
        !printed.contains(BLAND_PROVIDER_ORG_ID),
        "check-config shows the provider's Bland org id:\n{printed}"
    );
    assert!(
        !printed.contains(&sha256_hex(BETA_KEY)),
        "check-config shows beta's digest:\n{printed}"
    );

    let config = load_config(&toml, &env()).expect("the test config is valid");
    for debug in [format!("{config:?}"), format!("{config:#?}")] {
        let leaked = leaks(&debug);
        assert!(
            leaked.is_empty(),
            "Debug of Config shows {leaked:?}:\n{debug}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_appears_in_trace_text_logs_answers_check_config_or_config_debug() {
    no_secret_leaks_with_log_format("text").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_appears_in_trace_json_logs_answers_check_config_or_config_debug() {
    no_secret_leaks_with_log_format("json").await;
}

#[tokio::test]
async fn a_callmux_issued_key_presented_to_a_passthrough_org_is_never_sent_upstream() {
    let upstreams = Upstreams::start().await;
    let app = spawn_app_with_env(&upstreams.config(), &env()).await;
    for key in [ACME_KEY, BETA_KEY] {
        for path in ["/api/calls", "/v1/calls/active"] {
            let reply = app
                .get(
                    path,
                    &[("authorization", key), ("x-bland-org-id", "pass-org")],
                )
                .await;
            assert_eq!(reply.status, 401, "{:#}", reply.body);
        }
    }
    let sent = authorizations(&upstreams.bland_fwd).await;
    assert!(
        !sent.iter().any(|a| a == ACME_KEY || a == BETA_KEY),
        "callmux forwarded keys it issued to a Bland upstream: {sent:?}"
    );
}

#[tokio::test]
async fn a_callmux_issued_key_in_any_wrapping_is_refused_by_a_passthrough_org_and_never_sent() {
    use base64::Engine;
    let basic = |user: &str, password: &str| {
        let pair = format!("{user}:{password}");
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    };
    let upstreams = Upstreams::start().await;
    let app = spawn_app_with_env(&upstreams.config(), &env()).await;
    let wrapped = [
        basic(ACME_KEY, ""),
        basic("", ACME_KEY),
        basic("someone", BETA_KEY),
        format!("Token {ACME_KEY}"),
        format!("Bearer:{ACME_KEY}"),
        format!("{ACME_KEY},{ACME_KEY}"),
        format!("Bearer {BETA_KEY}, {BETA_KEY}"),
        format!("Digest username=\"x\", response={ACME_KEY}"),
    ];
    for authorization in &wrapped {
        for path in ["/api/calls", "/v1/calls/active", "/v1/pathway"] {
            let reply = app
                .get(
                    path,
                    &[
                        ("authorization", authorization.as_str()),
                        ("x-bland-org-id", "pass-org"),
                    ],
                )
                .await;
            assert_eq!(
                reply.status, 401,
                "{authorization} {path}: {:#}",
                reply.body
            );
        }
    }
    let sent = authorizations(&upstreams.bland_fwd).await;
    assert!(
        sent.is_empty(),
        "callmux sent wrapped issued keys to a Bland upstream: {sent:?}"
    );
}

#[tokio::test]
async fn errors_never_echo_the_key_that_was_presented() {
    // In process, so any answer to any odd presentation of a unique key can be checked.
    let upstreams = Upstreams::start().await;
    let app = spawn_app_with_env(&upstreams.config(), &env()).await;
    let odd = [
        WRONG_KEY.to_string(),
        format!("Bearer {WRONG_KEY}"),
        format!("bearer   {WRONG_KEY}  "),
        format!("Basic {WRONG_KEY}"),
        format!("{WRONG_KEY} {WRONG_KEY}"),
        format!("Bearer {WRONG_KEY}\t"),
    ];
    for (i, authorization) in odd.iter().enumerate() {
        for org in [
            Some("acme"),
            Some("beta"),
            Some("pass-down"),
            Some("nobody"),
            None,
        ] {
            for path in ["/api/calls", "/v1/calls/active", "/elsewhere"] {
                let mut headers = vec![("authorization", authorization.as_str())];
                if let Some(org) = org {
                    headers.push(("x-bland-org-id", org));
                }
                let reply = app.get(path, &headers).await;
                assert!(
                    reply.status >= 400,
                    "presentation {i} to {org:?} at {path} was let in: {:#}",
                    reply.body
                );
                let text = format!("{}{:?}", reply.body, reply.headers);
                let leaked = leaks(&text);
                assert!(
                    leaked.is_empty(),
                    "presentation {i} to {org:?} at {path} echoed {leaked:?}: {text}"
                );
            }
        }
    }
}

/// Runs `check-config` and `serve` on `toml` (both must refuse it) and returns what they wrote.
fn refused(toml: &str, env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("providers.toml");
    std::fs::write(&path, toml).unwrap();
    let mut printed = String::new();
    for command in ["check-config", "serve"] {
        let mut cmd = callmux_with_keys();
        cmd.args([command, "--config"])
            .arg(&path)
            .env("CALLMUX_SERVER__BIND", "127.0.0.1:0")
            .env("RUST_LOG", "trace")
            .stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(1), "{command} accepted it: {text}");
        printed.push_str(&text);
    }
    printed
}

/// A config around one provider whose `base_url` is `url`.
fn with_base_url(url: &str) -> String {
    format!(
        "[orgs.a]\napi_key_sha256 = \"{}\"\nproviders = [\"p\"]\n\n\
         [providers.p]\nkind = \"twilio-media-stream\"\nbase_url = \"{url}\"\n",
        sha256_hex("k")
    )
}

/// A password in a provider's URL, which callmux documents it does not echo.
const URL_PASSWORD: &str = "sk-live-SECRET-url-password-3a7c5e0b9d14";

#[test]
fn a_refused_config_never_echoes_a_key() {
    let digest = sha256_hex("k");
    let cases: Vec<(&str, String, Headers<'_>)> = vec![
        (
            "the plain key where its digest belongs",
            format!("[orgs.a]\napi_key_sha256 = \"{ACME_KEY}\"\nproviders = [\"p\"]\n[providers.p]\nkind = \"twilio-media-stream\"\nbase_url = \"http://127.0.0.1:9\"\n"),
            vec![],
        ),
        (
            "the plain key under a field callmux does not know",
            format!("[orgs.a]\napi_key = \"{ACME_KEY}\"\nproviders = [\"p\"]\n[providers.p]\nkind = \"twilio-media-stream\"\nbase_url = \"http://127.0.0.1:9\"\n"),
            vec![],
        ),
        (
            "a Bland key that is not a valid header value",
            format!("[orgs.a]\napi_key_sha256 = \"{digest}\"\nproviders = [\"b\"]\n[providers.b]\nkind = \"bland\"\nbase_url = \"http://127.0.0.1:9\"\napi_key_env = \"{BLAND_KEY_VAR}\"\norg_id = \"o\"\n"),
            vec![(BLAND_KEY_VAR, "sk-live-SECRET-bland-provider-key-5e92aa18b0c4\nX-Evil: 1")],
        ),
        (
            "a base URL holding a password",
            with_base_url(&format!("http://user:{URL_PASSWORD}@127.0.0.1:9000")),
            vec![],
        ),
        (
            "a valid config with keys set, plus one unknown provider",
            format!("[orgs.acme]\napi_key_env = \"{ACME_KEY_VAR}\"\nproviders = [\"b\", \"nope\"]\n[providers.b]\nkind = \"bland\"\nbase_url = \"http://127.0.0.1:9\"\napi_key_env = \"{BLAND_KEY_VAR}\"\norg_id = \"o\"\n"),
            env().to_vec(),
        ),
    ];
    for (what, toml, env) in cases {
        let printed = refused(&toml, &env);
        let mut shown = leaks(&printed);
        if printed.contains(URL_PASSWORD) {
            shown.push("the URL password");
        }
        assert!(shown.is_empty(), "{what}: shows {shown:?}:\n{printed}");
    }
}

#[test]
fn a_malformed_base_url_never_echoes_its_password() {
    for url in [
        format!("http://user:{URL_PASSWORD}@127.0.0.1:99999"),
        format!("ftp://user:{URL_PASSWORD}@127.0.0.1"),
        format!("http://user:{URL_PASSWORD}@"),
    ] {
        let printed = refused(&with_base_url(&url), &[]);
        assert!(
            printed.contains("providers.p.base_url"),
            "the problem is named: {printed}"
        );
        assert!(
            !printed.contains(URL_PASSWORD),
            "the password of {url} is echoed:\n{printed}"
        );
    }
}

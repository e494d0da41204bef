//! Operability: request ids, JSON logs and provider spans, health, metrics, Server-Timing,
//! and live reload without dropping requests.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::{json, Value};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "ops-key";

/// Org `org` seeing the one agent server `provider` at `agents`.
fn org_seeing(org: &str, provider: &str, agents: &str) -> String {
    TestConfig::new()
        .org(OrgB::key(org, KEY).providers(&[provider]))
        .provider(ProviderB::agent(provider, agents))
        .toml()
}

fn one_org(org: &str, agents: &str) -> String {
    org_seeing(org, "ops-agents", agents)
}

/// What these tests ask the real binary, as org `org` with `KEY`.
trait Ops {
    async fn get(&self, path: &str, org: &str) -> reqwest::Response;
    async fn readyz(&self) -> Value;
    async fn wait_for_version(&self, version: u64) -> Value;
}

impl Ops for Binary {
    async fn get(&self, path: &str, org: &str) -> reqwest::Response {
        self.app
            .http
            .get(self.url(path))
            .header("authorization", KEY)
            .header("x-bland-org-id", org)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .unwrap()
    }

    async fn readyz(&self) -> Value {
        self.get("/readyz", "").await.json().await.unwrap()
    }

    async fn wait_for_version(&self, version: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = self.readyz().await;
            if ready["config"]["version"] == version {
                return ready;
            }
            assert!(
                Instant::now() < deadline,
                "version {version} never went live: {ready:#}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn rewrite(path: &Path, config: &str) {
    // Write then rename, as editors and config managers do, so the watcher never reads half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, config).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_a_given_one_is_echoed() {
    let agents = agent_server(json!([])).await;
    let app = spawn_app(&one_org("acme", &agents.uri())).await;
    let resp = app
        .http
        .get(app.url("/api/calls"))
        .header("authorization", KEY)
        .send()
        .await
        .unwrap();
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let uuid = uuid::Uuid::parse_str(&id).unwrap_or_else(|e| panic!("not a UUID: {id}: {e}"));
    assert_eq!(uuid.get_version(), Some(uuid::Version::Random), "{id}");
    let again = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_ne!(again.headers()["x-request-id"], id.as_str(), "ids differ");
    let resp = app
        .http
        .get(app.url("/healthz"))
        .header("x-request-id", "trace-me-123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "trace-me-123");
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_with_request_ids_and_a_span_per_provider_call() {
    let agents = agent_server(json!([agent_call(
        "secret-call-id-data",
        "+15550001111",
        "ringing",
        "outbound"
    )]))
    .await;
    let server = Binary::start(
        &one_org("acme", &agents.uri()),
        &[],
        &["--log-format", "json"],
    );
    let resp = server.get("/api/calls", "acme").await;
    assert_eq!(resp.status(), 200);
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_string();

    let provider_line = server
        .log_line("for the provider call", |l| l.contains("provider answered"))
        .await;
    let provider: Value = serde_json::from_str(&provider_line).unwrap();
    assert_eq!(provider["span"]["provider"], "ops-agents", "{provider:#}");
    assert_eq!(provider["fields"]["outcome"], "ok");
    assert!(provider["fields"]["latency_ms"].is_u64());
    let finished = server
        .log_line("for the finished request", |l| {
            l.contains("finished processing request")
        })
        .await;
    let finished: Value = serde_json::from_str(&finished).unwrap();
    assert_eq!(
        finished["span"]["request_id"],
        request_id.as_str(),
        "{finished:#}"
    );
    for line in server.stderr_lines() {
        let parsed: Result<Value, _> = serde_json::from_str(&line);
        assert!(parsed.is_ok(), "not JSON: {line}");
        // Ids only at info level: no phone numbers.
        assert!(!line.contains("+15550001111"), "call data logged: {line}");
    }
}

#[tokio::test]
async fn healthz_answers_without_auth() {
    let agents = agent_server(json!([])).await;
    let app = spawn_app(&one_org("acme", &agents.uri())).await;
    let reply = app.get("/healthz", &[]).await;
    assert_eq!((reply.status, reply.body), (200, json!({"status": "ok"})));
}

#[tokio::test]
async fn readyz_shows_the_live_config_and_each_providers_last_outcome_and_age() {
    let good = agent_server(json!([agent_call("c1", "+1", "ringing", "outbound")])).await;
    let toml = TestConfig::new()
        .org(OrgB::key("acme", KEY).providers(&["ready-good", "ready-down"]))
        .provider(ProviderB::agent("ready-good", &good.uri()))
        .provider(ProviderB::agent("ready-down", &refused_url().await))
        .toml();
    let app = spawn_app(&toml).await;
    let provider = |ready: &Value, id: &str| -> Value {
        ready["providers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == id)
            .unwrap()
            .clone()
    };
    let before = app.get("/readyz", &[]).await.body;
    assert_eq!(before["status"], "ready");
    assert_eq!(before["config"]["version"], 1);
    assert_eq!(
        provider(&before, "ready-good"),
        json!({"id": "ready-good", "kind": "twilio-media-stream", "last_outcome": null})
    );

    app.calls(KEY, "acme").await;
    let after = app.get("/readyz", &[]).await.body;
    assert_eq!(provider(&after, "ready-good")["last_outcome"], "ok");
    assert_eq!(
        provider(&after, "ready-down")["last_outcome"],
        "UPSTREAM_UNREACHABLE"
    );
    assert!(provider(&after, "ready-good")["age_ms"].as_u64().unwrap() < 60_000);
    assert!(
        !after.to_string().contains(&sha256_hex(KEY)),
        "a key digest in readyz"
    );
}

#[tokio::test]
async fn metrics_count_requests_provider_calls_sharing_and_active_calls() {
    let agents = agent_server(json!([
        agent_call("m1", "+1", "ringing", "outbound"),
        agent_call("m2", "+2", "completed", "outbound"),
    ]))
    .await;
    // Every app in the process records into one registry: ids of this test's own keep the
    // provider's series its own.
    let (org, provider) = (unique("metrics"), unique("metrics-agents"));
    let toml = TestConfig::new()
        .org(OrgB::key(&org, KEY).providers(&[&provider]))
        .provider(ProviderB::agent(&provider, &agents.uri()).set("cache_ttl_ms", 60_000))
        .toml();
    let app = spawn_app(&toml).await;
    for _ in 0..3 {
        assert_eq!(app.calls(KEY, &org).await.status, 200);
    }
    let resp = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = resp.text().await.unwrap();
    let has = |needle: &str| text.lines().any(|l| l.starts_with(needle));
    for needle in [
        r#"callmux_requests_total{route="/api/calls",status="200"}"#.to_string(),
        r#"callmux_request_duration_seconds_bucket{route="/api/calls",le="#.to_string(),
        format!(r#"callmux_provider_calls_total{{provider="{provider}",outcome="ok"}} 1"#),
        format!(r#"callmux_provider_call_duration_seconds_bucket{{provider="{provider}""#),
        format!(r#"callmux_provider_answers_total{{provider="{provider}",source="fetched"}} 1"#),
        format!(r#"callmux_provider_answers_total{{provider="{provider}",source="shared"}} 2"#),
        // Only the live call counts.
        format!(r#"callmux_active_calls{{provider="{provider}"}} 1"#),
    ] {
        assert!(has(&needle), "{needle} missing from:\n{text}");
    }
}

#[tokio::test]
async fn every_family_in_a_metrics_answer_has_help_text_and_a_type() {
    let agents = agent_server(json!([agent_call("h1", "+1", "ringing", "outbound")])).await;
    let toml = TestConfig::new()
        .org(
            OrgB::key("acme", KEY)
                .providers(&["ops-agents", "bl"])
                .passthrough("bl"),
        )
        .provider(ProviderB::agent("ops-agents", &agents.uri()))
        .provider(ProviderB::bland("bl", &agents.uri(), "OPS_BLAND_KEY", "o"))
        .toml();
    let app = spawn_app_with_env(&toml, &[("OPS_BLAND_KEY", "bland-key")]).await;
    // Requests that register the families a server without Redis has: lists, a stream, an
    // end, a forwarded route, a status callback.
    assert_eq!(app.calls(KEY, "acme").await.status, 200);
    assert_eq!(app.bland(KEY, "acme").await.status, 200);
    let mut stream = app
        .stream("/api/calls/stream", KEY, "acme", None)
        .await
        .expect("a stream");
    stream.next_within(Duration::from_secs(30)).await;
    app.end("nope", KEY, "acme").await;
    app.get("/v1/agents", &[]).await;
    app.post("/hooks/twilio/nope", &[]).await;
    let text = app.metrics().await;
    drop(stream);

    let mut families: Vec<&str> = Vec::new();
    for line in text.lines() {
        if let Some(family) = line.strip_prefix("# TYPE ") {
            let name = family.split(' ').next().unwrap();
            let help = format!("# HELP {name} ");
            assert!(
                text.lines()
                    .any(|l| l.starts_with(&help) && l.len() > help.len()),
                "{name} has no HELP text in:\n{text}"
            );
            families.push(name);
        }
    }
    for sample in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name = sample.split(['{', ' ']).next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix).filter(|f| families.contains(f)))
            .unwrap_or(name);
        assert!(families.contains(&family), "{name} has no TYPE in:\n{text}");
    }
    for expected in [
        "callmux_requests_total",
        "callmux_request_duration_seconds",
        "callmux_provider_calls_total",
        "callmux_provider_call_duration_seconds",
        "callmux_provider_answers_total",
        "callmux_active_calls",
        "callmux_bodies_built_total",
        "callmux_callbacks_total",
        "callmux_connections_closed_total",
        "callmux_control_actions_total",
        "callmux_passthrough_requests_total",
        "callmux_streams_open",
        "callmux_stream_pollers_started_total",
    ] {
        assert!(families.contains(&expected), "{expected} missing:\n{text}");
    }
}

#[tokio::test]
async fn metrics_on_the_api_listener_are_refused_to_a_proxied_request_by_default() {
    let agents = agent_server(json!([])).await;
    let app = spawn_app(&one_org(&unique("metrics"), &agents.uri())).await;
    assert!(app.metrics().await.contains("callmux_"));
    for header in ["x-forwarded-for", "forwarded", "x-real-ip"] {
        let r = app.get("/metrics", &[(header, "203.0.113.7")]).await;
        assert_eq!(r.status, 403, "{header}: {:?}", r.body);
        let message = r.body["errors"][0]["message"].as_str().unwrap();
        assert!(
            message.contains("metrics_bind") && message.contains("metrics_token_env"),
            "{message}"
        );
    }
}

#[tokio::test]
async fn metrics_behind_a_token_from_the_environment_answer_only_its_bearer() {
    let agents = agent_server(json!([])).await;
    let toml = format!(
        "[server]\nmetrics_token_env = \"METRICS_TOKEN\"\n{}",
        one_org(&unique("metrics"), &agents.uri())
    );
    let app = spawn_app_with_env(&toml, &[("METRICS_TOKEN", "scrape-secret")]).await;
    for given in [None, Some("Bearer nope"), Some("scrape-secret")] {
        let headers: Vec<(&str, &str)> = given.map(|g| ("authorization", g)).into_iter().collect();
        let r = app.get("/metrics", &headers).await;
        assert_eq!(r.status, 401, "{given:?}: {:?}", r.body);
        assert_eq!(r.body["errors"][0]["error"], "AUTH_FAILURE");
        assert!(!r.body.to_string().contains("scrape-secret"));
        assert_eq!(r.headers["www-authenticate"], "Bearer");
    }
    let r = app
        .http
        .get(app.url("/metrics"))
        .bearer_auth("scrape-secret")
        .header("x-forwarded-for", "203.0.113.7")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("callmux_requests_total"));
}

#[test]
fn a_wrong_metrics_bind_or_an_unset_metrics_token_variable_is_refused_naming_the_field() {
    for (server, field) in [
        ("metrics_bind = \"nowhere\"", "server.metrics_bind"),
        (
            "metrics_token_env = \"NO_SUCH_METRICS_TOKEN\"",
            "server.metrics_token_env",
        ),
    ] {
        let toml = format!("[server]\n{server}\n{}", one_org("m", "http://127.0.0.1:9"));
        match load_config(&toml, &[]) {
            Ok(_) => panic!("accepted {server}"),
            Err(e) => assert!(e.to_string().contains(field), "{e}"),
        }
    }
}

#[tokio::test]
async fn metrics_on_their_own_bind_are_served_there_and_not_on_the_api_listener() {
    let agents = agent_server(json!([])).await;
    let b = Binary::start(
        &one_org("metrics-bind", &agents.uri()),
        &[("CALLMUX_SERVER__METRICS_BIND", "127.0.0.1:0")],
        &[],
    );
    let logged = || {
        b.stderr_lines()
            .into_iter()
            .find(|l| l.contains("callmux metrics on http://"))
    };
    until("the metrics address logged", async || logged().is_some()).await;
    let line = logged().unwrap();
    let url = &line[line.find("http://").unwrap()..];
    let url = url.split_whitespace().next().unwrap();
    let r = reqwest::get(url).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("callmux_"));
    // Its own listener serves nothing else, and the API listener no metrics.
    let other = reqwest::get(url.replace("/metrics", "/api/calls"))
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
    let r = b.app.get("/metrics", &[]).await;
    assert_eq!(r.status, 404, "{:?}", r.body);
    assert!(r.body.to_string().contains("metrics_bind"), "{:?}", r.body);
}

#[tokio::test]
async fn server_timing_splits_provider_wait_from_callmuxs_own_time() {
    let slow = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"calls": [], "count": 0}))
                .set_delay(Duration::from_millis(300)),
        )
        .mount(&slow)
        .await;
    let app = spawn_app(&one_org("acme", &slow.uri())).await;
    for path in ["/api/calls", "/v1/calls/active"] {
        let reply = app
            .get(path, &[("authorization", KEY), ("x-bland-org-id", "acme")])
            .await;
        let timing = reply.headers["server-timing"].to_str().unwrap().to_string();
        let dur = |name: &str| -> f64 {
            let part = timing.split(", ").find(|p| p.starts_with(name)).unwrap();
            let value = part
                .split(';')
                .find_map(|kv| kv.strip_prefix("dur="))
                .unwrap();
            value.parse().unwrap()
        };
        assert!(dur("providers") >= 300.0, "{timing}");
        assert!(
            dur("callmux") >= 0.0 && dur("callmux") < dur("providers"),
            "{timing}"
        );
    }
}

#[tokio::test]
async fn a_changed_config_file_goes_live_without_a_restart() {
    let agents = agent_server(json!([agent_call("c1", "+1", "ringing", "outbound")])).await;
    let server = Binary::start(&one_org("acme", &agents.uri()), &[], &[]);
    assert_eq!(server.get("/api/calls", "acme").await.status(), 200);
    assert_eq!(server.get("/api/calls", "globex").await.status(), 401);

    rewrite(server.config_path(), &one_org("globex", &agents.uri()));
    let ready = server.wait_for_version(2).await;
    assert_eq!(ready["config"]["file_sha256"].as_str().unwrap().len(), 64);
    assert_eq!(server.get("/api/calls", "globex").await.status(), 200);
    assert_eq!(server.get("/api/calls", "acme").await.status(), 401);
}

#[cfg(unix)]
#[tokio::test]
async fn sighup_reloads_and_an_invalid_file_is_refused_while_the_old_config_keeps_serving() {
    let agents = agent_server(json!([agent_call("c1", "+1", "ringing", "outbound")])).await;
    let server = Binary::start(&one_org("acme", &agents.uri()), &[], &[]);
    // Invalid: an org naming a provider that does not exist.
    rewrite(
        server.config_path(),
        "[orgs.acme]\napi_key_env = \"NOPE_NOT_SET\"\nproviders = [\"nope\"]\n",
    );
    server.signal("HUP");
    let refusal = server
        .log_line("refusing the new file", |l| {
            l.contains("configuration reload refused")
        })
        .await;
    assert!(
        refusal.contains("NOPE_NOT_SET") && refusal.contains("orgs.acme.providers"),
        "{refusal}"
    );
    assert_eq!(server.readyz().await["config"]["version"], 1);
    assert_eq!(server.get("/api/calls", "acme").await.status(), 200);

    rewrite(
        server.config_path(),
        &org_seeing("acme", "renamed", &agents.uri()),
    );
    server.signal("HUP");
    let ready = server.wait_for_version(2).await;
    assert_eq!(ready["providers"][0]["id"], "renamed");
}

#[tokio::test]
async fn a_reload_keeps_a_provider_whose_settings_did_not_change_and_rebuilds_the_others() {
    let steady = agent_server(json!([agent_call("s1", "+1", "ringing", "outbound")])).await;
    let changing = agent_server(json!([agent_call("c1", "+2", "ringing", "outbound")])).await;
    let bland = bland_server(
        "bland-key",
        "org-new",
        json!([bland_call("b1", "QUEUED", "2026-11-22T06:00:00Z")]),
    )
    .await;
    let config = |changing_timeout_ms: u64, bland_org: &str| {
        TestConfig::new()
            .org(OrgB::key("acme", KEY).providers(&["steady", "changing", "bland"]))
            .provider(ProviderB::agent("steady", &steady.uri()).set("cache_ttl_ms", 600_000))
            .provider(
                ProviderB::agent("changing", &changing.uri())
                    .set("cache_ttl_ms", 600_000)
                    .set("timeout_ms", changing_timeout_ms),
            )
            .provider(ProviderB::bland(
                "bland",
                &bland.uri(),
                "OPS_BLAND_KEY",
                bland_org,
            ))
            .toml()
    };
    let server = Binary::start(
        &config(5000, "org-old"),
        &[("OPS_BLAND_KEY", "bland-key")],
        &[],
    );
    let first: Value = server.get("/api/calls", "acme").await.json().await.unwrap();
    assert_eq!(first["count"], 2, "Bland refuses org-old: {first}");
    assert_eq!((hits(&steady).await, hits(&changing).await), (1, 1));

    rewrite(server.config_path(), &config(4000, "org-new"));
    let ready = server.wait_for_version(2).await;
    // Kept providers keep their last outcome; rebuilt ones have none yet.
    let last = |id: &str| {
        let providers = ready["providers"].as_array().unwrap();
        let p = providers.iter().find(|p| p["id"] == id).unwrap();
        p["last_outcome"].clone()
    };
    assert_eq!(last("steady"), "ok", "{ready}");
    assert_eq!(last("changing"), Value::Null, "{ready}");
    assert_eq!(last("bland"), Value::Null, "{ready}");

    let second: Value = server.get("/api/calls", "acme").await.json().await.unwrap();
    // `steady` is the same provider, its answer still cached; `changing` was built afresh;
    // `bland` now sends the new org id.
    assert_eq!((hits(&steady).await, hits(&changing).await), (1, 2));
    assert_eq!(second["count"], 3, "{second}");
}

#[tokio::test]
async fn a_request_in_flight_during_a_reload_is_answered_by_the_config_it_started_with() {
    let slow = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(
                    json!({"calls": [agent_call("old", "+1", "ringing", "outbound")], "count": 1}),
                )
                .set_delay(Duration::from_millis(1500)),
        )
        .mount(&slow)
        .await;
    let fast = agent_server(json!([agent_call("new", "+1", "ringing", "outbound")])).await;
    let server = Arc::new(Binary::start(&one_org("acme", &slow.uri()), &[], &[]));
    let in_flight = {
        let server = server.clone();
        tokio::spawn(async move {
            server
                .get("/api/calls", "acme")
                .await
                .json::<Value>()
                .await
                .unwrap()
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while slow.received_requests().await.unwrap().is_empty() {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    rewrite(server.config_path(), &one_org("acme", &fast.uri()));
    server.signal("HUP");
    server.wait_for_version(2).await;
    let new: Value = server.get("/api/calls", "acme").await.json().await.unwrap();
    assert_eq!(new["calls"][0]["call_id"], "new");
    let old = in_flight.await.unwrap();
    assert_eq!(old["calls"][0]["call_id"], "old");
}

//! The `callmux` binary: serve with the shipped config, check-config, hash-key.

use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::json;

fn shipped_config() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("providers.toml")
}

/// `callmux serve` on the shipped config, with extra env overrides.
fn serve_shipped(env: &[(&str, &str)]) -> Binary {
    Binary::start(&shipped_config(), env, &[])
}

/// The demo org, pointed at the shipped `agents` provider through the environment.
const DEMO_SEES_AGENTS: (&str, &str) = ("CALLMUX_ORGS__DEMO__PROVIDERS", r#"["agents"]"#);
/// The demo's route places on the demo's own providers: an org that no longer lists them
/// drops the route too.
const DEMO_NO_ROUTES: (&str, &str) = ("CALLMUX_ORGS__DEMO__ROUTES", "[]");

#[tokio::test]
async fn the_shipped_config_shows_the_five_demo_calls_in_both_shapes_with_nothing_else_running() {
    let server = serve_shipped(&[]);
    let get = |path: &'static str| {
        reqwest::Client::new()
            .get(server.url(path))
            .header("authorization", "demo-key")
            .header("x-bland-org-id", "demo")
            .send()
    };
    let calls: serde_json::Value = get("/api/calls").await.unwrap().json().await.unwrap();
    assert_eq!(calls["count"], 5, "{calls}");
    let agent_doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("demo/agent-calls.json").unwrap()).unwrap();
    let bland_doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("demo/bland-calls.json").unwrap()).unwrap();
    // The Bland calls carry creation times and come first; the agent server's follow, as sent.
    assert_eq!(
        calls["calls"].as_array().unwrap()[2..5],
        agent_doc["calls"].as_array().unwrap()[..]
    );
    let bland: serde_json::Value = get("/v1/calls/active").await.unwrap().json().await.unwrap();
    assert_eq!(bland["errors"], serde_json::Value::Null);
    assert_eq!(
        bland["data"].as_array().unwrap()[0..2],
        bland_doc["data"].as_array().unwrap()[..]
    );
    assert_eq!(bland["data"].as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn environment_variables_override_the_shipped_config() {
    let agents = agent_server(json!([agent_call(
        "c1",
        "+1234567890",
        "in-progress",
        "outbound"
    )]))
    .await;
    let server = serve_shipped(&[
        DEMO_SEES_AGENTS,
        DEMO_NO_ROUTES,
        ("CALLMUX_PROVIDERS__AGENTS__BASE_URL", &agents.uri()),
    ]);
    let resp = reqwest::Client::new()
        .get(server.url("/api/calls"))
        .header("authorization", "demo-key")
        .header("x-bland-org-id", "demo")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        body,
        json!({"calls": [{"call_id": "c1", "to_number": "+1234567890", "status": "in-progress", "direction": "outbound"}], "count": 1})
    );
}

#[cfg(unix)]
#[tokio::test]
async fn sigterm_stops_the_server_cleanly() {
    let mut server = serve_shipped(&[]);
    server.signal("TERM");
    let status = server
        .exit_within(Duration::from_secs(30))
        .await
        .expect("callmux did not exit after SIGTERM");
    assert!(status.success(), "{status}");
}

#[cfg(unix)]
#[tokio::test]
async fn sigterm_lets_an_in_flight_request_finish_then_refuses_new_connections() {
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let slow = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(
                    json!({"calls": [agent_call("c1", "+1", "ringing", "outbound")], "count": 1}),
                )
                .set_delay(Duration::from_millis(1500)),
        )
        .mount(&slow)
        .await;
    let mut server = serve_shipped(&[
        DEMO_SEES_AGENTS,
        DEMO_NO_ROUTES,
        ("CALLMUX_PROVIDERS__AGENTS__BASE_URL", &slow.uri()),
    ]);
    let in_flight = tokio::spawn(
        reqwest::Client::new()
            .get(server.url("/api/calls"))
            .header("authorization", "demo-key")
            .header("x-bland-org-id", "demo")
            .send(),
    );
    // Let the request reach the upstream before the signal.
    let deadline = Instant::now() + Duration::from_secs(30);
    while slow.received_requests().await.unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the request never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.signal("TERM");

    let resp = in_flight
        .await
        .unwrap()
        .expect("the in-flight request is answered");
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["count"], 1);

    let status = server
        .exit_within(Duration::from_secs(30))
        .await
        .expect("callmux did not exit after SIGTERM");
    assert!(status.success(), "{status}");
    assert!(
        std::net::TcpStream::connect(server.app.addr).is_err(),
        "a new connection was accepted after shutdown"
    );
}

#[cfg(unix)]
#[tokio::test]
async fn after_sigterm_the_process_exits_within_its_grace_bound_even_with_a_request_in_flight() {
    let (hung, asked) = counted_silent_server().await;
    let mut server = serve_shipped(&[
        DEMO_SEES_AGENTS,
        DEMO_NO_ROUTES,
        ("CALLMUX_PROVIDERS__AGENTS__BASE_URL", &hung),
        ("CALLMUX_PROVIDERS__AGENTS__TIMEOUT_MS", "60000"),
        ("CALLMUX_SERVER__SHUTDOWN_GRACE_MS", "300"),
    ]);
    let in_flight = tokio::spawn(
        reqwest::Client::new()
            .get(server.url("/api/calls"))
            .header("authorization", "demo-key")
            .header("x-bland-org-id", "demo")
            .send(),
    );
    // In flight once the upstream, which never answers, has read it.
    until("the request reaches the upstream", async || {
        asked.load(std::sync::atomic::Ordering::SeqCst) > 0
    })
    .await;
    server.signal("TERM");
    // Generous: the bound is 300 ms.
    let exited = server.exit_within(Duration::from_secs(20)).await;
    assert!(exited.is_some(), "callmux outlived its grace bound");
    let cut = in_flight.await.unwrap();
    assert!(
        cut.is_err(),
        "the request in flight was answered, not cut off at the grace bound: {cut:?}"
    );
    server
        .log_line("saying the grace expired", |l| {
            l.contains("shutdown grace expired") && l.contains("grace_ms=300")
        })
        .await;
}

#[test]
fn check_config_accepts_the_shipped_file_and_prints_a_summary_without_secrets() {
    let out = callmux()
        .arg("check-config")
        .arg("--config")
        .arg(shipped_config())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("OK") && stdout.contains("demo") && stdout.contains("agents"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("c48a01f49fd0f2cc"),
        "digest shown: {stdout}"
    );
}

#[test]
fn check_config_masks_keys_read_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    std::fs::write(
        &path,
        "[orgs.a]\napi_key_env = \"A_KEY\"\nproviders = [\"b\"]\n[providers.b]\nkind = \"bland\"\nbase_url = \"http://127.0.0.1:1\"\napi_key_env = \"B_KEY\"\norg_id = \"org-b\"\n",
    )
    .unwrap();
    let out = callmux()
        .args(["check-config", "--config"])
        .arg(&path)
        .env("A_KEY", "org-a-secret")
        .env("B_KEY", "bland-secret")
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{all}");
    assert!(all.contains("A_KEY"), "{all}");
    for secret in ["org-a-secret", "bland-secret", "org-b"] {
        assert!(!all.contains(secret), "{secret} shown: {all}");
    }
}

#[test]
fn check_config_exits_1_naming_the_field_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[orgs.a]\napi_key_sha256 = \"xyz\"\nproviders = [\"nope\"]\n",
    )
    .unwrap();
    let out = callmux()
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("orgs.a.api_key_sha256") && stderr.contains("orgs.a.providers"),
        "{stderr}"
    );
    assert!(stderr.contains("fix:"), "{stderr}");
}

#[test]
fn a_missing_config_file_is_refused_with_how_to_point_at_one() {
    for sub in ["check-config", "serve"] {
        let out = callmux()
            .args([sub, "--config", "/nonexistent/providers.toml"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("not found") && stderr.contains("CALLMUX_CONFIG"),
            "{stderr}"
        );
    }
}

#[test]
fn callmux_config_env_var_names_the_file() {
    let out = callmux()
        .arg("check-config")
        .env("CALLMUX_CONFIG", shipped_config())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn hash_key_prints_the_digest_an_org_config_takes() {
    let mut child = callmux()
        .arg("hash-key")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"demo-key\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        sha256_hex("demo-key")
    );
    // The shipped demo org uses exactly that digest.
    let shipped = std::fs::read_to_string(shipped_config()).unwrap();
    assert!(shipped.contains(&sha256_hex("demo-key")));
}

#[test]
fn hash_key_refuses_an_empty_key() {
    let out = callmux()
        .arg("hash-key")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no key on stdin"));
}

//! The `callmux` binary: serve with the shipped config, check-config, hash-key.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::json;

fn callmux() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_callmux"));
    cmd.env_remove("CALLMUX_CONFIG").env_remove("RUST_LOG");
    cmd
}

fn shipped_config() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("providers.toml")
}

/// Kills the server when the test ends, pass or fail.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `callmux serve` on the shipped config on a free loopback port, with extra env
/// overrides, and returns it with the address it logged.
fn serve_shipped(env: &[(&str, &str)]) -> (Server, String) {
    let mut cmd = callmux();
    cmd.arg("serve")
        .arg("--config")
        .arg(shipped_config())
        .env("CALLMUX_SERVER__BIND", "127.0.0.1:0")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("callmux starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(at) = line.find("http://127.0.0.1:") {
                let url = line[at..].split_whitespace().next().unwrap_or_default();
                let _ = tx.send(url.to_string());
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("callmux logs the address it listens on");
    (Server(child), url)
}

#[tokio::test]
async fn the_shipped_config_serves_the_demo_org_and_env_overrides_apply() {
    let agents = agent_server(json!([agent_call(
        "c1",
        "+1234567890",
        "in-progress",
        "outbound"
    )]))
    .await;
    let (_server, url) = serve_shipped(&[("CALLMUX_PROVIDERS__AGENTS__BASE_URL", &agents.uri())]);
    let resp = reqwest::Client::new()
        .get(format!("{url}/api/calls"))
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
#[test]
fn sigterm_stops_the_server_cleanly() {
    let (mut server, _url) = serve_shipped(&[]);
    let pid = server.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = server.0.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "callmux did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
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
    let (mut server, url) = serve_shipped(&[("CALLMUX_PROVIDERS__AGENTS__BASE_URL", &slow.uri())]);
    let in_flight = tokio::spawn(
        reqwest::Client::new()
            .get(format!("{url}/api/calls"))
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
    let pid = server.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());

    let resp = in_flight
        .await
        .unwrap()
        .expect("the in-flight request is answered");
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["count"], 1);

    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = server.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "callmux did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}");
    let addr = url.trim_start_matches("http://");
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "a new connection was accepted after shutdown"
    );
}

#[cfg(unix)]
#[tokio::test]
async fn after_sigterm_the_process_exits_within_its_grace_bound_even_with_a_request_in_flight() {
    let hung = silent_server().await;
    let (mut server, url) = serve_shipped(&[
        ("CALLMUX_PROVIDERS__AGENTS__BASE_URL", &hung),
        ("CALLMUX_PROVIDERS__AGENTS__TIMEOUT_MS", "60000"),
        ("CALLMUX_SERVER__SHUTDOWN_GRACE_MS", "300"),
    ]);
    let _in_flight = tokio::spawn(
        reqwest::Client::new()
            .get(format!("{url}/api/calls"))
            .header("authorization", "demo-key")
            .header("x-bland-org-id", "demo")
            .send(),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let signalled = Instant::now();
    let pid = server.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    loop {
        if server.0.try_wait().unwrap().is_some() {
            break;
        }
        // Generous: the bound is 300 ms.
        assert!(
            signalled.elapsed() < Duration::from_secs(20),
            "callmux outlived its grace bound"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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

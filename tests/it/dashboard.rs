//! The dashboard at `GET /`: its files served from the binary under a policy of its own
//! origin, and the page end to end in Debian's headless Chromium (`tests/browser/dashboard.mjs`,
//! through the pinned `playwright-core`) against the real server and fake upstreams.
//!
//! The browser test needs `/usr/bin/chromium` (or `CALLMUX_CHROMIUM`), Node 20 and
//! `npm ci --prefix tests/browser`, all of which `.ci/run` installs. Without them it fails and
//! says so; built with `CALLMUX_SKIP_BROWSER=1` (see `build.rs`) it is ignored on purpose, and
//! `cargo test` reports it so. `CALLMUX_UPDATE_SCREENSHOT=1` also writes its screenshot to
//! `docs/dashboard.png`, the one the README shows.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::common::*;

const KEY: &str = "acme-dashboard-key";
/// A key of the same org that may only read: a wallboard's.
const READONLY_KEY: &str = "acme-wallboard-key";
const BLAND_KEY_VAR: &str = "DASHBOARD_TEST_BLAND_KEY";
const BLAND_KEY: &str = "bland-secret-key";
const BLAND_ORG: &str = "bland-org-1";
/// Upstreams are polled this often while the page is open, so changes show quickly.
const POLL_MS: u64 = 200;

/// What the dashboard's files must be served with.
const FILES: &[(&str, &str)] = &[
    ("/", "text/html; charset=utf-8"),
    ("/dashboard/app.js", "text/javascript; charset=utf-8"),
    ("/dashboard/style.css", "text/css; charset=utf-8"),
    ("/dashboard/icon.svg", "image/svg+xml"),
];

#[tokio::test]
async fn the_page_and_its_files_come_from_the_binary_under_a_policy_of_their_own_origin() {
    let app = spawn_app(&one_agent_org(KEY, "agents", &refused_url().await, 0)).await;
    for (path, content_type) in FILES {
        let reply = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(reply.status(), 200, "{path}");
        let header = |name: &str| {
            reply
                .headers()
                .get(name)
                .unwrap_or_else(|| panic!("{path} has no {name}"))
                .to_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(header("content-type"), *content_type, "{path}");
        let policy = header("content-security-policy");
        assert!(policy.starts_with("default-src 'self';"), "{policy}");
        assert!(!policy.contains("unsafe"), "{policy}");
        assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
        assert_eq!(header("x-content-type-options"), "nosniff");
        assert_eq!(header("cache-control"), "no-cache");
        let etag = header("etag");
        let body = reply.text().await.unwrap();
        assert!(!body.is_empty(), "{path}");

        let again = app
            .http
            .get(app.url(path))
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{path} unchanged is not 304");
        assert!(again.text().await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn the_page_loads_nothing_from_elsewhere_and_its_script_never_writes_markup() {
    let app = spawn_app(&one_agent_org(KEY, "agents", &refused_url().await, 0)).await;
    let text = |path: &'static str| {
        let app = &app;
        async move {
            let reply = app.http.get(app.url(path)).send().await.unwrap();
            reply.text().await.unwrap()
        }
    };
    let page = text("/").await;
    // Every src= and href= is a path on callmux or a fragment: nothing from a CDN.
    for attr in ["src=\"", "href=\""] {
        for value in page.split(attr).skip(1) {
            assert!(
                value.starts_with('/') || value.starts_with('#'),
                "{attr}{}",
                &value[..value.find('"').unwrap_or(value.len())]
            );
        }
    }
    // No inline script: the policy would refuse it, and the page would not work.
    for script in page.split("<script").skip(1) {
        let tag_end = script.find('>').unwrap();
        assert!(
            script[..tag_end].contains("src=\"/dashboard/"),
            "<script{script}"
        );
        assert!(
            script[tag_end + 1..].starts_with("</script>"),
            "<script{script}"
        );
    }
    let script = text("/dashboard/app.js").await;
    for markup in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
    ] {
        assert!(!script.contains(markup), "app.js uses {markup}");
    }
    assert!(!script.contains("localStorage"), "app.js uses localStorage");
    assert!(!script.contains("document.cookie"), "app.js uses cookies");
}

/// What the browser test runs with, once it is known all of it is here.
struct Browser {
    chromium: PathBuf,
    script: PathBuf,
}

impl Browser {
    /// A missing browser or package fails the test, since CI must never pass without
    /// running it; only `CALLMUX_SKIP_BROWSER=1` leaves it out, reported as ignored.
    fn ready() -> Self {
        let install = "run `bash tests/setup.sh` (it installs Debian's chromium and runs \
                       `npm ci --prefix tests/browser`); CALLMUX_SKIP_BROWSER=1 ignores this \
                       test on purpose";
        let chromium = std::env::var_os("CALLMUX_CHROMIUM")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
        assert!(
            chromium.is_file(),
            "no Chromium at {}: {install}",
            chromium.display()
        );
        let browser = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
        assert!(
            browser
                .join("node_modules/playwright-core/package.json")
                .is_file(),
            "tests/browser/node_modules has no playwright-core: {install}"
        );
        let node = std::process::Command::new("node").arg("--version").output();
        assert!(
            node.is_ok_and(|o| o.status.success()),
            "no `node` on PATH: {install}"
        );
        Self {
            chromium,
            script: browser.join("dashboard.mjs"),
        }
    }

    /// Runs another script of `tests/browser` with `scenario`, its output shown as it comes,
    /// and asserts that it passed.
    fn run(&self, script: &str, scenario: &serde_json::Value) {
        let mut node = Node(
            Command::new("node")
                .arg(self.script.with_file_name(script))
                .arg(scenario.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .spawn()
                .expect("node starts"),
        );
        let mut said = Vec::new();
        for line in BufReader::new(node.0.stdout.take().unwrap()).lines() {
            let line = line.unwrap();
            eprintln!("browser: {line}");
            said.push(line);
        }
        let status = node.0.wait().unwrap();
        assert!(
            status.success() && said.last().map(String::as_str) == Some("passed"),
            "{script} failed ({status}); its output is above"
        );
    }
}

/// The browser script's process, killed if the test ends before it does.
struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// callmux served in process on `addr`, until [`Server::stop`].
struct Server {
    addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    served: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(toml: &str, env: &[(&str, &str)], addr: SocketAddr) -> Self {
        let config = load_config(toml, env).expect("test config valid");
        let live = callmux::Live::fixed(config).expect("providers build");
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(callmux::serve(listener, live, async move {
            let _ = stopped.await;
        }));
        Self { addr, stop, served }
    }

    /// A graceful shutdown, as on SIGTERM.
    async fn stop(self) {
        let _ = self.stop.send(());
        self.served.await.unwrap().unwrap();
    }
}

/// Epoch milliseconds `minutes` ago, as Bland writes `timestamp`.
fn minutes_ago(minutes: u64) -> String {
    let now = u64::try_from(jiff::Timestamp::now().as_millisecond()).unwrap();
    (now - minutes * 60_000).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    skip_browser,
    ignore = "built with CALLMUX_SKIP_BROWSER=1: the headless Chromium test is left out on purpose"
)]
async fn the_dashboard_signs_in_and_shows_calls_changes_health_and_ends_a_call_in_headless_chromium(
) {
    let browser = Browser::ready();
    let ringing = "CA-ringing-7f3a";
    let added = "CA-new-91c2";
    let hostile_from = "<img src=x onerror=alert(1)><b>+1</b>";
    // An id callmux will not pass on: ending it is a 400 `INVALID_CALL_ID`, not a refused key.
    let invalid = "CA odd id 5e1";
    let (agents, listed) = live_agent_server(vec![
        agent_call(ringing, "+14155550101", "ringing", "outbound"),
        agent_call(invalid, "+14155550103", "in-progress", "outbound"),
        agent_call(
            "CA-answered-2b8e",
            "+14155550102",
            "in-progress",
            "incoming",
        ),
    ])
    .await;
    let bland_calls = [
        (
            "bland-queued-1",
            "QUEUED",
            1,
            "+18475586665",
            "+13105100966",
        ),
        (
            "bland-hostile-1",
            "IN_PROGRESS",
            4,
            hostile_from,
            "+16106876633",
        ),
        (
            "bland-long-1",
            "IN_PROGRESS",
            12,
            "+18154728283",
            "+12125550143",
        ),
    ]
    .map(|(id, status, minutes, from, to)| {
        let mut call = bland_call(id, status, &minutes_ago(minutes));
        call["from"] = json!(from);
        call["to"] = json!(to);
        call
    });
    let bland = bland_server(BLAND_KEY, BLAND_ORG, json!(bland_calls)).await;
    let failing = raw_server(500, r#"{"error":"internal"}"#).await;
    let toml = TestConfig::new()
        .server("shutdown_grace_ms", 2000)
        .org(OrgB::key("acme", KEY).providers(&["agents", "bland", "agents-eu"]))
        .provider(
            ProviderB::agent("agents", &agents.uri())
                .set("poll_interval_ms", POLL_MS)
                // Its two calls fill it: the capacity panel shows it full.
                .set("max_concurrent_calls", 2),
        )
        .provider(
            ProviderB::bland("bland", &bland.uri(), BLAND_KEY_VAR, BLAND_ORG)
                .set("poll_interval_ms", POLL_MS),
        )
        .provider(
            ProviderB::agent("agents-eu", &failing.uri())
                .set("poll_interval_ms", POLL_MS)
                .set("retries", 0)
                .set("circuit_failures", 0),
        )
        .toml();
    let receiver = Receiver::start(0).await;
    let toml = format!(
        "{toml}{}[[orgs.acme.keys]]\nname = \"wallboard\"\nsha256 = \"{}\"\nscopes = [\"read\"]\n",
        webhook_table("acme", "ops", &receiver.url, ""),
        sha256_hex(READONLY_KEY),
    );
    let env = [(BLAND_KEY_VAR, BLAND_KEY), ("HOOK_SECRET", WEBHOOK_SECRET)];
    let mut server = Server::start(&toml, &env, "127.0.0.1:0".parse().unwrap()).await;
    let addr = server.addr;
    let screenshot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::remove_file(&screenshot);

    let scenario = json!({
        "base": format!("http://{addr}"),
        "org": "acme",
        "key": KEY,
        "readonly": READONLY_KEY,
        "chromium": browser.chromium,
        "screenshot": screenshot,
        "calls": {
            "ringing": ringing,
            "added": added,
            // The Bland fake has no stop route: ending this call is refused upstream.
            "refused": "bland-queued-1",
            "invalid": invalid,
            "hostile": {"id": "bland-hostile-1", "from": hostile_from},
        },
        "providers": {"failing": "agents-eu"},
        "webhook": "ops",
        "capacity": {"full": "agents", "unlimited": "bland"},
    });
    let mut node = Node(
        Command::new("node")
            .arg(&browser.script)
            .arg(scenario.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("node starts"),
    );
    let mut to_node = node.0.stdin.take().unwrap();
    let from_node = BufReader::new(node.0.stdout.take().unwrap());
    let listed_by_node = listed.clone();
    // The script's output, read on a thread of its own; each step it asks for changes an
    // upstream here, then lets it go on.
    let runtime = tokio::runtime::Handle::current();
    let talk = tokio::task::spawn_blocking(move || {
        let mut said = Vec::new();
        for line in from_node.lines() {
            let line = line.unwrap();
            eprintln!("browser: {line}");
            if line == "step restart-server" {
                // Every stream ends (with its final event), and callmux comes back on the
                // same address, knowing nothing of the events it sent before.
                server = runtime.block_on(async {
                    server.stop().await;
                    Server::start(&toml, &env, addr).await
                });
                writeln!(to_node, "done restart-server").unwrap();
            } else if let Some(step) = line.strip_prefix("step ") {
                let mut calls = listed_by_node.lock().unwrap();
                match step {
                    "add-call" => {
                        calls.push(agent_call(added, "+14155550199", "ringing", "outbound"))
                    }
                    "answer-call" => {
                        for call in calls.iter_mut().filter(|c| c["call_id"] == ringing) {
                            call["status"] = json!("in-progress");
                        }
                    }
                    other => panic!("the browser script asked for an unknown step {other}"),
                }
                drop(calls);
                writeln!(to_node, "done {step}").unwrap();
            }
            said.push(line);
        }
        said
    });
    let said = tokio::time::timeout(Duration::from_secs(180), talk)
        .await
        .expect("the browser scenario finishes within 180 s")
        .unwrap();
    let status = node.0.wait().unwrap();
    assert!(
        status.success() && said.last().map(String::as_str) == Some("passed"),
        "the browser scenario failed ({status}); its output is above"
    );

    let ends: Vec<String> = agents
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.method.as_str() == "POST")
        .map(|r| r.url.path().to_owned())
        .collect();
    assert_eq!(ends, [format!("/api/calls/{added}/end")]);
    assert!(listed.lock().unwrap().iter().all(|c| c["call_id"] != added));

    let png = std::fs::read(&screenshot).expect("the scenario saved its screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
    if std::env::var("CALLMUX_UPDATE_SCREENSHOT").as_deref() == Ok("1") {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/dashboard.png");
        std::fs::write(&docs, &png).unwrap();
        eprintln!("screenshot written to {}", docs.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    skip_browser,
    ignore = "built with CALLMUX_SKIP_BROWSER=1: the headless Chromium test is left out on purpose"
)]
async fn the_dashboard_places_a_call_on_the_shipped_demo_route_and_shows_its_outcome_in_headless_chromium(
) {
    let browser = Browser::ready();
    // The shipped file as it is, plus a read-only key for the demo org, to see the form hidden.
    let read_only = "demo-wallboard-key";
    let keys = format!(
        r#"[{{name = "wallboard", sha256 = "{}", scopes = ["read"]}}]"#,
        sha256_hex(read_only)
    );
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("providers.toml");
    let server = Binary::start(&shipped, &[("CALLMUX_ORGS__DEMO__KEYS", &keys)], &[]);

    // And an org whose default route has one target, an agent server refusing with 429, and
    // whose other route fails over from it to a static provider: the attempts are shown.
    let busy = agent_server(json!([])).await;
    Mock::given(method("POST"))
        .and(path("/api/call"))
        .respond_with(
            ResponseTemplate::new(429)
                .set_body_json(json!({"success": false, "error": "All lines are busy"})),
        )
        .mount(&busy)
        .await;
    let calls = Path::new(env!("CARGO_MANIFEST_DIR")).join("demo/agent-calls.json");
    let toml = format!(
        "[orgs.acme]\napi_key_sha256 = \"{}\"\nproviders = [\"agents-busy\", \"spare\"]\n\
         routes = [\"busy\", \"failover\"]\n\n\
         [providers.agents-busy]\nkind = \"twilio-media-stream\"\nbase_url = \"{}\"\n\
         place_calls = true\nretries = 0\ncooldown_ms = 0\n\n\
         [providers.spare]\nkind = \"static\"\npath = {:?}\n\n\
         [routes.busy]\ntargets = [{{ provider = \"agents-busy\" }}]\n\n\
         [routes.failover]\ntargets = [{{ provider = \"agents-busy\" }}, {{ provider = \"spare\" }}]\n",
        sha256_hex(KEY),
        busy.uri(),
        calls.display().to_string(),
    );
    let failover = Server::start(&toml, &[], "127.0.0.1:0".parse().unwrap()).await;

    let scenario = json!({
        "base": server.url(""),
        "org": "demo",
        "key": "demo-key",
        "readOnlyKey": read_only,
        "chromium": browser.chromium,
        "screenshot": Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-place.png"),
        "failover": {
            "base": format!("http://{}", failover.addr),
            "org": "acme",
            "key": KEY,
            "refusing": "agents-busy",
            "taking": "spare",
        },
    });
    // The script drives a browser for a while: off the runtime's threads.
    tokio::task::spawn_blocking(move || browser.run("place.mjs", &scenario))
        .await
        .unwrap();
    // What callmux itself lists: each number placed as often as the script placed it, the
    // retried submission once.
    let listed: serde_json::Value = reqwest::Client::new()
        .get(server.url("/api/calls"))
        .header("authorization", "demo-key")
        .header("x-bland-org-id", "demo")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let to = |number: &str| {
        listed["calls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["to_number"] == number)
            .count()
    };
    assert_eq!((to("+14155550123"), to("+14155550124")), (1, 2), "{listed}");
    failover.stop().await;
}

//! Live streams benchmark of the real `callmux` binary over fake loopback upstreams.
//!
//! `cargo bench --bench streams [-- --subscribers 10000 --latency-subscribers 1000]` (`-- --help`
//! for the options):
//!
//! 1. at `--latency-subscribers` stream subscribers of one org polled every second, the time
//!    from the fake upstream answering with a change to the `change` event reaching each
//!    subscriber (one sample per subscriber per change), p50 and p99; then the same from a
//!    signed Twilio status callback being sent, on a second org, and from a signed Bland
//!    webhook (`POST /hooks/bland/{provider_id}`) being sent, on the same org;
//! 2. at `--subscribers` subscribers of the first org: callmux's RSS (VmRSS of the child
//!    process) before any and with all of them, and the upstream requests over ten poll
//!    intervals.
//!
//! Needs `ulimit -n` above the subscriber count plus a few hundred (each side holds one
//! descriptor per subscriber); the bench raises its soft limit to the hard one, and says so
//! if that is not enough. Everything listens on 127.0.0.1.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::routing::get;
use axum::Router;
use clap::Parser;
use hdrhistogram::Histogram;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const POLLED_ORG: &str = "bench-polled";
const PUSHED_ORG: &str = "bench-pushed";
const KEY: &str = "bench-stream-key";
const TOKEN_VAR: &str = "BENCH_TWILIO_TOKEN";
const TOKEN: &str = "bench-twilio-auth-token-0123456789";
const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const POLL_MS: u64 = 1_000;
/// Calls the polled org lists before any change.
const BASE_CALLS: usize = 50;
const POLL_ROUNDS: usize = 10;
/// Calls the pushed org lists, each pushed ringing → in progress → completed.
const PUSHED_CALLS: usize = 20;

fn main() {
    let args = Args::parse();
    raise_fd_limit(args.subscribers + args.latency_subscribers + 512);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(run(args.subscribers, args.latency_subscribers));
}

/// Live streams benchmark of the real callmux binary over fake loopback upstreams
/// (BENCHMARKS.md).
#[derive(Parser)]
#[command(name = "streams", bin_name = "cargo bench --bench streams --")]
struct Args {
    /// Subscribers of the polled org held at once, for callmux's RSS and the upstream requests.
    #[arg(long, default_value_t = 10_000, value_parser = positive())]
    subscribers: usize,
    /// Subscribers whose change events are timed.
    #[arg(long, default_value_t = 1_000, value_parser = positive())]
    latency_subscribers: usize,
    /// What `cargo bench` passes to every benchmark.
    #[arg(long, hide = true)]
    bench: bool,
}

/// A whole number above zero.
fn positive() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::new().range(1..)
}

/// The fake agent server: its list, the version it is at, and when it first answered with
/// each version.
struct Agent {
    calls: Mutex<(usize, String)>,
    first_served: Mutex<Vec<Option<Instant>>>,
    requests: AtomicUsize,
}

fn agent_body(version: usize) -> String {
    let mut calls: Vec<serde_json::Value> = (0..BASE_CALLS)
        .map(|i| {
            serde_json::json!({"call_id": format!("base-{i:04}-5f0c2a9e-7d1b-4c3a-9e8f"), "to_number": "+15550001111", "status": "in-progress", "direction": "outbound"})
        })
        .collect();
    if version > 0 {
        calls.push(serde_json::json!({"call_id": format!("round-{version}"), "to_number": "+15550002222", "status": "ringing", "direction": "incoming"}));
    }
    serde_json::json!({"calls": calls, "count": calls.len()}).to_string()
}

fn sid(n: usize) -> String {
    format!("CA{n:032x}")
}

/// The fake Twilio: one page per live status; the pushed org's calls all ringing.
/// Bland's active calls: `PUSHED_CALLS` calls in progress.
fn bland_page() -> String {
    let calls: Vec<serde_json::Value> = (0..PUSHED_CALLS)
        .map(|i| {
            serde_json::json!({"call_id": bland_id(i), "from": "+18475586665",
                "to": "+13105100966", "status": "IN_PROGRESS", "timestamp": "1758656817432"})
        })
        .collect();
    serde_json::json!({"data": calls, "errors": null}).to_string()
}

fn bland_id(n: usize) -> String {
    format!("bench-bland-{n:04}")
}

fn twilio_page(status: &str) -> String {
    let calls: Vec<serde_json::Value> = if status == "ringing" {
        (0..PUSHED_CALLS)
            .map(|i| {
                serde_json::json!({"sid": sid(i), "account_sid": ACCOUNT, "status": "ringing", "direction": "outbound-api", "from": "+15005550006", "to": "+14155550123", "date_created": "Tue, 23 Sep 2025 19:48:17 +0000", "start_time": "", "uri": format!("/2010-04-01/Accounts/{ACCOUNT}/Calls/{}.json", sid(i))})
            })
            .collect()
    } else {
        Vec::new()
    };
    serde_json::json!({"calls": calls, "next_page_uri": null, "page": 0, "page_size": 1000})
        .to_string()
}

async fn serve_fakes(agent: Arc<Agent>) -> (SocketAddr, SocketAddr) {
    let agent_app = Router::new()
        .route(
            "/api/calls",
            get(|State(agent): State<Arc<Agent>>| async move {
                agent.requests.fetch_add(1, Ordering::SeqCst);
                let (version, body) = agent.calls.lock().unwrap().clone();
                let mut first = agent.first_served.lock().unwrap();
                if first.len() <= version {
                    first.resize(version + 1, None);
                }
                first[version].get_or_insert_with(Instant::now);
                ([("content-type", "application/json")], body)
            }),
        )
        .with_state(agent);
    let twilio_app = Router::new()
        .route(
            &format!("/2010-04-01/Accounts/{ACCOUNT}/Calls.json"),
            get(
                |Query(q): Query<std::collections::HashMap<String, String>>| async move {
                    let status = q.get("Status").cloned().unwrap_or_default();
                    ([("content-type", "application/json")], twilio_page(&status))
                },
            ),
        )
        // Bland's active calls, on the same fake: the calls its webhooks end.
        .route(
            "/v1/calls/active",
            get(|| async { ([("content-type", "application/json")], bland_page()) }),
        );
    let a = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let t = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addrs = (a.local_addr().unwrap(), t.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(a, agent_app).await });
    tokio::spawn(async move { axum::serve(t, twilio_app).await });
    addrs
}

fn config(port: u16, agent: SocketAddr, twilio: SocketAddr, subscribers: usize) -> String {
    let digest = hex::encode(Sha256::digest(KEY.as_bytes()));
    format!(
        r#"[server]
bind = "127.0.0.1:{port}"
max_streams = {streams}
max_streams_per_org = {streams}
max_connections = {connections}

[orgs.{POLLED_ORG}]
api_key_sha256 = "{digest}"
providers = ["agents"]

[orgs.{PUSHED_ORG}]
api_key_sha256 = "{digest}"
providers = ["tw", "bl"]

[providers.agents]
kind = "twilio-media-stream"
base_url = "http://{agent}"
poll_interval_ms = {POLL_MS}

[providers.tw]
kind = "twilio"
base_url = "http://{twilio}"
account_sid = "{ACCOUNT}"
auth_token_env = "{TOKEN_VAR}"
public_url = "https://callmux.example.com/hooks/twilio/tw"
poll_interval_ms = 3600000

[providers.bl]
kind = "bland"
base_url = "http://{twilio}"
api_key_env = "{TOKEN_VAR}"
org_id = "bench-bland-org"
webhook_secret_env = "{TOKEN_VAR}"
poll_interval_ms = 3600000
"#,
        streams = subscribers * 2 + 100,
        connections = subscribers * 2 + 200,
    )
}

/// The child's resident set, from /proc.
fn rss_mib(child: &Child) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb / 1024.0
}

/// One subscriber: when each `change` event arrived, and whether its snapshot did.
#[derive(Default)]
struct Seen {
    snapshot: std::sync::atomic::AtomicBool,
    changes: Mutex<Vec<Instant>>,
}

async fn subscribe(addr: SocketAddr, org: &'static str) -> Arc<Seen> {
    let seen = Arc::new(Seen::default());
    let mut socket = loop {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(s) => break s,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let request = format!(
        "GET /calls/stream HTTP/1.1\r\nhost: callmux\r\nauthorization: {KEY}\r\nx-bland-org-id: {org}\r\n\r\n"
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let out = seen.clone();
    tokio::spawn(async move {
        // Each event is one chunk, so its name is never split by chunk framing; a read may
        // still end inside one, so the last bytes are kept for the next scan.
        let mut buf = vec![0u8; 4096];
        let mut carry: Vec<u8> = Vec::new();
        loop {
            let n = match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let at = Instant::now();
            carry.extend_from_slice(&buf[..n]);
            let text = &carry[..];
            let changes = count(text, b"event: change\n");
            if count(text, b"event: snapshot\n") > 0 {
                out.snapshot.store(true, Ordering::SeqCst);
            }
            if changes > 0 {
                let mut c = out.changes.lock().unwrap();
                c.extend(std::iter::repeat_n(at, changes));
            }
            let keep = carry.len().min(15);
            carry.drain(..carry.len() - keep);
        }
    });
    seen
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

async fn open(addr: SocketAddr, org: &'static str, n: usize) -> Vec<Arc<Seen>> {
    let mut all = Vec::with_capacity(n);
    for batch in 0..n.div_ceil(250) {
        let size = 250.min(n - batch * 250);
        let opened = futures::future::join_all((0..size).map(|_| subscribe(addr, org))).await;
        all.extend(opened);
    }
    wait_until(Duration::from_secs(120), || {
        all.iter().all(|s| s.snapshot.load(Ordering::SeqCst))
    })
    .await
    .expect("every subscriber gets its snapshot");
    all
}

async fn wait_until(within: Duration, done: impl Fn() -> bool) -> Option<()> {
    let deadline = Instant::now() + within;
    while !done() {
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Some(())
}

fn changes_seen(subs: &[Arc<Seen>]) -> Vec<usize> {
    subs.iter()
        .map(|s| s.changes.lock().unwrap().len())
        .collect()
}

async fn run(subscribers: usize, latency_subscribers: usize) {
    let agent = Arc::new(Agent {
        calls: Mutex::new((0, agent_body(0))),
        first_served: Mutex::new(Vec::new()),
        requests: AtomicUsize::new(0),
    });
    let (agent_addr, twilio_addr) = serve_fakes(agent.clone()).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("providers.toml");
    std::fs::write(&path, config(port, agent_addr, twilio_addr, subscribers)).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_callmux"))
        .arg("--config")
        .arg(&path)
        .env(TOKEN_VAR, TOKEN)
        .env("RUST_LOG", "warn")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the callmux binary starts");
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("callmux: {line}");
        }
    });
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_until(Duration::from_secs(30), || {
        std::net::TcpStream::connect(addr).is_ok()
    })
    .await
    .expect("callmux listens");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_idle = rss_mib(&child);
    println!(
        "callmux {} (release), poll_interval_ms = {POLL_MS}",
        env!("CARGO_PKG_VERSION")
    );
    println!("RSS with no subscribers: {rss_idle:.1} MiB");

    // ---- 1. latency at `latency_subscribers` ----
    let subs = open(addr, POLLED_ORG, latency_subscribers).await;
    let mut polled = Histogram::<u64>::new(3).unwrap();
    for round in 1..=POLL_ROUNDS {
        let before = changes_seen(&subs);
        *agent.calls.lock().unwrap() = (round, agent_body(round));
        wait_until(Duration::from_secs(10), || {
            changes_seen(&subs)
                .iter()
                .zip(&before)
                .all(|(now, was)| now > was)
        })
        .await
        .expect("every subscriber hears the change");
        let t0 = agent.first_served.lock().unwrap()[round].expect("served");
        for (s, was) in subs.iter().zip(&before) {
            let at = s.changes.lock().unwrap()[*was];
            polled
                .record(at.saturating_duration_since(t0).as_micros() as u64)
                .unwrap();
        }
    }
    drop(subs);
    let pushed_subs = open(addr, PUSHED_ORG, latency_subscribers).await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut pushed = Histogram::<u64>::new(3).unwrap();
    for (i, status) in (0..PUSHED_CALLS)
        .flat_map(|i| [(i, "in-progress"), (i, "completed")])
        .collect::<Vec<_>>()
    {
        let params: Vec<(String, String)> = [
            ("AccountSid", ACCOUNT.to_string()),
            ("CallSid", sid(i)),
            ("CallStatus", status.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let signature = callmux::provider::twilio::signature::sign(
            callmux::provider::twilio::signature::Algorithm::HmacSha1,
            TOKEN.as_bytes(),
            "https://callmux.example.com/hooks/twilio/tw",
            &params,
        );
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&params)
            .finish();
        let before = changes_seen(&pushed_subs);
        let t0 = Instant::now();
        let answer = client
            .post(format!("http://{addr}/hooks/twilio/tw"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-twilio-signature", signature)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 204);
        wait_until(Duration::from_secs(10), || {
            changes_seen(&pushed_subs)
                .iter()
                .zip(&before)
                .all(|(now, was)| now > was)
        })
        .await
        .expect("every subscriber hears the push");
        for (s, was) in pushed_subs.iter().zip(&before) {
            let at = s.changes.lock().unwrap()[*was];
            pushed
                .record(at.saturating_duration_since(t0).as_micros() as u64)
                .unwrap();
        }
    }
    // The same subscribers, each Bland call ended by a signed Bland webhook.
    let mut bland = Histogram::<u64>::new(3).unwrap();
    for i in 0..PUSHED_CALLS {
        let body = serde_json::json!({"call_id": bland_id(i), "completed": true,
            "status": "completed", "queue_status": "complete"})
        .to_string();
        let mut mac =
            <hmac::Hmac<Sha256> as hmac::digest::KeyInit>::new_from_slice(TOKEN.as_bytes())
                .unwrap();
        hmac::Mac::update(&mut mac, body.as_bytes());
        let signature = hex::encode(hmac::Mac::finalize(mac).into_bytes());
        let before = changes_seen(&pushed_subs);
        let t0 = Instant::now();
        let answer = client
            .post(format!("http://{addr}/hooks/bland/bl"))
            .header("content-type", "application/json")
            .header("x-webhook-signature", signature)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 204);
        wait_until(Duration::from_secs(10), || {
            changes_seen(&pushed_subs)
                .iter()
                .zip(&before)
                .all(|(now, was)| now > was)
        })
        .await
        .expect("every subscriber hears the webhook");
        for (s, was) in pushed_subs.iter().zip(&before) {
            let at = s.changes.lock().unwrap()[*was];
            bland
                .record(at.saturating_duration_since(t0).as_micros() as u64)
                .unwrap();
        }
    }
    drop(pushed_subs);
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "{latency_subscribers} subscribers, upstream change -> event at every subscriber: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} samples, {POLL_ROUNDS} changes)",
        ms(&polled, 0.5),
        ms(&polled, 0.99),
        polled.max() as f64 / 1000.0,
        polled.len()
    );
    println!(
        "{latency_subscribers} subscribers, push callback sent -> event at every subscriber: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} samples, {} callbacks)",
        ms(&pushed, 0.5),
        ms(&pushed, 0.99),
        pushed.max() as f64 / 1000.0,
        pushed.len(),
        PUSHED_CALLS * 2
    );
    println!(
        "{latency_subscribers} subscribers, Bland webhook sent -> event at every subscriber: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} samples, {PUSHED_CALLS} webhooks)",
        ms(&bland, 0.5),
        ms(&bland, 0.99),
        bland.max() as f64 / 1000.0,
        bland.len(),
    );

    // ---- 2. `subscribers` on one org ----
    tokio::time::sleep(Duration::from_secs(2)).await;
    let started = Instant::now();
    let subs = open(addr, POLLED_ORG, subscribers).await;
    println!(
        "{subscribers} subscribers connected in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_full = rss_mib(&child);
    let intervals = 10;
    let before = agent.requests.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(POLL_MS * intervals)).await;
    let asked = agent.requests.load(Ordering::SeqCst) - before;
    // One more change, to show all of them still hear it.
    let seen = changes_seen(&subs);
    *agent.calls.lock().unwrap() = (POLL_ROUNDS + 1, agent_body(POLL_ROUNDS + 1));
    let heard = wait_until(Duration::from_secs(30), || {
        changes_seen(&subs)
            .iter()
            .zip(&seen)
            .all(|(now, was)| now > was)
    })
    .await
    .is_some();
    let rss_after = rss_mib(&child);
    println!("RSS with {subscribers} subscribers: {rss_full:.1} MiB ({rss_after:.1} MiB after one more change)");
    println!(
        "upstream requests in {intervals} poll intervals with {subscribers} subscribers: {asked} ({:.2} per interval, one provider)",
        asked as f64 / intervals as f64
    );
    println!("every subscriber heard the next change: {heard}");
    let verdict = |ok: bool| if ok { "PASS" } else { "MISS" };
    println!(
        "target RSS < 100 MiB at {subscribers} (issue 25): {}",
        verdict(rss_full < 100.0 && rss_after < 100.0)
    );
    println!(
        "target one upstream request per provider per interval: {}",
        verdict(asked.abs_diff(intervals as usize) <= 1)
    );
    println!(
        "target p99 < 100 ms at {latency_subscribers}: polled {}, pushed {}",
        verdict(ms(&polled, 0.99) < 100.0),
        verdict(ms(&pushed, 0.99) < 100.0)
    );
    drop(subs);
    let _ = child.kill();
    let _ = child.wait();
}

/// Raises the soft limit on open files to the hard limit, and warns if that is under `need`.
fn raise_fd_limit(need: usize) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let hard = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(4))
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    // `prlimit` is util-linux's; the child process inherits the raised limit.
    let _ = Command::new("prlimit")
        .arg(format!("--pid={}", std::process::id()))
        .arg(format!("--nofile={hard}:{hard}"))
        .status();
    if hard < need {
        eprintln!(
            "warning: the hard limit on open files is {hard}, under the {need} this run needs; \
             raise it (ulimit -Hn) or pass a smaller --subscribers"
        );
    }
}

//! Webhooks-out benchmark, in process: 1,000 changes a second fanned out to 10 endpoints
//! (one loopback receiver behind them), against a baseline of the same posts sent straight
//! with reqwest, no queue, in the same run.
//!
//! `cargo bench --bench webhooks [-- --seconds 10 --rate 1000 --endpoints 10 --redis --no-baseline]`
//!
//! Prints, for each: the posts offered per second (changes × endpoints), the time from an
//! event being queued (or, for the baseline, the post being started) to the receiver having
//! it, p50 and p99, the posts received, and the pending count sampled every second (it must
//! not grow). With `--redis` the endpoints keep their deliveries in a `redis-server` of the
//! bench's own on a free loopback port (as `[state] backend = "redis"` does): the time to
//! the receiver having a post bounds the time to its first attempt starting from above.

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use callmux::config::WebhookSpec;
use callmux::service::events::outbox::{Endpoint, SystemLookup};
use callmux::service::events::OutEvent;
use callmux::state::redis::Redis;
use callmux::state::settings::RedisConfig;
use callmux::telemetry::Telemetry;
use hdrhistogram::Histogram;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

struct Args {
    seconds: u64,
    rate: u64,
    endpoints: usize,
    redis: bool,
    baseline: bool,
}

fn args() -> Args {
    let mut a = Args {
        seconds: 10,
        rate: 1000,
        endpoints: 10,
        redis: false,
        baseline: true,
    };
    let argv: Vec<String> = std::env::args().collect();
    a.redis = argv.iter().any(|a| a == "--redis");
    a.baseline = !argv.iter().any(|a| a == "--no-baseline");
    for pair in argv.windows(2) {
        let n = || pair[1].parse().expect("a number");
        match pair[0].as_str() {
            "--seconds" => a.seconds = n(),
            "--rate" => a.rate = n(),
            "--endpoints" => a.endpoints = n() as usize,
            _ => {}
        }
    }
    a
}

/// Receive times: microseconds from `base` to arrival, minus the `sent_us` the body names.
struct Seen {
    base: Instant,
    latencies: Mutex<Histogram<u64>>,
}

async fn take(State(seen): State<Arc<Seen>>, body: Bytes) -> StatusCode {
    let now = seen.base.elapsed().as_micros() as u64;
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if let Some(sent) = v["data"]["sent_us"].as_u64() {
        let _ = seen
            .latencies
            .lock()
            .unwrap()
            .record(now.saturating_sub(sent).max(1));
    }
    StatusCode::NO_CONTENT
}

fn event(base: Instant, n: u64) -> OutEvent {
    let sent = base.elapsed().as_micros() as u64;
    OutEvent {
        id: format!("evt_{n:032x}"),
        kind: "call.updated",
        body: Bytes::from(format!(
            r#"{{"type":"call.updated","timestamp":"2026-01-01T00:00:00.000Z","data":{{"call_id":"c{n}","status":"in-progress","sent_us":{sent}}}}}"#
        )),
    }
}

fn spec(name: String, url: &str) -> WebhookSpec {
    WebhookSpec {
        name,
        url: url::Url::parse(url).unwrap(),
        secret: SECRET.into(),
        secret_env: "BENCH_SECRET".into(),
        events: vec!["call.updated".into()],
        allow_private: true,
        timeout: Duration::from_secs(10),
        retry_delays: vec![Duration::from_secs(5)],
        max_pending: 10_000,
    }
}

fn report(name: &str, seen: &Seen, offered: u64, seconds: f64, pending: &[usize]) {
    let h = seen.latencies.lock().unwrap();
    println!(
        "{name:<10} offered/s {:>8.0}  p50 ms {:>7.3}  p99 ms {:>7.3}  received {:>7}/{offered}  pending each second {:?}",
        offered as f64 / seconds,
        h.value_at_quantile(0.5) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
        h.len(),
        pending,
    );
}

/// A `redis-server` of the bench's own on a free loopback port, nothing saved; killed on drop.
struct RedisServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("--redis needs redis-server (`bash tests/setup.sh` installs it)");
        Self {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// callmux's store on `server`, once it answers.
async fn store(server: &RedisServer, telemetry: &Arc<Telemetry>) -> Arc<Redis> {
    let config = RedisConfig {
        url: format!("redis://127.0.0.1:{}/0", server.port).into(),
        url_env: "BENCH_REDIS_URL".into(),
        secret: "bench-fleet-secret-0123456789abcdef".into(),
        secret_env: "BENCH_STATE_SECRET".into(),
        timeout: Duration::from_secs(1),
    };
    let redis = Redis::start(&config, telemetry).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !redis.is_up() {
        assert!(Instant::now() < deadline, "redis-server did not answer");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    redis
}

#[tokio::main]
async fn main() {
    let a = args();
    let base = Instant::now();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let seen = Arc::new(Seen {
        base,
        latencies: Mutex::new(Histogram::new(3).unwrap()),
    });
    let app = axum::Router::new()
        .route("/hook", post(take))
        .with_state(seen.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    println!(
        "{} changes/s to {} endpoints for {} s",
        a.rate, a.endpoints, a.seconds
    );

    let sent = a.rate * a.seconds * a.endpoints as u64;
    let telemetry = Arc::new(Telemetry::default());
    let server = a.redis.then(RedisServer::start);
    let redis = match &server {
        Some(server) => Some(store(server, &telemetry).await),
        None => None,
    };
    let name = if a.redis { "redis" } else { "outboxes" };
    let endpoints: Vec<Arc<Endpoint>> = (0..a.endpoints)
        .map(|i| {
            Endpoint::new(
                "bench",
                spec(format!("e{i}"), &url),
                telemetry.clone(),
                Arc::new(SystemLookup),
                redis.clone(),
            )
        })
        .collect();
    let fan = |ev: &OutEvent| {
        for e in &endpoints {
            e.enqueue(ev);
        }
    };
    let pending_now = || endpoints.iter().map(|e| e.view().pending).sum();
    let pending = drive(&a, base, fan, pending_now).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    report(name, &seen, sent, a.seconds as f64, &pending);
    let left: usize = pending_now();
    println!("{name:<10} pending 2 s after the last change: {left}");

    // Baseline, after the outboxes: the same posts straight from reqwest, one task each, no
    // queue or signing. Nothing bounds its tasks, so on a busy machine it can fall behind
    // for good; run first, its backlog went on into the outboxes' run and was counted there.
    let client = reqwest::Client::new();
    let n = a.endpoints;
    let direct = |ev: &OutEvent| {
        for _ in 0..n {
            let client = client.clone();
            let url = url.clone();
            let body = ev.body.clone();
            tokio::spawn(async move {
                let _ = client.post(&url).body(body).send().await;
            });
        }
    };
    if a.baseline {
        seen.latencies.lock().unwrap().reset();
        let pending = drive(&a, base, direct, || 0).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        report("baseline", &seen, sent, a.seconds as f64, &pending);
    }
}

/// Makes `rate` changes a second for `seconds`, in 10 ms ticks, each given to `fan`; returns
/// `pending()` sampled at the end of each second.
async fn drive(
    a: &Args,
    base: Instant,
    fan: impl Fn(&OutEvent),
    pending: impl Fn() -> usize,
) -> Vec<usize> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let per_tick = a.rate / 100;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut samples = Vec::new();
    for t in 0..a.seconds * 100 {
        tick.tick().await;
        for _ in 0..per_tick {
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            fan(&event(base, n));
        }
        if t % 100 == 99 {
            samples.push(pending());
        }
    }
    samples
}

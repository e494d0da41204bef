//! Webhooks-out benchmark, in process: 1,000 changes a second fanned out to 10 endpoints
//! (one loopback receiver behind them), against a baseline of the same posts sent straight
//! with reqwest, no queue, in the same run.
//!
//! `cargo bench --bench webhooks [-- --seconds 10 --rate 1000 --endpoints 10]`
//!
//! Prints, for each: the posts offered per second (changes × endpoints), the time from an event being queued (or, for
//! the baseline, the post being started) to the receiver having it, p50 and p99, and the
//! pending count sampled every second (it must not grow).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use callmux::config::WebhookSpec;
use callmux::service::events::outbox::{Endpoint, SystemLookup};
use callmux::service::events::OutEvent;
use callmux::telemetry::Telemetry;
use hdrhistogram::Histogram;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

struct Args {
    seconds: u64,
    rate: u64,
    endpoints: usize,
}

fn args() -> Args {
    let mut a = Args {
        seconds: 10,
        rate: 1000,
        endpoints: 10,
    };
    let argv: Vec<String> = std::env::args().collect();
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

fn report(name: &str, seen: &Seen, delivered: u64, seconds: f64, pending: &[usize]) {
    let h = seen.latencies.lock().unwrap();
    println!(
        "{name:<10} offered/s {:>8.0}  p50 ms {:>7.3}  p99 ms {:>7.3}  pending each second {:?}",
        delivered as f64 / seconds,
        h.value_at_quantile(0.5) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
        pending,
    );
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

    // Baseline: the same posts straight from reqwest, one task each, no queue or signing.
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
    let pending = drive(&a, base, direct, || 0).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sent = a.rate * a.seconds * a.endpoints as u64;
    report("baseline", &seen, sent, a.seconds as f64, &pending);
    seen.latencies.lock().unwrap().reset();

    let telemetry = Arc::new(Telemetry::default());
    let endpoints: Vec<Arc<Endpoint>> = (0..a.endpoints)
        .map(|i| {
            Endpoint::new(
                "bench",
                spec(format!("e{i}"), &url),
                telemetry.clone(),
                Arc::new(SystemLookup),
                None,
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
    report("outboxes", &seen, sent, a.seconds as f64, &pending);
    let left: usize = pending_now();
    println!("outboxes   pending 2 s after the last change: {left}");
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

//! Faults from real loopback upstreams — stalls, broken and endless bodies, garbage, flapping —
//! each costing only its own provider within its deadline; then retries, the circuit breaker
//! and the server's own bounds.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::time::timeout;

/// Org `acme` sees `good` and `bad`; org `solo` sees only `bad`; org `healthy` only `good`.
const ACME_KEY: &str = "acme-key";
const SOLO_KEY: &str = "solo-key";
const HEALTHY_KEY: &str = "healthy-key";

/// Slack added to every deadline a test checks: bounds, never benchmarks.
const MARGIN: Duration = Duration::from_secs(10);

/// The healthy agent server's one call, as callmux lists it in the calls shape.
fn good_call() -> Value {
    agent_call("g1", "+1", "in-progress", "outbound")
}

const BAD_CALLS_BODY: &str = r#"{"calls": [{"call_id": "b1", "to_number": "+2", "status": "in-progress", "direction": "outbound"}], "count": 1}"#;

/// The three orgs over `good` (healthy) and `bad` at `bad_url`, with `bad_settings` (TOML
/// lines) added to `[providers.bad]`.
fn three_orgs_config(good_url: &str, bad_url: &str, bad_settings: &str) -> TestConfig {
    TestConfig::new()
        .org(OrgB::key("acme", ACME_KEY).providers(&["good", "bad"]))
        .org(OrgB::key("solo", SOLO_KEY).providers(&["bad"]))
        .org(OrgB::key("healthy", HEALTHY_KEY).providers(&["good"]))
        .provider(ProviderB::agent("good", good_url))
        .provider(ProviderB::agent("bad", bad_url).raw(bad_settings))
}

fn three_orgs(good_url: &str, bad_url: &str, bad_settings: &str) -> String {
    three_orgs_config(good_url, bad_url, bad_settings).toml()
}

// ---- fault upstreams: raw HTTP/1.1 over tokio, by hand ----

/// What a fault upstream does with one request.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// A complete answer with this status and body; the connection is kept alive.
    Answer(u16, &'static str),
    /// Status line and headers with a Content-Length, part of the body, then nothing more.
    StallMidBody,
    /// Status line and headers with a Content-Length, half the body, then the socket closes.
    BreakMidBody,
    /// A chunked body that never ends, written as fast as the client reads it.
    EndlessChunked,
    /// This many bytes of non-JSON with a correct Content-Length.
    NonJson(usize),
    /// The request is read and the connection closed without a word.
    CloseImmediately,
    /// The request is read and never answered.
    Silent,
}

/// A loopback upstream that meets its `n`th request (from 0) with `pick(n)`.
struct FaultServer {
    url: String,
    hits: Arc<AtomicUsize>,
}

impl FaultServer {
    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

type Picker = Arc<dyn Fn(usize) -> Fault + Send + Sync>;

async fn fault_server(pick: impl Fn(usize) -> Fault + Send + Sync + 'static) -> FaultServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let pick: Picker = Arc::new(pick);
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(serve_faults(sock, pick.clone(), counter.clone()));
        }
    });
    FaultServer { url, hits }
}

/// A fault upstream that always does the same thing.
async fn always(fault: Fault) -> FaultServer {
    fault_server(move |_| fault).await
}

/// `first` on the first request, then the good calls body to every later one.
async fn first_then_good(first: Fault) -> FaultServer {
    fault_server(move |n| {
        if n == 0 {
            first
        } else {
            Fault::Answer(200, BAD_CALLS_BODY)
        }
    })
    .await
}

async fn serve_faults(mut sock: TcpStream, pick: Picker, hits: Arc<AtomicUsize>) {
    for _ in 0..10_000 {
        if !read_request_head(&mut sock).await {
            return;
        }
        let n = hits.fetch_add(1, Ordering::SeqCst);
        if !act(&mut sock, pick(n)).await {
            return;
        }
    }
}

/// Reads one request head (a GET has no body). False on EOF, error or an absurd head.
async fn read_request_head(sock: &mut TcpStream) -> bool {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > 256 * 1024 {
            return false;
        }
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
    }
    true
}

fn head(status: u16, content_length: usize) -> String {
    format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\ncontent-length: {content_length}\r\n\r\n",
        if status < 400 { "OK" } else { "Oops" }
    )
}

/// Waits (bounded) until the client hangs up.
async fn until_client_hangs_up(sock: &mut TcpStream) {
    let mut byte = [0u8; 1];
    let _ = timeout(Duration::from_secs(120), async {
        while let Ok(n) = sock.read(&mut byte).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

/// Does `fault` on one request; true to keep the connection for another request.
async fn act(sock: &mut TcpStream, fault: Fault) -> bool {
    match fault {
        Fault::Answer(status, body) => {
            let answer = format!("{}{body}", head(status, body.len()));
            sock.write_all(answer.as_bytes()).await.is_ok()
        }
        Fault::StallMidBody => {
            let partial = format!("{}{{\"calls\": [{{\"call_id\": \"s1\", ", head(200, 4096));
            if sock.write_all(partial.as_bytes()).await.is_ok() {
                until_client_hangs_up(sock).await;
            }
            false
        }
        Fault::BreakMidBody => {
            let half = format!(
                "{}{{\"calls\": [{{\"call_id\": \"h1\", \"pad\": \"{}",
                head(200, 4096),
                "x".repeat(2000)
            );
            let _ = sock.write_all(half.as_bytes()).await;
            let _ = sock.flush().await;
            false // the socket is dropped: FIN after half the promised body
        }
        Fault::EndlessChunked => {
            let start = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
            if sock.write_all(start.as_bytes()).await.is_err() {
                return false;
            }
            let mut chunk = b"10000\r\n".to_vec(); // 64 KiB per chunk
            chunk.extend(std::iter::repeat_n(b' ', 0x10000));
            chunk.extend_from_slice(b"\r\n");
            // "Endless": 64 GiB, far beyond anything a bounded reader takes.
            for _ in 0..(1u64 << 20) {
                if sock.write_all(&chunk).await.is_err() {
                    break;
                }
            }
            false
        }
        Fault::NonJson(len) => {
            if sock.write_all(head(200, len).as_bytes()).await.is_err() {
                return false;
            }
            let piece = b"<html>this is not json</html>\n".repeat(2200); // ~64 KiB
            let mut left = len;
            while left > 0 {
                let n = left.min(piece.len());
                if sock.write_all(&piece[..n]).await.is_err() {
                    return false;
                }
                left -= n;
            }
            true
        }
        Fault::CloseImmediately => false,
        Fault::Silent => {
            until_client_hangs_up(sock).await;
            false
        }
    }
}

// ---- checks ----

/// One request, answered within `bound`.
async fn get_within(app: &TestApp, path: &str, key: &str, org: &str, bound: Duration) -> Reply {
    let started = Instant::now();
    let reply = timeout(
        bound + MARGIN,
        app.get(path, &[("authorization", key), ("x-bland-org-id", org)]),
    )
    .await
    .unwrap_or_else(|_| panic!("callmux did not answer {path} for {org} at all"));
    assert!(
        started.elapsed() < bound,
        "{path} for {org} took {:?}, over its bound {bound:?}: {:#}",
        started.elapsed(),
        reply.body
    );
    reply
}

/// `errors` names exactly `bad` with `code`, with a message.
fn assert_names_bad(body: &Value, code: &str) {
    let errors = body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors: {body:#}"));
    assert_eq!(errors.len(), 1, "{body:#}");
    assert_eq!(errors[0]["provider"], "bad", "{body:#}");
    assert_eq!(errors[0]["error"], code, "{body:#}");
    assert!(
        !errors[0]["message"].as_str().unwrap_or("").is_empty(),
        "{body:#}"
    );
}

/// The documented answers to a failing `bad`: a 200 partial for `acme` in both shapes, with
/// `good`'s call, and a 502 for `solo`, whose only provider it is — each within `bound`.
async fn assert_bad_fails_with(app: &TestApp, code: &str, bound: Duration) {
    let calls = get_within(app, "/api/calls", ACME_KEY, "acme", bound).await;
    assert_eq!(calls.status, 200, "{:#}", calls.body);
    assert_eq!(
        calls.body["calls"],
        json!([good_call()]),
        "{:#}",
        calls.body
    );
    assert_eq!(calls.body["count"], 1);
    assert_names_bad(&calls.body, code);

    let bland = get_within(app, "/v1/calls/active", ACME_KEY, "acme", bound).await;
    assert_eq!(bland.status, 200, "{:#}", bland.body);
    assert_eq!(bland.body["data"][0]["call_id"], "g1", "{:#}", bland.body);
    assert_eq!(bland.body["data"].as_array().unwrap().len(), 1);
    assert_names_bad(&bland.body, code);

    let solo = get_within(app, "/api/calls", SOLO_KEY, "solo", bound).await;
    assert_eq!(solo.status, 502, "{:#}", solo.body);
    assert_eq!(solo.body["calls"], json!([]));
    assert_eq!(solo.body["count"], 0);
    assert_names_bad(&solo.body, code);

    let solo = get_within(app, "/v1/calls/active", SOLO_KEY, "solo", bound).await;
    assert_eq!(solo.status, 502, "{:#}", solo.body);
    assert_eq!(solo.body["data"], Value::Null);
    assert_names_bad(&solo.body, code);
}

/// After a fault, callmux still answers normally: the healthy org's complete answer, exactly.
async fn assert_still_serving(app: &TestApp) {
    let reply = get_within(app, "/api/calls", HEALTHY_KEY, "healthy", MARGIN).await;
    assert_eq!(reply.status, 200, "{:#}", reply.body);
    assert_eq!(reply.body, json!({"calls": [good_call()], "count": 1}));
    let reply = get_within(app, "/v1/calls/active", HEALTHY_KEY, "healthy", MARGIN).await;
    assert_eq!(reply.status, 200, "{:#}", reply.body);
    assert_eq!(reply.body["errors"], Value::Null);
    assert_eq!(reply.body["data"][0]["call_id"], "g1");
}

async fn good_server() -> wiremock::MockServer {
    agent_server(json!([good_call()])).await
}

// ---- the faults ----

#[tokio::test]
async fn an_upstream_that_stalls_mid_body_is_cut_off_at_its_timeout() {
    let good = good_server().await;
    let bad = always(Fault::StallMidBody).await;
    let app = spawn_app(&three_orgs(&good.uri(), &bad.url, "timeout_ms = 500")).await;
    assert_bad_fails_with(
        &app,
        "UPSTREAM_TIMEOUT",
        Duration::from_millis(500) + MARGIN,
    )
    .await;
    assert_still_serving(&app).await;
    assert!(bad.hits() >= 1);
}

#[tokio::test]
async fn an_upstream_that_hangs_up_mid_body_is_a_broken_response_not_a_timeout() {
    let good = good_server().await;
    let bad = always(Fault::BreakMidBody).await;
    let app = spawn_app(&three_orgs(&good.uri(), &bad.url, "timeout_ms = 5000")).await;
    assert_bad_fails_with(
        &app,
        "UPSTREAM_BROKEN_RESPONSE",
        Duration::from_millis(5000) + MARGIN,
    )
    .await;
    assert_still_serving(&app).await;
}

#[tokio::test]
async fn an_upstream_that_hangs_up_at_once_is_a_broken_response() {
    let good = good_server().await;
    let bad = always(Fault::CloseImmediately).await;
    let app = spawn_app(&three_orgs(&good.uri(), &bad.url, "timeout_ms = 5000")).await;
    assert_bad_fails_with(
        &app,
        "UPSTREAM_BROKEN_RESPONSE",
        Duration::from_millis(5000) + MARGIN,
    )
    .await;
    assert_still_serving(&app).await;
}

#[tokio::test]
async fn ten_megabytes_of_non_json_is_a_bad_response_under_the_default_cap() {
    let good = good_server().await;
    let bad = always(Fault::NonJson(10_000_000)).await;
    let app = spawn_app(&three_orgs(&good.uri(), &bad.url, "timeout_ms = 15000")).await;
    assert_bad_fails_with(
        &app,
        "UPSTREAM_BAD_RESPONSE",
        Duration::from_millis(15000) + MARGIN,
    )
    .await;
    assert_still_serving(&app).await;
}

#[tokio::test]
async fn an_endless_chunked_body_is_too_large_in_process_too() {
    let good = good_server().await;
    let bad = always(Fault::EndlessChunked).await;
    let settings = "timeout_ms = 10000\nmax_body_bytes = 1048576";
    let app = spawn_app(&three_orgs(&good.uri(), &bad.url, settings)).await;
    assert_bad_fails_with(
        &app,
        "UPSTREAM_TOO_LARGE",
        Duration::from_millis(10000) + MARGIN,
    )
    .await;
    assert_still_serving(&app).await;
}

// ---- the real binary ----

/// Peak resident set size so far of process `pid`, from /proc/<pid>/status.
fn peak_rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("/proc/<pid>/status is readable");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM is reported");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmHWM is a number of kB");
    kib * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_body_is_too_large_and_memory_stays_bounded_over_twenty_requests() {
    const LIMIT: u64 = 200 * 1024 * 1024;
    let good = good_server().await;
    let bad = always(Fault::EndlessChunked).await;
    // The breaker is turned off so that every request really reads the endless body.
    let settings = "timeout_ms = 10000\nmax_body_bytes = 1048576\ncircuit_failures = 0";
    let server = Binary::start(
        &three_orgs(&good.uri(), &bad.url, settings),
        &[("RUST_LOG", "info")],
        &[],
    );
    let bound = Duration::from_millis(10000) + MARGIN;
    for i in 0..20 {
        let (key, org) = if i % 4 == 3 {
            (SOLO_KEY, "solo")
        } else {
            (ACME_KEY, "acme")
        };
        let path = if i % 2 == 0 {
            "/api/calls"
        } else {
            "/v1/calls/active"
        };
        let reply = get_within(&server.app, path, key, org, bound).await;
        let expected = if org == "solo" { 502 } else { 200 };
        assert_eq!(reply.status, expected, "request {i}: {:#}", reply.body);
        assert_names_bad(&reply.body, "UPSTREAM_TOO_LARGE");
        let peak = peak_rss_bytes(server.pid());
        assert!(
            peak < LIMIT,
            "after request {i} callmux peaked at {} MiB",
            peak >> 20
        );
    }
    assert!(
        bad.hits() >= 20,
        "each request read the endless body: {} upstream requests",
        bad.hits()
    );
    assert_still_serving(&server.app).await;
    let peak = peak_rss_bytes(server.pid());
    eprintln!(
        "callmux peak RSS after 20 endless bodies: {} MiB",
        peak >> 20
    );
    assert!(peak < LIMIT, "callmux peaked at {} MiB", peak >> 20);
    let log = server.output();
    assert!(!log.contains("panicked"), "callmux panicked:\n{log}");
}

// ---- flapping ----

/// How the flapping upstream behaves, by time: each phase lasts `FLAP_PHASE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Up,
    Unavailable,
    HangsUp,
    Refusing,
}

const FLAP_PHASE: Duration = Duration::from_millis(200);
const FLAP_BODY: &str = r#"{"calls": [{"call_id": "f1", "to_number": "+3", "status": "ringing", "direction": "outbound"}], "count": 1}"#;

fn phase_at(started: Instant) -> Phase {
    let n = started.elapsed().as_millis() / FLAP_PHASE.as_millis();
    [
        Phase::Up,
        Phase::Unavailable,
        Phase::HangsUp,
        Phase::Refusing,
    ][(n % 4) as usize]
}

fn listen_reusable(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// An upstream cycling through normal answers, 503s, hang-ups and refused connections (its
/// listener closed) until `stop` is set (or a minute has passed).
async fn flapping_server(stop: Arc<AtomicBool>) -> (String, Arc<AtomicUsize>) {
    let listener = listen_reusable("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        let started = Instant::now();
        let mut listener = Some(listener);
        while !stop.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(60) {
            if phase_at(started) == Phase::Refusing {
                listener = None; // closed: connecting is refused
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
            let Some(open) = &listener else {
                listener = listen_reusable(addr).ok();
                if listener.is_none() {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                continue;
            };
            if let Ok(Ok((mut sock, _))) = timeout(Duration::from_millis(5), open.accept()).await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    for _ in 0..10_000 {
                        if !read_request_head(&mut sock).await {
                            return;
                        }
                        counter.fetch_add(1, Ordering::SeqCst);
                        let fault = match phase_at(started) {
                            Phase::Up => Fault::Answer(200, FLAP_BODY),
                            Phase::Unavailable => Fault::Answer(503, r#"{"error": "down"}"#),
                            Phase::HangsUp | Phase::Refusing => Fault::CloseImmediately,
                        };
                        if !act(&mut sock, fault).await {
                            return;
                        }
                    }
                });
            }
        }
    });
    (format!("http://{addr}"), hits)
}

/// One answer during the flapping: always 200 with the healthy call, and either complete (the
/// flapping provider's call too) or partial naming only the flapping provider.
fn check_flapping_answer(path: &str, reply: &Reply, codes: &mut Vec<String>) -> bool {
    assert_eq!(
        reply.status, 200,
        "a {} while the healthy provider is up: {:#}",
        reply.status, reply.body
    );
    let list = if path == "/api/calls" {
        &reply.body["calls"]
    } else {
        &reply.body["data"]
    };
    let ids: Vec<&str> = list
        .as_array()
        .unwrap_or_else(|| panic!("no list: {:#}", reply.body))
        .iter()
        .map(|c| c["call_id"].as_str().unwrap_or(""))
        .collect();
    assert!(
        ids.contains(&"g1"),
        "healthy call missing: {:#}",
        reply.body
    );
    match reply.body["errors"].as_array() {
        None => {
            assert_eq!(ids, ["g1", "f1"], "{:#}", reply.body);
            true
        }
        Some(errors) => {
            assert_eq!(ids, ["g1"], "{:#}", reply.body);
            assert_eq!(errors.len(), 1, "{:#}", reply.body);
            assert_eq!(errors[0]["provider"], "bad", "{:#}", reply.body);
            let code = errors[0]["error"].as_str().unwrap_or("").to_string();
            assert!(
                [
                    "UPSTREAM_ERROR",
                    "UPSTREAM_UNREACHABLE",
                    "UPSTREAM_BROKEN_RESPONSE",
                    "UPSTREAM_TIMEOUT",
                    "CIRCUIT_OPEN",
                ]
                .contains(&code.as_str()),
                "unexpected code {code}: {:#}",
                reply.body
            );
            codes.push(code);
            false
        }
    }
}

/// Fifty clients loop for three seconds through callmux (the real binary) over `good` and a
/// flapping `bad` with `bad_settings`; every answer must be a 200 with the healthy call.
async fn fifty_clients_through_a_flapping_provider(bad_settings: &str) -> Vec<String> {
    let good = good_server().await;
    let stop = Arc::new(AtomicBool::new(false));
    let (flap_url, flap_hits) = flapping_server(stop.clone()).await;
    let server = Binary::start(
        &three_orgs(&good.uri(), &flap_url, bad_settings),
        &[("RUST_LOG", "info")],
        &[],
    );
    let app = Arc::new(server.app.clone_handle());
    let until = Instant::now() + Duration::from_secs(3);
    let clients = (0..50).map(|client| {
        let app = app.clone();
        tokio::spawn(async move {
            let (mut complete, mut partial, mut codes) = (0usize, 0usize, Vec::new());
            for round in 0..100_000usize {
                if Instant::now() >= until {
                    break;
                }
                let path = if (client + round) % 2 == 0 {
                    "/api/calls"
                } else {
                    "/v1/calls/active"
                };
                let reply = get_within(
                    &app,
                    path,
                    ACME_KEY,
                    "acme",
                    Duration::from_millis(2000) + MARGIN,
                )
                .await;
                if check_flapping_answer(path, &reply, &mut codes) {
                    complete += 1;
                } else {
                    partial += 1;
                }
            }
            (complete, partial, codes)
        })
    });
    let mut totals = (0, 0);
    let mut codes = Vec::new();
    for client in futures::future::join_all(clients).await {
        let (complete, partial, seen) = client.expect("a client task failed: see its panic");
        totals.0 += complete;
        totals.1 += partial;
        codes.extend(seen);
    }
    stop.store(true, Ordering::SeqCst);
    codes.sort();
    codes.dedup();
    eprintln!(
        "flapping: {} complete, {} partial answers, {} upstream requests, codes {codes:?}",
        totals.0,
        totals.1,
        flap_hits.load(Ordering::SeqCst)
    );
    assert!(totals.0 > 0, "the flapping provider never answered through");
    assert!(totals.1 > 0, "the flapping provider never failed");
    assert_still_serving(&server.app).await;
    let log = server.output();
    assert!(!log.contains("panicked"), "callmux panicked:\n{log}");
    codes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_clients_through_a_flapping_provider_always_get_the_healthy_calls() {
    // The breaker is off, so every ask meets the flapping upstream in whatever phase it is in.
    let codes =
        fifty_clients_through_a_flapping_provider("timeout_ms = 2000\ncircuit_failures = 0").await;
    for code in [
        "UPSTREAM_ERROR",
        "UPSTREAM_BROKEN_RESPONSE",
        "UPSTREAM_UNREACHABLE",
    ] {
        assert!(
            codes.iter().any(|c| c == code),
            "never saw {code}: {codes:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_clients_through_a_flapping_provider_with_a_quick_breaker_always_get_the_healthy_calls(
) {
    // The breaker opens and half-opens many times over, under fifty concurrent clients.
    let settings = "timeout_ms = 2000\ncircuit_failures = 2\ncircuit_cooldown_ms = 100";
    let codes = fifty_clients_through_a_flapping_provider(settings).await;
    assert!(codes.iter().any(|c| c == "CIRCUIT_OPEN"), "{codes:?}");
}

trait CloneHandle {
    fn clone_handle(&self) -> TestApp;
}

impl CloneHandle for TestApp {
    fn clone_handle(&self) -> TestApp {
        TestApp {
            addr: self.addr,
            http: self.http.clone(),
        }
    }
}

// ---- retries ----

/// `acme` over `good` and `bad` at `bad_url` with `bad_settings`.
async fn app_with_bad(bad_url: &str, bad_settings: &str) -> (TestApp, wiremock::MockServer) {
    let good = good_server().await;
    let app = spawn_app(&three_orgs(&good.uri(), bad_url, bad_settings)).await;
    (app, good)
}

#[tokio::test]
async fn a_503_then_a_good_answer_is_retried_into_a_complete_answer() {
    let bad = first_then_good(Fault::Answer(503, r#"{"error": "busy"}"#)).await;
    let (app, _good) = app_with_bad(&bad.url, "").await;
    let reply = get_within(&app, "/api/calls", ACME_KEY, "acme", MARGIN).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["count"], 2, "{:#}", reply.body);
    assert!(reply.body.get("errors").is_none(), "{:#}", reply.body);
    assert_eq!(bad.hits(), 2);
}

#[tokio::test]
async fn a_connection_broken_mid_body_then_a_good_answer_is_retried_into_a_complete_answer() {
    let bad = first_then_good(Fault::BreakMidBody).await;
    let (app, _good) = app_with_bad(&bad.url, "").await;
    let reply = get_within(&app, "/api/calls", ACME_KEY, "acme", MARGIN).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["count"], 2, "{:#}", reply.body);
    assert!(reply.body.get("errors").is_none(), "{:#}", reply.body);
    assert_eq!(bad.hits(), 2);
}

#[tokio::test]
async fn with_retries_zero_a_503_is_a_partial_answer_after_one_request() {
    let bad = first_then_good(Fault::Answer(503, r#"{"error": "busy"}"#)).await;
    let (app, _good) = app_with_bad(&bad.url, "retries = 0").await;
    let reply = get_within(&app, "/api/calls", ACME_KEY, "acme", MARGIN).await;
    assert_eq!(reply.status, 200);
    assert_names_bad(&reply.body, "UPSTREAM_ERROR");
    assert_eq!(bad.hits(), 1);
}

#[tokio::test]
async fn a_500_is_not_retried() {
    let bad = first_then_good(Fault::Answer(500, r#"{"error": "bug"}"#)).await;
    let (app, _good) = app_with_bad(&bad.url, "retries = 3").await;
    let reply = get_within(&app, "/api/calls", ACME_KEY, "acme", MARGIN).await;
    assert_eq!(reply.status, 200);
    assert_names_bad(&reply.body, "UPSTREAM_ERROR");
    assert_eq!(bad.hits(), 1);
}

#[tokio::test]
async fn retries_never_outlast_the_providers_deadline() {
    let bad = always(Fault::Answer(503, r#"{"error": "busy"}"#)).await;
    let (app, _good) = app_with_bad(&bad.url, "retries = 10\ntimeout_ms = 300").await;
    let reply = get_within(
        &app,
        "/api/calls",
        ACME_KEY,
        "acme",
        Duration::from_millis(300) + MARGIN,
    )
    .await;
    assert_eq!(reply.status, 200);
    let code = reply.body["errors"][0]["error"].as_str().unwrap_or("");
    assert!(
        code == "UPSTREAM_ERROR" || code == "UPSTREAM_TIMEOUT",
        "{:#}",
        reply.body
    );
    // Backoff starts near 50 ms and doubles: a 300 ms deadline leaves room for a few tries.
    assert!(
        (1..=8).contains(&bad.hits()),
        "{} upstream requests",
        bad.hits()
    );
}

// ---- the circuit breaker ----

#[tokio::test]
async fn after_k_failures_in_a_row_the_provider_fails_fast_without_being_asked() {
    let bad = raw_server(500, "oops").await;
    let (app, _good) = app_with_bad(
        &bad.uri(),
        "circuit_failures = 2\ncircuit_cooldown_ms = 60000\nretries = 0",
    )
    .await;
    for _ in 0..2 {
        let reply = get_within(&app, "/api/calls", ACME_KEY, "acme", MARGIN).await;
        assert_names_bad(&reply.body, "UPSTREAM_ERROR");
    }
    assert_eq!(hits(&bad).await, 2);
    for path in ["/api/calls", "/v1/calls/active", "/api/calls"] {
        let reply = get_within(&app, path, ACME_KEY, "acme", MARGIN).await;
        assert_eq!(reply.status, 200, "{:#}", reply.body);
        assert_names_bad(&reply.body, "CIRCUIT_OPEN");
        // The healthy provider is still asked and listed.
        let list = if path == "/api/calls" {
            "calls"
        } else {
            "data"
        };
        assert_eq!(reply.body[list][0]["call_id"], "g1", "{:#}", reply.body);
    }
    let solo = get_within(&app, "/api/calls", SOLO_KEY, "solo", MARGIN).await;
    assert_eq!(solo.status, 502, "{:#}", solo.body);
    assert_names_bad(&solo.body, "CIRCUIT_OPEN");
    assert_eq!(
        hits(&bad).await,
        2,
        "an open circuit contacted the upstream"
    );
    assert_still_serving(&app).await;
}

/// The breaker's cool-down in the probe test: long enough that an ask right after the
/// circuit opens is answered within it even on a loaded machine (the test fails, rather
/// than skipping the check, when it is not).
const COOLDOWN: Duration = Duration::from_millis(1000);

/// Asks through a circuit that opened after `since` until the probe goes through (bounded),
/// checking on the way that the first ask came within the cool-down and that every ask
/// before the probe was refused `CIRCUIT_OPEN` without reaching the upstream. Returns the
/// probe's answer and when it was sent.
async fn open_until_probed<F, Fut>(ask: F, bad: &FaultServer, since: Instant) -> (Reply, Instant)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Reply>,
{
    let hits = bad.hits();
    let mut refused = 0;
    loop {
        let sent = Instant::now();
        let reply = ask().await;
        if refused == 0 {
            assert!(
                since.elapsed() < COOLDOWN,
                "the first ask after the circuit opened came back {:?} later, past the \
                 {COOLDOWN:?} cool-down: this machine is too slow for the check",
                since.elapsed()
            );
        }
        if reply.body["errors"][0]["error"] != "CIRCUIT_OPEN" {
            assert!(refused > 0, "the circuit was not open: {:#}", reply.body);
            assert!(
                since.elapsed() >= COOLDOWN,
                "a probe went through {:?} after the circuit opened, within its cool-down",
                since.elapsed()
            );
            return (reply, sent);
        }
        assert_names_bad(&reply.body, "CIRCUIT_OPEN");
        assert_eq!(bad.hits(), hits, "an open circuit contacted the upstream");
        refused += 1;
        assert!(
            since.elapsed() < COOLDOWN + MARGIN,
            "no probe went through in {:?}",
            since.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn after_the_cool_down_one_probe_is_let_through_and_success_closes_the_circuit() {
    let healthy_now = Arc::new(AtomicBool::new(false));
    let flag = healthy_now.clone();
    let bad = fault_server(move |_| {
        if flag.load(Ordering::SeqCst) {
            Fault::Answer(200, BAD_CALLS_BODY)
        } else {
            Fault::Answer(500, r#"{"error": "bug"}"#)
        }
    })
    .await;
    let (app, _good) = app_with_bad(
        &bad.url,
        &format!(
            "circuit_failures = 2\ncircuit_cooldown_ms = {}\nretries = 0",
            COOLDOWN.as_millis()
        ),
    )
    .await;
    let ask = || get_within(&app, "/api/calls", ACME_KEY, "acme", MARGIN);

    assert_names_bad(&ask().await.body, "UPSTREAM_ERROR");
    // The second failure opens the circuit, so it opened after this.
    let since = Instant::now();
    assert_names_bad(&ask().await.body, "UPSTREAM_ERROR");
    assert_eq!(bad.hits(), 2);

    // Half-open, still failing: the one probe reaches the upstream, and the circuit reopens.
    let (probe, since) = open_until_probed(ask, &bad, since).await;
    assert_names_bad(&probe.body, "UPSTREAM_ERROR");
    assert_eq!(bad.hits(), 3, "the probe reached the upstream");

    // Half-open, healthy again: the probe succeeds and the circuit closes.
    healthy_now.store(true, Ordering::SeqCst);
    let (probe, _) = open_until_probed(ask, &bad, since).await;
    assert_eq!(probe.status, 200);
    assert_eq!(probe.body["count"], 2, "{:#}", probe.body);
    assert!(probe.body.get("errors").is_none(), "{:#}", probe.body);
    assert_eq!(bad.hits(), 4, "the probe reached the upstream");
    for i in 0..3 {
        let reply = ask().await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body["count"], 2, "ask {i}: {:#}", reply.body);
        assert!(reply.body.get("errors").is_none(), "{:#}", reply.body);
        assert_eq!(bad.hits(), 5 + i, "a closed circuit asks every time");
    }
}

// ---- the server's own bounds ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_max_concurrent_requests_the_answer_is_503_overloaded_in_the_endpoints_shape() {
    let good = good_server().await;
    let bad = always(Fault::Silent).await;
    let toml = three_orgs_config(
        &good.uri(),
        &bad.url,
        "timeout_ms = 3000\ncircuit_failures = 0",
    )
    .server("max_concurrent_requests", 1)
    .toml();
    let app = spawn_app(&toml).await;
    let holder = app.clone_handle();
    let held = tokio::spawn(async move {
        get_within(
            &holder,
            "/api/calls",
            SOLO_KEY,
            "solo",
            Duration::from_millis(3000) + MARGIN,
        )
        .await
    });
    // Bounded wait until the holding request is inside callmux, asking the silent upstream.
    for _ in 0..1000 {
        if bad.hits() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        bad.hits(),
        1,
        "the holding request never reached the upstream"
    );

    let calls = get_within(&app, "/api/calls", HEALTHY_KEY, "healthy", MARGIN).await;
    assert_eq!(calls.status, 503, "{:#}", calls.body);
    assert_eq!(calls.body["calls"], json!([]));
    assert_eq!(calls.body["count"], 0);
    assert_eq!(
        calls.body["errors"][0]["error"], "OVERLOADED",
        "{:#}",
        calls.body
    );
    let bland = get_within(&app, "/v1/calls/active", HEALTHY_KEY, "healthy", MARGIN).await;
    assert_eq!(bland.status, 503, "{:#}", bland.body);
    assert_eq!(bland.body["data"], Value::Null);
    assert_eq!(
        bland.body["errors"][0]["error"], "OVERLOADED",
        "{:#}",
        bland.body
    );

    let held = timeout(Duration::from_secs(30), held)
        .await
        .expect("the holding request ends")
        .unwrap();
    assert_eq!(held.status, 502, "{:#}", held.body);
    assert_names_bad(&held.body, "UPSTREAM_TIMEOUT");
    assert_still_serving(&app).await;
}

#[tokio::test]
async fn a_request_still_running_at_request_timeout_ms_is_503_request_timeout_in_its_shape() {
    let good = good_server().await;
    let bad = always(Fault::Silent).await;
    let toml = three_orgs_config(&good.uri(), &bad.url, "timeout_ms = 20000")
        .server("request_timeout_ms", 300)
        .toml();
    let app = spawn_app(&toml).await;
    let bound = Duration::from_millis(300) + MARGIN;
    let calls = get_within(&app, "/api/calls", ACME_KEY, "acme", bound).await;
    assert_eq!(calls.status, 503, "{:#}", calls.body);
    assert_eq!(calls.body["calls"], json!([]));
    assert_eq!(calls.body["count"], 0);
    assert_eq!(
        calls.body["errors"][0]["error"], "REQUEST_TIMEOUT",
        "{:#}",
        calls.body
    );
    let bland = get_within(&app, "/v1/calls/active", ACME_KEY, "acme", bound).await;
    assert_eq!(bland.status, 503, "{:#}", bland.body);
    assert_eq!(bland.body["data"], Value::Null);
    assert_eq!(
        bland.body["errors"][0]["error"], "REQUEST_TIMEOUT",
        "{:#}",
        bland.body
    );
    assert_still_serving(&app).await;
}

#[tokio::test]
async fn headers_over_max_header_bytes_are_431_headers_too_large_in_the_endpoints_shape() {
    let good = good_server().await;
    let toml = three_orgs_config(&good.uri(), &refused_url().await, "")
        .server("max_header_bytes", 4096)
        .toml();
    let app = spawn_app(&toml).await;
    let padding = "p".repeat(8192);
    let headers = [
        ("authorization", HEALTHY_KEY),
        ("x-bland-org-id", "healthy"),
        ("x-padding", padding.as_str()),
    ];
    let big = |path: &'static str| app.get(path, &headers);
    let calls = timeout(MARGIN, big("/api/calls")).await.unwrap();
    assert_eq!(calls.status, 431, "{:#}", calls.body);
    assert_eq!(calls.body["calls"], json!([]));
    assert_eq!(calls.body["count"], 0);
    assert_eq!(
        calls.body["errors"][0]["error"], "HEADERS_TOO_LARGE",
        "{:#}",
        calls.body
    );
    let bland = timeout(MARGIN, big("/v1/calls/active")).await.unwrap();
    assert_eq!(bland.status, 431, "{:#}", bland.body);
    assert_eq!(bland.body["data"], Value::Null);
    assert_eq!(
        bland.body["errors"][0]["error"], "HEADERS_TOO_LARGE",
        "{:#}",
        bland.body
    );
    // Headers under the limit are served.
    assert_still_serving(&app).await;
}

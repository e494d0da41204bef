//! Connection bounds (DESIGN §14) over raw loopback sockets: header-read and idle timeouts,
//! a slow-loris flood that cannot starve a real client, and the cap on open connections.

use std::time::{Duration, Instant};

use crate::common::*;
use callmux::config::ConfigError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Slack added to every deadline a test checks: bounds, never benchmarks.
const MARGIN: Duration = Duration::from_secs(10);

/// Timers fire at or after their deadline, and the server's clock for a connection starts
/// at accept, a little before the test's own; this much early is still "at the timeout".
const EARLY: Duration = Duration::from_millis(50);

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nhost: callmux\r\n\r\n";

/// callmux with these `[server]` lines, and one org whose provider is never asked here.
async fn app_with(server: &str) -> TestApp {
    spawn_app(&format!(
        "[server]\n{server}\n{}",
        one_agent_org("k", "agents", &refused_url().await, 0)
    ))
    .await
}

/// How a connection ended from the client's side.
#[derive(Debug, PartialEq)]
enum Ended {
    /// EOF or a reset: callmux closed it.
    Closed,
    /// These bytes arrived instead.
    Sent(Vec<u8>),
}

/// Reads until callmux closes `sock` (EOF or reset) or `bound` passes; returns how it
/// ended and when.
async fn until_closed(sock: &mut TcpStream, bound: Duration) -> (Ended, Instant) {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        match tokio::time::timeout_at(deadline, sock.read(&mut buf)).await {
            Err(_) => panic!(
                "still open after {bound:?}; received {:?}",
                String::from_utf8_lossy(&received)
            ),
            Ok(Ok(0)) | Ok(Err(_)) if received.is_empty() => {
                return (Ended::Closed, Instant::now())
            }
            Ok(Ok(0)) | Ok(Err(_)) => return (Ended::Sent(received), Instant::now()),
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads one whole response (head and Content-Length body) from `sock`; returns its status.
async fn read_response(sock: &mut TcpStream) -> u16 {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&received[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if received.len() >= end + 4 + length {
                return head[9..12].parse().unwrap();
            }
        }
        let n = sock.read(&mut buf).await.expect("the response is readable");
        assert!(
            n > 0,
            "closed mid-response: {:?}",
            String::from_utf8_lossy(&received)
        );
        received.extend_from_slice(&buf[..n]);
    }
}

/// Asks `GET /healthz` on `sock` and expects its 200 within `bound`.
async fn healthz_on(sock: &mut TcpStream, bound: Duration) {
    sock.write_all(HEALTHZ).await.unwrap();
    let status = timeout(bound, read_response(sock))
        .await
        .expect("answered within the bound");
    assert_eq!(status, 200);
}

/// True when nothing has arrived on `sock` and it is still open.
async fn still_open(sock: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1];
    timeout(Duration::from_millis(20), sock.read(&mut buf))
        .await
        .is_err()
}

/// Waits (bounded) until callmux closes a new connection that sends nothing: by then the
/// header read timeout has run out for every connection idle since before this one opened.
async fn header_read_timeout_passes(app: &TestApp) {
    let mut probe = connect(app).await;
    let (ended, _) = until_closed(&mut probe, MARGIN).await;
    assert_eq!(ended, Ended::Closed, "the probe was answered");
}

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.addr).await.unwrap()
}

// ---- header read timeout ----

#[tokio::test]
async fn a_connection_that_sends_half_a_request_line_is_closed_at_the_header_read_timeout() {
    let app = app_with("header_read_timeout_ms = 300").await;
    let mut sock = connect(&app).await;
    let opened = Instant::now();
    sock.write_all(b"GET /api/ca").await.unwrap();
    let (ended, at) = until_closed(&mut sock, MARGIN).await;
    assert_eq!(ended, Ended::Closed);
    let took = at - opened;
    assert!(
        took + EARLY >= Duration::from_millis(300),
        "closed after {took:?}"
    );
    // Operators can see it. (One registry per process: other tests count here too.)
    let metrics = app.http.get(app.url("/metrics")).send().await.unwrap();
    let text = metrics.text().await.unwrap();
    assert!(
        text.contains(r#"callmux_connections_closed_total{reason="header_read_timeout"}"#),
        "{text}"
    );
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_at_the_header_read_timeout() {
    let app = app_with("header_read_timeout_ms = 300").await;
    let mut sock = connect(&app).await;
    let opened = Instant::now();
    let (ended, at) = until_closed(&mut sock, MARGIN).await;
    assert_eq!(ended, Ended::Closed);
    assert!(at - opened + EARLY >= Duration::from_millis(300));
}

#[tokio::test]
async fn a_head_trickled_a_byte_at_a_time_is_closed_at_the_header_read_timeout_all_the_same() {
    let app = app_with("header_read_timeout_ms = 500").await;
    let mut sock = connect(&app).await;
    let opened = Instant::now();
    // A byte every 50 ms keeps the connection busy but never finishes the head.
    let trickle = async {
        for byte in b"GET /healthz HTTP/1.1\r\nhost: callmux\r\nx-slow: "
            .iter()
            .cycle()
        {
            if sock.write_all(&[*byte]).await.is_err() {
                return Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        unreachable!()
    };
    let failed_at = timeout(MARGIN, trickle).await.expect("callmux closes it");
    let took = failed_at - opened;
    assert!(
        took + EARLY >= Duration::from_millis(500),
        "closed after {took:?}"
    );
}

#[tokio::test]
async fn a_kept_alive_connection_that_starts_its_next_request_but_stalls_is_closed_at_the_header_read_timeout(
) {
    let app = app_with("header_read_timeout_ms = 300\nidle_timeout_ms = 60000").await;
    let mut sock = connect(&app).await;
    healthz_on(&mut sock, MARGIN).await;
    // Idle for longer than the header read timeout: idle time is not charged to the head.
    header_read_timeout_passes(&app).await;
    assert!(still_open(&mut sock).await, "closed while idle");
    let started = Instant::now();
    sock.write_all(b"GET /heal").await.unwrap();
    let (ended, at) = until_closed(&mut sock, MARGIN).await;
    assert_eq!(ended, Ended::Closed);
    let took = at - started;
    assert!(
        took + EARLY >= Duration::from_millis(300),
        "closed after {took:?}"
    );
    assert!(
        took < Duration::from_secs(30),
        "closed by the idle timeout, not the header read timeout: {took:?}"
    );
}

// ---- idle timeout ----

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_at_the_idle_timeout() {
    let app = app_with("idle_timeout_ms = 500").await;
    let mut sock = connect(&app).await;
    healthz_on(&mut sock, MARGIN).await;
    let answered = Instant::now();
    let (ended, at) = until_closed(&mut sock, MARGIN).await;
    assert_eq!(ended, Ended::Closed);
    let took = at - answered;
    assert!(
        took + EARLY >= Duration::from_millis(500),
        "closed after {took:?}"
    );
}

#[tokio::test]
async fn a_slow_reader_gets_a_whole_large_answer_though_it_outlasts_the_idle_timeout() {
    // About 4.6 MB of calls, read through a 4 KiB receive buffer at a pace that takes
    // `PACE` in all, against an idle timeout of 300 ms that starts once the answer's last
    // piece is queued, not sent. (A fixed pause per read took 25 s: reads are small.)
    const PACE: Duration = Duration::from_secs(2);
    let dir = tempfile::tempdir().unwrap();
    let calls: Vec<serde_json::Value> = (0..20_000)
        .map(|i| bland_call(&format!("call-{i:08}"), "IN_PROGRESS", "1758656817432"))
        .collect();
    let file = dir.path().join("big.json");
    std::fs::write(
        &file,
        serde_json::json!({"data": calls, "errors": null}).to_string(),
    )
    .unwrap();
    let app = spawn_app(&format!(
        "[server]\nidle_timeout_ms = 300\n[orgs.acme]\napi_key_sha256 = \"{}\"\nproviders = [\"big\"]\n\
         [providers.big]\nkind = \"static\"\npath = \"{}\"\n",
        sha256_hex("k"),
        file.display()
    ))
    .await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut sock = socket.connect(app.addr).await.unwrap();
    sock.write_all(
        b"GET /v1/calls/active HTTP/1.1\r\nhost: callmux\r\nauthorization: k\r\nx-bland-org-id: acme\r\n\r\n",
    )
    .await
    .unwrap();
    let mut received = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + Duration::from_secs(120);
    let expected = loop {
        assert!(Instant::now() < deadline, "the answer took over 120 s");
        let n = timeout(MARGIN, sock.read(&mut buf)).await.unwrap().unwrap();
        received.extend_from_slice(&buf[..n]);
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&received[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .expect("a content-length");
            break end + 4 + length;
        }
        assert!(n > 0, "closed before the head");
    };
    let reading = Instant::now();
    while received.len() < expected {
        assert!(Instant::now() < deadline, "the answer took over 120 s");
        let due = reading + PACE.mul_f64(received.len() as f64 / expected as f64);
        tokio::time::sleep_until(due.into()).await;
        let n = timeout(MARGIN, sock.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "closed after {} of {expected} bytes", received.len());
        received.extend_from_slice(&buf[..n]);
    }
    assert!(expected > 4_000_000, "{expected}");
    assert!(
        reading.elapsed() > 3 * Duration::from_millis(300),
        "read in {:?}: not slow enough to outlast the idle timeout",
        reading.elapsed()
    );
}

#[tokio::test]
async fn a_kept_alive_connection_idle_longer_than_the_header_read_timeout_still_serves_its_next_request(
) {
    let app = app_with("header_read_timeout_ms = 200\nidle_timeout_ms = 60000").await;
    let mut sock = connect(&app).await;
    for _ in 0..3 {
        healthz_on(&mut sock, MARGIN).await;
        header_read_timeout_passes(&app).await;
    }
    healthz_on(&mut sock, MARGIN).await;
}

// ---- a slow-loris flood ----

/// Connections held by the flood. Each costs two descriptors in this process (client and
/// server side), so 400 stays well under the usual soft limit of 1024.
const FLOOD: usize = 400;

/// Opens `count` connections that each send half a request line, and keeps them.
async fn slow_loris(app: &TestApp, count: usize) -> Vec<TcpStream> {
    let mut flood = Vec::with_capacity(count);
    for _ in 0..count {
        let mut sock = connect(app).await;
        sock.write_all(b"GET /api/ca").await.unwrap();
        flood.push(sock);
    }
    flood
}

#[tokio::test]
async fn while_four_hundred_connections_hold_half_a_request_line_a_new_client_is_answered_at_once()
{
    let app = app_with("header_read_timeout_ms = 5000").await;
    let opened = Instant::now();
    let mut flood = slow_loris(&app, FLOOD).await;

    let asked = Instant::now();
    let reply = timeout(Duration::from_secs(2), app.get("/healthz", &[]))
        .await
        .expect("/healthz answers within 2 s while the flood is open");
    assert_eq!(reply.status, 200);
    let mut fresh = connect(&app).await;
    healthz_on(&mut fresh, Duration::from_secs(2)).await;
    let answered = asked.elapsed();

    // The flood was still open while the client was served: checked well before its
    // timeout could close it, or the test fails rather than skip the check.
    assert!(
        opened.elapsed() < Duration::from_millis(4500),
        "opening the flood and serving the client took {:?}, too near the 5 s header read \
         timeout to check that the flood was still open",
        opened.elapsed()
    );
    for sock in flood.iter_mut().step_by(40) {
        assert!(still_open(sock).await, "a flood connection closed early");
    }
    // ...and every one of its connections is closed at the header read timeout.
    for sock in &mut flood {
        let (ended, _) = until_closed(sock, MARGIN).await;
        assert_eq!(ended, Ended::Closed);
    }
    assert!(
        opened.elapsed() + EARLY >= Duration::from_millis(5000),
        "the flood was closed before its timeout"
    );
    eprintln!("answered in {answered:?} beside {FLOOD} held connections");
}

// ---- max_connections ----

#[tokio::test]
async fn beyond_max_connections_a_new_connection_waits_and_is_served_once_one_closes() {
    let app = app_with("max_connections = 5\nheader_read_timeout_ms = 60000").await;
    let mut held = Vec::new();
    for _ in 0..5 {
        let mut sock = connect(&app).await;
        healthz_on(&mut sock, MARGIN).await;
        held.push(sock);
    }

    // The sixth is taken into the listen backlog but not accepted: no answer yet.
    let mut waiting = connect(&app).await;
    waiting.write_all(HEALTHZ).await.unwrap();
    let early = timeout(Duration::from_millis(500), read_response(&mut waiting)).await;
    assert!(early.is_err(), "answered beyond max_connections");

    // The connections already open keep working.
    for sock in &mut held {
        healthz_on(sock, MARGIN).await;
    }

    // One closes: the waiting connection is accepted and its request answered.
    drop(held.pop());
    let status = timeout(MARGIN, read_response(&mut waiting))
        .await
        .expect("answered once a connection closed");
    assert_eq!(status, 200);

    drop(held);
    drop(waiting);
    let reply = timeout(MARGIN, app.get("/healthz", &[])).await.unwrap();
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn a_flood_filling_max_connections_cannot_starve_a_client_once_its_connections_time_out() {
    let app = app_with("max_connections = 20\nheader_read_timeout_ms = 500").await;
    let flooded = Instant::now();
    let _flood = slow_loris(&app, 20).await;
    let mut client = connect(&app).await;
    healthz_on(&mut client, Duration::from_millis(500) + MARGIN).await;
    // It waited for the flood to time out: the cap held.
    let waited = flooded.elapsed();
    assert!(
        waited + EARLY >= Duration::from_millis(500),
        "answered after {waited:?}, beside 20 connections at max_connections = 20"
    );
}

// ---- configuration ----

#[test]
fn the_connection_bounds_default_to_ten_seconds_a_minute_and_twenty_thousand() {
    let config = load_config(
        &one_agent_org("k", "agents", "http://127.0.0.1:9000", 0),
        &[],
    )
    .unwrap();
    assert_eq!(config.server.header_read_timeout, Duration::from_secs(10));
    assert_eq!(config.server.idle_timeout, Duration::from_secs(60));
    assert_eq!(config.server.max_connections, 20_000);
}

#[test]
fn connection_bounds_out_of_range_are_refused_naming_the_field_and_the_fix() {
    for (field, value) in [
        ("header_read_timeout_ms", "0"),
        ("header_read_timeout_ms", "86400001"),
        ("idle_timeout_ms", "0"),
        ("idle_timeout_ms", "86400001"),
        ("max_connections", "0"),
        ("max_connections", "1000001"),
    ] {
        let toml = format!(
            "[server]\n{field} = {value}\n{}",
            one_agent_org("k", "agents", "http://127.0.0.1:9000", 0)
        );
        let err = load_config(&toml, &[]).expect_err("refused");
        let text = err.to_string();
        let ConfigError::Invalid(issues) = &err else {
            panic!("not a validation error: {text}");
        };
        let named = format!("server.{field}");
        assert!(
            issues
                .iter()
                .any(|i| i.field == named && i.problem.contains("outside") && !i.fix.is_empty()),
            "{field} = {value}: no issue naming it with a fix in:\n{text}"
        );
    }
}

#[tokio::test]
async fn the_largest_accepted_connection_bounds_start_and_serve() {
    let app = app_with(
        "header_read_timeout_ms = 86400000\nidle_timeout_ms = 86400000\nmax_connections = 1000000",
    )
    .await;
    assert_eq!(app.get("/healthz", &[]).await.status, 200);
}

//! A live stream's connection, read off hyper (`src/http/direct_streams.rs`), over raw
//! loopback sockets: what it answers, that a client's close ends it, and that every request
//! that is not a plain stream request is answered by hyper as before.

use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

const KEY: &str = "raw-key";
/// A generous bound on anything awaited here: never a measurement.
const BOUND: Duration = Duration::from_secs(20);

/// callmux over one org whose agent server lists one call, with `server` settings.
async fn app(org: &str, server: &[(&str, i64)]) -> (TestApp, LiveAgent) {
    let agent = LiveAgent::start(json!([agent_call(
        "a",
        "+15550001111",
        "ringing",
        "outbound"
    )]))
    .await;
    let mut c = TestConfig::new()
        .org(OrgB::key(org, KEY).providers(&["agents"]))
        .provider(ProviderB::agent("agents", &agent.url));
    for (k, v) in server {
        c = c.server(k, *v);
    }
    (spawn_app(&c.toml()).await, agent)
}

/// A stream request's head, with `extra` header lines (each ending `\r\n`).
fn stream_head(path: &str, org: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nhost: callmux\r\nauthorization: {KEY}\r\nx-bland-org-id: {org}\r\n{extra}\r\n"
    )
}

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.addr).await.unwrap()
}

/// Reads from `sock` until `received` holds `needle`, within [`BOUND`]; everything read.
async fn read_until(sock: &mut TcpStream, received: &mut Vec<u8>, needle: &str) {
    let mut buf = [0u8; 4096];
    tokio::time::timeout(BOUND, async {
        while !String::from_utf8_lossy(received).contains(needle) {
            let n = sock.read(&mut buf).await.unwrap_or(0);
            assert!(
                n > 0,
                "closed before {needle:?}: {:?}",
                String::from_utf8_lossy(received)
            );
            received.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "no {needle:?} in time: {:?}",
            String::from_utf8_lossy(received)
        )
    });
}

/// Reads one whole response with a `content-length` body; its head (lowercased) and body.
async fn read_response(sock: &mut TcpStream) -> (String, String) {
    let mut received = Vec::new();
    read_until(sock, &mut received, "\r\n\r\n").await;
    let end = received.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&received[..end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    let mut buf = [0u8; 4096];
    while received.len() < end + length {
        let n = tokio::time::timeout(BOUND, sock.read(&mut buf))
            .await
            .expect("the body arrives in time")
            .unwrap();
        assert!(n > 0, "closed mid-body");
        received.extend_from_slice(&buf[..n]);
    }
    let body = String::from_utf8_lossy(&received[end..end + length]).into_owned();
    (head, body)
}

/// Reads until callmux closes `sock`, within [`BOUND`]; everything it sent.
async fn read_to_close(sock: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(BOUND, async {
        loop {
            match sock.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("callmux closes the connection in time");
    received
}

#[tokio::test]
async fn a_stream_read_off_hyper_carries_its_request_id_and_the_stream_s_headers_chunked() {
    let org = unique("rawhead");
    let (app, _agent) = app(&org, &[]).await;
    let mut sock = connect(&app).await;
    sock.write_all(
        stream_head(
            "/calls/stream?since=now",
            &org,
            "x-request-id: raw-id-1\r\n",
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut received = Vec::new();
    read_until(&mut sock, &mut received, "event: snapshot").await;
    let text = String::from_utf8_lossy(&received).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
    for line in [
        "x-request-id: raw-id-1",
        "content-type: text/event-stream",
        "cache-control: no-cache",
        "x-accel-buffering: no",
        "transfer-encoding: chunked",
        "connection: close",
        "date: ",
    ] {
        assert!(head.contains(line), "no {line:?} in {head}");
    }
    // The first chunk is its size in hex, then the event's first piece.
    let (size, rest) = body.split_once("\r\n").unwrap();
    assert!(usize::from_str_radix(size, 16).unwrap() > 0, "{body}");
    assert!(rest.starts_with("event: snapshot\nid: "), "{body}");

    // Without one, callmux gives the stream an id of its own, as any request.
    let stream = app
        .stream("/api/calls/stream", KEY, &org, None)
        .await
        .unwrap();
    let id = stream.headers["x-request-id"].to_str().unwrap();
    assert_eq!(id.len(), 36, "{id}");
}

#[tokio::test]
async fn a_refused_stream_read_off_hyper_gets_its_status_and_json_body_with_a_length() {
    let org = unique("rawrefused");
    let (app, _agent) = app(&org, &[]).await;
    let mut sock = connect(&app).await;
    let head = stream_head("/v1/calls/active/stream", &org, "").replace(KEY, "wrong-key");
    sock.write_all(head.as_bytes()).await.unwrap();
    let (head, body) = read_response(&mut sock).await;
    assert!(head.starts_with("http/1.1 401"), "{head}");
    assert!(head.contains("x-request-id: "), "{head}");
    assert!(!head.contains("transfer-encoding"), "{head}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["errors"][0]["error"], "AUTH_FAILURE", "{body}");
    read_to_close(&mut sock).await;
}

#[tokio::test]
async fn a_client_that_closes_its_stream_gives_its_place_back_before_any_write_would_notice() {
    let org = unique("rawclose");
    // No event and no keepalive comment for five minutes: only the close itself can tell.
    let (app, _agent) = app(
        &org,
        &[("max_streams", 1), ("stream_keepalive_ms", 300_000)],
    )
    .await;
    let mut sock = connect(&app).await;
    sock.write_all(stream_head("/calls/stream", &org, "").as_bytes())
        .await
        .unwrap();
    let mut received = Vec::new();
    read_until(&mut sock, &mut received, "event: snapshot").await;
    let Err((status, _)) = app.stream("/calls/stream", KEY, &org, None).await else {
        panic!("a second stream opened beyond max_streams = 1");
    };
    assert_eq!(status, 503);
    drop(sock);
    let reopened = async {
        loop {
            if let Ok(mut s) = app.stream("/calls/stream", KEY, &org, None).await {
                return s.next().await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let first = tokio::time::timeout(BOUND, reopened)
        .await
        .expect("the closed stream's place is given back long before any keepalive");
    assert_eq!(first.event, "snapshot");
}

#[tokio::test]
async fn a_malformed_or_oversized_head_on_a_stream_path_gets_hyper_s_400_or_431_and_callmux_goes_on(
) {
    let org = unique("rawbad");
    let (app, _agent) = app(&org, &[("max_header_bytes", 1024)]).await;
    for (head, status) in [
        (
            stream_head("/calls/stream", &org, "no colon here\r\n"),
            "400",
        ),
        (
            stream_head("/calls/stream", &org, "bad\0name: x\r\n"),
            "400",
        ),
        (
            stream_head(
                "/calls/stream",
                &org,
                &format!("x-padding: {}\r\n", "p".repeat(600 * 1024)),
            ),
            "431",
        ),
    ] {
        let mut sock = connect(&app).await;
        // The oversized head is refused before it is all sent: a failed write is fine.
        let _ = sock.write_all(head.as_bytes()).await;
        let received = read_to_close(&mut sock).await;
        let text = String::from_utf8_lossy(&received);
        assert!(
            text.starts_with(&format!("HTTP/1.1 {status}")),
            "{status}: {text}"
        );
    }
    // A head over max_header_bytes but within hyper's limit is hyper's, as before: streams
    // are outside the request bounds.
    let mut sock = connect(&app).await;
    let padded = stream_head(
        "/calls/stream",
        &org,
        &format!("x-padding: {}\r\n", "p".repeat(2048)),
    );
    sock.write_all(padded.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    read_until(&mut sock, &mut received, "event: snapshot").await;
    assert!(String::from_utf8_lossy(&received).starts_with("HTTP/1.1 200"));
    let health = app.get("/healthz", &[]).await;
    assert_eq!(health.status, 200);
}

#[tokio::test]
async fn a_request_that_is_not_a_stream_is_served_by_hyper_and_kept_alive() {
    let org = unique("rawother");
    let (app, _agent) = app(&org, &[]).await;
    let mut sock = connect(&app).await;
    // Split mid-line: the bytes read while telling it from a stream are hyper's first.
    sock.write_all(b"GET /calls/str").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    sock.write_all(
        format!("eam-not HTTP/1.1\r\nhost: callmux\r\nauthorization: {KEY}\r\nx-bland-org-id: {org}\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let (head, _) = read_response(&mut sock).await;
    assert!(head.starts_with("http/1.1 404"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");
    for _ in 0..2 {
        sock.write_all(b"GET /healthz HTTP/1.1\r\nhost: callmux\r\n\r\n")
            .await
            .unwrap();
        let (head, _) = read_response(&mut sock).await;
        assert!(head.starts_with("http/1.1 200"), "{head}");
    }
    sock.write_all(
        format!("GET /calls HTTP/1.1\r\nhost: callmux\r\nauthorization: {KEY}\r\nx-bland-org-id: {org}\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let (head, body) = read_response(&mut sock).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(body.contains("\"count\":1"), "{body}");
}

#[tokio::test]
async fn a_stream_path_asked_over_http_1_0_or_by_post_is_answered_by_hyper_as_before() {
    let org = unique("rawhyper");
    let (app, _agent) = app(&org, &[]).await;

    // POST: hyper's 405, and the connection stays open for the next request.
    let mut sock = connect(&app).await;
    sock.write_all(
        format!(
            "POST /calls/stream HTTP/1.1\r\nhost: callmux\r\nauthorization: {KEY}\r\nx-bland-org-id: {org}\r\ncontent-length: 0\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let (head, body) = read_response(&mut sock).await;
    assert!(head.starts_with("http/1.1 405"), "{head}");
    assert!(head.contains("allow: get"), "{head}");
    assert!(body.contains("METHOD_NOT_ALLOWED"), "{body}");
    sock.write_all(b"GET /healthz HTTP/1.1\r\nhost: callmux\r\n\r\n")
        .await
        .unwrap();
    let (head, _) = read_response(&mut sock).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");

    // HTTP/1.0: the stream, as hyper writes it to a 1.0 client (not chunked).
    let mut sock = connect(&app).await;
    let head = stream_head("/calls/stream", &org, "").replace("HTTP/1.1", "HTTP/1.0");
    sock.write_all(head.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    read_until(&mut sock, &mut received, "event: snapshot").await;
    let text = String::from_utf8_lossy(&received).to_ascii_lowercase();
    assert!(text.contains(" 200 ok\r\n"), "{text}");
    assert!(!text.contains("transfer-encoding: chunked"), "{text}");
}

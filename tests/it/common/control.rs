//! Fakes for call control: an agent server and a Bland API that list calls and end them as
//! their documents say, and the control requests a client sends.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wiremock::matchers::{header, method, path, path_regex};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use super::{Reply, TestApp};

/// Request headers, as name and value.
pub type Headers<'a> = &'a [(&'a str, &'a str)];

/// The calls a fake upstream lists now; its end route takes them out.
pub type Listed = Arc<Mutex<Vec<Value>>>;

/// The id in `/{prefix}/{id}/{suffix}`, as sent (the tests' ids need no decoding).
pub fn id_in(request: &Request, at: usize) -> String {
    request
        .url
        .path()
        .split('/')
        .nth(at)
        .unwrap_or("")
        .to_owned()
}

pub fn take(listed: &Listed, id: &str) -> bool {
    let mut calls = listed.lock().unwrap();
    let before = calls.len();
    calls.retain(|c| c["call_id"] != id);
    calls.len() < before
}

/// An agent server that lists `calls` and ends them as the reference agent server does:
/// `{"success": true, ...}`, or `{"success": false, "error": "Call not found"}` at HTTP 200.
pub async fn live_agent_server(calls: Vec<Value>) -> (MockServer, Listed) {
    let server = MockServer::start().await;
    let listed: Listed = Arc::new(Mutex::new(calls));
    let l = listed.clone();
    Mock::given(method("GET"))
        .and(path("/api/calls"))
        .respond_with(move |_: &Request| {
            let calls = l.lock().unwrap().clone();
            ResponseTemplate::new(200).set_body_json(json!({"count": calls.len(), "calls": calls}))
        })
        .mount(&server)
        .await;
    let l = listed.clone();
    Mock::given(method("POST"))
        .and(path_regex(r"^/api/calls/[^/]+/end$"))
        .respond_with(move |r: &Request| {
            let id = id_in(r, 3);
            ResponseTemplate::new(200).set_body_json(if take(&l, &id) {
                json!({"success": true, "message": format!("Call {id} ended")})
            } else {
                json!({"success": false, "error": "Call not found"})
            })
        })
        .mount(&server)
        .await;
    (server, listed)
}

/// A Bland API that lists `calls` and stops them for a request carrying exactly this key and
/// org id (`{"status": "success", ...}`; an unknown call is `{"status": "error", ...}` at
/// 404), and answers 401 to anything else.
pub async fn live_bland_server(key: &str, org: &str, calls: Vec<Value>) -> (MockServer, Listed) {
    let server = MockServer::start().await;
    let listed: Listed = Arc::new(Mutex::new(calls));
    let l = listed.clone();
    Mock::given(method("GET"))
        .and(path("/v1/calls/active"))
        .and(header("authorization", key))
        .and(header("x-bland-org-id", org))
        .respond_with(move |_: &Request| {
            let calls = l.lock().unwrap().clone();
            ResponseTemplate::new(200).set_body_json(json!({"data": calls, "errors": null}))
        })
        .with_priority(1)
        .mount(&server)
        .await;
    let l = listed.clone();
    Mock::given(method("POST"))
        .and(path_regex(r"^/v1/calls/[^/]+/stop$"))
        .and(header("authorization", key))
        .and(header("x-bland-org-id", org))
        .respond_with(move |r: &Request| {
            if take(&l, &id_in(r, 3)) {
                ResponseTemplate::new(200).set_body_json(
                    json!({"status": "success", "message": "Call ended successfully."}),
                )
            } else {
                ResponseTemplate::new(404)
                    .set_body_json(json!({"status": "error", "message": "Call not found."}))
            }
        })
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "data": null, "errors": [{"error": "AUTH_FAILURE", "message": "Invalid API key"}]})))
        .with_priority(10)
        .mount(&server)
        .await;
    (server, listed)
}

/// Requests a fake received other than lists.
pub async fn ends(server: &MockServer) -> usize {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .count()
}

impl TestApp {
    pub async fn post(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut req = self.http.post(self.url(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = tokio::time::timeout(Duration::from_secs(30), req.send())
            .await
            .expect("callmux answers within 30 s")
            .expect("callmux is reachable");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.unwrap();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("non-JSON ({e}): {}", String::from_utf8_lossy(&bytes)));
        Reply {
            status,
            headers,
            body,
        }
    }

    /// `POST /api/calls/{id}/end` as the dashboard sends it.
    pub async fn end(&self, id: &str, key: &str, org: &str) -> Reply {
        self.post(
            &format!("/api/calls/{id}/end"),
            &[("authorization", key), ("x-bland-org-id", org)],
        )
        .await
    }

    /// `POST /v1/calls/{id}/stop` as a Bland SDK sends it.
    pub async fn stop(&self, id: &str, key: &str, org: &str) -> Reply {
        self.post(
            &format!("/v1/calls/{id}/stop"),
            &[("authorization", key), ("x-bland-org-id", org)],
        )
        .await
    }

    /// A POST with its path exactly as written (no client normalises `..` away): status and
    /// JSON body.
    pub async fn raw_post(&self, path: &str, key: &str, org: &str) -> (u16, Value) {
        let mut sock = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let request = format!(
            "POST {path} HTTP/1.1\r\nhost: callmux\r\nauthorization: {key}\r\nx-bland-org-id: {org}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        );
        sock.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), sock.read_to_end(&mut raw))
            .await
            .expect("callmux answers within 30 s")
            .unwrap();
        let text = String::from_utf8_lossy(&raw);
        let status = text[9..12].parse().unwrap();
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
        let body = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text}"));
        (status, body)
    }
}

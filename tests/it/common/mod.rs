//! Test harness: the real callmux server on 127.0.0.1:0, in process or as the binary
//! ([`Binary`]), real HTTP fake upstreams on loopback, and configs for them ([`TestConfig`]).
//! `benches/load.rs` builds this folder too, for its processes, configs and wire shapes: it
//! holds nothing that needs the test modules.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use callmux::{Config, Live};
use figment::providers::{Format, Toml};
use figment::Figment;
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

mod binary;
pub mod bodies;
mod config;
mod control;
pub mod kinds;
mod python;
mod receiver;
mod redis;
mod sse;
pub use self::redis::*;
pub use binary::*;
pub use config::*;
pub use control::*;
pub use python::*;
pub use receiver::*;
pub use sse::*;

/// A running callmux and a client for it.
pub struct TestApp {
    pub addr: SocketAddr,
    pub http: reqwest::Client,
}

/// The answer to one request, body parsed as JSON.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

pub async fn spawn_app(toml: &str) -> TestApp {
    spawn_app_with_env(toml, &[]).await
}

/// Starts callmux over `toml`; `env` stands in for the process environment that
/// `api_key_env` variables are read from.
pub async fn spawn_app_with_env(toml: &str, env: &[(&str, &str)]) -> TestApp {
    let config = load_config(toml, env).unwrap_or_else(|e| panic!("test config invalid: {e}"));
    let live = Live::fixed(config).expect("providers build");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(callmux::serve(listener, live, std::future::pending()));
    TestApp {
        addr,
        http: reqwest::Client::new(),
    }
}

pub fn load_config(
    toml: &str,
    env: &[(&str, &str)],
) -> Result<Config, callmux::config::ConfigError> {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_figment(&Figment::from(Toml::string(toml)), &|k| env.get(k).cloned())
}

impl TestApp {
    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        self.get_text("/metrics").await
    }

    async fn get_text(&self, path: &str) -> String {
        let resp = tokio::time::timeout(
            Duration::from_secs(30),
            self.http.get(self.url(path)).send(),
        )
        .await
        .expect("callmux answers within 30 s")
        .expect("callmux is reachable");
        resp.text().await.expect("a text body")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut req = self.http.get(self.url(path));
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
        let body = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "callmux answered non-JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        Reply {
            status,
            headers,
            body,
        }
    }

    /// `GET /v1/calls/active` as a Bland client sends it.
    pub async fn bland(&self, key: &str, org: &str) -> Reply {
        self.get(
            "/v1/calls/active",
            &[("authorization", key), ("x-bland-org-id", org)],
        )
        .await
    }

    /// `GET /api/calls` as a dashboard configured with a key and org sends it.
    pub async fn calls(&self, key: &str, org: &str) -> Reply {
        self.get(
            "/api/calls",
            &[("authorization", key), ("x-bland-org-id", org)],
        )
        .await
    }
}

/// A Twilio media-stream agent server answering `GET /api/calls` with these calls.
pub async fn agent_server(calls: Value) -> MockServer {
    let server = MockServer::start().await;
    let count = calls.as_array().map_or(0, Vec::len);
    Mock::given(method("GET"))
        .and(path("/api/calls"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"calls": calls, "count": count})),
        )
        .mount(&server)
        .await;
    server
}

/// A Bland API that lists these calls to a request carrying exactly this key and org id,
/// and answers 401 to anything else.
pub async fn bland_server(key: &str, org: &str, calls: Value) -> MockServer {
    bland_server_for_keys(org, &[(key, calls)]).await
}

/// A Bland API that lists each key's own calls to a request carrying that key and this org
/// id, and answers 401 to anything else.
pub async fn bland_server_for_keys(org: &str, keys: &[(&str, Value)]) -> MockServer {
    let server = MockServer::start().await;
    for (key, calls) in keys {
        Mock::given(method("GET"))
            .and(path("/v1/calls/active"))
            .and(header("authorization", *key))
            .and(header("x-bland-org-id", org))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(json!({"data": calls, "errors": null})),
            )
            .with_priority(1)
            .mount(&server)
            .await;
    }
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "data": null, "errors": [{"error": "AUTH_FAILURE", "message": "Invalid API key"}]})))
        .with_priority(10)
        .mount(&server)
        .await;
    server
}

/// Any upstream answering every request with this status and body.
pub async fn raw_server(status: u16, body: impl Into<Vec<u8>>) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(status).set_body_raw(body.into(), "application/json"))
        .mount(&server)
        .await;
    server
}

/// Waits until `ready` says so, asking every 20 ms, and fails the test naming `what` if
/// that takes over 30 s: a wait on an event, where a fixed sleep would either waste time or
/// be too short on a loaded machine.
pub async fn until(what: &str, mut ready: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !ready().await {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An upstream that accepts connections, reads the request, and never answers.
pub async fn silent_server() -> String {
    counted_silent_server().await.0
}

/// A [`silent_server`], and how many requests it has read so far: a test waits on it to
/// know a request is in flight.
pub async fn counted_silent_server() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let read = Arc::new(AtomicUsize::new(0));
    let count = read.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            if matches!(sock.read(&mut buf).await, Ok(n) if n > 0) {
                count.fetch_add(1, Ordering::SeqCst);
            }
            held.push(sock);
        }
    });
    (format!("http://{addr}"), read)
}

/// An address nothing listens on: connecting is refused.
pub async fn refused_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

/// An agent-server call in the calls shape.
pub fn agent_call(id: &str, to_number: &str, status: &str, direction: &str) -> Value {
    json!({"call_id": id, "to_number": to_number, "status": status, "direction": direction})
}

/// A Bland call with every field set, as Bland sends it.
pub fn bland_call(id: &str, status: &str, timestamp: &str) -> Value {
    json!({
        "call_id": id,
        "user_id": "bland-user-1",
        "from": "+18475586665",
        "to": "+13105100966",
        "objective": "You are a 2...",
        "pathway_id": "",
        "start_time": "",
        "international": "false",
        "status": status,
        "timestamp": timestamp,
    })
}

/// Org `acme`, whose key is `key`, seeing one agent server `provider` at `url`, with that
/// provider's `cache_ttl_ms` (0: coalescing only).
pub fn one_agent_org(key: &str, provider: &str, url: &str, cache_ttl_ms: u64) -> String {
    TestConfig::new()
        .org(OrgB::key("acme", key).providers(&[provider]))
        .provider(ProviderB::agent(provider, url).set("cache_ttl_ms", cache_ttl_ms))
        .toml()
}

/// Config: org `org` authenticates with its callers' own Bland keys, forwarded to the one
/// Bland provider `bland` at `url`, which is all it sees.
pub fn passthrough_org(org: &str, url: &str, cache_ttl_ms: u64) -> String {
    TestConfig::new()
        .org(OrgB::bland_keys(org, "bland").providers(&["bland"]))
        .provider(ProviderB::bland_forwarding("bland", url).set("cache_ttl_ms", cache_ttl_ms))
        .toml()
}

/// The SHA-256 hex digest of a key, as `callmux hash-key` prints it.
pub fn sha256_hex(key: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(key.as_bytes()))
}

/// Number of requests a wiremock server has received.
pub async fn hits(server: &MockServer) -> usize {
    server.received_requests().await.map_or(0, |r| r.len())
}

/// A Vapi Call object shaped as the sample response in Vapi's "Live Call Control" guide
/// (docs.vapi.ai/calls/call-features), with this id, status, `type` and `createdAt`. Its
/// control and listen URLs are on Vapi's hosts: a test that ends the call points
/// `monitor.controlUrl` at a loopback fake instead, so nothing is looked up in DNS.
pub fn vapi_call(id: &str, status: &str, kind: &str, created_at: &str) -> Value {
    json!({
        "id": id,
        "assistantId": "5b0a4a08-133c-4146-9315-0984f8c6be80",
        "phoneNumberId": "42b4b25d-031e-4786-857f-63b346c9580f",
        "type": kind,
        "createdAt": created_at,
        "updatedAt": created_at,
        "orgId": "eb166faa-7145-46ef-8044-589b47ae3b56",
        "cost": 0,
        "customer": {"number": "+12345678913"},
        "status": status,
        "phoneCallProvider": "twilio",
        "phoneCallProviderId": format!("CA{id}"),
        "phoneCallTransport": "pstn",
        "monitor": {
            "listenUrl": format!("wss://aws-us-west-2-production1-phone-call-websocket.vapi.ai/{id}/transport"),
            "controlUrl": format!("https://phone-call-websocket.aws-us-west-2-backend-production2.vapi.ai/{id}/control"),
        },
    })
}

//! Bland's other routes through callmux (DESIGN §10): sent on to a Bland fake answering with
//! the bodies Bland documents, as they came (method, path, query, body), with Bland
//! credentials in place of the caller's, hop-by-hop headers stripped both ways, and Bland's
//! answer streamed back; hostile paths, other orgs, wrong keys, a hanging upstream, bounds,
//! metrics and logs.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use wiremock::matchers::{any, header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::common::*;

const KEY: &str = "sk-callmux-acme-key";
const BLAND_KEY: &str = "sk-bland-own-account-key";
const BLAND_ORG: &str = "bland-org-7f3a";
const CALL_ID: &str = "9d404c1b-6a23-4426-953a-a52c392ff8f1";

/// Bland's answer to `POST /v1/calls`, as its "Send Call" reference shows it.
fn sent_call() -> Value {
    json!({"status": "success", "call_id": CALL_ID})
}

/// Bland's answer to `GET /v1/calls/{call_id}`, as its "Call Details" reference shows it
/// (the transcript shortened).
fn call_details() -> Value {
    json!({
        "call_id": CALL_ID,
        "call_length": 0.75,
        "batch_id": null,
        "to": "+12223334444",
        "from": "+17163511654",
        "request_data": {"phone_number": "+12223334444", "wait": true, "language": "ENG"},
        "completed": true,
        "created_at": "2024-04-27T23:51:18.025251+00:00",
        "inbound": false,
        "queue_status": "completed",
        "endpoint_url": "api.prod.bland.ai",
        "max_duration": 30,
        "error_message": null,
        "variables": {"now": "Sat Apr 27 2024 18:51:25 GMT-0500 (Central Daylight Time)", "city": "SAN FRANCISCO"},
        "answered_by": "human",
        "record": false,
        "recording_url": null,
        "c_id": CALL_ID,
        "metadata": {},
        "summary": "The call was a conversation between a hotel booking service assistant and a customer.",
        "price": 0.068,
        "started_at": "2024-04-27T23:51:25+00:00",
        "local_dialing": false,
        "call_ended_by": "ASSISTANT",
        "pathway_logs": null,
        "analysis_schema": null,
        "analysis": null,
        "concatenated_transcript": "user: Hello? \n assistant: Hi there!",
        "transcripts": [{"id": 123456, "created_at": "2024-04-27T23:51:26.287493+00:00", "text": "Hello?", "user": "user", "c_id": CALL_ID}],
    })
}

/// Bland's answer to `GET /v1/pathway` ("Get All Pathways Information"), shortened.
fn pathways() -> Value {
    json!({
        "name": "Default Demo Pathway",
        "description": null,
        "nodes": [{"id": "1", "data": {"name": "Start", "text": "Hey there, how are you doing today?", "isStart": true}, "type": "Default"}],
        "edges": [],
    })
}

/// A Bland API for one account: the key and org id it accepts, and the routes these tests
/// use, answering as Bland documents; 401 in Bland's list envelope to anything else.
async fn bland_fake(key: &str, org: &str) -> MockServer {
    let server = MockServer::start().await;
    let accepted = |m: wiremock::MockBuilder| {
        m.and(header("authorization", key))
            .and(header("x-bland-org-id", org))
    };
    for (verb, at, body) in [
        (
            "GET",
            "/v1/calls/active".to_owned(),
            json!({"data": [], "errors": null}),
        ),
        ("POST", "/v1/calls".to_owned(), sent_call()),
        ("GET", format!("/v1/calls/{CALL_ID}"), call_details()),
        ("GET", "/v1/pathway".to_owned(), pathways()),
    ] {
        accepted(Mock::given(method(verb)).and(path(at)))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
            .with_priority(1)
            .mount(&server)
            .await;
    }
    // Echoes whatever it is sent, for the large bodies.
    accepted(Mock::given(method("POST")).and(path("/v1/knowledgebases/upload")))
        .respond_with(|r: &Request| {
            ResponseTemplate::new(200).set_body_raw(r.body.clone(), "application/octet-stream")
        })
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "data": null, "errors": [{"error": "AUTH_FAILURE", "message": "Invalid API key"}]})))
        .with_priority(10)
        .mount(&server)
        .await;
    server
}

/// Org `acme` (callmux key [`KEY`]) forwarding to Bland provider `bland` at `url`, which
/// has a key of its own ([`BLAND_KEY`], from `BLAND_KEY`).
fn own_key_config(url: &str) -> TestConfig {
    own_key_config_with(url, &[])
}

/// [`own_key_config`] with these provider settings.
fn own_key_config_with(url: &str, settings: &[(&str, u64)]) -> TestConfig {
    let provider = settings.iter().fold(
        ProviderB::bland("bland", url, "BLAND_KEY", BLAND_ORG),
        |p, (k, v)| p.set(k, *v),
    );
    TestConfig::new()
        .org(
            OrgB::key("acme", KEY)
                .providers(&["bland"])
                .passthrough("bland"),
        )
        .provider(provider)
}

const ENV: &[(&str, &str)] = &[("BLAND_KEY", BLAND_KEY)];

async fn own_key_app(url: &str) -> TestApp {
    spawn_app_with_env(&own_key_config(url).toml(), ENV).await
}

/// The headers a Bland SDK with callmux's key sends.
fn acme() -> Vec<(&'static str, &'static str)> {
    vec![("authorization", KEY), ("x-bland-org-id", "acme")]
}

/// One answer: status, headers and the body's bytes.
struct Raw {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Bytes,
}

impl Raw {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("non-JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

impl TestApp {
    async fn send(
        &self,
        verb: reqwest::Method,
        at: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Raw {
        let mut req = self.http.request(verb, self.url(at));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(body) = body {
            req = req.body(body);
        }
        let resp = tokio::time::timeout(Duration::from_secs(30), req.send())
            .await
            .expect("callmux answers within 30 s")
            .expect("callmux is reachable");
        Raw {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: resp.bytes().await.unwrap(),
        }
    }

    /// A request written byte for byte (no client normalises `.`, `..` or `%2F` away):
    /// status and JSON body.
    async fn raw_request(&self, head: &str) -> (u16, Value) {
        let mut sock = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        sock.write_all(head.as_bytes()).await.unwrap();
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

/// What the fake received, other than lists (which callmux sends to check a Bland key).
async fn forwarded(server: &MockServer) -> Vec<Request> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.url.path() != "/v1/calls/active")
        .collect()
}

fn header_of<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request.headers.get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn a_bland_client_sends_a_call_and_reads_its_details_through_callmux() {
    let bland = bland_fake(BLAND_KEY, BLAND_ORG).await;
    let app = own_key_app(&bland.uri()).await;
    let body = br#"{"phone_number": "+15551234567", "task": "Book a table for two at 7pm."}"#;
    let mut headers = acme();
    headers.push(("content-type", "application/json"));
    let sent = app
        .send(
            reqwest::Method::POST,
            "/v1/calls",
            &headers,
            Some(body.to_vec()),
        )
        .await;
    assert_eq!(sent.status, 200, "{}", String::from_utf8_lossy(&sent.body));
    assert_eq!(sent.json(), sent_call());
    assert_eq!(
        sent.headers.get("content-type").unwrap(),
        "application/json"
    );

    let details = app
        .send(
            reqwest::Method::GET,
            &format!("/v1/calls/{CALL_ID}"),
            &acme(),
            None,
        )
        .await;
    assert_eq!(details.status, 200);
    assert_eq!(details.json(), call_details());

    let seen = forwarded(&bland).await;
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].method.as_str(), "POST");
    assert_eq!(seen[0].body, body.to_vec(), "the body goes as it came");
    assert_eq!(
        header_of(&seen[0], "content-type"),
        Some("application/json")
    );
    assert_eq!(seen[1].url.path(), format!("/v1/calls/{CALL_ID}"));
}

#[tokio::test]
async fn callmux_key_is_replaced_by_the_providers_own_and_never_reaches_bland() {
    let bland = bland_fake(BLAND_KEY, BLAND_ORG).await;
    let app = own_key_app(&bland.uri()).await;
    let mut headers = acme();
    headers.push(("content-type", "application/json"));
    let sent = app
        .send(
            reqwest::Method::POST,
            "/v1/calls",
            &headers,
            Some(b"{}".to_vec()),
        )
        .await;
    assert_eq!(sent.status, 200);
    let all = bland.received_requests().await.unwrap();
    assert_eq!(all.len(), 1, "a callmux key is checked by callmux alone");
    assert_eq!(header_of(&all[0], "authorization"), Some(BLAND_KEY));
    assert_eq!(header_of(&all[0], "x-bland-org-id"), Some(BLAND_ORG));
    for (name, value) in all[0].headers.iter() {
        let value = String::from_utf8_lossy(value.as_bytes());
        assert!(
            !value.contains(KEY),
            "{name}: the callmux key reached Bland"
        );
        assert_ne!(value, "acme", "{name}: callmux's org id reached Bland");
    }
}

#[tokio::test]
async fn a_caller_with_their_own_bland_key_is_forwarded_as_themselves() {
    let caller_key = "Bearer sk-caller-bland-key";
    let bland = bland_fake(caller_key, BLAND_ORG).await;
    // The org authenticates through Bland and forwards without setting anything more.
    let app = spawn_app(&passthrough_org(BLAND_ORG, &bland.uri(), 0)).await;
    let headers = [
        ("authorization", caller_key),
        ("x-bland-org-id", BLAND_ORG),
        ("content-type", "application/json"),
    ];
    let body = br#"{"phone_number": "+15551234567", "task": "Hi"}"#.to_vec();
    let sent = app
        .send(reqwest::Method::POST, "/v1/calls", &headers, Some(body))
        .await;
    assert_eq!(sent.status, 200, "{}", String::from_utf8_lossy(&sent.body));
    assert_eq!(sent.json(), sent_call());
    let seen = forwarded(&bland).await;
    assert_eq!(seen.len(), 1);
    assert_eq!(header_of(&seen[0], "authorization"), Some(caller_key));
    assert_eq!(header_of(&seen[0], "x-bland-org-id"), Some(BLAND_ORG));
}

#[tokio::test]
async fn a_bland_key_that_bland_rejects_is_refused_and_nothing_is_forwarded() {
    let bland = bland_fake("sk-the-right-key", BLAND_ORG).await;
    let app = spawn_app(&passthrough_org(BLAND_ORG, &bland.uri(), 0)).await;
    let headers = [
        ("authorization", "sk-a-wrong-key"),
        ("x-bland-org-id", BLAND_ORG),
    ];
    let sent = app
        .send(
            reqwest::Method::POST,
            "/v1/calls",
            &headers,
            Some(b"{}".to_vec()),
        )
        .await;
    assert_eq!(sent.status, 401);
    let body = sent.json();
    assert_eq!(body["status"], "error");
    assert_eq!(body["code"], "AUTH_FAILURE");
    assert!(
        forwarded(&bland).await.is_empty(),
        "only the key check reached Bland"
    );
}

#[tokio::test]
async fn a_route_callmux_has_never_heard_of_is_forwarded_with_its_query() {
    let bland = bland_fake(BLAND_KEY, BLAND_ORG).await;
    let app = own_key_app(&bland.uri()).await;
    let got = app
        .send(
            reqwest::Method::GET,
            "/v1/pathway?x=1&name=a%20b&empty=",
            &acme(),
            None,
        )
        .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json(), pathways());
    let seen = forwarded(&bland).await;
    assert_eq!(seen[0].url.path(), "/v1/pathway");
    assert_eq!(seen[0].url.query(), Some("x=1&name=a%20b&empty="));
}

#[tokio::test]
async fn an_answer_that_is_not_a_success_comes_back_as_bland_sent_it() {
    let bland = bland_fake(BLAND_KEY, BLAND_ORG).await;
    Mock::given(method("DELETE"))
        .and(path("/v1/pathway/p-1"))
        .respond_with(
            ResponseTemplate::new(404)
                .set_body_json(json!({"status": "error", "message": "Pathway not found"})),
        )
        .with_priority(1)
        .mount(&bland)
        .await;
    let app = own_key_app(&bland.uri()).await;
    let got = app
        .send(reqwest::Method::DELETE, "/v1/pathway/p-1", &acme(), None)
        .await;
    assert_eq!(got.status, 404);
    assert_eq!(
        got.json(),
        json!({"status": "error", "message": "Pathway not found"})
    );
}

#[tokio::test]
async fn a_large_body_arrives_byte_identical_both_ways_and_one_over_the_cap_is_refused() {
    let bland = bland_fake(BLAND_KEY, BLAND_ORG).await;
    let cap: usize = 4 * 1024 * 1024;
    let toml = own_key_config_with(&bland.uri(), &[])
        .server("forward_max_request_bytes", cap as u64)
        .toml();
    let app = spawn_app_with_env(&toml, ENV).await;
    let body: Vec<u8> = (0..3 * 1024 * 1024).map(|_| fastrand::u8(..)).collect();
    let mut headers = acme();
    headers.push(("content-type", "application/octet-stream"));
    let echoed = app
        .send(
            reqwest::Method::POST,
            "/v1/knowledgebases/upload",
            &headers,
            Some(body.clone()),
        )
        .await;
    assert_eq!(echoed.status, 200);
    assert!(echoed.body == body, "the answer came back changed");
    let seen = forwarded(&bland).await;
    assert!(seen[0].body == body, "the request arrived changed");

    let over = app
        .send(
            reqwest::Method::POST,
            "/v1/knowledgebases/upload",
            &headers,
            Some(vec![b'x'; cap + 1]),
        )
        .await;
    assert_eq!(over.status, 413);
    let refusal = over.json();
    assert_eq!(refusal["status"], "error");
    assert_eq!(refusal["code"], "BODY_TOO_LARGE");
    assert!(refusal["message"]
        .as_str()
        .unwrap()
        .contains("forward_max_request_bytes"));
    assert_eq!(forwarded(&bland).await.len(), 1, "nothing more was sent");
}

#[tokio::test]
async fn a_chunked_body_over_the_cap_is_refused_and_nothing_is_sent() {
    let bland = bland_fake(BLAND_KEY, BLAND_ORG).await;
    let app = spawn_app_with_env(
        &own_key_config_with(&bland.uri(), &[])
            .server("forward_max_request_bytes", 1000)
            .toml(),
        ENV,
    )
    .await;
    let piece = "x".repeat(600);
    let (status, body) = app
        .raw_request(&format!(
            "POST /v1/knowledgebases/upload HTTP/1.1\r\nhost: callmux\r\nauthorization: {KEY}\r\n\
             x-bland-org-id: acme\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n\
             258\r\n{piece}\r\n258\r\n{piece}\r\n0\r\n\r\n"
        ))
        .await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["code"], "BODY_TOO_LARGE");
    assert!(forwarded(&bland).await.is_empty());
}

#[tokio::test]
async fn a_client_that_expects_100_continue_gets_its_body_forwarded() {
    let bland = bland_fake(BLAND_KEY, BLAND_ORG).await;
    let app = own_key_app(&bland.uri()).await;
    let mut headers = acme();
    headers.push(("expect", "100-continue"));
    let body = vec![b'y'; 64 * 1024];
    let echoed = app
        .send(
            reqwest::Method::POST,
            "/v1/knowledgebases/upload",
            &headers,
            Some(body.clone()),
        )
        .await;
    assert_eq!(echoed.status, 200);
    assert!(echoed.body == body);
    assert!(header_of(&forwarded(&bland).await[0], "expect").is_none());
}

#[tokio::test]
async fn an_answer_declared_larger_than_the_cap_is_the_providers_error() {
    let bland = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200).set_body_raw(vec![b'a'; 4096], "text/plain"))
        .mount(&bland)
        .await;
    let toml = own_key_config_with(&bland.uri(), &[("max_body_bytes", 1024)]).toml();
    let app = spawn_app_with_env(&toml, ENV).await;
    let got = app
        .send(reqwest::Method::GET, "/v1/pathway", &acme(), None)
        .await;
    assert_eq!(got.status, 502);
    let body = got.json();
    assert_eq!(body["code"], "UPSTREAM_TOO_LARGE");
    assert_eq!(body["provider"], "bland");
}

#[tokio::test]
async fn an_org_without_forwarding_gets_callmux_404_and_bland_sees_nothing() {
    let bland = bland_fake(BLAND_KEY, BLAND_ORG).await;
    let toml = TestConfig::new()
        .org(OrgB::key("acme", KEY).providers(&["bland"]))
        .provider(ProviderB::bland(
            "bland",
            &bland.uri(),
            "BLAND_KEY",
            BLAND_ORG,
        ))
        .toml();
    let app = spawn_app_with_env(&toml, ENV).await;
    let got = app
        .send(
            reqwest::Method::GET,
            &format!("/v1/calls/{CALL_ID}"),
            &acme(),
            None,
        )
        .await;
    assert_eq!(got.status, 404);
    let body = got.json();
    assert_eq!(body["data"], Value::Null);
    assert_eq!(body["errors"][0]["error"], "NOT_FOUND");
    assert!(body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("bland_passthrough"));
    assert_eq!(hits(&bland).await, 0);
}

#[tokio::test]
async fn a_path_outside_v1_is_never_forwarded() {
    let bland = bland_fake(BLAND_KEY, BLAND_ORG).await;
    let app = own_key_app(&bland.uri()).await;
    for at in ["/v2/calls", "/v1", "/nope", "/api/call-logs"] {
        let got = app.send(reqwest::Method::GET, at, &acme(), None).await;
        assert_eq!(got.status, 404, "{at}");
        assert_eq!(got.json()["errors"][0]["error"], "NOT_FOUND", "{at}");
    }
    assert_eq!(hits(&bland).await, 0);
}

#[tokio::test]
async fn a_wrong_callmux_key_is_refused_before_bland() {
    let bland = bland_fake(BLAND_KEY, BLAND_ORG).await;
    let app = own_key_app(&bland.uri()).await;
    for headers in [
        vec![("authorization", "sk-wrong"), ("x-bland-org-id", "acme")],
        vec![("x-bland-org-id", "acme")],
        // The provider's own Bland key is not a callmux key.
        vec![("authorization", BLAND_KEY), ("x-bland-org-id", "acme")],
    ] {
        let got = app
            .send(
                reqwest::Method::POST,
                "/v1/calls",
                &headers,
                Some(b"{}".to_vec()),
            )
            .await;
        assert_eq!(got.status, 401);
        assert_eq!(got.headers.get("www-authenticate").unwrap(), "Bearer");
        let body = got.json();
        assert_eq!(body["status"], "error");
        assert_eq!(body["code"], "AUTH_FAILURE");
    }
    assert_eq!(hits(&bland).await, 0);
}

#[tokio::test]
async fn paths_that_could_reach_another_route_are_refused_and_go_nowhere() {
    let bland = bland_fake(BLAND_KEY, BLAND_ORG).await;
    let app = own_key_app(&bland.uri()).await;
    for at in [
        "/v1/calls/%2e%2e/x",
        "/v1/calls/%2E%2E/active",
        "/v1/a%2Fb",
        "/v1/a%2fb",
        "/v1/./x",
        "/v1/calls/../pathway",
        "/v1/a%5Cb",
    ] {
        let (status, body) = app
            .raw_request(&format!(
                "GET {at} HTTP/1.1\r\nhost: callmux\r\nauthorization: {KEY}\r\n\
                 x-bland-org-id: acme\r\nconnection: close\r\n\r\n"
            ))
            .await;
        assert_eq!(status, 400, "{at}: {body}");
        assert_eq!(body["status"], "error", "{at}");
        assert_eq!(body["code"], "INVALID_PATH", "{at}");
    }
    assert_eq!(hits(&bland).await, 0);
}

#[tokio::test]
async fn hop_by_hop_headers_are_stripped_both_ways() {
    let bland = MockServer::start().await;
    Mock::given(any())
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(sent_call())
                .insert_header("connection", "x-upstream-hop")
                .insert_header("x-upstream-hop", "drop-me")
                .insert_header("keep-alive", "timeout=5")
                .insert_header("proxy-authenticate", "Basic")
                .insert_header("x-bland-request-id", "kept"),
        )
        .mount(&bland)
        .await;
    let app = own_key_app(&bland.uri()).await;
    let mut sock = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "GET /v1/pathway HTTP/1.1\r\nhost: callmux.example\r\nauthorization: {KEY}\r\n\
         x-bland-org-id: acme\r\nconnection: close, x-hop\r\nx-hop: drop-me\r\n\
         keep-alive: timeout=5\r\nproxy-authorization: Basic Zm9vOmJhcg==\r\n\
         proxy-connection: keep-alive\r\nte: trailers\r\ntrailer: x-t\r\n\
         x-kept: yes\r\nuser-agent: bland-sdk/1.0\r\n\r\n"
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), sock.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&raw).to_lowercase();
    let (answer_head, _) = text.split_once("\r\n\r\n").unwrap();
    assert!(answer_head.starts_with("http/1.1 200"), "{text}");
    assert!(
        answer_head.contains("x-bland-request-id: kept"),
        "{answer_head}"
    );
    for gone in ["x-upstream-hop", "keep-alive:", "proxy-authenticate"] {
        assert!(
            !answer_head.contains(gone),
            "{gone} came back:\n{answer_head}"
        );
    }

    let seen = bland.received_requests().await.unwrap();
    let sent = &seen[0];
    for gone in [
        "x-hop",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
    ] {
        assert!(sent.headers.get(gone).is_none(), "{gone} was forwarded");
    }
    if let Some(connection) = header_of(sent, "connection") {
        assert!(!connection.contains("x-hop"), "{connection}");
    }
    assert_eq!(header_of(sent, "x-kept"), Some("yes"));
    assert_eq!(header_of(sent, "user-agent"), Some("bland-sdk/1.0"));
    assert_ne!(header_of(sent, "host"), Some("callmux.example"));
}

#[tokio::test]
async fn an_upstream_that_hangs_costs_its_timeout_and_answers_504() {
    let url = silent_server().await;
    let toml = own_key_config_with(&url, &[("timeout_ms", 400)]).toml();
    let app = spawn_app_with_env(&toml, ENV).await;
    let started = Instant::now();
    let got = app
        .send(reqwest::Method::GET, "/v1/pathway", &acme(), None)
        .await;
    let took = started.elapsed();
    assert_eq!(got.status, 504);
    let body = got.json();
    assert_eq!(body["status"], "error");
    assert_eq!(body["code"], "UPSTREAM_TIMEOUT");
    assert_eq!(body["provider"], "bland");
    assert!(took >= Duration::from_millis(400), "{took:?}");
    assert!(took < Duration::from_secs(20), "{took:?}");
}

/// An upstream that sends the head and `first`, then waits for `release` before sending
/// `rest` and ending: a small axum server.
async fn dribbling_server(
    first: &'static [u8],
    rest: &'static [u8],
) -> (String, tokio::sync::oneshot::Sender<()>) {
    use futures::StreamExt;
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let released = Arc::new(Mutex::new(Some(released)));
    let app = axum::Router::new().fallback(move || {
        let released = released.lock().unwrap().take();
        async move {
            let head =
                futures::stream::once(
                    async move { Ok::<_, std::io::Error>(Bytes::from_static(first)) },
                );
            let tail = futures::stream::once(async move {
                if let Some(released) = released {
                    let _ = released.await;
                }
                Ok(Bytes::from_static(rest))
            });
            axum::response::Response::builder()
                .header("content-type", "application/x-ndjson")
                .body(axum::body::Body::from_stream(head.chain(tail)))
                .unwrap()
        }
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), release)
}

#[tokio::test]
async fn an_answer_is_streamed_as_it_arrives_not_held_until_it_ends() {
    let (url, release) = dribbling_server(b"{\"first\": 1}\n", b"{\"rest\": 2}\n").await;
    let app = own_key_app(&url).await;
    let mut resp = app
        .http
        .get(app.url("/v1/batches/b-1/logs"))
        .header("authorization", KEY)
        .header("x-bland-org-id", "acme")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let first = tokio::time::timeout(Duration::from_secs(10), resp.chunk())
        .await
        .expect("the first piece arrives while the upstream still holds the rest")
        .unwrap()
        .unwrap();
    assert_eq!(&first[..], b"{\"first\": 1}\n");
    release.send(()).unwrap();
    let mut rest = Vec::new();
    while let Some(piece) = tokio::time::timeout(Duration::from_secs(10), resp.chunk())
        .await
        .unwrap()
        .unwrap()
    {
        rest.extend_from_slice(&piece);
    }
    assert_eq!(rest, b"{\"rest\": 2}\n");
}

#[tokio::test]
async fn an_answer_that_runs_past_the_cap_is_cut_off() {
    static FIRST: [u8; 800] = [b'a'; 800];
    static REST: [u8; 800] = [b'b'; 800];
    let (url, release) = dribbling_server(&FIRST, &REST).await;
    let toml = own_key_config_with(&url, &[("max_body_bytes", 1000)]).toml();
    let app = spawn_app_with_env(&toml, ENV).await;
    release.send(()).unwrap();
    let resp = app
        .http
        .get(app.url("/v1/batches/b-1/logs"))
        .header("authorization", KEY)
        .header("x-bland-org-id", "acme")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        200,
        "the head was on its way before the cap was reached"
    );
    let body = tokio::time::timeout(Duration::from_secs(10), resp.bytes())
        .await
        .unwrap();
    assert!(
        body.is_err(),
        "a cut-off answer must not read as complete: {body:?}"
    );
}

#[tokio::test]
async fn a_streamed_answer_holds_its_place_among_the_requests_in_flight() {
    let (url, release) = dribbling_server(b"first\n", b"rest\n").await;
    let toml = own_key_config(&url)
        .server("max_concurrent_requests", 1)
        .toml();
    let app = spawn_app_with_env(&toml, ENV).await;
    let mut streaming = app
        .http
        .get(app.url("/v1/batches/b-1/logs"))
        .header("authorization", KEY)
        .header("x-bland-org-id", "acme")
        .send()
        .await
        .unwrap();
    assert_eq!(&streaming.chunk().await.unwrap().unwrap()[..], b"first\n");
    let meanwhile = app
        .send(reqwest::Method::GET, "/v1/pathway", &acme(), None)
        .await;
    assert_eq!(
        meanwhile.status,
        503,
        "{}",
        String::from_utf8_lossy(&meanwhile.body)
    );
    release.send(()).unwrap();
    while streaming.chunk().await.unwrap().is_some() {}
    // Its place is given back once the body is done.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let after = app.bland(KEY, "acme").await;
        if after.status != 503 {
            break;
        }
        assert!(Instant::now() < deadline, "the place was never given back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_list_and_the_stop_route_are_still_callmux_own_for_a_forwarding_org() {
    let bland = MockServer::start().await;
    let listed = json!({"data": [
        bland_call("live-1", "IN_PROGRESS", "1727110100740"),
        bland_call("done-1", "COMPLETED", "1727110000740"),
    ], "errors": null});
    Mock::given(method("GET"))
        .and(path("/v1/calls/active"))
        .respond_with(ResponseTemplate::new(200).set_body_json(listed))
        .mount(&bland)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/calls/live-1/stop"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"status": "success", "message": "Bland's own words"})),
        )
        .mount(&bland)
        .await;
    let app = own_key_app(&bland.uri()).await;
    let list = app.bland(KEY, "acme").await;
    assert_eq!(list.status, 200);
    let ids: Vec<&str> = list.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["call_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["live-1"], "callmux's merged list, not Bland's answer");
    let stopped = app
        .send(
            reqwest::Method::POST,
            "/v1/calls/live-1/stop",
            &acme(),
            None,
        )
        .await;
    assert_eq!(stopped.status, 200);
    assert_eq!(stopped.json()["message"], "Call ended successfully.");
}

#[tokio::test]
async fn forwarded_requests_are_counted_and_logged_without_keys_or_queries() {
    let bland = bland_fake(BLAND_KEY, BLAND_ORG).await;
    let provider = unique("bland");
    let org = unique("acme");
    let toml = TestConfig::new()
        .org(
            OrgB::key(&org, KEY)
                .providers(&[&provider])
                .passthrough(&provider),
        )
        .provider(ProviderB::bland(
            &provider,
            &bland.uri(),
            "BLAND_KEY",
            BLAND_ORG,
        ))
        .toml();
    let binary = Binary::start(toml.as_str(), ENV, &["--log-format", "json"]);
    let headers = [("authorization", KEY), ("x-bland-org-id", org.as_str())];
    let got = binary
        .app
        .send(
            reqwest::Method::GET,
            "/v1/pathway?secret_query=sq-123",
            &headers,
            None,
        )
        .await;
    assert_eq!(got.status, 200);
    let (status, _) = binary
        .app
        .raw_request(&format!(
            "GET /v1/a%2Fb HTTP/1.1\r\nhost: x\r\nauthorization: {KEY}\r\nx-bland-org-id: {org}\r\nconnection: close\r\n\r\n"
        ))
        .await;
    assert_eq!(status, 400);

    let metrics = binary
        .app
        .http
        .get(binary.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let counted = |provider: &str, outcome: &str| {
        metrics.lines().any(|l| {
            l.starts_with("callmux_passthrough_requests_total{")
                && l.contains(&format!("provider=\"{provider}\""))
                && l.contains(&format!("outcome=\"{outcome}\""))
                && l.ends_with(" 1")
        })
    };
    assert!(counted(&provider, "forwarded"), "{metrics}");
    assert!(counted("", "invalid_path"), "{metrics}");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("callmux_requests_total{")
                && l.contains("route=\"/v1/{*path}\"")
                && l.contains("status=\"200\"")),
        "{metrics}"
    );

    let logged = binary
        .log_line("the forwarded request", |l| {
            l.contains("bland passthrough") && l.contains(&provider)
        })
        .await;
    let logged: Value = serde_json::from_str(&logged).unwrap();
    let fields = &logged["fields"];
    assert_eq!(fields["org"], org.as_str(), "{logged}");
    assert_eq!(fields["method"], "GET", "{logged}");
    assert_eq!(fields["path"], "/v1/pathway", "{logged}");
    assert_eq!(fields["status"], 200, "{logged}");
    assert_eq!(fields["outcome"], "forwarded", "{logged}");
    assert!(!metrics.contains(KEY));
    let all = binary.stop();
    for secret in [KEY, BLAND_KEY, "sq-123"] {
        assert!(!all.contains(secret), "{secret} was logged:\n{all}");
    }
}

#[tokio::test]
async fn a_forwarded_request_body_is_capped_at_forward_max_request_bytes_whatever_the_providers_cap(
) {
    let bland = bland_fake(BLAND_KEY, BLAND_ORG).await;
    // The provider takes 16 MiB answers; requests stay under the server's own 1 MiB default.
    let app = own_key_app(&bland.uri()).await;
    let mut headers = acme();
    headers.push(("content-type", "application/json"));
    let at_cap = app
        .send(
            reqwest::Method::POST,
            "/v1/calls",
            &headers,
            Some(vec![b' '; 1024 * 1024]),
        )
        .await;
    assert_eq!(at_cap.status, 200);
    let over = app
        .send(
            reqwest::Method::POST,
            "/v1/calls",
            &headers,
            Some(vec![b' '; 1024 * 1024 + 1]),
        )
        .await;
    assert_eq!(over.status, 413);
    let refusal = over.json();
    assert_eq!(refusal["code"], "BODY_TOO_LARGE");
    let message = refusal["message"].as_str().unwrap();
    assert!(message.contains("forward_max_request_bytes"), "{message}");
    assert!(message.contains("1048576"), "{message}");
    assert_eq!(
        forwarded(&bland).await.len(),
        1,
        "the one over was not sent"
    );
}

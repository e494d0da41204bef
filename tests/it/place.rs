//! Placing calls: `POST /api/call` goes to the org's agent server with the fewest active calls
//! under its `max_active_calls`, with a place reserved first, so that concurrent placements
//! never overshoot; the agent server's own answer comes back with `"provider"` added.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::common::*;

const KEY: &str = "acme-key";

/// An agent server as the reference document describes it: `POST /api/call` starts a call,
/// which `GET /api/calls` lists at once, and answers `{"success": true, "call_id", "to",
/// "webhook_url"}`. Each placement takes `delay` to answer.
pub(crate) async fn placing_agent_server(active: usize, delay: Duration) -> (MockServer, Listed) {
    let (server, listed) = live_agent_server(
        (0..active)
            .map(|i| agent_call(&format!("old-{i}"), "+1555", "in-progress", "outbound"))
            .collect(),
    )
    .await;
    let l = listed.clone();
    let next = Arc::new(AtomicUsize::new(0));
    Mock::given(method("POST"))
        .and(path("/api/call"))
        .respond_with(move |r: &Request| {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            let id = format!("placed-{}", next.fetch_add(1, Ordering::SeqCst));
            l.lock().unwrap().push(agent_call(
                &id,
                body["to"].as_str().unwrap(),
                "initiating",
                "outbound",
            ));
            ResponseTemplate::new(200)
                .set_body_json(json!({
                    "success": true,
                    "call_id": id,
                    "to": body["to"],
                    "webhook_url": body["webhook_url"],
                }))
                .set_delay(delay)
        })
        .mount(&server)
        .await;
    (server, listed)
}

fn placers(servers: &[(&str, &MockServer, Option<u64>)]) -> String {
    let mut config = TestConfig::new()
        .org(OrgB::key("acme", KEY).providers(&servers.iter().map(|s| s.0).collect::<Vec<_>>()));
    for (id, server, max) in servers {
        let mut p = ProviderB::agent(id, &server.uri()).set("place_calls", true);
        if let Some(max) = max {
            p = p.set("max_active_calls", *max);
        }
        config = config.provider(p);
    }
    config.toml()
}

impl TestApp {
    /// `POST /api/call` with `body`, as the reference document's client sends it.
    async fn place(&self, body: &str) -> Reply {
        let resp = self
            .http
            .post(self.url("/api/call"))
            .header("authorization", KEY)
            .header("x-bland-org-id", "acme")
            .header("content-type", "application/json")
            .body(body.to_owned())
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .expect("callmux answers");
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
}

pub(crate) const CALL: &str =
    r#"{"to": "+1234567890", "webhook_url": "https://your-url.ngrok.io"}"#;

/// The bodies placements sent to `server`.
async fn placed(server: &MockServer) -> Vec<Vec<u8>> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.url.path() == "/api/call")
        .map(|r| r.body)
        .collect()
}

#[tokio::test]
async fn a_call_goes_to_the_server_with_fewest_active_calls_and_its_answer_comes_back() {
    let (busy, _) = placing_agent_server(3, Duration::ZERO).await;
    let (quiet, quiet_listed) = placing_agent_server(1, Duration::ZERO).await;
    let app = spawn_app(&placers(&[
        ("busy", &busy, Some(10)),
        ("quiet", &quiet, Some(10)),
    ]))
    .await;
    let reply = app.place(CALL).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.body,
        json!({
            "success": true,
            "call_id": "placed-0",
            "to": "+1234567890",
            "webhook_url": "https://your-url.ngrok.io",
            "provider": "quiet",
        })
    );
    assert_eq!(
        placed(&quiet).await,
        vec![CALL.as_bytes().to_vec()],
        "sent as written"
    );
    assert!(placed(&busy).await.is_empty());
    assert_eq!(quiet_listed.lock().unwrap().len(), 2);
    // Now 3 and 2: still the quiet one; then 3 and 3: a tie, which goes to the first listed.
    assert_eq!(app.place(CALL).await.body["provider"], "quiet");
    assert_eq!(app.place(CALL).await.body["provider"], "busy");
}

#[tokio::test]
async fn when_every_server_is_full_the_answer_is_at_capacity_with_retry_after() {
    let (a, _) = placing_agent_server(2, Duration::ZERO).await;
    let (b, _) = placing_agent_server(1, Duration::ZERO).await;
    let app = spawn_app(&placers(&[("a", &a, Some(2)), ("b", &b, Some(1))])).await;
    let reply = app.place(CALL).await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(reply.body["success"], false);
    assert_eq!(reply.body["code"], "AT_CAPACITY");
    assert!(reply.body["error"]
        .as_str()
        .unwrap()
        .contains("max_active_calls"));
    assert_eq!(reply.headers["retry-after"], "5");
    assert!(placed(&a).await.is_empty() && placed(&b).await.is_empty());
}

#[tokio::test]
async fn concurrent_placements_never_take_a_server_past_its_max_active_calls() {
    // Each placement takes a while to answer, so many are in flight at once and every list
    // taken meanwhile still shows the old count: only the reservations keep the limit.
    let (a, a_listed) = placing_agent_server(1, Duration::from_millis(200)).await;
    let (b, b_listed) = placing_agent_server(0, Duration::from_millis(200)).await;
    let app = Arc::new(spawn_app(&placers(&[("a", &a, Some(4)), ("b", &b, Some(5))])).await);
    let tries: Vec<_> = (0..40)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { app.place(CALL).await })
        })
        .collect();
    let mut by_status: std::collections::BTreeMap<u16, usize> = Default::default();
    for t in tries {
        *by_status.entry(t.await.unwrap().status).or_default() += 1;
    }
    assert_eq!(
        by_status,
        [(200, 8), (503, 32)].into(),
        "3 places on a, 5 on b"
    );
    assert_eq!(a_listed.lock().unwrap().len(), 4);
    assert_eq!(b_listed.lock().unwrap().len(), 5);
    assert_eq!(placed(&a).await.len() + placed(&b).await.len(), 8);
}

#[tokio::test]
async fn a_refused_placement_comes_back_as_the_server_sent_it_and_frees_its_place() {
    let server = agent_server(json!([])).await;
    let refusals = Arc::new(Mutex::new(1));
    let r = refusals.clone();
    Mock::given(method("POST"))
        .and(path("/api/call"))
        .respond_with(move |_: &Request| {
            let mut left = r.lock().unwrap();
            if *left > 0 {
                *left -= 1;
                ResponseTemplate::new(500)
                    .set_body_json(json!({"success": false, "error": "Twilio error: 21211"}))
            } else {
                ResponseTemplate::new(200).set_body_json(json!({"success": true, "call_id": "x"}))
            }
        })
        .mount(&server)
        .await;
    let app = spawn_app(&placers(&[("agents", &server, Some(1))])).await;
    let refused = app.place(CALL).await;
    assert_eq!(refused.status, 500, "{}", refused.body);
    assert_eq!(
        refused.body,
        json!({"success": false, "error": "Twilio error: 21211", "provider": "agents"})
    );
    // The one place was released, so the next call goes out.
    let ok = app.place(CALL).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.body["provider"], "agents");
}

#[tokio::test]
async fn a_placement_that_times_out_is_outcome_unknown_and_keeps_its_place() {
    let (server, _) = placing_agent_server(0, Duration::from_secs(20)).await;
    let toml = TestConfig::new()
        .org(OrgB::key("acme", KEY).providers(&["agents"]))
        .provider(
            ProviderB::agent("agents", &server.uri())
                .set("place_calls", true)
                .set("max_active_calls", 1)
                .set("timeout_ms", 300)
                .set("retries", 3),
        )
        .toml();
    let app = spawn_app(&toml).await;
    let unknown = app.place(CALL).await;
    assert_eq!(unknown.status, 504, "{}", unknown.body);
    assert_eq!(unknown.body["code"], "OUTCOME_UNKNOWN");
    assert_eq!(unknown.body["provider"], "agents");
    assert_eq!(placed(&server).await.len(), 1, "never sent twice");
    // The call may exist: its place stays taken.
    assert_eq!(app.place(CALL).await.body["code"], "AT_CAPACITY");
}

#[tokio::test]
async fn a_malformed_or_oversized_body_is_a_400_naming_what_is_wrong_and_goes_nowhere() {
    let (server, _) = placing_agent_server(0, Duration::ZERO).await;
    let app = spawn_app(&placers(&[("agents", &server, None)])).await;
    let big = format!(r#"{{"to": "+1", "prompt": "{}"}}"#, "x".repeat(100 * 1024));
    for (body, says) in [
        ("", "not JSON"),
        ("{\"to\": ", "not JSON"),
        ("[]", "JSON object"),
        (r#"{"prompt": "hi"}"#, "`to` is missing"),
        (r#"{"to": 1234567890}"#, "`to` must be a string"),
        (r#"{"to": "+1", "metadata": [1]}"#, "`metadata`"),
        (&big, "over 65536 bytes"),
    ] {
        let reply = app.place(body).await;
        assert_eq!(reply.status, 400, "{body:.40}: {}", reply.body);
        assert_eq!(reply.body["code"], "INVALID_BODY");
        let text = reply.body["error"].as_str().unwrap();
        assert!(text.contains(says), "{body:.40}: {text}");
    }
    assert!(placed(&server).await.is_empty());
}

#[tokio::test]
async fn an_org_with_no_server_that_places_calls_is_told_how_to_allow_it() {
    let server = agent_server(json!([])).await;
    let app = spawn_app(
        &TestConfig::new()
            .org(OrgB::key("acme", KEY).providers(&["agents"]))
            .provider(ProviderB::agent("agents", &server.uri()))
            .toml(),
    )
    .await;
    let reply = app.place(CALL).await;
    assert_eq!(reply.status, 501, "{}", reply.body);
    assert_eq!(reply.body["code"], "NOT_SUPPORTED");
    assert!(reply.body["error"]
        .as_str()
        .unwrap()
        .contains("place_calls = true"));
    assert_eq!(hits(&server).await, 0);
}

#[tokio::test]
async fn a_wrong_key_is_refused_in_the_agent_envelope_before_anything_is_sent() {
    let (server, _) = placing_agent_server(0, Duration::ZERO).await;
    let app = spawn_app(&placers(&[("agents", &server, None)])).await;
    let reply = app
        .post(
            "/api/call",
            &[("authorization", "wrong"), ("x-bland-org-id", "acme")],
        )
        .await;
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert_eq!(reply.body["success"], false);
    assert_eq!(reply.body["code"], "AUTH_FAILURE");
    assert_eq!(hits(&server).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_orgs_listing_the_same_servers_in_opposite_orders_place_at_once_without_deadlock() {
    let (a, _) = placing_agent_server(0, Duration::ZERO).await;
    let (b, _) = placing_agent_server(0, Duration::ZERO).await;
    let toml = TestConfig::new()
        .org(OrgB::key("acme", KEY).providers(&["a", "b"]))
        .org(OrgB::key("other", "other-key").providers(&["b", "a"]))
        .provider(ProviderB::agent("a", &a.uri()).set("place_calls", true))
        .provider(ProviderB::agent("b", &b.uri()).set("place_calls", true))
        .toml();
    let app = Arc::new(spawn_app(&toml).await);
    let tasks: Vec<_> = (0..400)
        .map(|i| {
            let app = app.clone();
            let (org, key) = if i % 2 == 0 {
                ("acme", KEY)
            } else {
                ("other", "other-key")
            };
            tokio::spawn(async move {
                app.http
                    .post(app.url("/api/call"))
                    .header("authorization", key)
                    .header("x-bland-org-id", org)
                    .body(CALL)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    let all = tokio::time::timeout(Duration::from_secs(60), futures::future::join_all(tasks))
        .await
        .expect("placements hung: the reservation locks deadlocked");
    assert!(all.iter().all(|r| matches!(r, Ok(Ok(200)))), "{all:?}");
}

#[tokio::test]
async fn a_made_up_bland_key_places_no_call_for_an_org_whose_callers_bring_their_own() {
    let bland = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"status": "error"})))
        .mount(&bland)
        .await;
    let (agents, _) = placing_agent_server(0, Duration::ZERO).await;
    let toml = TestConfig::new()
        .org(OrgB::bland_keys("borg", "bl").providers(&["bl", "ag"]))
        .provider(ProviderB::bland_forwarding("bl", &bland.uri()))
        .provider(ProviderB::agent("ag", &agents.uri()).set("place_calls", true))
        .toml();
    let app = spawn_app(&toml).await;
    let reply = app
        .post(
            "/api/call",
            &[("authorization", "made-up"), ("x-bland-org-id", "borg")],
        )
        .await;
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert_eq!(reply.body["code"], "AUTH_FAILURE");
    assert!(
        placed(&agents).await.is_empty(),
        "a made-up key placed a call"
    );
}

/// Sends `head` and the start of a body it never finishes, and reads the answer: the status
/// and the JSON body, or `None` if none came within 5 s.
async fn half_a_body(app: &TestApp, head: &str) -> Option<(u16, Value)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut sock = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    sock.write_all(head.as_bytes()).await.unwrap();
    sock.write_all(b"{\"to\": \"+1").await.unwrap();
    let read = async {
        let mut raw = Vec::new();
        let mut piece = [0u8; 4096];
        loop {
            let n = sock.read(&mut piece).await.unwrap();
            raw.extend_from_slice(&piece[..n]);
            let text = String::from_utf8_lossy(&raw).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                if let Ok(body) = serde_json::from_str::<Value>(body) {
                    return (head[9..12].parse().unwrap(), body);
                }
            }
            if n == 0 {
                panic!("the connection closed: {text}");
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .ok()
}

#[tokio::test]
async fn a_made_up_key_is_refused_before_its_body_is_read() {
    let server = agent_server(json!([])).await;
    let app = spawn_app(&placers(&[("agents", &server, Some(1))])).await;
    let head = "POST /api/call HTTP/1.1\r\nhost: callmux\r\nauthorization: made-up\r\n\
                x-bland-org-id: acme\r\ncontent-type: application/json\r\n\
                content-length: 4000\r\n\r\n";
    let (status, body) = half_a_body(&app, head)
        .await
        .expect("the made-up key was answered only once the body was in");
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["code"], "AUTH_FAILURE");
    assert_eq!(hits(&server).await, 0);
}

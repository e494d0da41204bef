//! The live streams (DESIGN §11) and callmux's own list shape, against the real server and
//! agent-server fakes that change while callmux polls them.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;

const KEY: &str = "live-key";

/// An org seeing one agent server polled every `poll_ms`, with `server` settings.
fn config(org: &str, agent: &LiveAgent, poll_ms: i64, server: &[(&str, i64)]) -> String {
    let mut c = TestConfig::new()
        .org(OrgB::key(org, KEY).providers(&["agents"]))
        .provider(ProviderB::agent("agents", &agent.url).set("poll_interval_ms", poll_ms));
    for (k, v) in server {
        c = c.server(k, *v);
    }
    c.toml()
}

/// Waits (bounded) until `agent` has been asked nothing for `quiet`: its poller has stopped.
async fn asked_nothing_for(agent: &LiveAgent, quiet: Duration) {
    let mut seen = (agent.requests(), std::time::Instant::now());
    until("the upstream goes unasked", async || {
        if agent.requests() != seen.0 {
            seen = (agent.requests(), std::time::Instant::now());
        }
        seen.1.elapsed() >= quiet
    })
    .await;
}

fn call(id: &str, status: &str) -> Value {
    agent_call(id, "+15550001111", status, "outbound")
}

#[tokio::test]
async fn get_calls_answers_every_canonical_field_in_callmux_s_own_shape() {
    let agent = LiveAgent::start(json!([call("c1", "ringing")])).await;
    let org = unique("own");
    let app = spawn_app(&config(&org, &agent, 2000, &[])).await;
    let reply = app
        .get(
            "/calls",
            &[("authorization", KEY), ("x-bland-org-id", &org)],
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.body,
        json!({"calls": [{"call_id": "c1", "provider": "agents", "from": null,
            "to": "+15550001111", "direction": "outbound", "status": "ringing",
            "created_at": null, "started_at": null, "telephony_id": null, "objective": null,
            "pathway_id": null, "international": null}],
          "count": 1, "errors": null})
    );
    let refused = app
        .get(
            "/calls",
            &[("authorization", "wrong"), ("x-bland-org-id", &org)],
        )
        .await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.body["errors"][0]["error"], "AUTH_FAILURE");
    assert_eq!(refused.body["calls"], json!([]));
}

#[tokio::test]
async fn a_stream_starts_with_a_snapshot_byte_for_byte_the_list_body_of_its_shape() {
    let agent = LiveAgent::start(json!([call("c1", "ringing"), call("c2", "in-progress")])).await;
    let org = unique("snap");
    let app = spawn_app(&config(&org, &agent, 2000, &[])).await;
    for (list, stream) in [
        ("/calls", "/calls/stream"),
        ("/api/calls", "/api/calls/stream"),
        ("/v1/calls/active", "/v1/calls/active/stream"),
    ] {
        let body = app
            .http
            .get(app.url(list))
            .header("authorization", KEY)
            .header("x-bland-org-id", &org)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let mut s = app.stream(stream, KEY, &org, None).await.unwrap();
        assert_eq!(s.headers["content-type"], "text/event-stream", "{stream}");
        let first = s.next().await;
        assert_eq!(first.event, "snapshot", "{stream}");
        assert!(!first.id.is_empty(), "{stream}");
        assert_eq!(first.data, body, "{stream}");
    }
}

#[tokio::test]
async fn a_change_upstream_arrives_as_added_updated_and_ended_in_the_stream_s_shape() {
    let agent = LiveAgent::start(json!([call("a", "ringing"), call("b", "ringing")])).await;
    let org = unique("change");
    let app = spawn_app(&config(&org, &agent, 50, &[])).await;
    let mut own = app.stream("/calls/stream", KEY, &org, None).await.unwrap();
    let mut agents = app
        .stream("/api/calls/stream", KEY, &org, None)
        .await
        .unwrap();
    let snapshot = own.next_of("snapshot").await;
    assert_eq!(snapshot.json()["count"], 2);
    agents.next_of("snapshot").await;
    agent.set(json!([call("b", "in-progress"), call("c", "ringing")]));
    let change = own.next_of("change").await;
    let v = change.json();
    assert_eq!(v["added"][0]["call_id"], "c");
    assert_eq!(v["added"][0]["provider"], "agents");
    assert_eq!(v["updated"][0]["call_id"], "b");
    assert_eq!(v["updated"][0]["status"], "in-progress");
    assert_eq!(v["ended"], json!(["a"]));
    assert_eq!(v["errors"], Value::Null);
    assert_ne!(change.id, snapshot.id);
    let v = agents.next_of("change").await.json();
    assert_eq!(
        v["added"],
        json!([{"call_id": "c", "to_number": "+15550001111", "status": "ringing", "direction": "outbound"}])
    );
    assert_eq!(v["ended"], json!(["a"]));
}

#[tokio::test]
async fn a_failing_provider_is_named_in_the_errors_of_every_event() {
    let agent = LiveAgent::start(json!([call("a", "ringing")])).await;
    let org = unique("fail");
    let toml = TestConfig::new()
        .org(OrgB::key(&org, KEY).providers(&["agents", "down"]))
        .provider(ProviderB::agent("agents", &agent.url).set("poll_interval_ms", 50))
        .provider(
            ProviderB::agent("down", &refused_url().await)
                .set("poll_interval_ms", 50)
                .set("circuit_failures", 0),
        )
        .toml();
    let app = spawn_app(&toml).await;
    let mut s = app.stream("/calls/stream", KEY, &org, None).await.unwrap();
    let v = s.next_of("snapshot").await.json();
    assert_eq!(v["errors"][0]["provider"], "down");
    assert_eq!(v["errors"][0]["error"], "UPSTREAM_UNREACHABLE");
    assert_eq!(v["count"], 1);
    agent.set(json!([call("a", "in-progress")]));
    let v = s.next_of("change").await.json();
    assert_eq!(v["updated"][0]["status"], "in-progress");
    // `errors` is every provider error now, not only new ones.
    assert_eq!(v["errors"][0]["provider"], "down");
}

/// How long `agent` takes to be asked `n` more times, timed from an ask (bounded).
async fn time_for_asks(agent: &LiveAgent, n: usize) -> Duration {
    let before = agent.requests();
    until("the upstream is asked", async || agent.requests() > before).await;
    let (from, started) = (agent.requests(), std::time::Instant::now());
    until(&format!("{n} more asks"), async || {
        agent.requests() >= from + n
    })
    .await;
    started.elapsed()
}

#[tokio::test]
async fn upstream_requests_per_interval_are_the_same_with_one_subscriber_and_with_500() {
    const PERIOD: Duration = Duration::from_millis(200);
    const ASKS: usize = 5;
    let agent = LiveAgent::start(json!([call("a", "ringing")])).await;
    let org = unique("load");
    let app = spawn_app(&config(&org, &agent, PERIOD.as_millis() as i64, &[])).await;
    let mut first = app.stream("/calls/stream", KEY, &org, None).await.unwrap();
    first.next_of("snapshot").await;
    let with_one = time_for_asks(&agent, ASKS).await;

    let mut others = Vec::new();
    for _ in 0..499 {
        // Each on a connection of its own, as 499 dashboards would be.
        let client = TestApp {
            addr: app.addr,
            http: reqwest::Client::new(),
        };
        let mut s = client
            .stream("/calls/stream", KEY, &org, None)
            .await
            .unwrap();
        assert_eq!(s.next().await.event, "snapshot");
        others.push((client, s));
    }
    let with_500 = time_for_asks(&agent, ASKS).await;
    // The poller sleeps a whole period after each ask, so a loaded machine only stretches
    // these (timed from the moment an ask was seen, the first period may be cut short);
    // upstream load that grew with subscribers would ask hundreds of times at once.
    for (subscribers, took) in [(1, with_one), (500, with_500)] {
        assert!(
            took + Duration::from_millis(50) >= PERIOD * (ASKS - 1) as u32,
            "{ASKS} asks in {took:?} at a {PERIOD:?} poll period with {subscribers} subscribers"
        );
    }
    // And every one of them still hears a change.
    agent.set(json!([call("a", "in-progress")]));
    for (_, s) in &mut others {
        assert_eq!(
            s.next_of("change").await.json()["updated"][0]["call_id"],
            "a"
        );
    }
}

#[tokio::test]
async fn the_poller_stops_asking_once_the_last_subscriber_leaves() {
    let agent = LiveAgent::start(json!([])).await;
    let org = unique("stop");
    let app = spawn_app(&config(&org, &agent, 50, &[])).await;
    let mut s = app.stream("/calls/stream", KEY, &org, None).await.unwrap();
    s.next_of("snapshot").await;
    until("polled while subscribed", async || agent.requests() >= 2).await;
    drop(s);
    // Four poll periods without an ask, then ten more must pass the same way.
    asked_nothing_for(&agent, Duration::from_millis(200)).await;
    let after_leaving = agent.requests();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        agent.requests(),
        after_leaving,
        "asked with no one subscribed"
    );
}

#[tokio::test]
async fn a_wrong_key_is_refused_with_the_list_s_status_and_body_and_no_stream() {
    let agent = LiveAgent::start(json!([call("a", "ringing")])).await;
    let org = unique("wrong");
    let app = spawn_app(&config(&org, &agent, 2000, &[])).await;
    for (list, stream) in [
        ("/calls", "/calls/stream"),
        ("/api/calls", "/api/calls/stream"),
        ("/v1/calls/active", "/v1/calls/active/stream"),
    ] {
        let expected = app
            .get(
                list,
                &[("authorization", "typed-wrong"), ("x-bland-org-id", &org)],
            )
            .await;
        let Err((status, body)) = app.stream(stream, "typed-wrong", &org, None).await else {
            panic!("{stream} streamed to a wrong key");
        };
        assert_eq!(status, 401, "{stream}");
        assert_eq!(body, expected.body, "{stream}");
    }
    assert_eq!(
        agent.requests(),
        0,
        "a refused key made callmux ask upstream"
    );
}

#[tokio::test]
async fn a_reconnect_with_the_last_event_id_resumes_without_a_snapshot() {
    let agent = LiveAgent::start(json!([call("a", "ringing")])).await;
    let org = unique("resume");
    let app = spawn_app(&config(&org, &agent, 50, &[])).await;
    let mut keeper = app.stream("/calls/stream", KEY, &org, None).await.unwrap();
    keeper.next_of("snapshot").await;
    let mut s = app.stream("/calls/stream", KEY, &org, None).await.unwrap();
    let seen = s.next_of("snapshot").await;
    drop(s);

    // Nothing missed: the stream goes on from where it was, with no snapshot.
    let mut back = app
        .stream("/calls/stream", KEY, &org, Some(&seen.id))
        .await
        .unwrap();
    agent.set(json!([call("a", "in-progress")]));
    let next = back.next_about_the_list().await;
    assert_eq!(next.event, "change");
    assert_eq!(next.json()["updated"][0]["status"], "in-progress");
    drop(back);

    // Missed a change: it comes first, still with no snapshot.
    agent.set(json!([call("a", "in-progress"), call("b", "ringing")]));
    keeper.next_of("change").await;
    let mut again = app
        .stream("/calls/stream", KEY, &org, Some(&next.id))
        .await
        .unwrap();
    let missed = again.next_about_the_list().await;
    assert_eq!(missed.event, "change");
    assert_eq!(missed.json()["added"][0]["call_id"], "b");
}

#[tokio::test]
async fn a_garbage_or_foreign_last_event_id_gets_a_fresh_snapshot() {
    let agent = LiveAgent::start(json!([call("a", "ringing")])).await;
    let org = unique("garbage");
    let app = spawn_app(&config(&org, &agent, 2000, &[])).await;
    for id in [
        "garbage",
        "",
        "00000000-0",
        "ffffffff-99999999",
        "\u{1F4A9}",
        "deadbeef-18446744073709551615",
    ] {
        let mut s = app
            .stream("/calls/stream", KEY, &org, Some(id))
            .await
            .unwrap();
        let first = s.next().await;
        assert_eq!(first.event, "snapshot", "Last-Event-ID {id:?}");
        assert_eq!(first.json()["count"], 1);
    }
}

#[tokio::test]
async fn a_subscriber_that_never_reads_is_disconnected_and_the_others_keep_getting_events() {
    use tokio::io::AsyncWriteExt;
    // Large events, changing every poll, fill a reader's buffers quickly.
    let many = |status: &str| {
        Value::Array(
            (0..400)
                .map(|i| call(&format!("call-{i:04}-{}", "x".repeat(40)), status))
                .collect(),
        )
    };
    let agent = LiveAgent::start(many("ringing")).await;
    let org = unique("slow");
    // The binary, for its log: it says when it disconnects a subscriber.
    let server = Binary::start(&config(&org, &agent, 20, &[]), &[], &[]);
    let app = &server.app;

    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stuck = socket.connect(app.addr).await.unwrap();
    stuck
        .write_all(
            format!(
                "GET /calls/stream HTTP/1.1\r\nhost: callmux\r\nauthorization: {KEY}\r\nx-bland-org-id: {org}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut reader = app.stream("/calls/stream", KEY, &org, None).await.unwrap();
    reader.next_of("snapshot").await;

    let flipper = {
        let agent = agent.clone();
        tokio::spawn(async move {
            for i in 0.. {
                agent.set(many(if i % 2 == 0 { "in-progress" } else { "ringing" }));
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
    };
    // The reader keeps up throughout, while the stuck one falls behind and is closed.
    let closed = async {
        use tokio::io::AsyncReadExt;
        server
            .log_line("disconnecting the stuck subscriber", |l| {
                l.contains("stream subscriber too slow: disconnected")
            })
            .await;
        // Now drain it: a closed connection ends; an open one would go on for ever.
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match stuck.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    let reading = async {
        loop {
            reader.next_of("change").await;
        }
    };
    tokio::select! {
        () = closed => {}
        () = reading => unreachable!(),
        () = tokio::time::sleep(Duration::from_secs(30)) => panic!("the reader that never read was never disconnected"),
    }
    for _ in 0..3 {
        reader.next_of("change").await;
    }
    flipper.abort();
}

#[tokio::test]
async fn beyond_max_streams_a_stream_is_refused_with_503_overloaded_in_its_shape() {
    let agent = LiveAgent::start(json!([])).await;
    let org = unique("max");
    let app = spawn_app(&config(&org, &agent, 2000, &[("max_streams", 2)])).await;
    let mut a = app.stream("/calls/stream", KEY, &org, None).await.unwrap();
    let mut b = app
        .stream("/v1/calls/active/stream", KEY, &org, None)
        .await
        .unwrap();
    a.next().await;
    b.next().await;
    let Err((status, body)) = app.stream("/v1/calls/active/stream", KEY, &org, None).await else {
        panic!("a third stream opened beyond max_streams = 2");
    };
    assert_eq!(status, 503);
    assert_eq!(body["data"], Value::Null);
    assert_eq!(body["errors"][0]["error"], "OVERLOADED");
    assert!(body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("max_streams"));
    drop(a);
    // The place is given back once a stream closes.
    let reopened = async {
        loop {
            if let Ok(mut s) = app.stream("/calls/stream", KEY, &org, None).await {
                return s.next().await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let first = tokio::time::timeout(Duration::from_secs(10), reopened)
        .await
        .unwrap();
    assert_eq!(first.event, "snapshot");
}

#[tokio::test]
async fn streams_are_outside_request_timeout_ms_and_max_concurrent_requests() {
    let agent = LiveAgent::start(json!([call("a", "ringing")])).await;
    let org = unique("bounds");
    let app = spawn_app(&config(
        &org,
        &agent,
        50,
        &[("request_timeout_ms", 300), ("max_concurrent_requests", 1)],
    ))
    .await;
    let mut a = app.stream("/calls/stream", KEY, &org, None).await.unwrap();
    let mut b = app
        .stream("/api/calls/stream", KEY, &org, None)
        .await
        .unwrap();
    a.next().await;
    b.next().await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    // Two streams open past the timeout, and a list request still gets its one place.
    let listed = app.calls(KEY, &org).await;
    assert_eq!(listed.status, 200);
    agent.set(json!([call("a", "in-progress")]));
    assert_eq!(
        a.next_of("change").await.json()["updated"][0]["status"],
        "in-progress"
    );
    assert_eq!(
        b.next_of("change").await.json()["updated"][0]["status"],
        "in-progress"
    );
}

#[tokio::test]
async fn a_reload_that_removes_the_org_or_changes_its_key_ends_its_streams_saying_why() {
    let agent = LiveAgent::start(json!([call("a", "ringing")])).await;
    let (gone, rekeyed, narrowed, kept) = (
        unique("gone"),
        unique("rekeyed"),
        unique("narrowed"),
        unique("kept"),
    );
    let toml = |orgs: &[(&str, &str, &[&str])]| {
        let mut c = TestConfig::new()
            .provider(ProviderB::agent("agents", &agent.url).set("poll_interval_ms", 50))
            .provider(ProviderB::agent("spare", &agent.url).set("poll_interval_ms", 50));
        for (org, key, providers) in orgs {
            c = c.org(OrgB::key(org, key).providers(providers));
        }
        c.toml()
    };
    let both: &[&str] = &["agents", "spare"];
    let one: &[&str] = &["agents"];
    let app = FileApp::start(&toml(&[
        (&gone, KEY, one),
        (&rekeyed, KEY, one),
        (&narrowed, KEY, both),
        (&kept, KEY, one),
    ]))
    .await;
    let mut streams = Vec::new();
    for org in [&gone, &rekeyed, &narrowed, &kept] {
        let mut s = app
            .app
            .stream("/calls/stream", KEY, org, None)
            .await
            .unwrap();
        s.next_of("snapshot").await;
        streams.push(s);
    }
    app.reload(&toml(&[
        (&rekeyed, "new-key", one),
        (&narrowed, KEY, one),
        (&kept, KEY, one),
    ]));
    for (stream, says) in
        streams[..3]
            .iter_mut()
            .zip(["removed", "key changed", "providers changed"])
    {
        let end = stream.next_of("end").await;
        assert!(
            end.json()["reason"].as_str().unwrap().contains(says),
            "{end:?}"
        );
        assert!(!end.data.contains("new-key") && !end.data.contains(KEY));
        assert_eq!(stream.next_within(Duration::from_secs(5)).await, None);
    }
    // The org the reload kept goes on, polled under the new configuration.
    agent.set(json!([call("a", "in-progress")]));
    assert_eq!(
        streams[3].next_of("change").await.json()["updated"][0]["status"],
        "in-progress"
    );
}

#[tokio::test]
async fn a_graceful_shutdown_ends_every_stream_with_a_final_event_and_does_not_wait_for_them() {
    let agent = LiveAgent::start(json!([call("a", "ringing")])).await;
    let org = unique("shutdown");
    let mut app =
        FileApp::start(&config(&org, &agent, 2000, &[("shutdown_grace_ms", 60000)])).await;
    let mut s = app
        .app
        .stream("/calls/stream", KEY, &org, None)
        .await
        .unwrap();
    s.next_of("snapshot").await;
    let _ = app.shutdown.take().unwrap().send(());
    let end = s.next_of("end").await;
    assert!(end.json()["reason"]
        .as_str()
        .unwrap()
        .contains("shutting down"));
    assert_eq!(s.next_within(Duration::from_secs(5)).await, None);
    tokio::time::timeout(Duration::from_secs(10), &mut app.served)
        .await
        .expect("the server stops well before its 60 s grace")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn an_idle_stream_gets_a_keepalive_comment_every_stream_keepalive_ms() {
    let agent = LiveAgent::start(json!([])).await;
    let org = unique("idle");
    let keepalive = Duration::from_millis(1000);
    let app = spawn_app(&config(
        &org,
        &agent,
        2000,
        &[("stream_keepalive_ms", keepalive.as_millis() as i64)],
    ))
    .await;
    let mut s = app.stream("/calls/stream", KEY, &org, None).await.unwrap();
    assert_eq!(s.next().await.event, "snapshot");
    let mut comments = 0;
    let mut quiet = std::time::Instant::now();
    while comments < 2 {
        let comment = s
            .next_within(Duration::from_secs(10))
            .await
            .expect("the stream stays open");
        // The first poll's capacity figures are an event too: the quiet starts again after it.
        if comment.event == "capacity" {
            quiet = std::time::Instant::now();
            continue;
        }
        comments += 1;
        assert_eq!(comment.event, "");
        assert_eq!(comment.comment, "keepalive");
        // Timers fire at or after their deadline; the server's clock starts a little before
        // the test's own.
        assert!(
            quiet.elapsed() + Duration::from_millis(50) >= keepalive,
            "a keepalive after {:?}, sooner than stream_keepalive_ms",
            quiet.elapsed()
        );
        quiet = std::time::Instant::now();
    }
}

#[test]
fn stream_keepalive_ms_defaults_to_15_s_and_outside_1_s_to_5_min_is_refused_by_name() {
    let org = unique("keepalive");
    let toml = |server: &[(&str, i64)]| {
        let mut c = TestConfig::new()
            .org(OrgB::key(&org, KEY).providers(&["agents"]))
            .provider(ProviderB::agent("agents", "http://127.0.0.1:9000"));
        for (k, v) in server {
            c = c.server(k, *v);
        }
        c.toml()
    };
    let config = load_config(&toml(&[]), &[]).unwrap();
    assert_eq!(config.server.stream_keepalive, Duration::from_secs(15));
    for ms in [1_000, 300_000] {
        let config = load_config(&toml(&[("stream_keepalive_ms", ms)]), &[]).unwrap();
        assert_eq!(
            config.server.stream_keepalive,
            Duration::from_millis(ms as u64)
        );
    }
    for ms in [0, 999, 300_001] {
        let err = load_config(&toml(&[("stream_keepalive_ms", ms)]), &[])
            .expect_err("refused")
            .to_string();
        assert!(
            err.contains("server.stream_keepalive_ms") && err.contains("outside"),
            "stream_keepalive_ms = {ms}: {err}"
        );
    }
}

#[tokio::test]
async fn callers_bringing_their_own_bland_keys_each_get_only_their_own_calls() {
    let org = unique("byok");
    let bland = bland_server_for_keys(
        &org,
        &[
            (
                "alice-key",
                json!([bland_call("alice-call", "IN_PROGRESS", "1758656900740")]),
            ),
            (
                "bob-key",
                json!([bland_call("bob-call", "IN_PROGRESS", "1758656900740")]),
            ),
        ],
    )
    .await;
    let app = spawn_app(&passthrough_org(&org, &bland.uri(), 0)).await;
    let mut alice = app
        .stream("/calls/stream", "alice-key", &org, None)
        .await
        .unwrap();
    let mut bob = app
        .stream("/calls/stream", "bob-key", &org, None)
        .await
        .unwrap();
    let a = alice.next_of("snapshot").await;
    let b = bob.next_of("snapshot").await;
    assert_eq!(a.json()["calls"][0]["call_id"], "alice-call");
    assert_eq!(a.json()["count"], 1);
    assert_eq!(b.json()["calls"][0]["call_id"], "bob-call");
    assert_eq!(b.json()["count"], 1);
    assert!(!a.data.contains("alice-key") && !b.data.contains("bob-key"));
    let Err((status, _)) = app.stream("/calls/stream", "mallory-key", &org, None).await else {
        panic!("a key Bland refuses was streamed to");
    };
    assert_eq!(status, 401);
}

/// Checks `body` against the schema `/openapi.json` documents for `path`'s `status`.
fn documented(doc: &Value, path: &str, method: &str, status: u16, body: &Value) {
    let response = &doc["paths"][path][method]["responses"][status.to_string()];
    let mut root = response["content"]["application/json"]["schema"].clone();
    assert!(root.is_object(), "{path} documents no JSON {status}");
    root["components"] = doc["components"].clone();
    let validator = jsonschema::draft202012::new(&root).unwrap();
    let wrong: Vec<String> = validator.iter_errors(body).map(|e| e.to_string()).collect();
    assert!(wrong.is_empty(), "{path} {status}: {wrong:?}\n{body:#}");
}

#[tokio::test]
async fn the_live_routes_are_documented_and_their_real_answers_match_the_document() {
    let agent = LiveAgent::start(json!([call("a", "ringing")])).await;
    let org = unique("openapi");
    let toml = TestConfig::new()
        .org(OrgB::key(&org, KEY).providers(&["agents", "down"]))
        .provider(ProviderB::agent("agents", &agent.url))
        .provider(ProviderB::agent("down", &refused_url().await))
        .toml();
    let app = spawn_app(&toml).await;
    let doc = app.get("/openapi.json", &[]).await.body;
    for path in [
        "/calls/stream",
        "/api/calls/stream",
        "/v1/calls/active/stream",
    ] {
        assert!(
            doc["paths"][path]["get"]["responses"]["200"]["content"]["text/event-stream"]
                .is_object(),
            "{path} is not documented as an event stream"
        );
    }
    let creds = [("authorization", KEY), ("x-bland-org-id", org.as_str())];
    let listed = app.get("/calls", &creds).await;
    assert_eq!(listed.status, 200);
    assert_eq!(listed.body["errors"][0]["provider"], "down");
    documented(&doc, "/calls", "get", 200, &listed.body);
    let wrong = [("authorization", "wrong"), ("x-bland-org-id", org.as_str())];
    documented(
        &doc,
        "/calls",
        "get",
        401,
        &app.get("/calls", &wrong).await.body,
    );
    for (path, key) in [
        ("/calls/stream", "wrong"),
        ("/api/calls/stream", "wrong"),
        ("/v1/calls/active/stream", "wrong"),
    ] {
        let Err((status, body)) = app.stream(path, key, &org, None).await else {
            panic!("{path} streamed to a wrong key");
        };
        documented(&doc, path, "get", status, &body);
    }
    // A snapshot's data is the list body, so it matches the list's 200.
    let mut s = app.stream("/calls/stream", KEY, &org, None).await.unwrap();
    documented(
        &doc,
        "/calls",
        "get",
        200,
        &s.next_of("snapshot").await.json(),
    );
    // The hook's refusals.
    let hook = "/hooks/{kind}/{provider_id}";
    let answer = app
        .http
        .post(app.url("/hooks/twilio/agents"))
        .body("CallSid=x")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 404);
    documented(&doc, hook, "post", 404, &answer.json().await.unwrap());
}

#[tokio::test]
async fn a_reconnect_soon_after_everyone_left_gets_what_it_missed_and_no_snapshot() {
    let agent = LiveAgent::start(json!([call("a", "ringing")])).await;
    let org = unique("dormant");
    let app = spawn_app(&config(&org, &agent, 50, &[])).await;
    let mut s = app.stream("/calls/stream", KEY, &org, None).await.unwrap();
    let seen = s.next_of("snapshot").await;
    drop(s);
    asked_nothing_for(&agent, Duration::from_millis(200)).await;
    let idle = agent.requests();
    agent.set(json!([call("a", "in-progress")]));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(agent.requests(), idle, "asked with no one subscribed");
    let mut back = app
        .stream("/calls/stream", KEY, &org, Some(&seen.id))
        .await
        .unwrap();
    let first = back.next_about_the_list().await;
    assert_eq!(first.event, "change", "{first:?}");
    assert_eq!(first.json()["updated"][0]["status"], "in-progress");
    let gauge = app.metrics().await;
    assert!(
        gauge.contains("callmux_streams_open{shape=\"own\"}"),
        "{gauge}"
    );
}

/// An org whose callers bring Bland keys, checked by a Bland that takes `delay` to answer,
/// beside `org` with a callmux key.
fn with_slow_bland_org(
    org: &str,
    agent: &LiveAgent,
    bland: &str,
    server: &[(&str, i64)],
) -> String {
    let mut c = TestConfig::new()
        .org(OrgB::key(org, KEY).providers(&["agents"]))
        .org(OrgB::bland_keys("via-bland", "bland").providers(&["bland"]))
        .provider(ProviderB::agent("agents", &agent.url).set("poll_interval_ms", 2000))
        .provider(ProviderB::bland_forwarding("bland", bland).set("timeout_ms", 4000));
    for (k, v) in server {
        c = c.server(k, *v);
    }
    c.toml()
}

async fn slow_bland() -> wiremock::MockServer {
    let bland = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::any())
        .respond_with(
            wiremock::ResponseTemplate::new(401)
                .set_delay(Duration::from_secs(3))
                .set_body_json(json!({"status": "error", "message": "Invalid API key"})),
        )
        .mount(&bland)
        .await;
    bland
}

#[tokio::test]
async fn a_made_up_key_waiting_on_bland_holds_no_stream_slot() {
    let agent = LiveAgent::start(json!([])).await;
    let bland = slow_bland().await;
    let org = unique("slot");
    let app = Arc::new(
        spawn_app(&with_slow_bland_org(
            &org,
            &agent,
            &bland.uri(),
            &[("max_streams", 1)],
        ))
        .await,
    );
    let waiting = {
        let app = app.clone();
        tokio::spawn(async move {
            app.stream("/calls/stream", "sk-made-up", "via-bland", None)
                .await
                .err()
        })
    };
    until("Bland is asked about the made-up key", async || {
        hits(&bland).await > 0
    })
    .await;
    let mut mine = app
        .stream("/calls/stream", KEY, &org, None)
        .await
        .unwrap_or_else(|(status, body)| panic!("the one slot was taken: {status} {body}"));
    assert_eq!(mine.next().await.event, "snapshot");
    let (status, _) = waiting.await.unwrap().expect("the made-up key is refused");
    assert_eq!(status, 401);
}

#[tokio::test]
async fn one_org_cannot_take_more_than_max_streams_per_org() {
    let agent = LiveAgent::start(json!([])).await;
    let org = unique("share");
    let other = unique("other");
    let toml = TestConfig::new()
        .org(OrgB::key(&org, KEY).providers(&["agents"]))
        .org(OrgB::key(&other, "other-key").providers(&["agents"]))
        .provider(ProviderB::agent("agents", &agent.url).set("poll_interval_ms", 2000))
        .server("max_streams", 10)
        .server("max_streams_per_org", 2)
        .toml();
    let app = spawn_app(&toml).await;
    let mut a = app.stream("/calls/stream", KEY, &org, None).await.unwrap();
    let mut b = app
        .stream("/api/calls/stream", KEY, &org, None)
        .await
        .unwrap();
    a.next().await;
    b.next().await;
    let Err((status, body)) = app.stream("/calls/stream", KEY, &org, None).await else {
        panic!("a third stream of one org opened beyond max_streams_per_org = 2");
    };
    assert_eq!(status, 503);
    assert_eq!(body["errors"][0]["error"], "OVERLOADED", "{body}");
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("max_streams_per_org"), "{message}");
    let mut theirs = app
        .stream("/calls/stream", "other-key", &other, None)
        .await
        .unwrap_or_else(|(status, body)| panic!("another org was shut out: {status} {body}"));
    assert_eq!(theirs.next().await.event, "snapshot");
    drop(a);
    let reopened = async {
        loop {
            if let Ok(mut s) = app.stream("/calls/stream", KEY, &org, None).await {
                return s.next().await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let first = tokio::time::timeout(Duration::from_secs(10), reopened)
        .await
        .unwrap();
    assert_eq!(first.event, "snapshot");
}

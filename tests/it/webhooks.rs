//! Webhooks out (DESIGN §17): each change of an org's live list sent to its endpoints as
//! signed Standard Webhooks events, verified by the `standardwebhooks` crate's verifier in a
//! real loopback endpoint, retried on the endpoint's schedule, and never holding up another.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;

const KEY: &str = "hooks-out-key";

fn call(id: &str, status: &str) -> Value {
    agent_call(id, "+15550001111", status, "outbound")
}

/// An org seeing one agent server polled every 50 ms, with `tables` appended.
fn config(org: &str, agent: &LiveAgent, tables: &str) -> String {
    let base = TestConfig::new()
        .org(OrgB::key(org, KEY).providers(&["agents"]))
        .provider(ProviderB::agent("agents", &agent.url).set("poll_interval_ms", 50))
        .toml();
    format!("{base}{tables}")
}

async fn app(toml: &str) -> TestApp {
    spawn_app_with_env(toml, &[("HOOK_SECRET", WEBHOOK_SECRET)]).await
}

async fn deliveries_until(
    r: &Receiver,
    what: &str,
    ready: impl Fn(&[Delivery]) -> bool,
) -> Vec<Delivery> {
    until(what, async || ready(&r.deliveries())).await;
    r.deliveries()
}

#[tokio::test]
async fn every_change_reaches_the_endpoint_signed_as_standard_webhooks_with_one_id_per_change() {
    let agent = LiveAgent::start(json!([call("a", "ringing")])).await;
    let receiver = Receiver::start(0).await;
    let org = unique("hooks-out");
    let app = app(&config(
        &org,
        &agent,
        &webhook_table(&org, "ops", &receiver.url, ""),
    ))
    .await;
    let mut stream = app.stream("/calls/stream", KEY, &org, None).await.unwrap();
    stream.next_of("snapshot").await;
    agent.set(json!([call("a", "in-progress"), call("b", "ringing")]));
    deliveries_until(&receiver, "started and updated", |d| d.len() >= 2).await;
    agent.set(json!([]));
    let seen = deliveries_until(&receiver, "both ended", |d| d.len() >= 4).await;
    assert!(seen.iter().all(|d| d.verified && d.accepted), "{seen:?}");
    let kinds: Vec<(&str, &str)> = seen
        .iter()
        .map(|d| {
            (
                d.body["type"].as_str().unwrap(),
                d.body["data"]["call_id"].as_str().unwrap(),
            )
        })
        .collect();
    for expected in [
        ("call.started", "b"),
        ("call.updated", "a"),
        ("call.ended", "a"),
        ("call.ended", "b"),
    ] {
        assert!(kinds.contains(&expected), "{expected:?} in {kinds:?}");
    }
    let mut ids: Vec<&str> = seen.iter().map(|d| d.id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), seen.len(), "one id per change: {seen:?}");
    let started = seen
        .iter()
        .find(|d| d.body["type"] == "call.started")
        .unwrap();
    assert_eq!(started.body["data"]["org"], org.as_str());
    assert_eq!(started.body["data"]["status"], "ringing");
    assert!(started.body["timestamp"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn an_endpoint_that_fails_four_times_then_answers_gets_the_event_once_on_the_schedule() {
    let agent = LiveAgent::start(json!([])).await;
    let receiver = Receiver::start(4).await;
    let org = unique("hooks-retry");
    let table = webhook_table(
        &org,
        "ops",
        &receiver.url,
        "events = [\"call.started\"]\nretry_delays_ms = [200, 400, 600, 800, 1000]",
    );
    let app = app(&config(&org, &agent, &table)).await;
    let mut stream = app.stream("/calls/stream", KEY, &org, None).await.unwrap();
    stream.next_of("snapshot").await;
    agent.set(json!([call("a", "ringing")]));
    let seen = deliveries_until(&receiver, "the fifth attempt", |d| d.len() >= 5).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let seen_after = receiver.deliveries();
    assert_eq!(
        seen_after.len(),
        5,
        "nothing after the success: {seen_after:?}"
    );
    assert!(
        seen.iter().all(|d| d.verified && d.id == seen[0].id),
        "{seen:?}"
    );
    let outcomes: Vec<bool> = seen.iter().map(|d| d.accepted).collect();
    assert_eq!(outcomes, [false, false, false, false, true]);
    for (i, delay) in [200u64, 400, 600, 800].iter().enumerate() {
        let gap = seen[i + 1].at - seen[i].at;
        let low = Duration::from_millis(*delay);
        // Jitter adds up to 10 %; the rest is a generous bound for a loaded machine.
        let high = low.mul_f64(1.1) + Duration::from_secs(2);
        assert!(
            gap >= low && gap <= high,
            "attempt {} after {gap:?}, not {delay} ms",
            i + 2
        );
    }
    let metrics = app.metrics().await;
    let line = |outcome: &str| {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("callmux_webhook_deliveries_total")
                    && l.contains(&org)
                    && l.contains(&format!("outcome=\"{outcome}\""))
            })
            .map(|l| l.rsplit(' ').next().unwrap().to_string())
    };
    assert_eq!(line("delivered").as_deref(), Some("1"), "{metrics}");
    assert_eq!(line("retried").as_deref(), Some("4"), "{metrics}");
    let listed = app
        .get(
            "/webhooks",
            &[("authorization", KEY), ("x-bland-org-id", &org)],
        )
        .await;
    assert_eq!(listed.status, 200);
    let ops = &listed.body["webhooks"][0];
    assert_eq!(ops["name"], "ops");
    assert_eq!(ops["pending"], 0);
    assert!(ops["last_success"].is_string(), "{ops}");
    assert_eq!(ops["last_failure"]["reason"], "answered HTTP 500");
}

#[tokio::test]
async fn an_endpoint_that_never_answers_or_redirects_holds_up_no_other_endpoint() {
    let agent = LiveAgent::start(json!([])).await;
    let receiver = Receiver::start(0).await;
    let silent = silent_server().await;
    let redirect = raw_redirect_server().await;
    let org = unique("hooks-slow");
    let tables = format!(
        "{}{}{}",
        webhook_table(&org, "silent", &silent, "timeout_ms = 30000"),
        webhook_table(&org, "moved", &redirect, "retry_delays_ms = []"),
        webhook_table(&org, "ops", &receiver.url, ""),
    );
    let app = app(&config(&org, &agent, &tables)).await;
    let mut stream = app.stream("/calls/stream", KEY, &org, None).await.unwrap();
    stream.next_of("snapshot").await;
    for n in 0..20 {
        agent.set(json!([call(&format!("c{n}"), "ringing")]));
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    deliveries_until(&receiver, "every change at the answering endpoint", |d| {
        d.iter()
            .filter(|d| d.body["type"] == "call.started")
            .count()
            >= 10
    })
    .await;
    let listed = app
        .get(
            "/webhooks",
            &[("authorization", KEY), ("x-bland-org-id", &org)],
        )
        .await;
    let moved = listed.body["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "moved")
        .unwrap()
        .clone();
    until("the redirect is judged a failure", async || {
        let listed = app
            .get(
                "/webhooks",
                &[("authorization", KEY), ("x-bland-org-id", &org)],
            )
            .await;
        listed.body["webhooks"][0]["last_failure"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("redirects are not followed"))
    })
    .await;
    assert_eq!(moved["url"], format!("{redirect}/"));
}

/// An endpoint that answers every request with a redirect to itself.
async fn raw_redirect_server() -> String {
    let server = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::any())
        .respond_with(wiremock::ResponseTemplate::new(307).insert_header("location", server.uri()))
        .mount(&server)
        .await;
    server.uri()
}

#[tokio::test]
async fn a_private_loopback_or_plain_http_url_is_refused_without_allow_private() {
    let agent = LiveAgent::start(json!([])).await;
    for (url, problem) in [
        (
            "https://127.0.0.1:9/hook",
            "private, loopback or link-local",
        ),
        ("https://[::1]/hook", "private, loopback or link-local"),
        ("https://10.1.2.3/hook", "private, loopback or link-local"),
        (
            "https://169.254.169.254/latest",
            "private, loopback or link-local",
        ),
        ("https://localhost/hook", "private, loopback or link-local"),
        ("http://hooks.example.com/hook", "is not https"),
    ] {
        let org = unique("hooks-private");
        let table = format!(
            "\n[orgs.\"{org}\".webhooks.ops]\nurl = \"{url}\"\nsecret_env = \"HOOK_SECRET\"\n"
        );
        let err = load_config(
            &config(&org, &agent, &table),
            &[("HOOK_SECRET", WEBHOOK_SECRET)],
        )
        .expect_err(url)
        .to_string();
        assert!(
            err.contains(&format!("orgs.{org}.webhooks.ops.url")),
            "{err}"
        );
        assert!(err.contains(problem), "{url}: {err}");
        assert!(err.contains("allow_private"), "{err}");
    }
}

#[tokio::test]
async fn a_bad_secret_event_or_schedule_is_refused_naming_the_field_and_never_showing_the_secret() {
    let agent = LiveAgent::start(json!([])).await;
    let org = unique("hooks-bad");
    let table = webhook_table(
        &org,
        "ops",
        "http://127.0.0.1:9/hook",
        "events = [\"call.started\", \"call.exploded\"]\nretry_delays_ms = [0]\ntimeout_ms = 0",
    );
    let err = load_config(
        &config(&org, &agent, &table),
        &[("HOOK_SECRET", "not-a-whsec-key-but-secret")],
    )
    .expect_err("invalid")
    .to_string();
    let at = format!("orgs.{org}.webhooks.ops");
    for field in ["secret_env", "events", "retry_delays_ms", "timeout_ms"] {
        assert!(err.contains(&format!("{at}.{field}")), "{field}: {err}");
    }
    assert!(err.contains("call.exploded"), "{err}");
    assert!(!err.contains("not-a-whsec-key-but-secret"), "{err}");
}

#[tokio::test]
async fn the_signing_secret_never_appears_in_get_webhooks_or_metrics() {
    let agent = LiveAgent::start(json!([])).await;
    let receiver = Receiver::start(1).await;
    let org = unique("hooks-secret");
    let app = app(&config(
        &org,
        &agent,
        &webhook_table(&org, "ops", &receiver.url, "retry_delays_ms = [100]"),
    ))
    .await;
    let mut stream = app.stream("/calls/stream", KEY, &org, None).await.unwrap();
    stream.next_of("snapshot").await;
    agent.set(json!([call("a", "ringing")]));
    deliveries_until(&receiver, "a failure and a success", |d| d.len() >= 2).await;
    let key_part = WEBHOOK_SECRET.trim_start_matches("whsec_");
    let listed = app
        .get(
            "/webhooks",
            &[("authorization", KEY), ("x-bland-org-id", &org)],
        )
        .await;
    let metrics = app.metrics().await;
    for (what, text) in [
        ("GET /webhooks", listed.body.to_string()),
        ("/metrics", metrics),
    ] {
        assert!(!text.contains(key_part), "{what}: {text}");
    }
    let refused = app
        .get(
            "/webhooks",
            &[("authorization", "wrong"), ("x-bland-org-id", &org)],
        )
        .await;
    assert_eq!(refused.status, 401);
    let spec = crate::openapi::Spec::fetch(&app).await;
    spec.assert_matches("/webhooks", &listed);
    spec.assert_matches("/webhooks", &refused);
}

/// `/webhooks`' pending count of endpoint `ops` on `app`.
async fn pending(app: &TestApp, org: &str) -> Value {
    let listed = app
        .get(
            "/webhooks",
            &[("authorization", KEY), ("x-bland-org-id", org)],
        )
        .await;
    listed.body["webhooks"][0]["pending"].clone()
}

#[tokio::test]
async fn with_redis_a_replica_killed_mid_delivery_loses_nothing_and_each_event_is_delivered_once() {
    let redis = RedisServer::start().await;
    let agent = LiveAgent::start(json!([])).await;
    let receiver = Receiver::holding().await;
    let org = unique("hooks-fleet");
    // Attempts time out in 3 s, so a claim's lease runs out 8 s after it was taken.
    let table = webhook_table(
        &org,
        "ops",
        &receiver.url,
        "timeout_ms = 3000\nretry_delays_ms = [200, 200, 200, 200, 200]",
    );
    let toml = format!("{}\n{}", config(&org, &agent, &table), state_toml());
    let mut env: Vec<(&str, String)> = redis.env();
    env.push(("HOOK_SECRET", WEBHOOK_SECRET.to_owned()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();

    // Replica a alone watches the org, sees three calls start, and claims their events;
    // the endpoint holds each delivery unanswered.
    let mut a = Binary::start(&toml, &env, &[]);
    crate::replicas::state_becomes(&a.app, "ok").await;
    let mut stream = a
        .app
        .stream("/calls/stream", KEY, &org, None)
        .await
        .unwrap();
    stream.next_of("snapshot").await;
    agent.set(json!([
        call("c1", "ringing"),
        call("c2", "ringing"),
        call("c3", "ringing")
    ]));
    until("a holds three deliveries", async || {
        receiver.held().len() >= 3
    })
    .await;
    let mut held = receiver.held();
    held.sort();
    held.dedup();
    assert_eq!(held.len(), 3, "one id per change: {held:?}");

    // Two more replicas, then a is killed while its three attempts are in flight.
    let b = Binary::start(&toml, &env, &[]);
    let c = Binary::start(&toml, &env, &[]);
    for replica in [&b, &c] {
        crate::replicas::state_becomes(&replica.app, "ok").await;
    }
    a.signal("KILL");
    assert!(a.exit_within(Duration::from_secs(30)).await.is_some());
    receiver.release();

    let seen = deliveries_until(&receiver, "the others deliver what a held", |d| {
        held.iter()
            .all(|id| d.iter().any(|x| &x.id == id && x.accepted))
    })
    .await;
    assert!(seen.iter().all(|d| d.verified), "{seen:?}");
    for id in &held {
        let answered = seen.iter().filter(|d| &d.id == id && d.accepted).count();
        assert_eq!(answered, 1, "{id} answered once: {seen:?}");
    }
    let mut calls: Vec<&str> = seen
        .iter()
        .map(|d| d.body["data"]["call_id"].as_str().unwrap())
        .collect();
    calls.sort();
    assert_eq!(calls, ["c1", "c2", "c3"], "{seen:?}");
    until("nothing pending on either replica", async || {
        pending(&b.app, &org).await == 0 && pending(&c.app, &org).await == 0
    })
    .await;
}

#[tokio::test]
async fn with_redis_three_replicas_watching_one_change_send_one_event_per_endpoint() {
    let redis = RedisServer::start().await;
    let agent = LiveAgent::start(json!([])).await;
    let (ops, audit) = (Receiver::start(0).await, Receiver::start(0).await);
    let org = unique("hooks-three");
    let tables = format!(
        "{}{}",
        webhook_table(&org, "ops", &ops.url, ""),
        webhook_table(&org, "audit", &audit.url, "")
    );
    let toml = format!("{}\n{}", config(&org, &agent, &tables), state_toml());
    let mut env: Vec<(&str, String)> = redis.env();
    env.push(("HOOK_SECRET", WEBHOOK_SECRET.to_owned()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut replicas = Vec::new();
    let mut streams = Vec::new();
    for _ in 0..3 {
        let app = spawn_app_with_env(&toml, &env).await;
        crate::replicas::state_becomes(&app, "ok").await;
        let mut stream = app.stream("/calls/stream", KEY, &org, None).await.unwrap();
        stream.next_of("snapshot").await;
        streams.push(stream);
        replicas.push(app);
    }
    agent.set(json!([call("c1", "ringing"), call("c2", "ringing")]));
    for stream in &mut streams {
        stream.next_of("change").await;
    }
    for receiver in [&ops, &audit] {
        deliveries_until(receiver, "both calls started", |d| d.len() >= 2).await;
    }
    until("nothing pending on any replica", async || {
        for app in &replicas {
            let listed = app
                .get(
                    "/webhooks",
                    &[("authorization", KEY), ("x-bland-org-id", &org)],
                )
                .await;
            let endpoints = listed.body["webhooks"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if endpoints.iter().any(|e| e["pending"] != 0) {
                return false;
            }
        }
        true
    })
    .await;
    for receiver in [&ops, &audit] {
        let seen = receiver.deliveries();
        assert!(seen.iter().all(|d| d.verified && d.accepted), "{seen:?}");
        let mut calls: Vec<&str> = seen
            .iter()
            .map(|d| d.body["data"]["call_id"].as_str().unwrap())
            .collect();
        calls.sort();
        assert_eq!(calls, ["c1", "c2"], "each change once: {seen:?}");
    }
    // One id per change, the same for every endpoint.
    let ids = |r: &Receiver| {
        let mut ids: Vec<String> = r.deliveries().into_iter().map(|d| d.id).collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&ops), ids(&audit));
}

/// How often `app` polled `org` to watch it for its webhooks.
async fn watch_polls(app: &TestApp, org: &str) -> f64 {
    let label = format!("org=\"{org}\"");
    crate::replicas::sample(
        &app.metrics().await,
        "callmux_webhook_watch_polls_total",
        &[&label],
    )
}

#[tokio::test]
async fn an_org_with_webhooks_and_no_subscriber_is_watched_by_one_replica_of_the_fleet() {
    let redis = RedisServer::start().await;
    let agent = LiveAgent::start(json!([call("c1", "ringing")])).await;
    let (ops, audit) = (Receiver::start(0).await, Receiver::start(0).await);
    let org = unique("hooks-watched");
    let tables = format!(
        "{}{}",
        webhook_table(&org, "ops", &ops.url, ""),
        webhook_table(&org, "audit", &audit.url, "")
    );
    let toml = format!("{}\n{}", config(&org, &agent, &tables), state_toml());
    let mut env: Vec<(&str, String)> = redis.env();
    env.push(("HOOK_SECRET", WEBHOOK_SECRET.to_owned()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (a, b) = (
        spawn_app_with_env(&toml, &env).await,
        spawn_app_with_env(&toml, &env).await,
    );
    for app in [&a, &b] {
        crate::replicas::state_becomes(app, "ok").await;
    }
    // No stream is open anywhere: a watcher lists the org on its own.
    until("one replica watches the org", async || {
        watch_polls(&a, &org).await + watch_polls(&b, &org).await >= 2.0
    })
    .await;
    agent.set(json!([call("c1", "in-progress")]));
    for receiver in [&ops, &audit] {
        deliveries_until(receiver, "the change", |d| !d.is_empty()).await;
    }
    until("nothing pending on either replica", async || {
        pending(&a, &org).await == 0 && pending(&b, &org).await == 0
    })
    .await;
    for receiver in [&ops, &audit] {
        let seen = receiver.deliveries();
        assert_eq!(seen.len(), 1, "one delivery per endpoint: {seen:?}");
        assert!(seen[0].verified && seen[0].accepted);
        assert_eq!(seen[0].body["type"], "call.updated");
        assert_eq!(seen[0].body["data"]["status"], "in-progress");
    }
    assert_eq!(ops.deliveries()[0].id, audit.deliveries()[0].id);
    // One poller for the fleet: the other replica never asked.
    let polls = [watch_polls(&a, &org).await, watch_polls(&b, &org).await];
    assert!(
        polls.iter().filter(|&&n| n > 0.0).count() == 1,
        "one watcher: {polls:?}"
    );
}

#[tokio::test]
async fn with_redis_an_event_taken_while_the_store_is_away_is_delivered_once_it_is_back() {
    let redis = RedisServer::start().await;
    let agent = LiveAgent::start(json!([])).await;
    let ops = Receiver::start(0).await;
    let org = unique("hooks-outage");
    let toml = format!(
        "{}\n{}",
        config(&org, &agent, &webhook_table(&org, "ops", &ops.url, "")),
        state_toml()
    );
    let mut env: Vec<(&str, String)> = redis.env();
    env.push(("HOOK_SECRET", WEBHOOK_SECRET.to_owned()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let app = spawn_app_with_env(&toml, &env).await;
    crate::replicas::state_becomes(&app, "ok").await;
    let mut stream = app.stream("/calls/stream", KEY, &org, None).await.unwrap();
    stream.next_of("snapshot").await;
    redis.pause();
    agent.set(json!([call("c1", "ringing")]));
    stream.next_of("change").await;
    until("the event to wait on this replica", async || {
        let listed = app
            .get(
                "/webhooks",
                &[("authorization", KEY), ("x-bland-org-id", &org)],
            )
            .await;
        listed.body["webhooks"][0]["pending"] == 1
    })
    .await;
    assert!(ops.deliveries().is_empty());
    redis.resume();
    deliveries_until(&ops, "the call started while Redis was away", |d| {
        !d.is_empty()
    })
    .await;
    let seen = ops.deliveries();
    assert!(seen.iter().all(|d| d.verified), "{seen:?}");
    assert_eq!(seen[0].body["data"]["call_id"], "c1");
}

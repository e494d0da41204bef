//! Replicas over one real `redis-server` behave as one (`[state] backend = "redis"`): the
//! fleet asks each upstream once per TTL, shares Bland key verdicts and circuit breakers,
//! trusts no value it did not seal, and serves on its own whenever Redis is gone.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;
use callmux::state::seal::Sealer;
use serde_json::{json, Value};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "replica-org-key";

fn env_of(redis: &RedisServer) -> Vec<(&'static str, String)> {
    redis.env()
}

fn pairs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'a str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn on_redis(toml: &str) -> String {
    format!("{toml}\n{}", state_toml())
}

/// What `/readyz` says of the state store, once it says `want` (bounded).
pub(crate) async fn state_becomes(app: &TestApp, want: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = app.get("/readyz", &[]).await;
        assert_eq!(ready.status, 200, "{:#}", ready.body);
        if ready.body["state"] == want {
            return ready.body;
        }
        assert!(
            Instant::now() < deadline,
            "state never became {want}: {:#}",
            ready.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An in-process replica over `redis`, once it has joined the fleet.
pub(crate) async fn replica(toml: &str, redis: &RedisServer) -> TestApp {
    let env = env_of(redis);
    let app = spawn_app_with_env(&on_redis(toml), &pairs(&env)).await;
    state_becomes(&app, "ok").await;
    app
}

/// A replica as the real binary, once it has joined the fleet.
pub(crate) async fn binary_replica(toml: &str, redis: &RedisServer) -> Binary {
    let env = env_of(redis);
    let b = Binary::start(&on_redis(toml), &pairs(&env), &[]);
    state_becomes(&b.app, "ok").await;
    b
}

/// The sum of a metric's samples whose labels include every one of `labels`.
pub(crate) fn sample(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Round-robin load over `apps` from `clients` clients for `for_`: every answer must be
/// a 200 with the one call. Returns the number of requests.
async fn load(apps: &[&TestApp], clients: usize, for_: Duration) -> usize {
    let served = AtomicUsize::new(0);
    load_while(apps, clients, &served, tokio::time::sleep(for_)).await;
    served.into_inner()
}

/// [`load`] until `meanwhile` is done (each client finishes the request it is in), counting
/// answers in `served` as they come, so that `meanwhile` can wait on them.
async fn load_while<T>(
    apps: &[&TestApp],
    clients: usize,
    served: &AtomicUsize,
    meanwhile: impl std::future::Future<Output = T>,
) -> T {
    let done = AtomicBool::new(false);
    let clients = futures::future::join_all((0..clients).map(|c| {
        let done = &done;
        async move {
            let mut n = 0;
            while !done.load(Ordering::SeqCst) {
                let app = apps[(c + n) % apps.len()];
                let r = app.calls(KEY, "acme").await;
                assert_eq!(r.status, 200, "{:#}", r.body);
                assert_eq!(r.body["count"], 1, "{:#}", r.body);
                served.fetch_add(1, Ordering::SeqCst);
                n += 1;
            }
        }
    }));
    let meanwhile = async {
        let out = meanwhile.await;
        done.store(true, Ordering::SeqCst);
        out
    };
    tokio::join!(clients, meanwhile).1
}

/// Waits (bounded) until `n` more requests than now have been served.
async fn served_another(served: &AtomicUsize, n: usize) {
    let target = served.load(Ordering::SeqCst) + n;
    until(&format!("{n} more requests served"), async || {
        served.load(Ordering::SeqCst) >= target
    })
    .await;
}

fn one_call() -> Value {
    json!([agent_call("c1", "+15550001", "in-progress", "outbound")])
}

#[tokio::test]
async fn three_replica_processes_ask_the_upstream_as_often_as_one_does() {
    let redis = RedisServer::start().await;
    let upstream = agent_server(one_call()).await;
    let toml = one_agent_org(KEY, "agents", &upstream.uri(), 400);
    let first = binary_replica(&toml, &redis).await;

    let alone = load(&[&first.app], 8, Duration::from_secs(3)).await;
    let asked_alone = hits(&upstream).await;

    let second = binary_replica(&toml, &redis).await;
    let third = binary_replica(&toml, &redis).await;
    let before = hits(&upstream).await;
    let fleet = load(
        &[&first.app, &second.app, &third.app],
        8,
        Duration::from_secs(3),
    )
    .await;
    let asked_by_fleet = hits(&upstream).await - before;

    assert!(alone > 50 && fleet > 50, "{alone} and {fleet} requests");
    // One ask per 400 ms TTL over 3 s, whether one process serves or three do; one more
    // for where the window's edges fall.
    assert!(asked_alone >= 5, "{asked_alone} asks alone");
    assert!(
        asked_by_fleet <= asked_alone + 1,
        "three replicas asked {asked_by_fleet} times where one asked {asked_alone}"
    );
    let shared: f64 = [&first, &second, &third]
        .iter()
        .map(|b| async move {
            sample(
                &b.app.metrics().await,
                "callmux_provider_answers_total",
                &["source=\"fleet\""],
            )
        })
        .collect::<futures::future::JoinAll<_>>()
        .await
        .into_iter()
        .sum();
    assert!(shared >= 1.0, "no replica read another's answer");
}

#[tokio::test]
async fn without_a_ttl_replicas_share_an_ask_in_flight_and_never_a_finished_one() {
    let redis = RedisServer::start().await;
    let upstream = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"calls": one_call(), "count": 1}))
                .set_delay(Duration::from_millis(1500)),
        )
        .mount(&upstream)
        .await;
    let toml = one_agent_org(KEY, "agents", &upstream.uri(), 0);
    let apps = [
        replica(&toml, &redis).await,
        replica(&toml, &redis).await,
        replica(&toml, &redis).await,
    ];
    let replies = futures::future::join_all((0..30).map(|i| apps[i % 3].calls(KEY, "acme"))).await;
    for r in &replies {
        assert_eq!(r.status, 200, "{:#}", r.body);
        assert_eq!(r.body["count"], 1);
    }
    let in_flight = hits(&upstream).await;
    assert!(
        in_flight <= 2,
        "{in_flight} upstream asks for 30 concurrent requests on 3 replicas"
    );
    // Once it has finished, the next request asks again, as with memory.
    assert_eq!(apps[1].calls(KEY, "acme").await.status, 200);
    assert_eq!(hits(&upstream).await, in_flight + 1);
}

#[tokio::test]
async fn a_circuit_opened_on_one_replica_keeps_the_others_from_asking() {
    let redis = RedisServer::start().await;
    let upstream = raw_server(500, "{}").await;
    let healthy = agent_server(one_call()).await;
    let provider = unique("flaky");
    let toml = TestConfig::new()
        .org(OrgB::key("acme", KEY).providers(&[&provider, "healthy"]))
        .provider(
            ProviderB::agent(&provider, &upstream.uri())
                .set("retries", 0)
                .set("circuit_failures", 2)
                .set("circuit_cooldown_ms", 60_000),
        )
        .provider(ProviderB::agent("healthy", &healthy.uri()))
        .toml();
    let a = replica(&toml, &redis).await;
    let b = replica(&toml, &redis).await;
    for _ in 0..2 {
        a.calls(KEY, "acme").await;
    }
    let opened = hits(&upstream).await;
    assert_eq!(opened, 2);
    for _ in 0..3 {
        let r = b.calls(KEY, "acme").await;
        assert_eq!(r.status, 200, "{:#}", r.body);
        assert_eq!(r.body["errors"][0]["error"], "CIRCUIT_OPEN", "{:#}", r.body);
    }
    assert_eq!(
        hits(&upstream).await,
        opened,
        "replica B asked an open circuit"
    );
}

/// The key name a fleet under the tests' secret uses for `parts`, as callmux computes it.
fn fleet_key(kind: &str, parts: &[&[u8]]) -> String {
    Sealer::new(&secrecy::SecretString::from(STATE_SECRET.to_string())).secret_key(kind, parts)
}

#[tokio::test]
async fn a_planted_accepted_verdict_is_never_honoured_and_is_counted() {
    use sha2::Digest;
    const ORG: &str = "bland-org";
    let redis = RedisServer::start().await;
    let bland = bland_server(
        "key-alice",
        ORG,
        json!([bland_call("alice-call", "IN_PROGRESS", "1")]),
    )
    .await;
    let toml = passthrough_org(ORG, &bland.uri(), 0);
    let a = replica(&toml, &redis).await;
    let b = replica(&toml, &redis).await;
    assert_eq!(a.bland("key-alice", ORG).await.status, 200);
    let alice_key = fleet_key(
        "verdict",
        &[ORG.as_bytes(), &sha2::Sha256::digest(b"key-alice")],
    );
    let alice_verdict = redis
        .get(&alice_key)
        .await
        .expect("replica A shared its verdict on alice's key");

    let mallory_key = fleet_key(
        "verdict",
        &[ORG.as_bytes(), &sha2::Sha256::digest(b"key-mallory")],
    );
    let other = Sealer::new(&secrecy::SecretString::from(
        "some other fleet's secret".to_string(),
    ));
    let mut other_format = alice_verdict.clone();
    other_format[2] += 1;
    let far_future = (u64::MAX / 2).to_be_bytes();
    for planted in [
        b"accepted".to_vec(),
        // Alice's genuine verdict, moved to Mallory's key.
        alice_verdict.clone(),
        other.seal(&mallory_key, &far_future),
        other_format,
    ] {
        redis.set(&mallory_key, &planted).await;
        let r = b.bland("key-mallory", ORG).await;
        assert_eq!(r.status, 401, "{:#}", r.body);
    }
    assert!(
        sample(
            &b.metrics().await,
            "callmux_state_rejected_total",
            &["kind=\"verdict\""]
        ) >= 4.0,
        "{}",
        b.metrics().await
    );
    // None of Mallory's requests was let in on a planted verdict: the first was checked with
    // Bland, and the rejection Bland gave is what refused the others.
    assert_eq!(hits(&bland).await, 1 + 1);
}

#[tokio::test]
async fn a_planted_answer_moving_calls_to_another_provider_is_ignored() {
    let redis = RedisServer::start().await;
    let upstream = agent_server(one_call()).await;
    let toml = one_agent_org(KEY, "agents", &upstream.uri(), 60_000);
    let a = replica(&toml, &redis).await;
    assert_eq!(a.calls(KEY, "acme").await.body["count"], 1);
    let key = Sealer::key("answer", "agents");
    let genuine = redis.get(&key).await.expect("replica A shared its answer");
    assert_eq!(hits(&upstream).await, 1);

    let evil = json!([{"call_id": "evil", "status": "in-progress", "provider": "elsewhere",
        "created_at": null, "telephony_id": null, "org": null, "from": null, "to": null,
        "objective": null, "pathway_id": null, "started_at": null, "bland_start_time": null,
        "direction": null, "international": null}]);
    let mut forged = genuine[..35 + 16].to_vec();
    forged.extend_from_slice(evil.to_string().as_bytes());
    let other = Sealer::new(&secrecy::SecretString::from(
        "some other fleet's secret".to_string(),
    ));
    for (n, planted) in [
        forged,
        other.seal(&key, &genuine[35..]),
        evil.to_string().into_bytes(),
    ]
    .into_iter()
    .enumerate()
    {
        redis.set(&key, &planted).await;
        // A fresh replica each time, so no replica's own memory answers for it.
        let b = replica(&toml, &redis).await;
        let r = b.calls(KEY, "acme").await;
        assert_eq!(r.status, 200, "{:#}", r.body);
        assert_eq!(r.body["count"], 1, "{:#}", r.body);
        assert_eq!(r.body["calls"][0]["call_id"], "c1", "{:#}", r.body);
        assert_eq!(
            hits(&upstream).await,
            2 + n,
            "the planted answer was not refused"
        );
        let rejected = sample(
            &b.metrics().await,
            "callmux_state_rejected_total",
            &["kind=\"answer\""],
        );
        assert!(rejected >= 1.0, "{rejected} planted answers counted");
    }
}

#[tokio::test]
async fn redis_stopped_and_restarted_mid_load_costs_no_client_an_error() {
    let mut redis = RedisServer::start().await;
    let upstream = agent_server(one_call()).await;
    let toml = one_agent_org(KEY, "agents", &upstream.uri(), 200);
    let a = binary_replica(&toml, &redis).await;
    let b = binary_replica(&toml, &redis).await;
    let apps = [&a.app, &b.app];

    // Requests served before Redis stops, while it is down, and after it is back.
    let served = AtomicUsize::new(0);
    let outage = async {
        served_another(&served, 40).await;
        redis.stop();
        for app in apps {
            let ready = state_becomes(app, "degraded").await;
            assert_eq!(ready["status"], "ready");
        }
        served_another(&served, 40).await;
        redis.restart().await;
        for app in apps {
            state_becomes(app, "ok").await;
        }
        served_another(&served, 40).await;
    };
    load_while(&apps, 6, &served, outage).await;
    for app in apps {
        let m = app.metrics().await;
        assert!(
            sample(&m, "callmux_state_failures_total", &[]) >= 1.0,
            "{m}"
        );
        assert_eq!(sample(&m, "callmux_state_up", &[]), 1.0, "{m}");
    }
    // Back in the fleet: an answer is shared again.
    let before = hits(&upstream).await;
    load(&apps, 4, Duration::from_secs(1)).await;
    let asked = hits(&upstream).await - before;
    assert!(
        asked <= 7,
        "{asked} asks in 1 s at a 200 ms TTL after rejoining"
    );
}

#[tokio::test]
async fn a_redis_that_hangs_is_left_alone_after_one_timeout_and_rejoined_when_it_answers() {
    let redis = RedisServer::start().await;
    let upstream = agent_server(one_call()).await;
    let toml = one_agent_org(KEY, "agents", &upstream.uri(), 100);
    let a = replica(&toml, &redis).await;
    let b = replica(&toml, &redis).await;
    redis.pause();
    let apps = [&a, &b];
    // Served while Redis hangs: until both replicas see it, and as many again after.
    let served = AtomicUsize::new(0);
    let watch = async {
        state_becomes(&a, "degraded").await;
        state_becomes(&b, "degraded").await;
        served_another(&served, 20).await;
    };
    load_while(&apps, 4, &served, watch).await;
    // Once marked down, no request waits on Redis: only the health check still tries it.
    for app in [&a, &b] {
        let tried = |m: &str| {
            sample(m, "callmux_state_failures_total", &[])
                - sample(m, "callmux_state_failures_total", &["op=\"ping\""])
        };
        let before = tried(&app.metrics().await);
        for _ in 0..20 {
            assert_eq!(app.calls(KEY, "acme").await.status, 200);
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(
            tried(&app.metrics().await),
            before,
            "requests tried a Redis known down"
        );
    }
    redis.resume();
    state_becomes(&a, "ok").await;
    state_becomes(&b, "ok").await;
}

/// A TCP server that answers anything with bytes that are not Redis's protocol.
async fn garbage_server() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = sock.read(&mut buf).await {
                    if n == 0
                        || sock
                            .write_all(b"HTTP/1.1 200 OK\r\n\x00\xff?? not redis at all\r\n")
                            .await
                            .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    format!("redis://{addr}/0")
}

#[tokio::test]
async fn a_redis_url_at_nothing_or_at_a_server_talking_garbage_starts_degraded_and_serves() {
    let upstream = agent_server(one_call()).await;
    let toml = on_redis(&one_agent_org(KEY, "agents", &upstream.uri(), 0));
    let nothing = refused_url().await.replace("http://", "redis://");
    for url in [nothing, garbage_server().await] {
        let app = spawn_app_with_env(
            &toml,
            &[
                (REDIS_URL_VAR, url.as_str()),
                (STATE_SECRET_VAR, STATE_SECRET),
            ],
        )
        .await;
        for _ in 0..3 {
            let r = app.calls(KEY, "acme").await;
            assert_eq!(r.status, 200, "{url}: {:#}", r.body);
            assert_eq!(r.body["count"], 1);
        }
        // Its health check has tried Redis and failed.
        until("a failed state operation is counted", async || {
            sample(&app.metrics().await, "callmux_state_failures_total", &[]) >= 1.0
        })
        .await;
        state_becomes(&app, "degraded").await;
        let m = app.metrics().await;
        assert_eq!(sample(&m, "callmux_state_up", &[]), 0.0, "{m}");
    }
}

#[tokio::test]
async fn an_unparsable_redis_url_is_a_config_error_naming_the_field_and_never_the_password() {
    let toml = on_redis(&one_agent_org(KEY, "agents", "http://127.0.0.1:9", 0));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("providers.toml");
    std::fs::write(&path, &toml).unwrap();
    for url in [
        "redis://:hunter2-pass@127.0.0.1:notaport/0",
        "http://:hunter2-pass@host/",
    ] {
        let out = callmux()
            .args(["check-config", "--config"])
            .arg(&path)
            .env(REDIS_URL_VAR, url)
            .env(STATE_SECRET_VAR, STATE_SECRET)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr).to_string()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{text}");
        assert!(text.contains("state.redis_url_env"), "{text}");
        assert!(text.contains("export TEST_REDIS_URL as redis://"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }
    let ok = callmux()
        .args(["check-config", "--config"])
        .arg(&path)
        .env(REDIS_URL_VAR, "redis://:hunter2-pass@127.0.0.1:6390/0")
        .env(STATE_SECRET_VAR, STATE_SECRET)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{text}");
    assert!(
        text.contains("state: redis at redis://***@127.0.0.1:6390/0 (from $TEST_REDIS_URL"),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
}

#[tokio::test]
async fn a_reload_to_an_unparsable_redis_url_is_refused_and_the_old_config_keeps_serving() {
    let upstream = agent_server(one_call()).await;
    let toml = one_agent_org(KEY, "agents", &upstream.uri(), 0);
    let b = Binary::start(
        &toml,
        &[
            (
                "BAD_REDIS_URL",
                "redis://:hunter2-pass@127.0.0.1:notaport/0",
            ),
            (STATE_SECRET_VAR, STATE_SECRET),
        ],
        &[],
    );
    let bad = format!(
        "{toml}\n[state]\nbackend = \"redis\"\nredis_url_env = \"BAD_REDIS_URL\"\nsecret_env = \"{STATE_SECRET_VAR}\"\n"
    );
    std::fs::write(b.config_path(), bad).unwrap();
    b.signal("HUP");
    let line = b
        .log_line("refusing the reload", |l| l.contains("reload refused"))
        .await;
    assert!(line.contains("state.redis_url_env"), "{line}");
    assert!(!line.contains("hunter2"), "{line}");
    let r = b.app.calls(KEY, "acme").await;
    assert_eq!(r.status, 200, "{:#}", r.body);
    assert_eq!(b.app.get("/readyz", &[]).await.body["state"], "memory");
    assert!(!b.stop().contains("hunter2"));
}

#[tokio::test]
async fn nothing_secret_is_ever_written_to_redis() {
    use base64::Engine;
    use sha2::Digest;
    const ORG_KEY: &str = "org-key-0f3a9c-secret";
    const BLAND_ORG: &str = "bland-org";
    const CALLER_KEY: &str = "caller-bland-key-77d1-secret";
    const UPSTREAM_KEY: &str = "upstream-bland-key-5e2b-secret";
    let redis = RedisServer::start().await;
    let own_bland = bland_server(
        UPSTREAM_KEY,
        "acct",
        json!([bland_call("own-call", "IN_PROGRESS", "1")]),
    )
    .await;
    let caller_bland = bland_server(
        CALLER_KEY,
        BLAND_ORG,
        json!([bland_call("fwd-call", "IN_PROGRESS", "1")]),
    )
    .await;
    let toml = TestConfig::new()
        .org(OrgB::key_env("acme", "ORG_KEY_VAR").providers(&["own"]))
        .org(OrgB::bland_keys(BLAND_ORG, "fwd").providers(&["fwd"]))
        .provider(
            ProviderB::bland("own", &own_bland.uri(), "UPSTREAM_KEY_VAR", "acct")
                .set("cache_ttl_ms", 60_000)
                .set("circuit_failures", 1),
        )
        .provider(
            ProviderB::bland_forwarding("fwd", &caller_bland.uri()).set("cache_ttl_ms", 60_000),
        )
        .toml();
    let mut env = env_of(&redis);
    env.push(("ORG_KEY_VAR", ORG_KEY.to_string()));
    env.push(("UPSTREAM_KEY_VAR", UPSTREAM_KEY.to_string()));
    let app = spawn_app_with_env(&on_redis(&toml), &pairs(&env)).await;
    state_becomes(&app, "ok").await;
    for _ in 0..3 {
        assert_eq!(app.bland(ORG_KEY, "acme").await.status, 200);
        assert_eq!(app.bland(CALLER_KEY, BLAND_ORG).await.status, 200);
        assert_eq!(app.bland("wrong-key-secret", BLAND_ORG).await.status, 401);
    }

    let mut everything = Vec::new();
    let keys = redis.keys().await;
    assert!(keys.len() >= 3, "{keys:?}");
    for key in &keys {
        everything.extend_from_slice(key.as_bytes());
        everything.push(b'\n');
        everything.extend(redis.get(key).await.unwrap_or_default());
        let dumped: Option<Vec<u8>> = redis::cmd("DUMP")
            .arg(key)
            .query_async(&mut redis.client().await)
            .await
            .unwrap();
        everything.extend(dumped.unwrap_or_default());
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    for secret in [
        ORG_KEY,
        CALLER_KEY,
        UPSTREAM_KEY,
        "wrong-key-secret",
        STATE_SECRET,
    ] {
        let digest = sha2::Sha256::digest(secret.as_bytes());
        for shown in [
            secret.as_bytes().to_vec(),
            hex::encode(digest).into_bytes(),
            hex::encode(&digest[..16]).into_bytes(),
            b64.encode(digest).into_bytes(),
            digest.to_vec(),
        ] {
            assert!(
                !everything.windows(shown.len()).any(|w| w == shown),
                "Redis holds {secret} (or its digest): {keys:?}"
            );
        }
    }
}

/// Waits (bounded) until Redis holds `key`.
async fn published(redis: &RedisServer, key: &str) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(value) = redis.get(key).await {
            return value;
        }
        assert!(Instant::now() < deadline, "{key} was never published");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Requests a fake received that were lists.
async fn lists(server: &MockServer) -> usize {
    hits(server).await - ends(server).await
}

fn two_agents(agents: &str, other: &str) -> String {
    TestConfig::new()
        .org(OrgB::key("acme", KEY).providers(&["agents", "other"]))
        .provider(ProviderB::agent("agents", agents))
        .provider(ProviderB::agent("other", other))
        .toml()
}

#[tokio::test]
async fn a_call_listed_through_one_replica_is_ended_through_another_without_a_list() {
    let redis = RedisServer::start().await;
    let (agents, _) = live_agent_server(vec![agent_call(
        "c1",
        "+15550001",
        "in-progress",
        "outbound",
    )])
    .await;
    let (other, _) = live_agent_server(vec![]).await;
    let toml = two_agents(&agents.uri(), &other.uri());
    let a = replica(&toml, &redis).await;
    let b = replica(&toml, &redis).await;
    assert_eq!(a.calls(KEY, "acme").await.body["count"], 1);
    published(&redis, &fleet_key("index", &[b"acme", b"", b"agents"])).await;

    let listed = (lists(&agents).await, lists(&other).await);
    let r = b.end("c1", KEY, "acme").await;
    assert_eq!(r.status, 200, "{:#}", r.body);
    assert_eq!(r.body["provider"], "agents", "{:#}", r.body);
    assert_eq!((ends(&agents).await, ends(&other).await), (1, 0));
    assert_eq!(
        (lists(&agents).await, lists(&other).await),
        listed,
        "replica B listed to find the call"
    );
}

#[tokio::test]
async fn a_call_moved_to_another_provider_in_redis_is_not_ended_there() {
    let redis = RedisServer::start().await;
    let (agents, _) = live_agent_server(vec![
        agent_call("c2", "+15550002", "in-progress", "outbound"),
        agent_call("c3", "+15550003", "in-progress", "outbound"),
    ])
    .await;
    let (other, _) = live_agent_server(vec![]).await;
    let toml = two_agents(&agents.uri(), &other.uri());
    let a = replica(&toml, &redis).await;
    assert_eq!(a.calls(KEY, "acme").await.body["count"], 2);
    let agents_key = fleet_key("index", &[b"acme", b"", b"agents"]);
    let other_key = fleet_key("index", &[b"acme", b"", b"other"]);
    published(&redis, &other_key).await;

    for (n, call) in ["c2", "c3"].into_iter().enumerate() {
        let genuine = published(&redis, &agents_key).await;
        let planted = if n == 0 {
            // The call's own provider's genuine entry, copied under the other's key.
            genuine
        } else {
            format!(r#"["{call}"]"#).into_bytes()
        };
        let () = redis::cmd("DEL")
            .arg(&agents_key)
            .query_async(&mut redis.client().await)
            .await
            .unwrap();
        redis.set(&other_key, &planted).await;
        let b = replica(&toml, &redis).await;
        let r = b.end(call, KEY, "acme").await;
        // Found by listing afresh, on the provider that listed it.
        assert_eq!(r.status, 200, "{:#}", r.body);
        assert_eq!(r.body["provider"], "agents", "{:#}", r.body);
        assert_eq!(ends(&other).await, 0, "the call was sent where Redis said");
        let rejected = sample(
            &b.metrics().await,
            "callmux_state_rejected_total",
            &["kind=\"index\""],
        );
        assert!(rejected >= 1.0, "{rejected}");
    }
    assert_eq!(ends(&agents).await, 2);
}

/// Waits (bounded) until `n` replicas listen on `channel`.
pub(crate) async fn subscribed(redis: &RedisServer, channel: &str, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, listening): (String, i64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(channel)
            .query_async(&mut redis.client().await)
            .await
            .unwrap();
        if listening == n {
            return;
        }
        assert!(Instant::now() < deadline, "the replicas never subscribed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_callback_taken_by_one_replica_moves_the_call_in_streams_on_another_and_a_forged_one_does_not(
) {
    use crate::hooks::{callback, config, signed, KEY as HOOKS_KEY};
    use crate::twilio::{sid, twilio_call, twilio_server, ENV};
    let redis = RedisServer::start().await;
    let org = unique("fleet_push");
    let twilio = twilio_server(&[(
        "ringing",
        vec![twilio_call(&sid(1), "ringing", "outbound-api")],
    )])
    .await;
    let toml = on_redis(&config(&org, &["tw"], &twilio.uri()));
    let mut env = env_of(&redis);
    env.extend(ENV.iter().map(|(k, v)| (*k, v.to_string())));
    let a = spawn_app_with_env(&toml, &pairs(&env)).await;
    let b = spawn_app_with_env(&toml, &pairs(&env)).await;
    state_becomes(&a, "ok").await;
    state_becomes(&b, "ok").await;
    let channel = Sealer::key("live", "pushed");
    subscribed(&redis, &channel, 2).await;
    let mut on_b = b
        .stream("/calls/stream", HOOKS_KEY, &org, None)
        .await
        .unwrap();
    assert_eq!(
        on_b.next_of("snapshot").await.json()["calls"][0]["status"],
        "ringing"
    );

    // A stranger publishing on the channel: a plain message, and one sealed with another
    // secret, each ending the call.
    let forged = json!({"origin": 1, "provider": "tw", "call_id": sid(1), "status": "completed"})
        .to_string();
    let other = Sealer::new(&secrecy::SecretString::from(
        "some other fleet's secret".to_string(),
    ));
    for message in [
        forged.clone().into_bytes(),
        other.seal(&channel, forged.as_bytes()),
    ] {
        let _: i64 = redis::cmd("PUBLISH")
            .arg(&channel)
            .arg(message)
            .query_async(&mut redis.client().await)
            .await
            .unwrap();
    }
    let (status, body) = signed(&a, "tw", &callback(&sid(1), "in-progress")).await;
    assert_eq!(status, 204, "{body}");
    // Had a forged message ended the call, this would not be the next change.
    let change = on_b.next_of("change").await.json();
    assert_eq!(
        change["updated"][0]["call_id"],
        sid(1).as_str(),
        "{change:#}"
    );
    assert_eq!(change["updated"][0]["status"], "in-progress", "{change:#}");
    assert!(
        sample(
            &b.metrics().await,
            "callmux_state_rejected_total",
            &["kind=\"live\""]
        ) >= 2.0
    );
}

/// A replica's provider answers with every one of `labels` (`source="fetched"`: asked
/// upstream, `"fleet"`: read from another replica's, `"shared"`: its own cached).
async fn answers(app: &TestApp, labels: &[&str]) -> f64 {
    sample(
        &app.metrics().await,
        "callmux_provider_answers_total",
        labels,
    )
}

async fn notices(app: &TestApp, event: &str) -> f64 {
    sample(
        &app.metrics().await,
        "callmux_stream_fleet_notices_total",
        &[&format!("event=\"{event}\"")],
    )
}

/// Two replicas streaming one org of one agent server (listing nothing yet), kept
/// `cache_ttl_ms` for the fleet: A polls every 200 ms, B every minute.
struct PolledFleet {
    redis: RedisServer,
    agent: LiveAgent,
    a: TestApp,
    b: TestApp,
    on_a: SseStream,
    on_b: SseStream,
}

impl PolledFleet {
    async fn start(cache_ttl_ms: u64) -> Self {
        let redis = RedisServer::start().await;
        let agent = LiveAgent::start(json!([])).await;
        let polled_every = |ms: u64| {
            TestConfig::new()
                .org(OrgB::key("acme", KEY).providers(&["agents"]))
                .provider(
                    ProviderB::agent("agents", &agent.url)
                        .set("poll_interval_ms", ms)
                        .set("cache_ttl_ms", cache_ttl_ms),
                )
                .toml()
        };
        let a = replica(&polled_every(200), &redis).await;
        let b = replica(&polled_every(60_000), &redis).await;
        subscribed(&redis, &Sealer::key("live", "polled"), 2).await;
        let mut on_a = a.stream("/calls/stream", KEY, "acme", None).await.unwrap();
        let mut on_b = b.stream("/calls/stream", KEY, "acme", None).await.unwrap();
        assert_eq!(on_a.next_of("snapshot").await.json()["count"], 0);
        assert_eq!(on_b.next_of("snapshot").await.json()["count"], 0);
        Self {
            redis,
            agent,
            a,
            b,
            on_a,
            on_b,
        }
    }

    /// The agent server starts listing a call: A's stream, then B's, has it added. `next_of`
    /// waits 10 s at most: long before B's own poll, a minute after its first.
    async fn a_call_is_added(&mut self) {
        self.agent.set(json!([agent_call(
            "c1",
            "+15550001",
            "ringing",
            "outbound"
        )]));
        let on_a = self.on_a.next_of("change").await.json();
        assert_eq!(on_a["added"][0]["call_id"], "c1", "{on_a:#}");
        let on_b = self.on_b.next_of("change").await.json();
        assert_eq!(on_b["added"][0]["call_id"], "c1", "{on_b:#}");
    }
}

#[tokio::test]
async fn a_change_polled_on_one_replica_reaches_a_stream_on_another_at_once_and_a_forged_notice_wakes_nothing(
) {
    // Answers kept 2 s for the fleet, so B's woken poll finds A's answer stored.
    let mut fleet = PolledFleet::start(2_000).await;
    let (redis, b) = (&fleet.redis, &fleet.b);
    let channel = Sealer::key("live", "polled");

    // A stranger announcing B's very topic at a new version: plain, and sealed with another
    // secret. Neither is opened, so B polls nothing.
    let listed_by_b = answers(b, &[]).await;
    let forged = json!({
        "origin": 1,
        "topic": fleet_key("topic", &[b"acme", b""]),
        "version": "0123456789abcdef0123456789abcdef",
    })
    .to_string();
    let other = Sealer::new(&secrecy::SecretString::from(
        "some other fleet's secret".to_string(),
    ));
    for message in [
        forged.clone().into_bytes(),
        other.seal(&channel, forged.as_bytes()),
    ] {
        let _: i64 = redis::cmd("PUBLISH")
            .arg(&channel)
            .arg(message)
            .query_async(&mut redis.client().await)
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while sample(
        &b.metrics().await,
        "callmux_state_rejected_total",
        &["kind=\"live\""],
    ) < 2.0
    {
        assert!(
            Instant::now() < deadline,
            "the forged notices were not counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Room for a wrongly woken poll to show.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(notices(b, "woken").await, 0.0);
    assert_eq!(
        answers(b, &[]).await,
        listed_by_b,
        "a forged notice made B poll"
    );

    let fetched_by_b = answers(b, &["source=\"fetched\""]).await;
    fleet.a_call_is_added().await;
    let (a, b) = (&fleet.a, &fleet.b);

    // B's poll read the answer A stored: the upstream was asked nothing more for it.
    assert_eq!(answers(b, &["source=\"fetched\""]).await, fetched_by_b);
    assert!(answers(b, &["source=\"fleet\""]).await >= 1.0);
    // No echo: B landed on the announced version and announced nothing, so A was never
    // woken; A announced its one change once.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(notices(b, "woken").await, 1.0);
    assert_eq!(notices(b, "sent").await, 0.0);
    assert_eq!(notices(a, "woken").await, 0.0);
    assert_eq!(notices(a, "sent").await, 1.0);
}

#[tokio::test]
async fn without_a_ttl_a_replica_woken_by_a_notice_asks_the_upstream_itself_once() {
    let mut fleet = PolledFleet::start(0).await;
    let listed_by_b = answers(&fleet.b, &[]).await;
    fleet.a_call_is_added().await;
    let b = &fleet.b;
    // No answer is kept for the fleet, so B's woken poll is one ask of its own (or, if it
    // met A asking at that moment, A's ask in flight): one list, and nothing echoed.
    assert_eq!(answers(b, &[]).await, listed_by_b + 1.0);
    assert_eq!(notices(b, "woken").await, 1.0);
    assert_eq!(notices(b, "sent").await, 0.0);
}

#[tokio::test]
async fn an_old_answer_written_back_into_redis_is_refused_as_stale_and_asked_afresh() {
    let redis = RedisServer::start().await;
    let (upstream, listed) =
        live_agent_server(vec![agent_call("c1", "+1", "in-progress", "outbound")]).await;
    let toml = one_agent_org(KEY, "agents", &upstream.uri(), 300);
    let a = replica(&toml, &redis).await;
    assert_eq!(a.calls(KEY, "acme").await.body["calls"][0]["call_id"], "c1");
    let key = Sealer::key("answer", "agents");
    let genuine = redis.get(&key).await.expect("replica A shared its answer");

    *listed.lock().unwrap() = vec![agent_call("c2", "+1", "in-progress", "outbound")];
    // Past the answer's life and the clock allowance, then written back with no expiry, as
    // a stranger replaying what Redis once held would.
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    redis.set(&key, &genuine).await;
    let b = replica(&toml, &redis).await;
    let r = b.calls(KEY, "acme").await;
    assert_eq!(r.body["calls"][0]["call_id"], "c2", "{:#}", r.body);
    let stale = sample(
        &b.metrics().await,
        "callmux_state_rejected_total",
        &["kind=\"answer\"", "reason=\"stale\""],
    );
    assert!(stale >= 1.0, "the replayed answer was not counted as stale");
}

#[tokio::test]
async fn placements_through_two_replicas_at_once_never_take_a_server_past_its_max_active_calls() {
    let redis = RedisServer::start().await;
    // Each placement takes a while to answer, so both replicas have many in flight at once.
    let (server, listed) = crate::place::placing_agent_server(1, Duration::from_millis(100)).await;
    let toml = TestConfig::new()
        .org(OrgB::key("acme", KEY).providers(&["agents"]))
        .provider(
            ProviderB::agent("agents", &server.uri())
                .set("place_calls", true)
                .set("max_active_calls", 5),
        )
        .toml();
    let (a, b) = (
        std::sync::Arc::new(replica(&toml, &redis).await),
        std::sync::Arc::new(replica(&toml, &redis).await),
    );
    let tries: Vec<_> = (0..30)
        .map(|i| {
            let app = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                app.http
                    .post(app.url("/api/call"))
                    .header("authorization", KEY)
                    .header("x-bland-org-id", "acme")
                    .body(crate::place::CALL)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    let mut by_status: std::collections::BTreeMap<u16, usize> = Default::default();
    for t in tries {
        *by_status.entry(t.await.unwrap()).or_default() += 1;
    }
    assert_eq!(
        by_status,
        [(200, 4), (503, 26)].into(),
        "1 active, room for 4 more"
    );
    assert_eq!(listed.lock().unwrap().len(), 5);
}

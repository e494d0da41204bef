//! `GET /capacity` through the real server against fakes on loopback: Retell's
//! `get-concurrency` (its body as Retell's API reference documents it, all eight fields, and
//! its failures), agent servers with limits, a list that fails, two orgs sharing a provider,
//! the gauges, the configuration's bounds, and the answers against the OpenAPI document.

use std::time::Duration;

use serde_json::{json, Value};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::bodies::retell::{page, phone_call};
use crate::common::*;
use crate::openapi::Spec;

const KEY: &str = "key_SECRET_retell_capacity_71c2";
const KEY_VAR: &str = "RETELL_CAPACITY_TEST_KEY";
const ORG_KEY: &str = "acme-capacity-key";

/// `get-concurrency`'s documented answer: 3 ongoing calls of 20, bursting to 60.
fn concurrency(current: i64, limit: i64) -> Value {
    json!({
        "current_concurrency": current,
        "concurrency_limit": limit,
        "base_concurrency": 20,
        "purchased_concurrency": 0,
        "concurrency_purchase_limit": 100,
        "remaining_purchase_limit": 100,
        "concurrency_burst_enabled": true,
        "concurrency_burst_limit": 60,
    })
}

/// A fake Retell listing two ongoing calls and answering `get-concurrency` with `answer`
/// (to the documented Bearer key only).
async fn retell(answer: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/list-calls"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page(
            vec![
                phone_call("call_a", "ongoing", "CA1"),
                phone_call("call_b", "ongoing", "CA2"),
            ],
            false,
            None,
        )))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/get-concurrency"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .respond_with(answer)
        .mount(&server)
        .await;
    server
}

async fn concurrency_asks(server: &MockServer) -> usize {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() == "/get-concurrency")
        .count()
}

fn retell_app(url: &str, extra: &[(&str, Val)]) -> String {
    let mut p = ProviderB::new("retell-main", "retell", url).set("api_key_env", KEY_VAR);
    for (k, v) in extra {
        p = p.set(k, v.clone());
    }
    TestConfig::new()
        .org(OrgB::key("acme", ORG_KEY).providers(&["retell-main"]))
        .provider(p)
        .toml()
}

async fn capacity(app: &TestApp, key: &str, org: &str) -> Reply {
    app.get(
        "/capacity",
        &[("authorization", key), ("x-bland-org-id", org)],
    )
    .await
}

fn provider<'a>(body: &'a Value, id: &str) -> &'a Value {
    body["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["provider"] == id)
        .unwrap_or_else(|| panic!("{id} not in {body:#}"))
}

#[tokio::test]
async fn retell_s_get_concurrency_gives_the_active_calls_and_the_limit() {
    let server = retell(ResponseTemplate::new(200).set_body_json(concurrency(3, 20))).await;
    let app = spawn_app_with_env(&retell_app(&server.uri(), &[]), &[(KEY_VAR, KEY)]).await;
    let reply = capacity(&app, ORG_KEY, "acme").await;
    assert_eq!(reply.status, 200, "{:#}", reply.body);
    assert_eq!(
        reply.body,
        json!({
            "providers": [{"provider": "retell-main", "kind": "retell", "active": 3,
                "limit": 20, "headroom": 17, "source": "platform", "places_calls": false,
                "cooling_until": null}],
            "total": {"active": 3, "limit": 20, "headroom": 17},
            "errors": null,
        })
    );
    Spec::fetch(&app).await.assert_matches("/capacity", &reply);
}

#[tokio::test]
async fn use_burst_takes_retell_s_burst_limit_and_a_smaller_configured_limit_wins() {
    let server = retell(ResponseTemplate::new(200).set_body_json(concurrency(3, 20))).await;
    let burst = retell_app(&server.uri(), &[("use_burst", true.into())]);
    let app = spawn_app_with_env(&burst, &[(KEY_VAR, KEY)]).await;
    let reply = capacity(&app, ORG_KEY, "acme").await;
    assert_eq!(provider(&reply.body, "retell-main")["limit"], 60);

    let capped = retell_app(&server.uri(), &[("max_concurrent_calls", 5u64.into())]);
    let app = spawn_app_with_env(&capped, &[(KEY_VAR, KEY)]).await;
    let reply = capacity(&app, ORG_KEY, "acme").await;
    let retell = provider(&reply.body, "retell-main");
    assert_eq!(
        (&retell["limit"], &retell["source"]),
        (&json!(5), &json!("configured"))
    );
}

/// A good answer first, then `then`: the provider is named in `errors` with the field or
/// status, and the figures of the good answer stay.
async fn after_a_good_answer(then: ResponseTemplate, needle: &str) {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/get-concurrency"))
        .respond_with(ResponseTemplate::new(200).set_body_json(concurrency(3, 20)))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/get-concurrency"))
        .respond_with(then)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v3/list-calls"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page(vec![], false, None)))
        .mount(&server)
        .await;
    // Asked again after 10 ms, so the second request sees the failure.
    let toml = retell_app(
        &server.uri(),
        &[("poll_interval_ms", 10u64.into()), ("retries", 0u64.into())],
    );
    let app = spawn_app_with_env(&toml, &[(KEY_VAR, KEY)]).await;
    let first = capacity(&app, ORG_KEY, "acme").await;
    assert_eq!(provider(&first.body, "retell-main")["limit"], 20);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let reply = capacity(&app, ORG_KEY, "acme").await;
    assert_eq!(reply.status, 200, "{:#}", reply.body);
    let retell = provider(&reply.body, "retell-main");
    assert_eq!(
        (&retell["active"], &retell["limit"]),
        (&json!(3), &json!(20)),
        "{needle}"
    );
    let errors = reply.body["errors"].as_array().expect("errors named");
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0]["provider"], "retell-main");
    let message = errors[0]["message"].as_str().unwrap();
    assert!(message.contains(needle), "{needle:?} not in {message:?}");
    assert!(!reply.body.to_string().contains(KEY), "the key leaked");
    Spec::fetch(&app).await.assert_matches("/capacity", &reply);
}

#[tokio::test]
async fn a_401_from_get_concurrency_keeps_the_last_figures() {
    after_a_good_answer(ResponseTemplate::new(401), "HTTP 401").await;
}

#[tokio::test]
async fn a_429_from_get_concurrency_keeps_the_last_figures() {
    after_a_good_answer(ResponseTemplate::new(429), "429").await;
}

#[tokio::test]
async fn a_500_from_get_concurrency_keeps_the_last_figures() {
    after_a_good_answer(ResponseTemplate::new(500), "HTTP 500").await;
}

#[tokio::test]
async fn a_get_concurrency_body_missing_a_field_is_named() {
    let body = json!({"concurrency_limit": 20});
    let then = ResponseTemplate::new(200).set_body_json(body);
    after_a_good_answer(then, "current_concurrency").await;
}

#[tokio::test]
async fn a_limit_of_zero_negative_or_absurd_figures_are_named() {
    let zero = ResponseTemplate::new(200).set_body_json(concurrency(1, 0));
    after_a_good_answer(zero, "concurrency_limit").await;
    let negative = ResponseTemplate::new(200).set_body_json(concurrency(-2, 20));
    after_a_good_answer(negative, "current_concurrency").await;
    let absurd = ResponseTemplate::new(200).set_body_json(concurrency(1, 1_000_001));
    after_a_good_answer(absurd, "concurrency_limit").await;
}

#[tokio::test]
async fn get_concurrency_is_asked_once_per_cache_ttl_whatever_the_number_of_clients() {
    let server = retell(ResponseTemplate::new(200).set_body_json(concurrency(3, 20))).await;
    let toml = retell_app(&server.uri(), &[("cache_ttl_ms", 60_000u64.into())]);
    let app = spawn_app_with_env(&toml, &[(KEY_VAR, KEY)]).await;
    let asks = (0..50).map(|_| capacity(&app, ORG_KEY, "acme"));
    for reply in futures::future::join_all(asks).await {
        assert_eq!(provider(&reply.body, "retell-main")["active"], 3);
    }
    assert_eq!(concurrency_asks(&server).await, 1);
}

/// Org `acme` seeing agent server `agents` at `url`, placing calls with this limit.
fn agents_org(url: &str, limit: u64, cache_ttl_ms: u64) -> String {
    TestConfig::new()
        .org(OrgB::key("acme", ORG_KEY).providers(&["agents"]))
        .provider(
            ProviderB::agent("agents", url)
                .set("cache_ttl_ms", cache_ttl_ms)
                .set("place_calls", true)
                .set("max_active_calls", limit),
        )
        .toml()
}

#[tokio::test]
async fn asked_right_after_a_list_capacity_costs_no_upstream_request() {
    let calls = json!([agent_call("c1", "+1555", "in-progress", "outbound")]);
    let server = agent_server(calls).await;
    let app = spawn_app(&agents_org(&server.uri(), 1, 60_000)).await;
    assert_eq!(app.calls(ORG_KEY, "acme").await.status, 200);
    assert_eq!(hits(&server).await, 1);
    let reply = capacity(&app, ORG_KEY, "acme").await;
    assert_eq!(
        hits(&server).await,
        1,
        "capacity asked the agent server again"
    );
    let agents = provider(&reply.body, "agents");
    assert_eq!(
        (
            &agents["active"],
            &agents["limit"],
            &agents["headroom"],
            &agents["places_calls"]
        ),
        (&json!(1), &json!(1), &json!(0), &json!(true)),
        "a provider at its limit has no headroom"
    );
}

#[tokio::test]
async fn a_provider_whose_list_fails_keeps_its_last_figures_and_is_named() {
    let server = MockServer::start().await;
    let calls = json!([
        agent_call("c1", "+1555", "in-progress", "outbound"),
        agent_call("c2", "+1556", "in-progress", "outbound"),
    ]);
    Mock::given(method("GET"))
        .and(path("/api/calls"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"calls": calls, "count": 2})))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/calls"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&server)
        .await;
    let toml = TestConfig::new()
        .org(OrgB::key("acme", ORG_KEY).providers(&["agents", "spare"]))
        .provider(ProviderB::agent("agents", &server.uri()).set("retries", 0u64))
        .provider(ProviderB::agent(
            "spare",
            &agent_server(json!([])).await.uri(),
        ))
        .toml();
    let app = spawn_app(&toml).await;
    let first = capacity(&app, ORG_KEY, "acme").await;
    assert_eq!(provider(&first.body, "agents")["active"], 2);
    let reply = capacity(&app, ORG_KEY, "acme").await;
    assert_eq!(reply.status, 200, "{:#}", reply.body);
    assert_eq!(provider(&reply.body, "agents")["active"], 2);
    assert_eq!(reply.body["errors"][0]["provider"], "agents");
    assert_eq!(reply.body["errors"][0]["error"], "UPSTREAM_ERROR");
    assert_eq!(reply.body["total"]["active"], 2);
    Spec::fetch(&app).await.assert_matches("/capacity", &reply);
}

#[tokio::test]
async fn two_orgs_sharing_a_provider_see_the_same_figures() {
    let calls = json!([agent_call("c1", "+1555", "in-progress", "outbound")]);
    let server = agent_server(calls).await;
    let toml = TestConfig::new()
        .org(OrgB::key("acme", ORG_KEY).providers(&["agents"]))
        .org(OrgB::key("globex", "globex-capacity-key").providers(&["agents"]))
        .provider(
            ProviderB::agent("agents", &server.uri())
                .set("place_calls", true)
                .set("max_concurrent_calls", 4u64),
        )
        .toml();
    let app = spawn_app(&toml).await;
    let acme = capacity(&app, ORG_KEY, "acme").await;
    let globex = capacity(&app, "globex-capacity-key", "globex").await;
    assert_eq!(acme.body["providers"], globex.body["providers"]);
    let agents = provider(&acme.body, "agents");
    assert_eq!(
        (&agents["active"], &agents["limit"]),
        (&json!(1), &json!(4))
    );
}

#[tokio::test]
async fn a_provider_without_a_limit_shows_its_count_and_null_and_so_does_the_total() {
    let calls = json!([agent_call("c1", "+1555", "in-progress", "outbound")]);
    let server = agent_server(calls).await;
    let app = spawn_app(&one_agent_org(ORG_KEY, "agents", &server.uri(), 0)).await;
    let reply = capacity(&app, ORG_KEY, "acme").await;
    let agents = provider(&reply.body, "agents");
    assert_eq!(
        (&agents["active"], &agents["limit"]),
        (&json!(1), &Value::Null)
    );
    assert_eq!(agents["source"], "none");
    assert_eq!(
        reply.body["total"],
        json!({"active": 1, "limit": null, "headroom": null})
    );
}

#[tokio::test]
async fn capacity_is_refused_without_the_org_s_key_in_the_own_envelope() {
    let server = agent_server(json!([])).await;
    let app = spawn_app(&one_agent_org(ORG_KEY, "agents", &server.uri(), 0)).await;
    let reply = capacity(&app, "wrong", "acme").await;
    assert_eq!(reply.status, 401, "{:#}", reply.body);
    assert_eq!(reply.body["errors"][0]["error"], "AUTH_FAILURE");
    Spec::fetch(&app).await.assert_matches("/capacity", &reply);
}

#[tokio::test]
async fn the_capacity_gauges_are_exported() {
    let calls = json!([agent_call("c1", "+1555", "in-progress", "outbound")]);
    let server = agent_server(calls).await;
    let app = spawn_app(&agents_org(&server.uri(), 3, 0)).await;
    capacity(&app, ORG_KEY, "acme").await;
    let metrics = app.metrics().await;
    for line in [
        "callmux_provider_active_calls{provider=\"agents\"} 1",
        "callmux_provider_call_limit{provider=\"agents\"} 3",
        "callmux_org_active_calls{org=\"acme\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} not in:\n{metrics}");
    }
}

#[test]
fn a_max_concurrent_calls_of_zero_or_above_a_million_is_refused_naming_the_field() {
    for limit in [0u64, 1_000_001] {
        let toml = TestConfig::new()
            .org(OrgB::key("acme", ORG_KEY).providers(&["agents"]))
            .provider(
                ProviderB::agent("agents", "http://127.0.0.1:9").set("max_concurrent_calls", limit),
            )
            .toml();
        let err = load_config(&toml, &[]).expect_err("refused").to_string();
        assert!(
            err.contains("providers.agents.max_concurrent_calls"),
            "{err}"
        );
        assert!(err.contains("fix:"), "{err}");
    }
}

#[tokio::test]
async fn vapi_s_limit_is_ten_until_configured() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/call"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .mount(&server)
        .await;
    let toml = TestConfig::new()
        .org(OrgB::key("acme", ORG_KEY).providers(&["vapi"]))
        .provider(ProviderB::new("vapi", "vapi", &server.uri()).set("api_key_env", KEY_VAR))
        .toml();
    let app = spawn_app_with_env(&toml, &[(KEY_VAR, KEY)]).await;
    let reply = capacity(&app, ORG_KEY, "acme").await;
    let vapi = provider(&reply.body, "vapi");
    assert_eq!(
        (&vapi["limit"], &vapi["source"]),
        (&json!(10), &json!("configured"))
    );
}

#[tokio::test]
async fn the_stream_sends_a_capacity_event_when_a_figure_changes_and_not_on_every_poll() {
    let one = json!([agent_call("c1", "+1555", "in-progress", "outbound")]);
    let agent = LiveAgent::start(one).await;
    let toml = TestConfig::new()
        .org(OrgB::key("acme", ORG_KEY).providers(&["agents"]))
        .provider(
            ProviderB::agent("agents", &agent.url)
                .set("poll_interval_ms", 20u64)
                .set("max_concurrent_calls", 2u64),
        )
        .toml();
    let app = spawn_app(&toml).await;
    let mut stream = app
        .stream("/calls/stream", ORG_KEY, "acme", None)
        .await
        .expect("a stream");
    let first = stream.next_of("capacity").await.json();
    let agents = provider(&first, "agents");
    assert_eq!(
        (&agents["active"], &agents["headroom"]),
        (&json!(1), &json!(1))
    );

    agent.set(json!([
        agent_call("c1", "+1555", "in-progress", "outbound"),
        agent_call("c2", "+1556", "in-progress", "outbound"),
    ]));
    let full = stream.next_of("capacity").await.json();
    let agents = provider(&full, "agents");
    assert_eq!(
        (&agents["active"], &agents["headroom"]),
        (&json!(2), &json!(0))
    );
    assert_eq!(full, capacity(&app, ORG_KEY, "acme").await.body);

    // Polled every 20 ms with nothing changing: no event at all (keepalives are 15 s apart).
    let quiet = tokio::time::timeout(Duration::from_millis(400), stream.next()).await;
    assert!(quiet.is_err(), "an event while nothing changed: {quiet:?}");
}

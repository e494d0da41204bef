//! End to end: org authentication from headers, isolation between orgs, and Bland keys as they are.

use crate::common::*;
use serde_json::json;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

const ACME_KEY: &str = "acme-key-0123";
const GLOBEX_KEY: &str = "globex-key-4567";

struct TwoOrgs {
    app: TestApp,
    acme_agents: MockServer,
    globex_agents: MockServer,
}

/// `acme` (key from an env var) sees only `acme-agents`; `globex` (key by digest) only
/// `globex-agents`.
async fn two_orgs() -> TwoOrgs {
    let acme_agents =
        agent_server(json!([agent_call("acme-1", "+1", "ringing", "outbound")])).await;
    let globex_agents =
        agent_server(json!([agent_call("globex-1", "+2", "ringing", "outbound")])).await;
    let toml = TestConfig::new()
        .org(OrgB::key_env("acme", "ACME_API_KEY").providers(&["acme-agents"]))
        .org(OrgB::key("globex", GLOBEX_KEY).providers(&["globex-agents"]))
        .provider(ProviderB::agent("acme-agents", &acme_agents.uri()))
        .provider(ProviderB::agent("globex-agents", &globex_agents.uri()))
        .toml();
    let app = spawn_app_with_env(&toml, &[("ACME_API_KEY", ACME_KEY)]).await;
    TwoOrgs {
        app,
        acme_agents,
        globex_agents,
    }
}

fn ids(reply: &Reply) -> Vec<String> {
    let list = reply.body.get("data").or(reply.body.get("calls")).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .map(|c| c["call_id"].as_str().unwrap().to_string())
        .collect()
}

/// Asserts the refusal in both shapes, with the given status and code.
async fn assert_refused(app: &TestApp, headers: &[(&str, &str)], status: u16, code: &str) {
    let bland = app.get("/v1/calls/active", headers).await;
    assert_eq!(bland.status, status, "{:#}", bland.body);
    assert_eq!(bland.body["data"], json!(null));
    assert_eq!(bland.body["errors"][0]["error"], code);
    assert!(bland.body["errors"][0]["message"].as_str().unwrap().len() > 10);

    let calls = app.get("/api/calls", headers).await;
    assert_eq!(calls.status, status, "{:#}", calls.body);
    assert_eq!(calls.body["calls"], json!([]));
    assert_eq!(calls.body["count"], 0);
    assert_eq!(calls.body["errors"][0]["error"], code);
    for reply in [&bland, &calls] {
        let text = reply.body.to_string();
        for key in [ACME_KEY, GLOBEX_KEY] {
            assert!(!text.contains(key), "an error body echoed a key: {text}");
        }
    }
}

#[tokio::test]
async fn a_request_without_an_authorization_header_is_refused_with_401() {
    let t = two_orgs().await;
    assert_refused(&t.app, &[("x-bland-org-id", "acme")], 401, "AUTH_FAILURE").await;
    let reply = t.app.get("/api/calls", &[("x-bland-org-id", "acme")]).await;
    assert_eq!(reply.headers["www-authenticate"], "Bearer");
}

#[tokio::test]
async fn an_empty_authorization_header_is_refused_with_401() {
    let t = two_orgs().await;
    for empty in ["", "   ", "Bearer", "Bearer   "] {
        assert_refused(
            &t.app,
            &[("authorization", empty), ("x-bland-org-id", "acme")],
            401,
            "AUTH_FAILURE",
        )
        .await;
    }
}

#[tokio::test]
async fn a_wrong_key_is_refused_with_401() {
    let t = two_orgs().await;
    assert_refused(
        &t.app,
        &[("authorization", "nope"), ("x-bland-org-id", "acme")],
        401,
        "AUTH_FAILURE",
    )
    .await;
}

#[tokio::test]
async fn an_unknown_org_id_gets_the_same_answer_as_a_wrong_key() {
    let t = two_orgs().await;
    let unknown = t.app.bland(ACME_KEY, "no-such-org").await;
    let wrong = t.app.bland("nope", "acme").await;
    assert_eq!(unknown.status, 401);
    assert_eq!(unknown.body, wrong.body);
}

#[tokio::test]
async fn the_key_of_another_org_is_refused_with_401() {
    let t = two_orgs().await;
    assert_refused(
        &t.app,
        &[("authorization", GLOBEX_KEY), ("x-bland-org-id", "acme")],
        401,
        "AUTH_FAILURE",
    )
    .await;
    assert_eq!(hits(&t.acme_agents).await + hits(&t.globex_agents).await, 0);
}

#[tokio::test]
async fn a_key_that_names_no_single_org_without_an_org_id_is_a_400_missing_org_id() {
    let t = two_orgs().await;
    assert_refused(
        &t.app,
        &[("authorization", "unknown-key")],
        400,
        "MISSING_ORG_ID",
    )
    .await;
}

#[tokio::test]
async fn a_key_that_identifies_one_org_needs_no_org_id() {
    let t = two_orgs().await;
    let reply = t
        .app
        .get("/api/calls", &[("authorization", GLOBEX_KEY)])
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(ids(&reply), ["globex-1"]);
}

#[tokio::test]
async fn a_bearer_key_is_the_same_key() {
    let t = two_orgs().await;
    for auth in [
        format!("Bearer {ACME_KEY}"),
        format!("bearer {ACME_KEY}"),
        ACME_KEY.to_string(),
    ] {
        let reply = t.app.bland(&auth, "acme").await;
        assert_eq!(reply.status, 200, "{auth}: {:#}", reply.body);
        assert_eq!(ids(&reply), ["acme-1"]);
    }
}

#[tokio::test]
async fn keys_from_an_env_var_and_from_a_digest_both_authenticate() {
    let t = two_orgs().await;
    assert_eq!(t.app.bland(ACME_KEY, "acme").await.status, 200); // api_key_env
    assert_eq!(t.app.bland(GLOBEX_KEY, "globex").await.status, 200); // api_key_sha256
}

#[tokio::test]
async fn an_org_never_sees_another_orgs_calls_and_its_upstream_is_not_contacted() {
    let t = two_orgs().await;
    for _ in 0..3 {
        assert_eq!(ids(&t.app.bland(ACME_KEY, "acme").await), ["acme-1"]);
        assert_eq!(ids(&t.app.calls(ACME_KEY, "acme").await), ["acme-1"]);
    }
    assert_eq!(hits(&t.globex_agents).await, 0);
    assert_eq!(ids(&t.app.calls(GLOBEX_KEY, "globex").await), ["globex-1"]);
    assert_eq!(hits(&t.acme_agents).await, 6);
}

#[tokio::test]
async fn a_header_that_is_not_text_is_refused_not_a_panic() {
    let t = two_orgs().await;
    let resp = t
        .app
        .http
        .get(t.app.url("/api/calls"))
        .header(
            "authorization",
            reqwest::header::HeaderValue::from_bytes(b"\xff\xfekey").unwrap(),
        )
        .header("x-bland-org-id", "acme")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["errors"][0]["error"], "AUTH_FAILURE");
    // The server is still up.
    assert_eq!(t.app.bland(ACME_KEY, "acme").await.status, 200);
}

// ---- Bland keys as they are ----

const BLAND_ORG: &str = "bdffa9e8-436c-416d-b95f-a77b19ae4411";
const BLAND_CUSTOMER_KEY: &str = "org_customer_bland_key";

struct Passthrough {
    app: TestApp,
    bland: MockServer,
    agents: MockServer,
}

/// Org `BLAND_ORG` authenticates with its own Bland keys through provider `bland`, and also
/// sees an agent server.
async fn passthrough_with(bland: MockServer) -> Passthrough {
    let agents = agent_server(json!([agent_call(
        "agent-1",
        "+1",
        "in-progress",
        "outbound"
    )]))
    .await;
    let toml = TestConfig::new()
        .org(OrgB::bland_keys(BLAND_ORG, "bland").providers(&["bland", "agents"]))
        .provider(ProviderB::bland_forwarding("bland", &bland.uri()))
        .provider(ProviderB::agent("agents", &agents.uri()))
        .toml();
    let app = spawn_app(&toml).await;
    Passthrough { app, bland, agents }
}

#[tokio::test]
async fn a_bland_customer_keeps_its_key_and_sees_its_bland_calls_merged_with_the_orgs_others() {
    let bland = bland_server(
        BLAND_CUSTOMER_KEY,
        BLAND_ORG,
        json!([bland_call("bland-1", "IN_PROGRESS", "1758656900740")]),
    )
    .await;
    let p = passthrough_with(bland).await;
    let reply = p.app.bland(BLAND_CUSTOMER_KEY, BLAND_ORG).await;
    assert_eq!(reply.status, 200, "{:#}", reply.body);
    assert_eq!(ids(&reply), ["bland-1", "agent-1"]);
    assert_eq!(
        reply.body["data"][0],
        bland_call("bland-1", "IN_PROGRESS", "1758656900740")
    );

    // The caller's own headers went to Bland, as sent.
    let reqs = p.bland.received_requests().await.unwrap();
    assert_eq!(reqs[0].headers["authorization"], BLAND_CUSTOMER_KEY);
    assert_eq!(reqs[0].headers["x-bland-org-id"], BLAND_ORG);
}

#[tokio::test]
async fn a_bearer_bland_key_is_forwarded_exactly_as_the_client_sent_it() {
    let bearer = format!("Bearer {BLAND_CUSTOMER_KEY}");
    let bland = bland_server(&bearer, BLAND_ORG, json!([])).await;
    let p = passthrough_with(bland).await;
    assert_eq!(p.app.bland(&bearer, BLAND_ORG).await.status, 200);
}

#[tokio::test]
async fn blands_401_is_callmuxs_401_and_no_other_provider_is_asked() {
    let bland = bland_server(BLAND_CUSTOMER_KEY, BLAND_ORG, json!([])).await;
    let p = passthrough_with(bland).await;
    assert_refused(
        &p.app,
        &[
            ("authorization", "stolen-or-wrong"),
            ("x-bland-org-id", BLAND_ORG),
        ],
        401,
        "AUTH_FAILURE",
    )
    .await;
    assert_eq!(hits(&p.agents).await, 0);
}

#[tokio::test]
async fn a_key_bland_stops_accepting_is_refused_even_right_after_it_was_accepted() {
    let bland = bland_server(BLAND_CUSTOMER_KEY, BLAND_ORG, json!([])).await;
    let p = passthrough_with(bland).await;
    assert_eq!(p.app.bland(BLAND_CUSTOMER_KEY, BLAND_ORG).await.status, 200);

    p.bland.reset().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(401))
        .mount(&p.bland)
        .await;
    let reply = p.app.bland(BLAND_CUSTOMER_KEY, BLAND_ORG).await;
    assert_eq!(reply.status, 401, "{:#}", reply.body);
    assert_eq!(reply.body["data"], json!(null));
}

#[tokio::test]
async fn a_passthrough_org_without_an_org_id_header_is_a_400() {
    let bland = bland_server(BLAND_CUSTOMER_KEY, BLAND_ORG, json!([])).await;
    let p = passthrough_with(bland).await;
    assert_refused(
        &p.app,
        &[("authorization", BLAND_CUSTOMER_KEY)],
        400,
        "MISSING_ORG_ID",
    )
    .await;
    assert_eq!(hits(&p.bland).await + hits(&p.agents).await, 0);
}

#[tokio::test]
async fn when_bland_cannot_check_the_key_the_answer_is_502_and_nothing_is_listed() {
    let p = passthrough_with(raw_server(503, "{}").await).await;
    let reply = p.app.bland(BLAND_CUSTOMER_KEY, BLAND_ORG).await;
    assert_eq!(reply.status, 502, "{:#}", reply.body);
    assert_eq!(reply.body["data"], json!(null));
    assert_eq!(reply.body["errors"][0]["error"], "AUTH_UNAVAILABLE");
    assert_eq!(hits(&p.agents).await, 0);
}

// ---- a Bland key alone (Bland's SDKs send no org id) ----

/// `acme` holds a callmux key; `BLAND_ORG` takes its callers' Bland keys and is the server's
/// `bland_default_org`.
async fn with_default_org(bland: &MockServer, agents: &MockServer) -> TestApp {
    let toml = TestConfig::new()
        .server("bland_default_org", BLAND_ORG)
        .org(OrgB::key("acme", ACME_KEY).providers(&["agents"]))
        .org(OrgB::bland_keys(BLAND_ORG, "bland").providers(&["bland"]))
        .provider(ProviderB::bland_forwarding("bland", &bland.uri()))
        .provider(ProviderB::agent("agents", &agents.uri()))
        .toml();
    spawn_app(&toml).await
}

#[tokio::test]
async fn a_bland_key_alone_is_the_default_orgs_and_checked_by_bland_with_that_org_id() {
    let bland = bland_server(
        BLAND_CUSTOMER_KEY,
        BLAND_ORG,
        json!([bland_call("bland-1", "IN_PROGRESS", "1758656900740")]),
    )
    .await;
    let agents = agent_server(json!([agent_call("agent-1", "+1", "ringing", "outbound")])).await;
    let app = with_default_org(&bland, &agents).await;
    let reply = app
        .get("/v1/calls/active", &[("authorization", BLAND_CUSTOMER_KEY)])
        .await;
    assert_eq!(reply.status, 200, "{:#}", reply.body);
    assert_eq!(ids(&reply), ["bland-1"]);
    let sent = bland.received_requests().await.unwrap();
    assert_eq!(sent[0].headers["x-bland-org-id"], BLAND_ORG);
    // A key Bland does not take for that org is Bland's 401, and nothing else is asked.
    assert_refused(
        &app,
        &[("authorization", "someone-elses-key")],
        401,
        "AUTH_FAILURE",
    )
    .await;
    assert_eq!(hits(&agents).await, 0);
}

#[tokio::test]
async fn a_callmux_key_alone_is_still_its_own_orgs_and_never_goes_to_bland() {
    let bland = bland_server(BLAND_CUSTOMER_KEY, BLAND_ORG, json!([])).await;
    let agents = agent_server(json!([agent_call("agent-1", "+1", "ringing", "outbound")])).await;
    let app = with_default_org(&bland, &agents).await;
    let reply = app.get("/api/calls", &[("authorization", ACME_KEY)]).await;
    assert_eq!(reply.status, 200, "{:#}", reply.body);
    assert_eq!(reply.body["calls"][0]["call_id"], "agent-1");
    assert_eq!(hits(&bland).await, 0);
}

#[test]
fn bland_default_org_must_name_an_org_that_takes_bland_keys() {
    let orgs = TestConfig::new()
        .org(OrgB::key("acme", ACME_KEY).providers(&["agents"]))
        .org(OrgB::bland_keys(BLAND_ORG, "bland").providers(&["bland"]))
        .provider(ProviderB::bland_forwarding("bland", "http://127.0.0.1:1"))
        .provider(ProviderB::agent("agents", "http://127.0.0.1:1"));
    let good = orgs.clone().server("bland_default_org", BLAND_ORG).toml();
    let config = load_config(&good, &[]).unwrap();
    assert!(config.summary().contains(BLAND_ORG), "{}", config.summary());
    for (named, says) in [
        ("nobody", "which is not an org"),
        ("acme", "whose callers hold callmux keys"),
    ] {
        let toml = orgs.clone().server("bland_default_org", named).toml();
        let e = load_config(&toml, &[]).unwrap_err().to_string();
        assert!(
            e.contains("server.bland_default_org") && e.contains(says),
            "{e}"
        );
    }
}

/// Org `BLAND_ORG` authenticating through Bland at `bland`, with these `[server]` settings.
fn bland_keyed(bland: &MockServer, server: &[(&str, u64)]) -> String {
    let mut config = TestConfig::new()
        .org(OrgB::bland_keys(BLAND_ORG, "bland").providers(&["bland"]))
        .provider(ProviderB::bland_forwarding("bland", &bland.uri()));
    for (key, value) in server {
        config = config.server(key, *value);
    }
    config.toml()
}

#[tokio::test]
async fn a_made_up_key_sent_again_and_again_costs_bland_one_ask() {
    let bland = bland_server(BLAND_CUSTOMER_KEY, BLAND_ORG, json!([])).await;
    let app = spawn_app(&bland_keyed(&bland, &[])).await;
    for _ in 0..45 {
        let r = app.bland("made-up-key", BLAND_ORG).await;
        assert_eq!(r.status, 401, "{:#}", r.body);
        assert_eq!(r.body["errors"][0]["error"], "AUTH_FAILURE");
    }
    assert_eq!(hits(&bland).await, 1, "Bland was asked more than once");
    // The real key is still asked about, and let in.
    assert_eq!(app.bland(BLAND_CUSTOMER_KEY, BLAND_ORG).await.status, 200);
    assert_eq!(hits(&bland).await, 2);
}

#[tokio::test]
async fn made_up_keys_from_one_address_cost_bland_at_most_its_unverified_rate() {
    let bland = bland_server(BLAND_CUSTOMER_KEY, BLAND_ORG, json!([])).await;
    let app = spawn_app(&bland_keyed(&bland, &[("unverified_keys_per_second", 3)])).await;
    // A key Bland accepted is not counted again while it is trusted.
    assert_eq!(app.bland(BLAND_CUSTOMER_KEY, BLAND_ORG).await.status, 200);
    let started = std::time::Instant::now();
    let (mut refused, mut limited) = (0, 0);
    for n in 0..45 {
        let r = app.bland(&format!("made-up-key-{n}"), BLAND_ORG).await;
        match r.status {
            401 => refused += 1,
            429 => {
                limited += 1;
                assert_eq!(r.body["errors"][0]["error"], "RATE_LIMITED");
                let message = r.body["errors"][0]["message"].as_str().unwrap();
                assert!(message.contains("3 keys a second"), "{message}");
                assert!(!message.contains("made-up"), "{message}");
                let wait: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
                assert!((1..=2).contains(&wait), "{wait}");
            }
            other => panic!("{other}: {:#}", r.body),
        }
    }
    let asked = hits(&bland).await - 1;
    // A burst of three (less the real key's one), then three a second.
    let most = 3 + (3.0 * started.elapsed().as_secs_f64()).ceil() as usize;
    assert_eq!(
        asked, refused,
        "each refused key cost one ask, no limited one did"
    );
    assert!(
        asked <= most,
        "Bland asked {asked} times, at most {most} allowed"
    );
    assert!(limited >= 45 - most, "{limited} limited");
    assert_eq!(app.bland(BLAND_CUSTOMER_KEY, BLAND_ORG).await.status, 200);
}

#[tokio::test]
async fn a_key_bland_rejected_through_one_replica_costs_the_other_no_ask() {
    let redis = RedisServer::start().await;
    let bland = bland_server(BLAND_CUSTOMER_KEY, BLAND_ORG, json!([])).await;
    let toml = format!("{}\n{}", bland_keyed(&bland, &[]), state_toml());
    let env = redis.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let one = spawn_app_with_env(&toml, &env).await;
    let other = spawn_app_with_env(&toml, &env).await;
    for app in [&one, &other] {
        crate::replicas::state_becomes(app, "ok").await;
    }
    assert_eq!(one.bland("made-up-key", BLAND_ORG).await.status, 401);
    assert_eq!(other.bland("made-up-key", BLAND_ORG).await.status, 401);
    assert_eq!(hits(&bland).await, 1);
    // Held under an HMAC: neither the key nor its digest names it.
    let digest = sha256_hex("made-up-key");
    let names = redis.keys().await;
    assert!(
        names.iter().any(|k| k.starts_with("callmux:1:rejected:")),
        "{names:?}"
    );
    assert!(
        names
            .iter()
            .all(|k| !k.contains("made-up") && !k.contains(&digest[..16])),
        "{names:?}"
    );
}

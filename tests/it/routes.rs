//! Routes (DESIGN §16): `POST /calls` chooses a target with room by the route's strategy,
//! holds its place before sending, fails over past refusals, never sends one request twice,
//! queues when every target is full, and answers a repeated `Idempotency-Key` once.

use std::time::Duration;

use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::kinds::{RETELL, SECRET, SECRET_VAR, VAPI};
use crate::common::*;
use crate::place::placing_agent_server;

const KEY: &str = "acme-key";

/// Org `acme` with `providers`, placing on `routes` (TOML of `[routes.*]` tables), and the
/// providers' own tables.
fn routed(providers: &[&str], routes: &[&str], tables: &str) -> String {
    format!(
        "[orgs.acme]\napi_key_sha256 = \"{}\"\nproviders = {providers:?}\nroutes = {routes:?}\n{tables}",
        sha256_hex(KEY)
    )
}

fn agents(id: &str, server: &MockServer, max: Option<u64>) -> String {
    let max = max.map_or(String::new(), |m| format!("max_active_calls = {m}\n"));
    format!(
        "[providers.{id}]\nkind = \"twilio-media-stream\"\nbase_url = \"{}\"\nplace_calls = true\n{max}",
        server.uri()
    )
}

/// `POST /calls` with the org's key, `body`, and extra headers.
async fn place(app: &TestApp, body: Value, headers: &[(&str, &str)]) -> (u16, Value, bool) {
    let mut request = app
        .http
        .post(app.url("/calls"))
        .header("authorization", KEY)
        .header("x-bland-org-id", "acme")
        .json(&body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = tokio::time::timeout(Duration::from_secs(60), request.send())
        .await
        .expect("callmux answers within 60 s")
        .unwrap();
    let status = response.status().as_u16();
    let replayed = response
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true");
    (status, response.json().await.unwrap(), replayed)
}

async fn posts(server: &MockServer, at: &str) -> usize {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.method.as_str() == "POST" && r.url.path() == at)
        .count()
}

/// A Retell fake: lists nothing, and answers `POST /v2/create-phone-call` with `status` and
/// `body` (its documented 201, or its 429).
async fn retell(status: u16, body: Value) -> MockServer {
    let server = RETELL.server(&[]).await;
    Mock::given(method("POST"))
        .and(path("/v2/create-phone-call"))
        .respond_with(ResponseTemplate::new(status).set_body_json(body))
        .mount(&server)
        .await;
    server
}

/// A Vapi fake: lists nothing, and answers `POST /call` with `status` and `body`.
async fn vapi(status: u16, body: Value) -> MockServer {
    let server = VAPI.server(&[]).await;
    Mock::given(method("POST"))
        .and(path("/call"))
        .respond_with(ResponseTemplate::new(status).set_body_json(body))
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn a_placement_fails_over_past_refusals_and_reports_each_attempt() {
    let retell = retell(429, json!({"error_message": "Concurrency limit reached"})).await;
    // Vapi's answer when the account is at its limit.
    let vapi = vapi(
        400,
        json!({"message": "Over Concurrency Limit.", "subscriptionLimits":
            {"concurrencyBlocked": true, "concurrencyLimit": 10, "remainingConcurrentCalls": 0}}),
    )
    .await;
    let (agents_server, _) = placing_agent_server(0, Duration::ZERO).await;
    let toml = routed(
        &["retell", "vapi", "agents"],
        &["sales"],
        &format!(
            "[routes.sales]\ntargets = [\
             {{ provider = \"retell\", agent_id = \"agent_123\", from_number = \"+14155550100\" }}, \
             {{ provider = \"vapi\", assistant_id = \"asst_1\", phone_number_id = \"pn_1\" }}, \
             {{ provider = \"agents\" }}]\n\
             [providers.retell]\n{}\n[providers.vapi]\n{}\n{}",
            RETELL.lines(&retell.uri(), ""),
            VAPI.lines(&vapi.uri(), ""),
            agents("agents", &agents_server, None),
        ),
    );
    let app = spawn_app_with_env(&toml, &[(SECRET_VAR, SECRET)]).await;
    let (status, body, _) = place(&app, json!({"to": "+14155550123"}), &[]).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["provider"], "agents");
    assert_eq!(body["route"], "sales");
    assert_eq!(body["status"], "queued");
    let attempts = body["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{body}");
    assert_eq!(attempts[0]["provider"], "retell");
    assert_eq!(attempts[0]["error"], "UPSTREAM_RATE_LIMITED");
    assert_eq!(attempts[1]["provider"], "vapi");
    assert_eq!(attempts[1]["error"], "AT_CAPACITY");
    assert!(attempts[1]["message"]
        .as_str()
        .unwrap()
        .contains("concurrency limit"));
    // Each target was sent the request once.
    assert_eq!(posts(&retell, "/v2/create-phone-call").await, 1);
    assert_eq!(posts(&vapi, "/call").await, 1);
    assert_eq!(posts(&agents_server, "/api/call").await, 1);
    // The placed call is counted by its route, provider and outcome.
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(
            r#"callmux_placements_total{route="sales",provider="agents",outcome="placed"} 1"#
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_answer_that_may_have_placed_the_call_is_never_sent_anywhere_else() {
    // A 5xx, a timeout, and a 2xx without a call id: each may have started the call.
    let failing = retell(500, json!({"error_message": "Internal error"})).await;
    let no_id = retell(201, json!({"call_type": "phone_call"})).await;
    let (silent, _) = counted_silent_server().await;
    for (first, extra) in [
        (failing.uri(), ""),
        (no_id.uri(), ""),
        (silent.clone(), "timeout_ms = 300\n"),
    ] {
        let (next, _) = placing_agent_server(0, Duration::ZERO).await;
        let toml = routed(
            &["first", "next"],
            &["r"],
            &format!(
                "[routes.r]\ntargets = [\
                 {{ provider = \"first\", agent_id = \"agent_123\", from_number = \"+14155550100\" }}, \
                 {{ provider = \"next\" }}]\n[providers.first]\n{}\n{}",
                RETELL.lines(&first, extra),
                agents("next", &next, None),
            ),
        );
        let app = spawn_app_with_env(&toml, &[(SECRET_VAR, SECRET)]).await;
        let (status, body, _) = place(&app, json!({"to": "+14155550123"}), &[]).await;
        assert_eq!(status, 504, "{first}: {body}");
        assert_eq!(body["errors"][0]["error"], "OUTCOME_UNKNOWN");
        assert_eq!(body["errors"][0]["provider"], "first");
        assert_eq!(
            posts(&next, "/api/call").await,
            0,
            "the next target was sent a call that may exist already"
        );
    }
}

#[tokio::test]
async fn a_number_the_platform_rejects_is_422_with_its_message_and_not_tried_elsewhere() {
    // Bland's documented error envelope for a number it will not call.
    let bland = bland_server("bland-secret", "bland-org", json!([])).await;
    Mock::given(method("POST"))
        .and(path("/v1/calls"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "status": "error", "message": "Invalid phone number", "errors": ["Invalid phone number"]
        })))
        .mount(&bland)
        .await;
    let (next, _) = placing_agent_server(0, Duration::ZERO).await;
    let toml = routed(
        &["bland", "next"],
        &["r"],
        &format!(
            "[routes.r]\ntargets = [{{ provider = \"bland\", task = \"Say hello\" }}, {{ provider = \"next\" }}]\n\
             [providers.bland]\nkind = \"bland\"\nbase_url = \"{}\"\napi_key_env = \"BLAND_KEY\"\norg_id = \"bland-org\"\n{}",
            bland.uri(),
            agents("next", &next, None),
        ),
    );
    let app = spawn_app_with_env(&toml, &[("BLAND_KEY", "bland-secret")]).await;
    let (status, body, _) = place(&app, json!({"to": "+14155550123"}), &[]).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"][0]["error"], "PLACE_REJECTED");
    assert_eq!(body["errors"][0]["provider"], "bland");
    assert!(body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("Invalid phone number"));
    assert_eq!(posts(&next, "/api/call").await, 0);
}

#[tokio::test]
async fn bad_placements_are_400_naming_the_field_and_send_nothing() {
    let (server, _) = placing_agent_server(0, Duration::ZERO).await;
    let toml = routed(
        &["agents"],
        &["r"],
        &format!(
            "[routes.r]\ntargets = [{{ provider = \"agents\" }}]\n{}",
            agents("agents", &server, None)
        ),
    );
    let app = spawn_app(&toml).await;
    for (body, names) in [
        (json!({"to": "555"}), "`to`"),
        (
            json!({"to": "+14155550123", "variables": {"n": 1}}),
            "`variables.n`",
        ),
        (
            json!({"to": "+14155550123", "variables": ["x"]}),
            "`variables`",
        ),
        (json!([1]), "JSON object"),
    ] {
        let (status, answer, _) = place(&app, body, &[]).await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["errors"][0]["error"], "INVALID_BODY");
        let message = answer["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains(names), "{message}");
    }
    for key in ["", "a b", &"k".repeat(256)] {
        let (status, answer, _) = place(
            &app,
            json!({"to": "+14155550123"}),
            &[("idempotency-key", key)],
        )
        .await;
        assert_eq!(status, 400, "{key:?}: {answer}");
        assert!(answer["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("idempotency-key"));
    }
    let big = app
        .http
        .post(app.url("/calls"))
        .header("authorization", KEY)
        .header("x-bland-org-id", "acme")
        .body(vec![b' '; 70_000])
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), 400);
    let (status, answer, _) =
        place(&app, json!({"to": "+14155550123", "route": "nope"}), &[]).await;
    assert_eq!(status, 404, "{answer}");
    assert_eq!(answer["errors"][0]["error"], "ROUTE_NOT_FOUND");
    assert_eq!(posts(&server, "/api/call").await, 0);
}

#[tokio::test]
async fn concurrent_placements_never_take_targets_past_their_limits() {
    // Room for 7 in all: 3 on one agent server, 4 on the other.
    let (a, _) = placing_agent_server(0, Duration::from_millis(20)).await;
    let (b, _) = placing_agent_server(0, Duration::from_millis(20)).await;
    let toml = routed(
        &["a", "b"],
        &["r"],
        &format!(
            "[routes.r]\nstrategy = \"headroom\"\ntargets = [{{ provider = \"a\" }}, {{ provider = \"b\" }}]\n{}{}",
            agents("a", &a, Some(3)),
            agents("b", &b, Some(4)),
        ),
    );
    let app = spawn_app(&toml).await;
    let answers = futures::future::join_all(
        (0..100).map(|i| place(&app, json!({"to": format!("+1415555{i:04}")}), &[])),
    )
    .await;
    let placed = answers.iter().filter(|(s, ..)| *s == 201).count();
    let full = answers.iter().filter(|(s, ..)| *s == 503).count();
    assert_eq!(placed, 7, "{answers:?}");
    assert_eq!(full, 93);
    assert_eq!(posts(&a, "/api/call").await, 3);
    assert_eq!(posts(&b, "/api/call").await, 4);
    let refused = answers.iter().find(|(s, ..)| *s == 503).unwrap();
    assert_eq!(refused.1["errors"][0]["error"], "AT_CAPACITY");
}

#[tokio::test]
async fn a_queued_placement_is_sent_when_a_call_ends_and_gives_up_at_its_timeout() {
    let (server, _) = placing_agent_server(0, Duration::ZERO).await;
    let toml = routed(
        &["agents"],
        &["waits", "brief"],
        &format!(
            "[routes.waits]\nqueue_timeout_ms = 60000\ntargets = [{{ provider = \"agents\" }}]\n\
             [routes.brief]\nqueue_timeout_ms = 300\ntargets = [{{ provider = \"agents\" }}]\n{}",
            agents("agents", &server, Some(1))
        ),
    );
    let app = spawn_app(&toml).await;
    let (status, first, _) = place(&app, json!({"to": "+14155550001"}), &[]).await;
    assert_eq!(status, 201, "{first}");

    // Full: a brief wait gives up with 503 and retry-after.
    let response = app
        .http
        .post(app.url("/calls"))
        .header("authorization", KEY)
        .header("x-bland-org-id", "acme")
        .json(&json!({"to": "+14155550002", "route": "brief"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));

    // A long wait is placed as soon as the first call is ended through callmux.
    let waiting = place(&app, json!({"to": "+14155550003"}), &[]);
    let ender = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            posts(&server, "/api/call").await,
            1,
            "placed while the only place was taken"
        );
        let ended = app
            .http
            .post(app.url(&format!(
                "/api/calls/{}/end",
                first["call_id"].as_str().unwrap()
            )))
            .header("authorization", KEY)
            .header("x-bland-org-id", "acme")
            .send()
            .await
            .unwrap();
        assert_eq!(ended.status(), 200, "{}", ended.text().await.unwrap());
    };
    let ((status, second, _), ()) = tokio::join!(waiting, ender);
    assert_eq!(status, 201, "{second}");
    assert_eq!(posts(&server, "/api/call").await, 2);
}

#[tokio::test]
async fn one_idempotency_key_places_one_call_however_often_it_is_sent() {
    let (server, _) = placing_agent_server(0, Duration::from_millis(100)).await;
    let toml = routed(
        &["agents"],
        &["r"],
        &format!(
            "[routes.r]\ntargets = [{{ provider = \"agents\" }}]\n{}",
            agents("agents", &server, None)
        ),
    );
    let app = spawn_app(&toml).await;
    let body = json!({"to": "+14155550123", "variables": {"name": "Ada"}});
    let answers = futures::future::join_all(
        (0..20).map(|_| place(&app, body.clone(), &[("idempotency-key", "order-42")])),
    )
    .await;
    assert_eq!(posts(&server, "/api/call").await, 1, "{answers:?}");
    for (status, answer, _) in &answers {
        assert!(matches!(status, 201 | 409), "{status}: {answer}");
    }
    let (status, again, replayed) =
        place(&app, body.clone(), &[("idempotency-key", "order-42")]).await;
    assert_eq!((status, replayed), (201, true), "{again}");
    let first = answers.iter().find(|(s, ..)| *s == 201).unwrap();
    assert_eq!(again, first.1);
    let (status, other, _) = place(
        &app,
        json!({"to": "+14155550999"}),
        &[("idempotency-key", "order-42")],
    )
    .await;
    assert_eq!(status, 422, "{other}");
    assert_eq!(other["errors"][0]["error"], "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(posts(&server, "/api/call").await, 1);
}

#[tokio::test]
async fn a_placed_call_can_be_ended_before_any_list_shows_it() {
    // An agent server that places calls but never lists them.
    let server = agent_server(json!([])).await;
    Mock::given(method("POST"))
        .and(path("/api/call"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"success": true, "call_id": "hidden-1"})),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/calls/hidden-1/end"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"success": true})))
        .mount(&server)
        .await;
    let toml = routed(
        &["agents"],
        &["r"],
        &format!(
            "[routes.r]\ntargets = [{{ provider = \"agents\" }}]\n{}",
            agents("agents", &server, None)
        ),
    );
    let app = spawn_app(&toml).await;
    let (status, placed, _) = place(&app, json!({"to": "+14155550123"}), &[]).await;
    assert_eq!(
        (status, placed["call_id"].as_str()),
        (201, Some("hidden-1"))
    );
    let ended = app
        .http
        .post(app.url("/api/calls/hidden-1/end"))
        .header("authorization", KEY)
        .header("x-bland-org-id", "acme")
        .send()
        .await
        .unwrap();
    assert_eq!(ended.status(), 200, "{}", ended.text().await.unwrap());
    assert_eq!(posts(&server, "/api/calls/hidden-1/end").await, 1);
}

#[tokio::test]
async fn a_provider_that_keeps_refusing_cools_down_and_is_passed_over() {
    let refusing = retell(429, json!({"error_message": "Concurrency limit reached"})).await;
    let (next, _) = placing_agent_server(0, Duration::ZERO).await;
    let toml = routed(
        &["refusing", "next"],
        &["r"],
        &format!(
            "[routes.r]\ntargets = [\
             {{ provider = \"refusing\", agent_id = \"agent_123\", from_number = \"+14155550100\" }}, \
             {{ provider = \"next\" }}]\n[providers.refusing]\n{}cooldown_failures = 2\ncooldown_ms = 600000\n{}",
            RETELL.lines(&refusing.uri(), ""),
            agents("next", &next, None),
        ),
    );
    let app = spawn_app_with_env(&toml, &[(SECRET_VAR, SECRET)]).await;
    for tried in [1, 1, 0, 0] {
        let (status, body, _) = place(&app, json!({"to": "+14155550123"}), &[]).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["attempts"].as_array().unwrap().len(), tried, "{body}");
    }
    assert_eq!(posts(&refusing, "/v2/create-phone-call").await, 2);
    let capacity = app
        .get(
            "/capacity",
            &[("authorization", KEY), ("x-bland-org-id", "acme")],
        )
        .await
        .body;
    let cooling = capacity["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["provider"] == "refusing")
        .unwrap();
    assert!(cooling["cooling_until"].is_string(), "{capacity}");
}

#[tokio::test]
async fn weighted_routes_split_placements_close_to_their_weights() {
    let (a, _) = placing_agent_server(0, Duration::ZERO).await;
    let (b, _) = placing_agent_server(0, Duration::ZERO).await;
    let toml = routed(
        &["a", "b"],
        &["r"],
        &format!(
            "[routes.r]\nstrategy = \"weighted\"\ntargets = [{{ provider = \"a\", weight = 1 }}, {{ provider = \"b\", weight = 3 }}]\n{}{}",
            agents("a", &a, None),
            agents("b", &b, None),
        ),
    );
    let app = spawn_app(&toml).await;
    const N: usize = 200;
    for i in 0..N {
        let (status, body, _) = place(&app, json!({"to": format!("+1415555{i:04}")}), &[]).await;
        assert_eq!(status, 201, "{body}");
    }
    let to_b = posts(&b, "/api/call").await as f64 / N as f64;
    // 3 in 4 expected; the bound is over five standard deviations wide (sd ≈ 0.031).
    assert!((0.59..0.91).contains(&to_b), "share to b: {to_b}");
    assert_eq!(
        posts(&a, "/api/call").await + posts(&b, "/api/call").await,
        N
    );
}

#[tokio::test]
async fn the_shipped_demo_route_places_a_call_that_its_list_then_shows() {
    let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("providers.toml");
    let toml = std::fs::read_to_string(&config).unwrap().replace(
        "path = \"demo/",
        &format!("path = \"{}/demo/", env!("CARGO_MANIFEST_DIR")),
    );
    let app = spawn_app(&toml).await;
    let response = app
        .http
        .post(app.url("/calls"))
        .header("authorization", "demo-key")
        .header("x-bland-org-id", "demo")
        .json(&json!({"to": "+14155550123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let placed: Value = response.json().await.unwrap();
    assert_eq!(placed["provider"], "demo-agents");
    assert_eq!(placed["route"], "demo");
    let listed = app.calls("demo-key", "demo").await.body;
    assert!(
        listed["calls"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["call_id"] == placed["call_id"]),
        "{listed}"
    );
}

/// `POST /calls` as org `acme` on `app`, for tests that place through several replicas.
async fn place_on(app: &TestApp, to: String) -> u16 {
    place(app, json!({ "to": to }), &[]).await.0
}

#[tokio::test]
async fn three_processes_on_one_redis_never_take_targets_past_their_limits_together() {
    let redis = RedisServer::start().await;
    let (a, _) = placing_agent_server(0, Duration::from_millis(20)).await;
    let (b, _) = placing_agent_server(0, Duration::from_millis(20)).await;
    let toml = routed(
        &["a", "b"],
        &["r"],
        &format!(
            "[routes.r]\nstrategy = \"headroom\"\ntargets = [{{ provider = \"a\" }}, {{ provider = \"b\" }}]\n{}{}",
            agents("a", &a, Some(3)),
            agents("b", &b, Some(4)),
        ),
    );
    let fleet = [
        crate::replicas::binary_replica(&toml, &redis).await,
        crate::replicas::binary_replica(&toml, &redis).await,
        crate::replicas::binary_replica(&toml, &redis).await,
    ];
    let answers = futures::future::join_all(
        (0..100).map(|i| place_on(&fleet[i % 3].app, format!("+1415555{i:04}"))),
    )
    .await;
    let placed = answers.iter().filter(|&&s| s == 201).count();
    assert_eq!(placed, 7, "{answers:?}");
    assert!(answers.iter().all(|&s| s == 201 || s == 503), "{answers:?}");
    assert_eq!(posts(&a, "/api/call").await, 3);
    assert_eq!(posts(&b, "/api/call").await, 4);
}

#[tokio::test]
async fn one_idempotency_key_places_one_call_across_two_replicas() {
    let redis = RedisServer::start().await;
    let (server, _) = placing_agent_server(0, Duration::from_millis(100)).await;
    let toml = routed(
        &["agents"],
        &["r"],
        &format!(
            "[routes.r]\ntargets = [{{ provider = \"agents\" }}]\n{}",
            agents("agents", &server, None)
        ),
    );
    let one = crate::replicas::replica(&toml, &redis).await;
    let two = crate::replicas::replica(&toml, &redis).await;
    let body = json!({"to": "+14155550123"});
    let answers = futures::future::join_all((0..20).map(|i| {
        let app = if i % 2 == 0 { &one } else { &two };
        place(app, body.clone(), &[("idempotency-key", "fleet-7")])
    }))
    .await;
    assert_eq!(posts(&server, "/api/call").await, 1, "{answers:?}");
    let (status, again, replayed) = place(&two, body, &[("idempotency-key", "fleet-7")]).await;
    assert_eq!((status, replayed), (201, true), "{again}");
    // Nothing in Redis names the key or holds the answer in the clear.
    for key in redis.keys().await {
        assert!(!key.contains("fleet-7"), "{key}");
    }
}

#[tokio::test]
async fn every_answer_of_placing_on_a_route_matches_the_served_document() {
    let (server, _) = placing_agent_server(0, Duration::ZERO).await;
    let rejecting = retell(400, json!({"error_message": "Invalid to_number"})).await;
    let failing = retell(500, json!({"error_message": "Internal error"})).await;
    let toml = routed(
        &["agents", "rejecting", "failing"],
        &["r", "rejects", "fails"],
        &format!(
            "[routes.r]\ntargets = [{{ provider = \"agents\" }}]\n\
             [routes.rejects]\ntargets = [{{ provider = \"rejecting\", agent_id = \"a\", from_number = \"+14155550100\" }}]\n\
             [routes.fails]\ntargets = [{{ provider = \"failing\", agent_id = \"a\", from_number = \"+14155550100\" }}]\n\
             {}[providers.rejecting]\n{}\n[providers.failing]\n{}\n",
            agents("agents", &server, Some(1)),
            RETELL.lines(&rejecting.uri(), ""),
            RETELL.lines(&failing.uri(), ""),
        ),
    );
    let app = spawn_app_with_env(&toml, &[(SECRET_VAR, SECRET)]).await;
    let spec = crate::openapi::Spec::fetch(&app).await;
    let ask = |body: Value, key: Option<&str>| {
        let mut request = app
            .http
            .post(app.url("/calls"))
            .header("authorization", KEY)
            .header("x-bland-org-id", "acme")
            .json(&body);
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        async move {
            let response = request.send().await.unwrap();
            Reply {
                status: response.status().as_u16(),
                headers: response.headers().clone(),
                body: response.json().await.unwrap(),
            }
        }
    };
    let mut seen = Vec::new();
    for (body, key, want) in [
        (json!({"to": "+14155550123"}), Some("k1"), 201),
        (json!({"to": "+14155550123"}), Some("k1"), 201),
        (json!({"to": "+14155550124"}), Some("k1"), 422),
        (json!({"to": "+14155550125"}), None, 503),
        (json!({"to": "+1"}), None, 400),
        (json!({"to": "+14155550123", "route": "x"}), None, 404),
        (json!({"to": "+14155550123", "route": "rejects"}), None, 422),
        (json!({"to": "+14155550123", "route": "fails"}), None, 504),
    ] {
        let reply = ask(body, key).await;
        assert_eq!(reply.status, want, "{}", reply.body);
        spec.assert_matches("POST /calls", &reply);
        seen.push(reply.status);
    }
    assert_eq!(seen.len(), 8);
}

#[tokio::test]
async fn a_key_places_no_more_active_calls_than_its_max_active_placed() {
    let (server, listed) = placing_agent_server(0, Duration::ZERO).await;
    let toml = format!(
        "[orgs.acme]\nproviders = [\"agents\"]\nroutes = [\"r\"]\n\
         [[orgs.acme.keys]]\nname = \"dialer\"\nsha256 = \"{}\"\nscopes = [\"read\", \"place\", \"end\"]\nmax_active_placed = 2\n\
         [routes.r]\ntargets = [{{ provider = \"agents\" }}]\n{}",
        sha256_hex(KEY),
        agents("agents", &server, None)
    );
    let app = spawn_app(&toml).await;
    let mut ids = Vec::new();
    for to in ["+14155550001", "+14155550002"] {
        let (status, body, _) = place(&app, json!({ "to": to }), &[]).await;
        assert_eq!(status, 201, "{body}");
        ids.push(body["call_id"].as_str().unwrap().to_owned());
    }
    // A dashboard lists them meanwhile.
    let _ = app.calls(KEY, "acme").await;
    let (status, body, _) = place(&app, json!({"to": "+14155550003"}), &[]).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["errors"][0]["error"], "AT_CAPACITY");
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("`dialer`") && message.contains("max_active_placed"),
        "{message}"
    );
    assert_eq!(posts(&server, "/api/call").await, 2);

    // One of its calls ends (listed, then gone from the list): the key may place again.
    let _ = app.calls(KEY, "acme").await;
    take(&listed, &ids[0]);
    let _ = app.calls(KEY, "acme").await;
    let (status, body, _) = place(&app, json!({"to": "+14155550003"}), &[]).await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn a_call_placed_through_one_replica_can_be_ended_through_another_before_any_list_shows_it() {
    let redis = RedisServer::start().await;
    let server = agent_server(json!([])).await;
    Mock::given(method("POST"))
        .and(path("/api/call"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"success": true, "call_id": "hidden-2"})),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/calls/hidden-2/end"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"success": true})))
        .mount(&server)
        .await;
    let toml = routed(
        &["agents"],
        &["r"],
        &format!(
            "[routes.r]\ntargets = [{{ provider = \"agents\" }}]\n{}",
            agents("agents", &server, None)
        ),
    );
    let one = crate::replicas::replica(&toml, &redis).await;
    let two = crate::replicas::replica(&toml, &redis).await;
    let (status, _, _) = place(&one, json!({"to": "+14155550123"}), &[]).await;
    assert_eq!(status, 201);
    let ended = two
        .http
        .post(two.url("/api/calls/hidden-2/end"))
        .header("authorization", KEY)
        .header("x-bland-org-id", "acme")
        .send()
        .await
        .unwrap();
    assert_eq!(ended.status(), 200, "{}", ended.text().await.unwrap());
    assert_eq!(posts(&server, "/api/calls/hidden-2/end").await, 1);
}

#[tokio::test]
async fn a_placed_call_reaches_open_streams_as_added_at_once() {
    // An agent server that places calls but never lists them, polled rarely: only the
    // placement itself can tell the stream.
    let server = agent_server(json!([])).await;
    Mock::given(method("POST"))
        .and(path("/api/call"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"success": true, "call_id": "new-1"})),
        )
        .mount(&server)
        .await;
    let toml = routed(
        &["agents"],
        &["r"],
        &format!(
            "[routes.r]\ntargets = [{{ provider = \"agents\" }}]\n{}poll_interval_ms = 3600000\n",
            agents("agents", &server, None)
        ),
    );
    let app = spawn_app(&toml).await;
    let mut stream = app
        .stream("/calls/stream", KEY, "acme", None)
        .await
        .unwrap();
    assert_eq!(stream.next_about_the_list().await.event, "snapshot");
    let (status, _, _) = place(&app, json!({"to": "+14155550123"}), &[]).await;
    assert_eq!(status, 201);
    let added = stream.next_about_the_list().await;
    assert_eq!(added.event, "change", "{added:?}");
    let call = &added.json()["added"][0];
    assert_eq!(call["call_id"], "new-1");
    assert_eq!(call["provider"], "agents");
    assert_eq!(call["to"], "+14155550123");
    assert_eq!(call["status"], "queued");
}

#[tokio::test]
async fn a_vapi_placement_teaches_capacity_the_account_s_limit() {
    let vapi = vapi(
        201,
        json!({"id": "vapi-call-1", "orgId": "org", "type": "outboundPhoneCall", "status": "queued",
            "subscriptionLimits": {"concurrencyBlocked": false, "concurrencyLimit": 25,
                "remainingConcurrentCalls": 24}}),
    )
    .await;
    let toml = routed(
        &["vapi"],
        &["r"],
        &format!(
            "[routes.r]\ntargets = [{{ provider = \"vapi\", assistant_id = \"asst_1\", phone_number_id = \"pn_1\" }}]\n\
             [providers.vapi]\n{}\n",
            VAPI.lines(&vapi.uri(), ""),
        ),
    );
    let app = spawn_app_with_env(&toml, &[(SECRET_VAR, SECRET)]).await;
    let creds = [("authorization", KEY), ("x-bland-org-id", "acme")];
    let before = app.get("/capacity", &creds).await.body;
    assert_eq!(before["providers"][0]["limit"], 10, "{before}");
    assert_eq!(before["providers"][0]["source"], "configured");
    let (status, body, _) = place(&app, json!({"to": "+14155550123"}), &[]).await;
    assert_eq!(status, 201, "{body}");
    let after = app.get("/capacity", &creds).await.body;
    assert_eq!(after["providers"][0]["limit"], 25, "{after}");
    assert_eq!(after["providers"][0]["source"], "platform");
}

#[tokio::test]
async fn a_cooldown_one_replica_starts_is_seen_by_the_other() {
    let redis = RedisServer::start().await;
    let refusing = retell(429, json!({"error_message": "Concurrency limit reached"})).await;
    let (next, _) = placing_agent_server(0, Duration::ZERO).await;
    let toml = routed(
        &["refusing", "next"],
        &["r"],
        &format!(
            "[routes.r]\ntargets = [\
             {{ provider = \"refusing\", agent_id = \"agent_123\", from_number = \"+14155550100\" }}, \
             {{ provider = \"next\" }}]\n[providers.refusing]\n{}cooldown_failures = 1\ncooldown_ms = 600000\n{}",
            RETELL.lines(&refusing.uri(), ""),
            agents("next", &next, None),
        ),
    );
    let env = [redis.env(), vec![(SECRET_VAR, SECRET.to_owned())]].concat();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let toml = format!("{toml}\n{}", state_toml());
    let one = spawn_app_with_env(&toml, &env).await;
    let two = spawn_app_with_env(&toml, &env).await;
    crate::replicas::state_becomes(&one, "ok").await;
    crate::replicas::state_becomes(&two, "ok").await;
    let (status, body, _) = place(&one, json!({"to": "+14155550123"}), &[]).await;
    assert_eq!(
        (status, body["attempts"].as_array().unwrap().len()),
        (201, 1),
        "{body}"
    );
    let (status, body, _) = place(&two, json!({"to": "+14155550123"}), &[]).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body["attempts"].as_array().unwrap().len(),
        0,
        "the other replica tried a provider the fleet cools down: {body}"
    );
    assert_eq!(posts(&refusing, "/v2/create-phone-call").await, 1);
}

#[tokio::test]
async fn a_client_that_goes_away_mid_placement_cancels_nothing_and_its_retry_gets_the_answer() {
    let (server, _) = placing_agent_server(0, Duration::from_millis(800)).await;
    let toml = routed(
        &["agents"],
        &["r"],
        &format!(
            "[routes.r]\ntargets = [{{ provider = \"agents\" }}]\n{}",
            agents("agents", &server, None)
        ),
    );
    let app = spawn_app(&toml).await;
    let body = json!({"to": "+14155550123"});
    let impatient = app
        .http
        .post(app.url("/calls"))
        .header("authorization", KEY)
        .header("x-bland-org-id", "acme")
        .header("idempotency-key", "gone-1")
        .timeout(Duration::from_millis(200))
        .json(&body)
        .send()
        .await;
    assert!(impatient.is_err(), "the client gave up before the answer");
    let mut last = (0, Value::Null, false);
    until("the abandoned placement's answer to be kept", async || {
        last = place(&app, body.clone(), &[("idempotency-key", "gone-1")]).await;
        last.0 == 201
    })
    .await;
    assert!(last.2, "the answer is the kept one: {}", last.1);
    assert_eq!(posts(&server, "/api/call").await, 1);
}

#[tokio::test]
async fn an_unknown_outcome_is_kept_for_its_idempotency_key_and_never_placed_again() {
    let failing = retell(500, json!({"error_message": "Internal error"})).await;
    let toml = routed(
        &["failing"],
        &["r"],
        &format!(
            "[routes.r]\ntargets = [{{ provider = \"failing\", agent_id = \"a\", from_number = \"+14155550100\" }}]\n\
             [providers.failing]\n{}\n",
            RETELL.lines(&failing.uri(), ""),
        ),
    );
    let app = spawn_app_with_env(&toml, &[(SECRET_VAR, SECRET)]).await;
    let body = json!({"to": "+14155550123"});
    let (status, first, _) = place(&app, body.clone(), &[("idempotency-key", "maybe-1")]).await;
    assert_eq!(status, 504, "{first}");
    let (status, again, replayed) = place(&app, body, &[("idempotency-key", "maybe-1")]).await;
    assert_eq!((status, replayed), (504, true), "{again}");
    assert_eq!(again, first);
    assert_eq!(posts(&failing, "/v2/create-phone-call").await, 1);
}

//! Ending a call: `POST /api/calls/{call_id}/end` and `POST /v1/calls/{call_id}/stop`, routed
//! to the provider that listed the call for the org, against fakes answering as the agent
//! server and Bland document; hostile ids, upstream failures, auth, metrics and logs.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::common::*;

const KEY: &str = "acme-key";

fn agents_org(url: &str) -> String {
    TestConfig::new()
        .org(OrgB::key("acme", KEY).providers(&["agents"]))
        .provider(ProviderB::agent("agents", url))
        .toml()
}

fn ids(reply: &Reply) -> Vec<String> {
    reply.body["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["call_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn an_agent_server_call_is_ended_through_either_route_and_is_then_gone_from_the_list() {
    let (server, _) = live_agent_server(vec![
        agent_call("c1", "+1555", "in-progress", "outbound"),
        agent_call("c2", "+1556", "ringing", "inbound"),
        agent_call("c3", "+1557", "ringing", "inbound"),
    ])
    .await;
    let app = spawn_app(&agents_org(&server.uri())).await;
    assert_eq!(ids(&app.calls(KEY, "acme").await), ["c1", "c2", "c3"]);

    let ended = app.end("c1", KEY, "acme").await;
    assert_eq!(ended.status, 200, "{:?}", ended.body);
    assert_eq!(
        ended.body,
        json!({"success": true, "message": "Call c1 ended", "provider": "agents"})
    );
    let stopped = app.stop("c2", KEY, "acme").await;
    assert_eq!(stopped.status, 200, "{:?}", stopped.body);
    assert_eq!(
        stopped.body,
        json!({"status": "success", "message": "Call ended successfully."})
    );
    assert_eq!(ids(&app.calls(KEY, "acme").await), ["c3"]);
    assert_eq!(ends(&server).await, 2);
}

#[tokio::test]
async fn a_bland_call_is_ended_with_the_providers_own_key() {
    let (server, _) = live_bland_server(
        "sk-own",
        "bland-org",
        vec![bland_call("b1", "IN_PROGRESS", "1")],
    )
    .await;
    let toml = TestConfig::new()
        .org(OrgB::key("acme", KEY).providers(&["bland"]))
        .provider(ProviderB::bland(
            "bland",
            &server.uri(),
            "BLAND_OWN_KEY",
            "bland-org",
        ))
        .toml();
    let app = spawn_app_with_env(&toml, &[("BLAND_OWN_KEY", "sk-own")]).await;
    let stopped = app.stop("b1", KEY, "acme").await;
    assert_eq!(stopped.status, 200, "{:?}", stopped.body);
    assert_eq!(stopped.body["status"], "success");
    assert_eq!(app.bland(KEY, "acme").await.body["data"], json!([]));
    // The key went only to Bland, and callmux's own key never did.
    let sent = server.received_requests().await.unwrap();
    assert!(sent.iter().all(|r| r.headers["authorization"] == "sk-own"));
}

#[tokio::test]
async fn a_bland_call_is_ended_with_the_callers_forwarded_key() {
    let (server, _) = live_bland_server(
        "sk-caller",
        "acme",
        vec![bland_call("b1", "IN_PROGRESS", "1")],
    )
    .await;
    let app = spawn_app(&passthrough_org("acme", &server.uri(), 0)).await;
    let ended = app.end("b1", "sk-caller", "acme").await;
    assert_eq!(ended.status, 200, "{:?}", ended.body);
    assert_eq!(ended.body["provider"], "bland");
    assert_eq!(app.bland("sk-caller", "acme").await.body["data"], json!([]));
    // Another key is Bland's to reject, and nothing is stopped for it.
    let refused = app.stop("b1", "sk-wrong", "acme").await;
    assert_eq!(refused.status, 401, "{:?}", refused.body);
    assert_eq!(refused.body["status"], "error");
    assert_eq!(refused.body["code"], "AUTH_FAILURE");
    assert_eq!(ends(&server).await, 1);
}

#[tokio::test]
async fn a_static_call_is_ended_through_either_route_and_drops_from_the_list() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("calls.json");
    std::fs::write(
        &file,
        json!({"calls": [
            agent_call("s1", "+1", "ringing", "outbound"),
            agent_call("s2", "+2", "ringing", "outbound"),
            agent_call("s3", "+3", "ringing", "outbound"),
        ]})
        .to_string(),
    )
    .unwrap();
    let toml = format!(
        "[orgs.acme]\napi_key_sha256 = \"{}\"\nproviders = [\"file\"]\n[providers.file]\nkind = \"static\"\npath = \"{}\"\n",
        sha256_hex(KEY),
        file.display()
    );
    let app = spawn_app(&toml).await;
    let ended = app.end("s1", KEY, "acme").await;
    assert_eq!(ended.status, 200, "{:?}", ended.body);
    assert_eq!(ended.body["provider"], "file");
    assert_eq!(app.stop("s2", KEY, "acme").await.status, 200);
    assert_eq!(ids(&app.calls(KEY, "acme").await), ["s3"]);
    // Ended once; a second end finds nothing to end.
    assert_eq!(app.end("s1", KEY, "acme").await.status, 404);
}

#[tokio::test]
async fn an_unknown_call_id_is_call_not_found_in_each_envelope() {
    let (server, _) = live_agent_server(vec![agent_call("c1", "+1", "ringing", "outbound")]).await;
    let app = spawn_app(&agents_org(&server.uri())).await;
    let ended = app.end("nope", KEY, "acme").await;
    assert_eq!(ended.status, 404);
    assert_eq!(ended.body["success"], false);
    assert_eq!(ended.body["code"], "CALL_NOT_FOUND");
    assert!(ended.body["error"].is_string());
    let stopped = app.stop("nope", KEY, "acme").await;
    assert_eq!(stopped.status, 404);
    assert_eq!(stopped.body["status"], "error");
    assert_eq!(stopped.body["code"], "CALL_NOT_FOUND");
    assert!(stopped.body["message"].is_string());
    // Not listed, so not asked.
    assert_eq!(ends(&server).await, 0);
}

#[tokio::test]
async fn a_call_of_another_orgs_provider_is_not_found_and_that_provider_never_hears_of_it() {
    let (ours, _) = live_agent_server(vec![agent_call("mine", "+1", "ringing", "outbound")]).await;
    let (theirs, _) =
        live_agent_server(vec![agent_call("theirs", "+2", "ringing", "outbound")]).await;
    let toml = TestConfig::new()
        .org(OrgB::key("acme", KEY).providers(&["ours"]))
        .org(OrgB::key("globex", "globex-key").providers(&["theirs"]))
        .provider(ProviderB::agent("ours", &ours.uri()))
        .provider(ProviderB::agent("theirs", &theirs.uri()))
        .toml();
    let app = spawn_app(&toml).await;
    // Globex has listed its call, so callmux knows whose it is.
    assert_eq!(ids(&app.calls("globex-key", "globex").await), ["theirs"]);
    let unknown = app.end("never-was", KEY, "acme").await;
    let other = app.end("theirs", KEY, "acme").await;
    assert_eq!(other.status, 404);
    assert_eq!(other.body["code"], "CALL_NOT_FOUND");
    // Indistinguishable from a call that does not exist.
    assert_eq!(other.body["error"], unknown.body["error"]);
    assert_eq!(app.stop("theirs", KEY, "acme").await.status, 404);
    assert_eq!(ends(&theirs).await, 0);
    assert_eq!(ends(&ours).await, 0);
    assert_eq!(ids(&app.calls("globex-key", "globex").await), ["theirs"]);
}

#[tokio::test]
async fn hostile_call_ids_are_invalid_name_no_upstream_and_send_nothing() {
    let (server, _) = live_agent_server(vec![agent_call("c1", "+1", "ringing", "outbound")]).await;
    let app = spawn_app(&agents_org(&server.uri())).await;
    let long = "x".repeat(257);
    for id in [
        "a%2Fb",
        "..",
        "x%3Fy",
        "%00",
        "a%20b",
        "%09",
        "a%25b",
        long.as_str(),
    ] {
        for (route, field) in [
            (format!("/api/calls/{id}/end"), "error"),
            (format!("/v1/calls/{id}/stop"), "message"),
        ] {
            let (status, body) = app.raw_post(&route, KEY, "acme").await;
            assert_eq!(status, 400, "{route}: {body}");
            assert_eq!(body["code"], "INVALID_CALL_ID", "{route}: {body}");
            assert!(body.get("provider").is_none(), "{route}: {body}");
            let text = body[field].as_str().unwrap();
            assert!(
                !text.contains("agents") && !text.contains("127.0.0.1"),
                "{text}"
            );
        }
    }
    assert_eq!(hits(&server).await, 0, "nothing reaches the upstream");
}

#[tokio::test]
async fn an_agent_servers_call_not_found_at_200_is_call_not_found() {
    let server = agent_server(json!([agent_call("c1", "+1", "ringing", "outbound")])).await;
    Mock::given(method("POST"))
        .and(path("/api/calls/c1/end"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"success": false, "error": "Call not found"})),
        )
        .mount(&server)
        .await;
    let app = spawn_app(&agents_org(&server.uri())).await;
    let ended = app.end("c1", KEY, "acme").await;
    assert_eq!(ended.status, 404, "{:?}", ended.body);
    assert_eq!(ended.body["code"], "CALL_NOT_FOUND");
    assert_eq!(ends(&server).await, 1);
}

#[tokio::test]
async fn an_agent_servers_other_failure_at_200_is_a_502_naming_the_provider() {
    let server = agent_server(json!([agent_call("c1", "+1", "ringing", "outbound")])).await;
    Mock::given(method("POST"))
        .and(path("/api/calls/c1/end"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"success": false, "error": "boom"})),
        )
        .mount(&server)
        .await;
    let app = spawn_app(&agents_org(&server.uri())).await;
    let ended = app.end("c1", KEY, "acme").await;
    assert_eq!(ended.status, 502, "{:?}", ended.body);
    assert_eq!(ended.body["code"], "UPSTREAM_REPORTED_ERROR");
    assert_eq!(ended.body["provider"], "agents");
    let text = ended.body["error"].as_str().unwrap();
    assert!(text.contains("agents") && text.contains("boom"), "{text}");
    let stopped = app.stop("c1", KEY, "acme").await;
    assert_eq!(stopped.status, 502);
    assert_eq!(stopped.body["status"], "error");
    assert_eq!(stopped.body["code"], "UPSTREAM_REPORTED_ERROR");
}

#[tokio::test]
async fn an_upstream_that_hangs_is_outcome_unknown_within_its_timeout_after_one_request() {
    let server = agent_server(json!([agent_call("c1", "+1", "ringing", "outbound")])).await;
    Mock::given(method("POST"))
        .and(path("/api/calls/c1/end"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"success": true}))
                .set_delay(Duration::from_secs(20)),
        )
        .mount(&server)
        .await;
    let toml = TestConfig::new()
        .org(OrgB::key("acme", KEY).providers(&["agents"]))
        .provider(
            ProviderB::agent("agents", &server.uri())
                .set("timeout_ms", 400)
                .set("retries", 3),
        )
        .toml();
    let app = spawn_app(&toml).await;
    assert_eq!(app.calls(KEY, "acme").await.status, 200);
    let started = Instant::now();
    let ended = app.end("c1", KEY, "acme").await;
    let took = started.elapsed();
    assert_eq!(ended.status, 504, "{:?}", ended.body);
    assert_eq!(ended.body["code"], "OUTCOME_UNKNOWN");
    assert_eq!(ended.body["success"], false);
    assert!(took >= Duration::from_millis(400), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ends(&server).await, 1, "never retried");
}

#[tokio::test]
async fn auth_failures_come_in_each_routes_envelope() {
    let (server, _) = live_agent_server(vec![agent_call("c1", "+1", "ringing", "outbound")]).await;
    let toml = TestConfig::new()
        .org(OrgB::key("acme", KEY).providers(&["agents"]))
        .org(OrgB::key("globex", KEY).providers(&["agents"]))
        .provider(ProviderB::agent("agents", &server.uri()))
        .toml();
    let app = spawn_app(&toml).await;
    for (path, ok, text) in [
        ("/api/calls/c1/end", json!({"success": false}), "error"),
        ("/v1/calls/c1/stop", json!({"status": "error"}), "message"),
    ] {
        let cases: [(Headers, u16, &str); 4] = [
            (&[("x-bland-org-id", "acme")], 401, "AUTH_FAILURE"),
            (
                &[("authorization", "wrong"), ("x-bland-org-id", "acme")],
                401,
                "AUTH_FAILURE",
            ),
            (
                &[("authorization", KEY), ("x-bland-org-id", "nope")],
                401,
                "AUTH_FAILURE",
            ),
            // The key is both orgs': without an org id it names neither.
            (&[("authorization", KEY)], 400, "MISSING_ORG_ID"),
        ];
        for (headers, status, code) in cases {
            let reply = app.post(path, headers).await;
            assert_eq!(reply.status, status, "{path} {headers:?}: {:?}", reply.body);
            assert_eq!(reply.body["code"], code, "{path}");
            let (k, v) = ok.as_object().unwrap().iter().next().unwrap();
            assert_eq!(&reply.body[k], v, "{path}");
            assert!(reply.body[text].is_string(), "{path}");
            if status == 401 {
                assert_eq!(reply.headers["www-authenticate"], "Bearer");
            }
        }
    }
    assert_eq!(hits(&server).await, 0);
}

#[tokio::test]
async fn the_end_is_counted_in_metrics_and_logged_without_keys() {
    let (server, _) = live_agent_server(vec![
        agent_call("c1", "+1", "ringing", "outbound"),
        agent_call("c2", "+2", "ringing", "outbound"),
    ])
    .await;
    let key = "sk-very-secret-control-key";
    let toml = TestConfig::new()
        .org(OrgB::key("acme", key).providers(&["agents"]))
        .provider(ProviderB::agent("agents", &server.uri()))
        .toml();
    let binary = Binary::start(toml.as_str(), &[], &["--log-format", "json"]);
    assert_eq!(binary.app.end("c1", key, "acme").await.status, 200);
    assert_eq!(binary.app.stop("gone", key, "acme").await.status, 404);

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
    let line = |route: &str, provider: &str, outcome: &str| {
        metrics.lines().any(|l| {
            l.starts_with("callmux_control_actions_total{")
                && l.contains(&format!("route=\"{route}\""))
                && l.contains(&format!("provider=\"{provider}\""))
                && l.contains(&format!("outcome=\"{outcome}\""))
                && l.ends_with(" 1")
        })
    };
    assert!(
        line("/api/calls/{call_id}/end", "agents", "ended"),
        "{metrics}"
    );
    // Counted under the key's name (part two's single key is `default`), never the key.
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("callmux_control_actions_total{")
                && l.contains("key=\"default\"")
                && l.contains("outcome=\"ended\"")),
        "{metrics}"
    );
    assert!(
        line("/v1/calls/{call_id}/stop", "", "not_found"),
        "{metrics}"
    );

    let logged = binary
        .log_line("for the end", |l| {
            l.contains("control action") && l.contains("c1") && l.contains("ended")
        })
        .await;
    let logged: Value = serde_json::from_str(&logged).unwrap();
    let fields = &logged["fields"];
    assert_eq!(fields["org"], "acme", "{logged}");
    assert_eq!(fields["provider"], "agents", "{logged}");
    assert_eq!(fields["outcome"], "ended", "{logged}");
    binary
        .log_line("for the miss", |l| {
            l.contains("control action") && l.contains("gone") && l.contains("not_found")
        })
        .await;
    assert!(!metrics.contains(key));
    let all = binary.stop();
    assert!(!all.contains(key), "a key was logged:\n{all}");
}

#[tokio::test]
async fn a_request_refused_by_the_bounds_is_answered_in_the_control_routes_own_envelope() {
    let (server, _) = live_agent_server(vec![agent_call("c1", "+1", "ringing", "outbound")]).await;
    let toml = TestConfig::new()
        .server("max_header_bytes", 1024)
        .org(OrgB::key("acme", KEY).providers(&["agents"]))
        .provider(ProviderB::agent("agents", &server.uri()))
        .toml();
    let app = spawn_app(&toml).await;
    let big = "x".repeat(2048);
    let headers = [
        ("authorization", KEY),
        ("x-bland-org-id", "acme"),
        ("x-padding", big.as_str()),
    ];
    let ended = app.post("/api/calls/c1/end", &headers).await;
    assert_eq!(ended.status, 431, "{:?}", ended.body);
    assert_eq!(ended.body["success"], false);
    assert_eq!(ended.body["code"], "HEADERS_TOO_LARGE");
    let stopped = app.post("/v1/calls/c1/stop", &headers).await;
    assert_eq!(stopped.status, 431, "{:?}", stopped.body);
    assert_eq!(stopped.body["status"], "error");
    assert_eq!(stopped.body["code"], "HEADERS_TOO_LARGE");
    assert_eq!(hits(&server).await, 0);
}

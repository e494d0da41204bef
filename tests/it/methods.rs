//! Methods: a route asked with a method it does not answer says so (405, `allow`) in its own
//! envelope, and forwarding sends on only the methods Bland's API uses.

use reqwest::Method;
use serde_json::Value;
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::*;

const KEY: &str = "acme-key";

/// `method path` with the org's key; the status, the `allow` header and the JSON body.
async fn ask(app: &TestApp, method: Method, path: &str) -> (u16, String, Value) {
    let resp = app
        .http
        .request(method, app.url(path))
        .header("authorization", KEY)
        .header("x-bland-org-id", "acme")
        .send()
        .await
        .expect("callmux is reachable");
    let status = resp.status().as_u16();
    let allow = resp
        .headers()
        .get("allow")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{path}: a 405 that is not JSON ({e}): {text:?}"));
    (status, allow, body)
}

#[tokio::test]
async fn a_wrong_method_on_any_route_is_a_405_in_that_routes_envelope() {
    let agents = agent_server(serde_json::json!([])).await;
    let toml = TestConfig::new()
        .org(OrgB::key("acme", KEY).providers(&["a"]))
        .provider(ProviderB::agent("a", &agents.uri()))
        .toml();
    let app = spawn_app(&toml).await;
    let lists = [
        (Method::DELETE, "/v1/calls/active", "GET"),
        (Method::POST, "/api/calls", "GET"),
        (Method::PUT, "/calls", "GET"),
        (Method::POST, "/api/calls/stream", "GET"),
        (Method::POST, "/healthz", "GET"),
        (Method::GET, "/hooks/twilio/t1", "POST"),
    ];
    for (method, path, allowed) in lists {
        let (status, allow, body) = ask(&app, method.clone(), path).await;
        assert_eq!(status, 405, "{method} {path}: {body}");
        assert!(allow.contains(allowed), "{method} {path}: allow {allow:?}");
        assert_eq!(
            body["errors"][0]["error"], "METHOD_NOT_ALLOWED",
            "{method} {path}: {body}"
        );
        let message = body["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains(allowed), "{message}");
    }
    for path in ["/api/call", "/api/calls/c1/end"] {
        let (status, _, body) = ask(&app, Method::GET, path).await;
        assert_eq!(status, 405, "{path}: {body}");
        assert_eq!(body["success"], false, "{path}: {body}");
        assert_eq!(body["code"], "METHOD_NOT_ALLOWED", "{path}: {body}");
    }
    for path in ["/v1/calls/c1/stop", "/v1/calls/active/stop"] {
        let (status, _, body) = ask(&app, Method::PATCH, path).await;
        assert_eq!(status, 405, "{path}: {body}");
        assert_eq!(body["status"], "error", "{path}: {body}");
        assert_eq!(body["code"], "METHOD_NOT_ALLOWED", "{path}: {body}");
    }
    assert_eq!(hits(&agents).await, 0, "nothing is asked upstream");
}

#[tokio::test]
async fn forwarding_sends_only_the_methods_blands_api_uses() {
    let bland = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200).set_body_string("{}"))
        .mount(&bland)
        .await;
    let app = spawn_app(&passthrough_org("acme", &bland.uri(), 0)).await;
    for method in ["TRACE", "OPTIONS", "CONNECTX", "HEAD"] {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let resp = app
            .http
            .request(method.clone(), app.url("/v1/pathway"))
            .header("authorization", "sk-bland-key")
            .header("x-bland-org-id", "acme")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 405, "{method}");
        let allow = resp.headers()["allow"].to_str().unwrap().to_owned();
        assert_eq!(allow, "GET, POST, PUT, PATCH, DELETE", "{method}");
        if method != Method::HEAD {
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body["status"], "error", "{method}: {body}");
            assert_eq!(body["code"], "METHOD_NOT_ALLOWED", "{method}: {body}");
        }
    }
    assert_eq!(hits(&bland).await, 0, "nothing reached Bland");
    for method in [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
    ] {
        let (status, _, _) = {
            let resp = app
                .http
                .request(method.clone(), app.url("/v1/pathway"))
                .header("authorization", "sk-bland-key")
                .header("x-bland-org-id", "acme")
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), (), ())
        };
        assert_ne!(status, 405, "{method} is forwarded");
    }
}

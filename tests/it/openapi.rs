//! `GET /openapi.json`: the document is served, well-formed and self-contained, and real answers of every documented status match the schemas it gives for them.

use std::time::Duration;

use crate::common::*;
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::timeout;
use wiremock::MockServer;

/// Org `acme` sees a healthy agent server and a healthy Bland (with its own credentials).
const ACME_KEY: &str = "acme-key";
/// Org `partial` sees the healthy agent server and `down`, which answers 500.
const PARTIAL_KEY: &str = "partial-key";
/// Org `dead` sees only `down`.
const DEAD_KEY: &str = "dead-key";
/// Org `held` sees only `hold`, an upstream that never answers (timeout 2000 ms).
const HELD_KEY: &str = "held-key";
/// Org `viabland` authenticates its callers through `blandfwd`, where nothing listens.
const VIABLAND_KEY: &str = "a-bland-customers-own-key";

const BLAND_KEY: &str = "bland-secret";
const BLAND_ORG: &str = "bland-org";

const PATHS: [&str; 2] = ["/v1/calls/active", "/api/calls"];
const DOCUMENTED_STATUSES: [&str; 9] = [
    "200", "400", "401", "403", "405", "429", "431", "502", "503",
];
/// The end-a-call routes (agent servers', Bland's), as the document names them.
const CONTROL_PATHS: [&str; 2] = ["/api/calls/{call_id}/end", "/v1/calls/{call_id}/stop"];
const CONTROL_STATUSES: [&str; 12] = [
    "200", "400", "401", "403", "404", "405", "429", "431", "501", "502", "503", "504",
];

/// Every wait in these tests is bounded by this.
const BOUND: Duration = Duration::from_secs(30);

/// The served OpenAPI document.
pub(crate) struct Spec(pub(crate) Value);

impl Spec {
    pub(crate) async fn fetch(app: &TestApp) -> Self {
        let reply = app.get("/openapi.json", &[]).await;
        assert_eq!(reply.status, 200, "{:#}", reply.body);
        assert_eq!(reply.headers["content-type"], "application/json");
        Spec(reply.body)
    }

    /// The operation `route` names: `"POST /calls"`, or a bare path that has one operation of
    /// GET and POST. A bare path with both is refused: checking a GET's answer against the
    /// POST's schema (or the other way round) would pass answers the document does not allow.
    fn operation(&self, route: &str) -> &Value {
        let (method, path) = match route.split_once(' ') {
            Some((method, path)) => (Some(method.to_ascii_lowercase()), path),
            None => (None, route),
        };
        let item = &self.0["paths"][path];
        let method =
            method.unwrap_or_else(
                || match (item["get"].is_object(), item["post"].is_object()) {
                    (true, true) => panic!("{path} has GET and POST: say which, as \"GET {path}\""),
                    (false, true) => "post".to_string(),
                    _ => "get".to_string(),
                },
            );
        let operation = &item[method.as_str()];
        assert!(operation.is_object(), "the document has no {route}");
        operation
    }

    fn response(&self, path: &str, status: u16) -> &Value {
        let responses = &self.operation(path)["responses"];
        let response = match &responses[status.to_string()] {
            Value::Null => &responses["default"],
            documented => documented,
        };
        assert!(
            response.is_object(),
            "{path} documents no {status} response"
        );
        response
    }

    /// The examples of `path`'s `status` answer: its `example`, and each of its `examples`.
    fn examples(&self, path: &str, status: u16) -> Vec<&Value> {
        let media = &self.response(path, status)["content"]["application/json"];
        let named = media["examples"].as_object().into_iter().flatten();
        named
            .map(|(_, e)| &e["value"])
            .chain(Some(&media["example"]).filter(|e| !e.is_null()))
            .collect()
    }

    /// A draft 2020-12 validator for the body of `path`'s `status` answer. The response's
    /// schema (a `$ref` to `#/components/schemas/...`) becomes the root, next to the document's
    /// `components`, so that the reference resolves as a JSON pointer within that root.
    fn validator(&self, path: &str, status: u16) -> jsonschema::Validator {
        let mut root = self.response(path, status)["content"]["application/json"]["schema"].clone();
        assert!(root.is_object(), "{path} {status} documents no JSON body");
        // A forwarded route's answer is callmux's own or Bland's (which may be anything): the
        // answers callmux writes are checked against callmux's alternative alone.
        let bland = json!({"$ref": "#/components/schemas/BlandAnswer"});
        if let Some([own, theirs]) = root["anyOf"].as_array().map(Vec::as_slice) {
            if *theirs == bland {
                root = own.clone();
            }
        }
        root["components"] = self.0["components"].clone();
        jsonschema::draft202012::new(&root)
            .unwrap_or_else(|e| panic!("the schema of {path} {status} does not compile: {e}"))
    }

    /// What the validator finds wrong with `body` as `path`'s `status` answer; empty if nothing.
    fn violations(&self, path: &str, status: u16, body: &Value) -> Vec<String> {
        self.validator(path, status)
            .iter_errors(body)
            .map(|e| format!("{e} (at {})", e.instance_path()))
            .collect()
    }

    /// `reply`, an answer of `path`, is documented: its status is, its body matches the schema
    /// for that status, and it carries the headers documented for it. The other endpoint's
    /// schema for the same status must reject it, or the check could not fail.
    fn assert_documents(&self, path: &str, reply: &Reply) {
        self.assert_matches(path, reply);
        let other = other_path(path);
        assert!(
            !self.violations(other, reply.status, &reply.body).is_empty(),
            "the {} schema of {other} accepts an answer of {path}, so it checks nothing: {:#}",
            reply.status,
            reply.body
        );
    }

    /// `reply`, an answer of `path`, matches the schema and headers documented for its status.
    pub(crate) fn assert_matches(&self, path: &str, reply: &Reply) {
        let status = reply.status;
        let wrong = self.violations(path, status, &reply.body);
        assert!(
            wrong.is_empty(),
            "the real {status} of {path} does not match its documented schema: {wrong:#?}\nbody: {:#}",
            reply.body
        );
        assert_eq!(reply.headers["content-type"], "application/json");
        let headers = self.response(path, status)["headers"].as_object();
        for (name, spec) in headers.into_iter().flatten() {
            let value = reply
                .headers
                .get(name.as_str())
                .unwrap_or_else(|| panic!("the real {status} of {path} lacks header {name}"))
                .to_str()
                .unwrap();
            let value = match spec["schema"]["type"].as_str() {
                Some("integer") => json!(value
                    .parse::<i64>()
                    .unwrap_or_else(|_| panic!("{name}: {value:?} is not an integer"))),
                _ => json!(value),
            };
            let validator = jsonschema::draft202012::new(&spec["schema"]).unwrap();
            assert!(
                validator.is_valid(&value),
                "{name}: {value} does not match {}",
                spec["schema"]
            );
        }
    }
}

fn other_path(path: &str) -> &'static str {
    if let Some(at) = CONTROL_PATHS.iter().position(|p| *p == path) {
        return CONTROL_PATHS[1 - at];
    }
    if path == PATHS[0] {
        PATHS[1]
    } else {
        PATHS[0]
    }
}

/// A running callmux over real loopback upstreams, and the document it serves.
struct World {
    app: TestApp,
    spec: Spec,
    _upstreams: Vec<MockServer>,
}

/// callmux with `server` (TOML lines for `[server]`) over the orgs above; `hold_url` is the
/// upstream of org `held`.
async fn world(server: &str, hold_url: &str) -> World {
    let agents = agent_server(json!([
        agent_call("agent-out", "+15550001", "in-progress", "outbound"),
        agent_call("agent-in", "+15550002", "ringing", "incoming"),
    ]))
    .await;
    let bland = bland_server(
        BLAND_KEY,
        BLAND_ORG,
        json!([bland_call("bland-1", "QUEUED", "1758656817432")]),
    )
    .await;
    let down = raw_server(500, "oops").await;
    let toml = format!(
        r#"
        [server]
        {server}

        [orgs.acme]
        api_key_sha256 = "{acme}"
        providers = ["agents", "bland"]

        [orgs.partial]
        api_key_sha256 = "{partial}"
        providers = ["agents", "down"]

        [orgs.dead]
        api_key_sha256 = "{dead}"
        providers = ["down"]

        [orgs.held]
        api_key_sha256 = "{held}"
        providers = ["hold"]

        [orgs.viabland]
        auth = "blandfwd"
        providers = ["blandfwd"]

        [providers.agents]
        kind = "twilio-media-stream"
        base_url = "{agents}"

        [providers.bland]
        kind = "bland"
        base_url = "{bland}"
        api_key_env = "BLAND_KEY"
        org_id = "{BLAND_ORG}"

        [providers.down]
        kind = "twilio-media-stream"
        base_url = "{down}"
        timeout_ms = 2000

        [providers.hold]
        kind = "twilio-media-stream"
        base_url = "{hold_url}"
        timeout_ms = 2000

        [providers.blandfwd]
        kind = "bland"
        base_url = "{refused}"
        timeout_ms = 2000
        "#,
        acme = sha256_hex(ACME_KEY),
        partial = sha256_hex(PARTIAL_KEY),
        dead = sha256_hex(DEAD_KEY),
        held = sha256_hex(HELD_KEY),
        agents = agents.uri(),
        bland = bland.uri(),
        down = down.uri(),
        refused = refused_url().await,
    );
    let app = spawn_app_with_env(&toml, &[("BLAND_KEY", BLAND_KEY)]).await;
    let spec = Spec::fetch(&app).await;
    World {
        app,
        spec,
        _upstreams: vec![agents, bland, down],
    }
}

fn creds<'a>(key: &'a str, org: &'a str) -> [(&'a str, &'a str); 2] {
    [("authorization", key), ("x-bland-org-id", org)]
}

/// An upstream that accepts connections and never answers, and reports each connection.
async fn reporting_silent_server() -> (String, mpsc::UnboundedReceiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = sock.read(&mut buf).await;
            let _ = tx.send(());
            held.push(sock);
        }
    });
    (format!("http://{addr}"), rx)
}

/// Every `$ref` in `value`, with where it sits.
fn refs<'v>(value: &'v Value, at: String, out: &mut Vec<(String, &'v str)>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push((at.clone(), r.as_str())),
                    _ => refs(v, format!("{at}/{key}"), out),
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                refs(v, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[tokio::test]
async fn the_document_is_served_without_auth_and_describes_both_endpoints_their_headers_and_every_status(
) {
    let w = world("", &silent_server().await).await;
    let reply = timeout(BOUND, w.app.http.get(w.app.url("/openapi.json")).send())
        .await
        .expect("answers in time")
        .expect("reachable");
    assert_eq!(reply.status(), 200);
    assert_eq!(reply.headers()["content-type"], "application/json");
    let doc: Value = serde_json::from_slice(&reply.bytes().await.unwrap()).expect("JSON");

    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["title"], "callmux");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(!doc["info"]["description"].as_str().unwrap().is_empty());
    assert_eq!(
        doc["components"]["securitySchemes"]["orgKey"],
        json!({"type": "apiKey", "in": "header", "name": "authorization",
            "description": doc["components"]["securitySchemes"]["orgKey"]["description"]})
    );

    for path in PATHS {
        let get = &doc["paths"][path]["get"];
        assert!(get.is_object(), "{path} has no get");
        assert_eq!(get["security"], json!([{"orgKey": []}]), "{path}");
        let header = |name: &str| {
            get["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == name && p["in"] == "header")
                .unwrap_or_else(|| panic!("{path} does not document header {name}"))
                .clone()
        };
        assert_eq!(header("authorization")["required"], true, "{path}");
        assert_eq!(header("x-bland-org-id")["required"], false, "{path}");
        let statuses: Vec<&str> = get["responses"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(statuses, DOCUMENTED_STATUSES, "{path}");
        for status in DOCUMENTED_STATUSES {
            let media = &get["responses"][status]["content"]["application/json"];
            assert!(
                media["schema"].is_object(),
                "{path} {status} has no JSON body"
            );
        }
        assert!(get["responses"]["401"]["headers"]["www-authenticate"].is_object());
        assert!(get["responses"]["503"]["headers"]["retry-after"].is_object());
    }

    let mut all = Vec::new();
    refs(&doc, String::new(), &mut all);
    assert!(
        all.len() > 20,
        "expected the schemas to be referenced: {all:?}"
    );
    for (at, r) in all {
        let pointer = r
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{at}: {r} is not a local reference"));
        assert!(doc.pointer(pointer).is_some(), "{at}: {r} does not resolve");
    }
}

#[tokio::test]
async fn every_example_in_the_document_matches_the_schema_it_illustrates() {
    let w = world("", &silent_server().await).await;
    let mut checked = 0;
    for path in PATHS {
        for status in DOCUMENTED_STATUSES {
            let status: u16 = status.parse().unwrap();
            for example in w.spec.examples(path, status) {
                let wrong = w.spec.violations(path, status, example);
                assert!(wrong.is_empty(), "{path} {status}: {example:#}: {wrong:#?}");
                checked += 1;
            }
        }
    }
    for path in CONTROL_PATHS {
        for status in CONTROL_STATUSES {
            let status: u16 = status.parse().unwrap();
            let examples = w.spec.examples(path, status);
            assert!(!examples.is_empty(), "{path} {status} has no example");
            for example in examples {
                let wrong = w.spec.violations(path, status, example);
                assert!(wrong.is_empty(), "{path} {status}: {example:#}: {wrong:#?}");
                checked += 1;
            }
        }
    }
    assert!(checked >= 30, "only {checked} examples");
}

#[tokio::test]
async fn complete_and_partial_answers_in_both_shapes_match_the_documented_200() {
    let w = world("", &silent_server().await).await;
    for path in PATHS {
        let complete = w.app.get(path, &creds(ACME_KEY, "acme")).await;
        assert_eq!(complete.status, 200, "{:#}", complete.body);
        w.spec.assert_documents(path, &complete);

        let partial = w.app.get(path, &creds(PARTIAL_KEY, "partial")).await;
        assert_eq!(partial.status, 200, "{:#}", partial.body);
        assert_eq!(partial.body["errors"][0]["provider"], "down");
        w.spec.assert_documents(path, &partial);
    }
    // Both kinds of call made it into the answers checked: a Bland call (no direction) and
    // agent calls of both directions.
    let calls = w.app.calls(ACME_KEY, "acme").await.body;
    let directions: Vec<&Value> = calls["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["direction"])
        .collect();
    assert!(directions.contains(&&Value::Null), "{calls:#}");
    assert!(directions.contains(&&json!("incoming")), "{calls:#}");
    assert!(directions.contains(&&json!("outbound")), "{calls:#}");
}

#[tokio::test]
async fn missing_org_id_400_and_auth_failure_401_match_their_documented_schemas_and_headers() {
    let w = world("", &silent_server().await).await;
    for path in PATHS {
        let missing_org = w.app.get(path, &[("authorization", "nope")]).await;
        assert_eq!(missing_org.status, 400, "{:#}", missing_org.body);
        assert_eq!(missing_org.body["errors"][0]["error"], "MISSING_ORG_ID");
        w.spec.assert_documents(path, &missing_org);

        let no_key = w.app.get(path, &[("x-bland-org-id", "acme")]).await;
        let wrong_key = w.app.get(path, &creds("Bearer wrong", "acme")).await;
        for refused in [no_key, wrong_key] {
            assert_eq!(refused.status, 401, "{:#}", refused.body);
            assert_eq!(refused.body["errors"][0]["error"], "AUTH_FAILURE");
            assert_eq!(refused.headers["www-authenticate"], "Bearer");
            w.spec.assert_documents(path, &refused);
        }
    }
}

#[tokio::test]
async fn all_providers_failed_and_auth_unavailable_502s_match_the_documented_schema() {
    let w = world("", &silent_server().await).await;
    for path in PATHS {
        let all_failed = w.app.get(path, &creds(DEAD_KEY, "dead")).await;
        assert_eq!(all_failed.status, 502, "{:#}", all_failed.body);
        assert_eq!(all_failed.body["errors"][0]["provider"], "down");
        w.spec.assert_documents(path, &all_failed);

        let unavailable = w.app.get(path, &creds(VIABLAND_KEY, "viabland")).await;
        assert_eq!(unavailable.status, 502, "{:#}", unavailable.body);
        assert_eq!(unavailable.body["errors"][0]["error"], "AUTH_UNAVAILABLE");
        w.spec.assert_documents(path, &unavailable);
    }
}

#[tokio::test]
async fn headers_over_max_header_bytes_get_a_431_that_matches_the_documented_schema() {
    let w = world("max_header_bytes = 1024", &silent_server().await).await;
    let padding = "p".repeat(2048);
    for path in PATHS {
        let [auth, org] = creds(ACME_KEY, "acme");
        let reply = w
            .app
            .get(path, &[auth, org, ("x-padding", padding.as_str())])
            .await;
        assert_eq!(reply.status, 431, "{:#}", reply.body);
        assert_eq!(reply.body["errors"][0]["error"], "HEADERS_TOO_LARGE");
        w.spec.assert_documents(path, &reply);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_max_concurrent_requests_the_503_overloaded_matches_the_documented_schema() {
    let (hold_url, mut arrivals) = reporting_silent_server().await;
    let w = world("max_concurrent_requests = 1", &hold_url).await;
    let holder = TestApp {
        addr: w.app.addr,
        http: w.app.http.clone(),
    };
    let held = tokio::spawn(async move { holder.calls(HELD_KEY, "held").await });
    timeout(BOUND, arrivals.recv())
        .await
        .expect("the holding request reaches its upstream in time")
        .expect("the upstream is up");

    for path in PATHS {
        let reply = w.app.get(path, &creds(ACME_KEY, "acme")).await;
        assert_eq!(reply.status, 503, "{:#}", reply.body);
        assert_eq!(reply.body["errors"][0]["error"], "OVERLOADED");
        w.spec.assert_documents(path, &reply);
    }

    // The held request ends at its provider's timeout: every provider of `held` failed.
    let held = timeout(BOUND, held).await.expect("ends in time").unwrap();
    assert_eq!(held.status, 502, "{:#}", held.body);
    assert_eq!(held.body["errors"][0]["error"], "UPSTREAM_TIMEOUT");
    w.spec.assert_documents("/api/calls", &held);
}

#[tokio::test]
async fn a_request_past_request_timeout_ms_gets_a_503_that_matches_the_documented_schema() {
    let w = world("request_timeout_ms = 200", &silent_server().await).await;
    for path in PATHS {
        let reply = w.app.get(path, &creds(HELD_KEY, "held")).await;
        assert_eq!(reply.status, 503, "{:#}", reply.body);
        assert_eq!(reply.body["errors"][0]["error"], "REQUEST_TIMEOUT");
        w.spec.assert_documents(path, &reply);
    }
}

#[tokio::test]
async fn the_validator_rejects_bodies_that_break_the_documented_shapes() {
    let w = world("", &silent_server().await).await;
    let bland = w.app.bland(ACME_KEY, "acme").await.body;
    let calls = w.app.calls(ACME_KEY, "acme").await.body;
    let refused = w.app.get(PATHS[0], &[]).await.body;
    let rejects = |path: &str, status: u16, body: Value| {
        assert!(
            !w.spec.violations(path, status, &body).is_empty(),
            "{path} {status} accepts {body:#}"
        );
    };
    // The real answers pass, so the mutations below are what is rejected.
    assert!(w.spec.violations(PATHS[0], 200, &bland).is_empty());
    assert!(w.spec.violations(PATHS[1], 200, &calls).is_empty());
    assert!(w.spec.violations(PATHS[0], 401, &refused).is_empty());

    // A calls-shape body is not a Bland answer, and the other way round.
    rejects(PATHS[0], 200, calls.clone());
    rejects(PATHS[1], 200, bland.clone());
    // A Bland call missing a field, or with a number where a string belongs.
    let mut b = bland.clone();
    b["data"][0].as_object_mut().unwrap().remove("status");
    rejects(PATHS[0], 200, b);
    let mut b = bland.clone();
    b["data"][0]["timestamp"] = json!(1758656817432u64);
    rejects(PATHS[0], 200, b);
    // A provider failure without its provider, or with a code that is not documented.
    let mut b = bland.clone();
    b["errors"] = json!([{"error": "UPSTREAM_TIMEOUT", "message": "m"}]);
    rejects(PATHS[0], 200, b);
    let mut c = calls.clone();
    c["errors"] = json!([{"provider": "p", "error": "SOMETHING_ELSE", "message": "m"}]);
    rejects(PATHS[1], 200, c);
    // An unknown direction, a negative count, an extra field.
    let mut c = calls.clone();
    c["calls"][0]["direction"] = json!("sideways");
    rejects(PATHS[1], 200, c);
    let mut c = calls.clone();
    c["count"] = json!(-1);
    rejects(PATHS[1], 200, c);
    let mut c = calls.clone();
    c["calls"][0]["provider"] = json!("agents");
    rejects(PATHS[1], 200, c);
    // A refusal that lists calls, or names a provider.
    let mut r = refused.clone();
    r["data"] = bland["data"].clone();
    rejects(PATHS[0], 401, r);
    let mut r = refused.clone();
    r["errors"][0]["provider"] = json!("agents");
    rejects(PATHS[0], 401, r);
}

#[tokio::test]
async fn every_answer_of_both_end_routes_matches_its_documented_schema_and_headers() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, ResponseTemplate};

    let agents = agent_server(json!([
        agent_call("ok1", "+1", "ringing", "outbound"),
        agent_call("ok2", "+1", "ringing", "outbound"),
        agent_call("boom", "+1", "ringing", "outbound"),
        agent_call("slow", "+1", "ringing", "outbound"),
    ]))
    .await;
    let answer = |body: Value| ResponseTemplate::new(200).set_body_json(body);
    for (id, reply) in [
        ("ok1", answer(json!({"success": true}))),
        ("ok2", answer(json!({"success": true}))),
        ("boom", answer(json!({"success": false, "error": "boom"}))),
        (
            "slow",
            answer(json!({"success": true})).set_delay(Duration::from_secs(10)),
        ),
    ] {
        Mock::given(method("POST"))
            .and(path(format!("/api/calls/{id}/end")))
            .respond_with(reply)
            .mount(&agents)
            .await;
    }
    let toml = TestConfig::new()
        .server("max_header_bytes", 1024)
        .org(OrgB::key("acme", ACME_KEY).providers(&["agents"]))
        .org(OrgB::key("globex", ACME_KEY).providers(&["agents"]))
        .provider(ProviderB::agent("agents", &agents.uri()).set("timeout_ms", 300))
        .toml();
    let app = spawn_app(&toml).await;
    let spec = Spec::fetch(&app).await;
    for path in CONTROL_PATHS {
        let post = &spec.0["paths"][path]["post"];
        assert_eq!(post["security"], json!([{"orgKey": []}]), "{path}");
        let statuses: Vec<&str> = post["responses"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(statuses, CONTROL_STATUSES, "{path}");
    }

    let post = |route: &str, id: &str, headers: &[(&str, &str)]| {
        let mut req = app.http.post(app.url(&route.replace("{call_id}", id)));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        async move {
            let resp = timeout(BOUND, req.send()).await.unwrap().unwrap();
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let body = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
            Reply {
                status,
                headers,
                body,
            }
        }
    };
    let mut seen = Vec::new();
    let padding = "x".repeat(2048);
    for (route, ok) in CONTROL_PATHS.iter().zip(["ok1", "ok2"]) {
        let good = creds(ACME_KEY, "acme");
        let big = [good[0], good[1], ("x-padding", padding.as_str())];
        for (id, headers, status) in [
            (ok, &good[..], 200),
            ("a%20b", &good[..], 400),
            ("ok1", &[("authorization", ACME_KEY)][..], 400),
            ("ok1", &[("x-bland-org-id", "acme")][..], 401),
            ("nope", &good[..], 404),
            ("ok1", &big[..], 431),
            ("boom", &good[..], 502),
            ("slow", &good[..], 504),
        ] {
            let reply = post(route, id, headers).await;
            assert_eq!(reply.status, status, "{route} {id}: {:#}", reply.body);
            spec.assert_documents(route, &reply);
            seen.push((route.to_string(), status));
        }
    }
    assert_eq!(seen.len(), 16);
}

#[tokio::test]
async fn every_refusal_of_a_forwarded_bland_route_matches_its_documented_schema() {
    const FORWARD_PATH: &str = "/v1/{path}";
    let refused = refused_url().await;
    let silent = silent_server().await;
    let bland = |id: &str, url: &str, timeout_ms: u64| {
        ProviderB::bland(id, url, &format!("{}_KEY", id.to_uppercase()), BLAND_ORG)
            .set("timeout_ms", timeout_ms)
    };
    let toml = TestConfig::new()
        .org(
            OrgB::key("down", ACME_KEY)
                .providers(&["gone"])
                .passthrough("gone"),
        )
        .org(
            OrgB::key("held", HELD_KEY)
                .providers(&["hold"])
                .passthrough("hold"),
        )
        .org(OrgB::key("plain", PARTIAL_KEY).providers(&["plainb"]))
        // The same key as `down`'s, so that key alone names no single org.
        .org(OrgB::key("also", ACME_KEY).providers(&["plainb"]))
        .provider(bland("gone", &refused, 2000))
        .provider(bland("hold", &silent, 300))
        .provider(bland("plainb", &refused, 2000))
        .server("forward_max_request_bytes", 1024)
        .toml();
    let env = [
        ("GONE_KEY", BLAND_KEY),
        ("HOLD_KEY", BLAND_KEY),
        ("PLAINB_KEY", BLAND_KEY),
    ];
    let app = spawn_app_with_env(&toml, &env).await;
    let spec = Spec::fetch(&app).await;
    let post = &spec.0["paths"][FORWARD_PATH]["post"];
    assert_eq!(post["security"], json!([{"orgKey": []}]));
    assert!(post["responses"]["default"]["description"].is_string());

    let send = |path: &str, headers: &[(&str, &str)], body: Option<Vec<u8>>| {
        let mut req = app.http.post(app.url(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(body) = body {
            req = req.body(body);
        }
        async move {
            let resp = timeout(BOUND, req.send()).await.unwrap().unwrap();
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let body = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
            Reply {
                status,
                headers,
                body,
            }
        }
    };
    let down = creds(ACME_KEY, "down");
    for (path, headers, body, status) in [
        ("/v1/a%2Fb", &down[..], None, 400),
        ("/v1/calls", &[("authorization", ACME_KEY)][..], None, 400),
        ("/v1/calls", &[("x-bland-org-id", "down")][..], None, 401),
        ("/v1/calls", &creds(PARTIAL_KEY, "plain")[..], None, 404),
        ("/v1/calls", &down[..], Some(vec![b'x'; 2048]), 413),
        ("/v1/calls", &down[..], None, 502),
        ("/v1/calls", &creds(HELD_KEY, "held")[..], None, 504),
    ] {
        let reply = send(path, headers, body).await;
        assert_eq!(reply.status, status, "{path}: {:#}", reply.body);
        let wrong = spec.violations(&format!("POST {FORWARD_PATH}"), status, &reply.body);
        assert!(wrong.is_empty(), "{status}: {wrong:#?}\n{:#}", reply.body);
        if status == 401 {
            assert_eq!(reply.headers["www-authenticate"], "Bearer");
        }
        let example = &spec.response(&format!("POST {FORWARD_PATH}"), status)["content"]
            ["application/json"]["example"];
        assert!(
            spec.violations(&format!("POST {FORWARD_PATH}"), status, example)
                .is_empty(),
            "{status}: {example:#}"
        );
        // The list route's schema for the same status tells the two envelopes apart.
        if status != 404 && status != 413 && status != 504 {
            assert!(!spec.violations(PATHS[0], status, &reply.body).is_empty());
        }
    }
}

#[tokio::test]
async fn every_answer_of_stop_all_and_of_placing_a_call_matches_its_documented_schema() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, ResponseTemplate};

    let ok = agent_server(json!([agent_call("c1", "+1", "ringing", "outbound")])).await;
    for (route, answer) in [
        ("/api/calls/c1/end", json!({"success": true})),
        (
            "/api/call",
            json!({"success": true, "call_id": "p1", "to": "+1"}),
        ),
    ] {
        Mock::given(method("POST"))
            .and(path(route))
            .respond_with(ResponseTemplate::new(200).set_body_json(answer))
            .mount(&ok)
            .await;
    }
    let refusing = agent_server(json!([])).await;
    Mock::given(method("POST"))
        .and(path("/api/call"))
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_json(json!({"success": false, "error": "Missing phone number"})),
        )
        .mount(&refusing)
        .await;
    let slow = agent_server(json!([])).await;
    Mock::given(method("POST"))
        .and(path("/api/call"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"success": true}))
                .set_delay(Duration::from_secs(10)),
        )
        .mount(&slow)
        .await;
    let down = raw_server(500, "").await;
    let toml = TestConfig::new()
        .server("max_header_bytes", 1024)
        .org(OrgB::key("acme", ACME_KEY).providers(&["ok"]))
        .org(OrgB::key("globex", ACME_KEY).providers(&["ok"]))
        .org(OrgB::key("partial", PARTIAL_KEY).providers(&["ok", "down"]))
        .org(OrgB::key("dead", DEAD_KEY).providers(&["down"]))
        .org(OrgB::key("full", "full-key").providers(&["full"]))
        .org(OrgB::key("refusing", "refusing-key").providers(&["refusing"]))
        .org(OrgB::key("slow", "slow-key").providers(&["slow"]))
        .provider(ProviderB::agent("ok", &ok.uri()).set("place_calls", true))
        .provider(ProviderB::agent("down", &down.uri()).set("retries", 0))
        .provider(
            ProviderB::agent("full", &ok.uri())
                .set("place_calls", true)
                .set("max_active_calls", 1),
        )
        .provider(ProviderB::agent("refusing", &refusing.uri()).set("place_calls", true))
        .provider(
            ProviderB::agent("slow", &slow.uri())
                .set("place_calls", true)
                .set("timeout_ms", 300),
        )
        .toml();
    let app = spawn_app(&toml).await;
    let spec = Spec::fetch(&app).await;
    let padding = "x".repeat(2048);
    let post = |route: &'static str, key: &str, org: &str, body: &'static str, pad: bool| {
        let mut req = app
            .http
            .post(app.url(route))
            .header("authorization", key)
            .body(body);
        if !org.is_empty() {
            req = req.header("x-bland-org-id", org);
        }
        if pad {
            req = req.header("x-padding", padding.as_str());
        }
        async move {
            let resp = timeout(BOUND, req.send()).await.unwrap().unwrap();
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let body = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
            Reply {
                status,
                headers,
                body,
            }
        }
    };
    const STOP_ALL: &str = "/v1/calls/active/stop";
    const PLACE: &str = "/api/call";
    const CALL: &str = r#"{"to": "+1234567890"}"#;
    let cases: [(&str, &str, &str, &str, bool, u16); 15] = [
        (STOP_ALL, PARTIAL_KEY, "partial", "", false, 200),
        (STOP_ALL, ACME_KEY, "acme", "", false, 200),
        (STOP_ALL, ACME_KEY, "", "", false, 400),
        (STOP_ALL, "wrong", "acme", "", false, 401),
        (STOP_ALL, ACME_KEY, "acme", "", true, 431),
        (STOP_ALL, DEAD_KEY, "dead", "", false, 502),
        (PLACE, ACME_KEY, "acme", CALL, false, 200),
        (PLACE, ACME_KEY, "acme", "{}", false, 400),
        (PLACE, "wrong", "acme", CALL, false, 401),
        (PLACE, ACME_KEY, "acme", CALL, true, 431),
        (PLACE, DEAD_KEY, "dead", CALL, false, 501),
        (PLACE, "full-key", "full", CALL, false, 503),
        (PLACE, "slow-key", "slow", CALL, false, 504),
        (PLACE, "refusing-key", "refusing", CALL, false, 400),
        (PLACE, ACME_KEY, "", CALL, false, 400),
    ];
    for (route, key, org, body, pad, status) in cases {
        let reply = post(route, key, org, body, pad).await;
        assert_eq!(reply.status, status, "{route} {org}: {:#}", reply.body);
        spec.assert_matches(route, &reply);
    }
    // The partial stop and the refusal forwarded as sent are the shapes they claim to be.
    let partial = post(STOP_ALL, PARTIAL_KEY, "partial", "", false).await;
    assert_eq!(partial.body["status"], "partial");
    let refused = post(PLACE, "refusing-key", "refusing", CALL, false).await;
    assert_eq!(
        refused.body,
        json!({"success": false, "error": "Missing phone number", "provider": "refusing"})
    );
}

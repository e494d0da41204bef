//! Keys and scopes (DESIGN §18): config errors naming the field, every route against every
//! scope from the route table, per-key rates, `GET /me`, and keys reloaded under open streams.

use std::time::{Duration, Instant};

use callmux::http::access::{self, Access};
use callmux::scope::Scope;
use serde_json::{json, Value};
use strum::IntoEnumIterator;

use crate::common::*;

/// A key per scope, each holding only that scope, named `only-<scope>`.
fn single_scope_keys(org: &str) -> String {
    Scope::iter()
        .map(|s| {
            format!(
                "[[orgs.{org}.keys]]\nname = \"only-{s}\"\nsha256 = \"{}\"\nscopes = [\"{s}\"]\n",
                sha256_hex(&format!("key-{s}"))
            )
        })
        .collect()
}

fn keyed(org: &str, providers: &[&str], keys: &str) -> String {
    format!("[orgs.{org}]\nproviders = {providers:?}\n{keys}")
}

fn config_error(toml: &str, env: &[(&str, &str)]) -> String {
    match load_config(toml, env) {
        Ok(_) => panic!("accepted:\n{toml}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn each_key_mistake_is_refused_naming_its_field() {
    let agents =
        "[providers.agents]\nkind = \"twilio-media-stream\"\nbase_url = \"http://127.0.0.1:9\"\n";
    let key = |name: &str, rest: &str| format!("[[orgs.acme.keys]]\nname = \"{name}\"\n{rest}\n");
    let digest = |k: &str| format!("sha256 = \"{}\"", sha256_hex(k));
    let cases: Vec<(String, &str, &str)> = vec![
        (
            key("tv", &format!("{}\nscopes = [\"watch\"]", digest("a"))),
            "orgs.acme.keys[0].scopes",
            "`watch`, which is not a scope",
        ),
        (
            key("tv", &format!("{}\nscopes = []", digest("a"))),
            "orgs.acme.keys[0].scopes",
            "is empty",
        ),
        (
            key("tv", &format!("{}\nscopes = [\"read\"]", digest("a")))
                + &key("tv", &format!("{}\nscopes = [\"read\"]", digest("b"))),
            "orgs.acme.keys[1].name",
            "another key of the org already has",
        ),
        (
            key("tv", &format!("{}\nscopes = [\"read\"]", digest("a")))
                + &key("dialer", &format!("{}\nscopes = [\"place\"]", digest("a"))),
            "orgs.acme.keys[1].sha256",
            "the same key as `tv`",
        ),
        (
            key(
                "tv",
                &format!("{}\nenv = \"TV_KEY\"\nscopes = [\"read\"]", digest("a")),
            ),
            "orgs.acme.keys[0]",
            "both ways",
        ),
        (
            key("  ", &format!("{}\nscopes = [\"read\"]", digest("a"))),
            "orgs.acme.keys[0].name",
            "is empty",
        ),
        (
            key(
                "tv",
                &format!(
                    "{}\nscopes = [\"read\"]\nrequests_per_second = 0",
                    digest("a")
                ),
            ),
            "orgs.acme.keys[0].requests_per_second",
            "is 0",
        ),
    ];
    for (keys, field, problem) in cases {
        let toml = format!("[orgs.acme]\nproviders = [\"agents\"]\n{keys}{agents}");
        let e = config_error(&toml, &[("TV_KEY", "tv-secret")]);
        assert!(
            e.contains(field) && e.contains(problem),
            "wanted `{field}` {problem}, got: {e}"
        );
        assert!(!e.contains("tv-secret"), "{e}");
    }
    // Part two's key is `default`, so a key named so is a duplicate.
    let toml = format!(
        "[orgs.acme]\nproviders = [\"agents\"]\napi_key_sha256 = \"{}\"\n{}{agents}",
        sha256_hex("z"),
        key("default", &format!("{}\nscopes = [\"read\"]", digest("a")))
    );
    assert!(config_error(&toml, &[]).contains("named `default`"));
    // caller_scopes are for orgs whose callers bring Bland keys.
    let toml = format!(
        "[orgs.acme]\nproviders = [\"agents\"]\ncaller_scopes = [\"read\"]\n{}{agents}",
        key("tv", &format!("{}\nscopes = [\"read\"]", digest("a")))
    );
    assert!(config_error(&toml, &[]).contains("orgs.acme.caller_scopes"));
}

/// Every documented route and method, from the served `/openapi.json`.
async fn documented_routes(app: &TestApp) -> Vec<(String, String, String)> {
    let doc = app.get("/openapi.json", &[]).await.body;
    let mut routes = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if let Some(id) = op.get("operationId").and_then(Value::as_str) {
                routes.push((path.clone(), method.to_uppercase(), id.to_owned()));
            }
        }
    }
    routes
}

/// What the table says `path` needs; the forwarded `/v1/{path}` is the router's fallback.
fn needs(method: &str, path: &str) -> Access {
    if path == "/v1/{path}" {
        return Access::Key(access::FORWARDED);
    }
    match access::of(method, path) {
        Some((access, _)) => access,
        None => panic!("{path} is served but has no entry in http::access::ROUTES"),
    }
}

#[tokio::test]
async fn every_route_refuses_each_key_without_its_scope_before_asking_upstream() {
    let agents = agent_server(json!([agent_call(
        "c1",
        "+1555",
        "in-progress",
        "outbound"
    )]))
    .await;
    let bland = bland_server("bland-secret", "bland-org", json!([])).await;
    let keys = format!(
        "bland_passthrough = \"bland\"\n{}",
        single_scope_keys("acme")
    );
    let toml = keyed("acme", &["agents", "bland"], &keys)
        + &TestConfig::new()
            .provider(ProviderB::agent("agents", &agents.uri()))
            .provider(ProviderB::bland(
                "bland",
                &bland.uri(),
                "BLAND_KEY",
                "bland-org",
            ))
            .toml();
    let app = spawn_app_with_env(&toml, &[("BLAND_KEY", "bland-secret")]).await;
    let routes = documented_routes(&app).await;
    assert!(routes.len() >= 10, "{routes:?}");

    let ask = |path: &str, method: &str, scope: Scope| {
        let url = app.url(
            &path
                .replace("{call_id}", "c1")
                .replace("{path}", "calls/c1")
                .replace("{provider_id}", "tw"),
        );
        let request = app
            .http
            .request(method.parse().unwrap(), url)
            .header("authorization", format!("key-{scope}"))
            .header("x-bland-org-id", "acme")
            .header("content-type", "application/json")
            .body(r#"{"to": "+15550001111"}"#);
        async move {
            let response = tokio::time::timeout(Duration::from_secs(30), request.send())
                .await
                .expect("callmux answers within 30 s")
                .unwrap();
            let status = response.status().as_u16();
            // A stream's answer is open-ended: its status is all that is needed.
            let body = if status == 403 {
                response.json::<Value>().await.unwrap()
            } else {
                Value::Null
            };
            (status, body)
        }
    };
    let mut refused = 0;
    for (path, method, id) in &routes {
        let Access::Key(needed) = needs(method, path) else {
            continue;
        };
        for scope in Scope::iter().filter(|s| *s != needed) {
            let (status, body) = ask(path, method, scope).await;
            assert_eq!(
                status, 403,
                "{method} {path} ({id}) with only `{scope}`: {body}"
            );
            let text = body.to_string();
            assert!(
                text.contains("FORBIDDEN")
                    && text.contains(&format!("`{needed}`"))
                    && text.contains(&format!("`only-{scope}`")),
                "{method} {path}: {text}"
            );
            refused += 1;
        }
    }
    assert!(refused >= 40, "{refused}");
    assert_eq!(
        hits(&agents).await,
        0,
        "a refused request reached an agent server"
    );
    assert_eq!(hits(&bland).await, 0, "a refused request reached Bland");

    for (path, method, _) in &routes {
        if let Access::Key(needed) = needs(method, path) {
            let (status, _) = ask(path, method, needed).await;
            assert_ne!(
                status, 403,
                "{method} {path} refused its own scope `{needed}`"
            );
        }
    }
}

#[tokio::test]
async fn me_names_the_key_its_scopes_and_the_orgs_routes_default_first_never_the_key() {
    let keys = format!(
        "routes = [\"sales\", \"backup\"]\n\
         [[orgs.acme.keys]]\nname = \"wallboard\"\nsha256 = \"{}\"\nscopes = [\"read\"]\n",
        sha256_hex("wall-secret")
    );
    let route = |id: &str| format!("[routes.{id}]\ntargets = [{{ provider = \"agents\" }}]\n");
    let toml = keyed("acme", &["agents"], &keys)
        + &TestConfig::new()
            .provider(ProviderB::agent("agents", "http://127.0.0.1:9").set("place_calls", true))
            .toml()
        + &route("sales")
        + &route("backup");
    let app = spawn_app(&toml).await;
    let me = app
        .get(
            "/me",
            &[("authorization", "wall-secret"), ("x-bland-org-id", "acme")],
        )
        .await;
    assert_eq!(me.status, 200);
    assert_eq!(
        me.body,
        json!({"org": "acme", "key": "wallboard", "scopes": ["read"], "routes": ["sales", "backup"]})
    );
    crate::openapi::Spec::fetch(&app)
        .await
        .assert_matches("/me", &me);
    let wrong = app
        .get(
            "/me",
            &[("authorization", "nope"), ("x-bland-org-id", "acme")],
        )
        .await;
    assert_eq!(wrong.status, 401, "{:?}", wrong.body);
}

#[tokio::test]
async fn a_key_is_admitted_at_its_rate_and_refused_beyond_it_with_retry_after() {
    let agents = agent_server(json!([])).await;
    let keys = format!(
        "[[orgs.acme.keys]]\nname = \"dialer\"\nsha256 = \"{}\"\nscopes = [\"read\"]\nrequests_per_second = 20\n\
         [[orgs.acme.keys]]\nname = \"free\"\nsha256 = \"{}\"\nscopes = [\"read\"]\n",
        sha256_hex("dialer-secret"),
        sha256_hex("free-secret"),
    );
    let toml = keyed("acme", &["agents"], &keys)
        + &TestConfig::new()
            .provider(ProviderB::agent("agents", &agents.uri()).set("cache_ttl_ms", 60_000))
            .toml();
    let app = spawn_app(&toml).await;
    let started = Instant::now();
    let (mut admitted, mut limited) = (0u32, 0u32);
    while started.elapsed() < Duration::from_secs(2) {
        let r = app.calls("dialer-secret", "acme").await;
        match r.status {
            200 => admitted += 1,
            429 => {
                limited += 1;
                assert_eq!(r.body["errors"][0]["error"], "RATE_LIMITED");
                assert!(r.body.to_string().contains("`dialer`"), "{:?}", r.body);
                let wait: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
                assert!((1..=2).contains(&wait), "{wait}");
            }
            other => panic!("{other}: {:?}", r.body),
        }
    }
    // A burst of one second's worth, then 20 a second.
    let expected = 20.0 + 20.0 * started.elapsed().as_secs_f64();
    let ratio = f64::from(admitted) / expected;
    assert!(
        (0.9..=1.1).contains(&ratio),
        "admitted {admitted}, expected about {expected:.0}"
    );
    assert!(limited > 0);
    // Another key of the org has its own (no) limit.
    assert_eq!(app.calls("free-secret", "acme").await.status, 200);
}

#[tokio::test]
async fn three_processes_on_one_redis_together_admit_a_keys_rate_and_name_no_key_in_redis() {
    three_processes_together_admit(20).await;
}

#[tokio::test]
async fn a_busy_key_on_redis_costs_a_round_trip_a_lease_not_one_a_request() {
    let redis = RedisServer::start().await;
    let agents = agent_server(json!([])).await;
    let toml = limited_on_redis("busy", "busy-secret", 1000, &agents);
    let env = redis.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let app = spawn_app_with_env(&toml, &env).await;
    crate::replicas::state_becomes(&app, "ok").await;
    let scripts_run = || async {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut redis.client().await)
            .await
            .unwrap();
        info.lines()
            .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
            .filter_map(|l| {
                l.split("calls=")
                    .nth(1)?
                    .split(',')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum::<u64>()
    };
    let before = scripts_run().await;
    for _ in 0..200 {
        assert_eq!(app.calls("busy-secret", "acme").await.status, 200);
    }
    let trips = scripts_run().await - before;
    // Leases of 1, 2, 4, 8, then 10 (a hundredth of the rate): about 23 round trips.
    assert!(
        (5..=60).contains(&trips),
        "{trips} scripts run for 200 requests"
    );
}

/// At 200 a second each replica takes the cell in leases of up to two.
#[tokio::test]
async fn three_processes_taking_leases_of_a_keys_rate_together_admit_that_rate() {
    three_processes_together_admit(200).await;
}

/// Org `acme` over one cached agent server, with key `name` (`secret`, scope `read`) limited
/// to `rate` requests a second, its state on Redis.
fn limited_on_redis(name: &str, secret: &str, rate: u32, agents: &wiremock::MockServer) -> String {
    let keys = format!(
        "[[orgs.acme.keys]]\nname = \"{name}\"\nsha256 = \"{}\"\nscopes = [\"read\"]\nrequests_per_second = {rate}\n",
        sha256_hex(secret),
    );
    keyed("acme", &["agents"], &keys)
        + &TestConfig::new()
            .provider(ProviderB::agent("agents", &agents.uri()).set("cache_ttl_ms", 60_000))
            .toml()
        + "\n"
        + &state_toml()
}

async fn three_processes_together_admit(rate: u32) {
    let redis = RedisServer::start().await;
    let agents = agent_server(json!([])).await;
    let toml = limited_on_redis("dialer", "fleet-dialer-secret", rate, &agents);
    let env = redis.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let fleet: Vec<Binary> = (0..3).map(|_| Binary::start(&toml, &env, &[])).collect();
    for b in &fleet {
        crate::replicas::state_becomes(&b.app, "ok").await;
    }
    let started = Instant::now();
    let clients = (0..6).map(|c| {
        let app = &fleet[c % fleet.len()].app;
        async move {
            let (mut admitted, mut limited) = (0u32, 0u32);
            while started.elapsed() < Duration::from_secs(3) {
                let r = app.calls("fleet-dialer-secret", "acme").await;
                match r.status {
                    200 => admitted += 1,
                    429 => {
                        limited += 1;
                        assert_eq!(r.body["errors"][0]["error"], "RATE_LIMITED");
                        assert!(r.headers.contains_key("retry-after"));
                    }
                    other => panic!("{other}: {:?}", r.body),
                }
            }
            (admitted, limited)
        }
    });
    let counts = futures::future::join_all(clients).await;
    let admitted: u32 = counts.iter().map(|c| c.0).sum();
    let limited: u32 = counts.iter().map(|c| c.1).sum();
    // The fleet together: a burst of one second's worth, then the rate, not 3 × that.
    let rate = f64::from(rate);
    let expected = rate + rate * started.elapsed().as_secs_f64();
    let ratio = f64::from(admitted) / expected;
    assert!(
        (0.9..=1.1).contains(&ratio),
        "three processes admitted {admitted}, expected about {expected:.0} ({limited} refused)"
    );
    // The cells are in Redis under names that show neither the key, its digest nor its name.
    let names = redis.keys().await;
    let cells: Vec<&String> = names
        .iter()
        .filter(|k| k.starts_with("callmux:1:rate:"))
        .collect();
    assert_eq!(cells.len(), 1, "{names:?}");
    let digest = sha256_hex("fleet-dialer-secret");
    for name in &names {
        assert!(
            !name.contains("dialer") && !name.contains(&digest[..16]),
            "{name}"
        );
    }
}

#[tokio::test]
async fn a_reload_ends_only_the_streams_of_a_removed_or_changed_key_and_a_new_key_works_at_once() {
    let agent = LiveAgent::start(json!([agent_call("a", "+1555", "ringing", "outbound")])).await;
    let org = unique("keys");
    let toml = |keys: &[(&str, &str, &str)]| {
        let mut raw = String::new();
        for (name, key, scopes) in keys {
            raw.push_str(&format!(
                "[[orgs.{org}.keys]]\nname = \"{name}\"\nsha256 = \"{}\"\nscopes = {scopes}\n",
                sha256_hex(key)
            ));
        }
        keyed(&org, &["agents"], &raw)
            + &TestConfig::new()
                .provider(ProviderB::agent("agents", &agent.url).set("poll_interval_ms", 50))
                .toml()
    };
    let app = FileApp::start(&toml(&[
        ("tv", "tv-secret", "[\"read\"]"),
        ("lobby", "lobby-secret", "[\"read\"]"),
        ("ops", "ops-secret", "[\"read\", \"end\"]"),
    ]))
    .await;
    let mut open = Vec::new();
    for key in ["tv-secret", "lobby-secret", "ops-secret"] {
        let mut s = app
            .app
            .stream("/calls/stream", key, &org, None)
            .await
            .unwrap();
        s.next_of("snapshot").await;
        open.push(s);
    }
    app.reload(&toml(&[
        ("lobby", "lobby-secret", "[\"read\"]"),
        ("ops", "ops-secret", "[\"read\"]"),
        ("kiosk", "kiosk-secret", "[\"read\"]"),
    ]));
    let mut lobby = open.remove(1);
    for (mut s, name, why) in [
        (open.remove(0), "tv", "key removed"),
        (open.remove(0), "ops", "key changed"),
    ] {
        let end = s.next_of("end").await;
        let text = end.data.clone();
        assert!(
            text.contains(why) && text.contains(&format!("`{name}`")),
            "{text}"
        );
        assert!(!text.contains("secret"), "{text}");
    }
    // The unchanged key's stream goes on: it sees the next change; the new key is let in
    // at once, the removed one no longer.
    agent.set(json!([
        agent_call("a", "+1555", "ringing", "outbound"),
        agent_call("b", "+1556", "ringing", "outbound")
    ]));
    let next = lobby.next().await;
    assert_ne!(next.event, "end", "{}", next.data);
    assert_eq!(app.app.calls("kiosk-secret", &org).await.status, 200);
    assert_eq!(app.app.calls("tv-secret", &org).await.status, 401);
}

/// `POST path` with these headers, the answer's status, headers and JSON body.
async fn post(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = app.http.post(app.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("callmux answers");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.json().await.expect("a JSON body");
    Reply {
        status,
        headers,
        body,
    }
}

/// Runs `callmux sign-in-link` against `app` as org `org`, `key` on its stdin.
async fn sign_in_link_command(app: &TestApp, org: &str, key: &str) -> std::process::Output {
    use std::io::Write;
    let (url, org, key) = (app.url(""), org.to_owned(), key.to_owned());
    tokio::task::spawn_blocking(move || {
        let mut child = callmux()
            .args(["sign-in-link", "--url", &url, "--org", &org])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(key.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn the_sign_in_link_command_prints_a_link_whose_token_signs_in_once_and_never_the_key() {
    let app = spawn_app(&link_keys()).await;
    let out = sign_in_link_command(&app, "acme", "wall-secret\n").await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let link = stdout.trim();
    let token = link
        .strip_prefix(&format!("{}/#token=", app.url("").trim_end_matches('/')))
        .unwrap_or_else(|| panic!("not a link to this callmux: {link}"));
    assert!(!stdout.contains("wall-secret"));
    let used = post(&app, "/sign-in", &[("x-callmux-sign-in", token)]).await;
    assert_eq!(used.status, 200, "{:#}", used.body);
    assert_eq!(used.body["authorization"], "wall-secret");
    let again = post(&app, "/sign-in", &[("x-callmux-sign-in", token)]).await;
    assert_eq!(again.status, 401);

    // A wrong key: callmux's own refusal, and no link.
    let out = sign_in_link_command(&app, "acme", "not-a-key").await;
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("401"), "{stderr}");
    assert!(!stderr.contains("not-a-key"), "{stderr}");
}

fn link_keys() -> String {
    keyed(
        "acme",
        &["agents"],
        &format!(
            "[[orgs.acme.keys]]\nname = \"wallboard\"\nsha256 = \"{}\"\nscopes = [\"read\"]\n\
             [[orgs.acme.keys]]\nname = \"ender\"\nsha256 = \"{}\"\nscopes = [\"end\"]\n",
            sha256_hex("wall-secret"),
            sha256_hex("end-secret"),
        ),
    ) + &TestConfig::new()
        .provider(ProviderB::agent("agents", "http://127.0.0.1:9"))
        .toml()
}

#[tokio::test]
async fn a_sign_in_link_carries_a_token_not_the_key_and_signs_in_once() {
    let app = spawn_app(&link_keys()).await;
    let as_wallboard = [("authorization", "wall-secret"), ("x-bland-org-id", "acme")];
    let minted = post(&app, "/me/link", &as_wallboard).await;
    assert_eq!(minted.status, 201, "{:#}", minted.body);
    assert_eq!(minted.headers["cache-control"], "no-store");
    let token = minted.body["token"].as_str().unwrap().to_owned();
    assert_eq!(minted.body["link"], format!("/#token={token}"));
    assert_eq!(minted.body["expires_in_secs"], 300);
    assert_eq!(minted.body["key"], "wallboard");
    assert!(!minted.body.to_string().contains("wall-secret"));
    assert_eq!(token.len(), 64);

    let used = post(&app, "/sign-in", &[("x-callmux-sign-in", &token)]).await;
    assert_eq!(used.status, 200, "{:#}", used.body);
    assert_eq!(
        used.body,
        json!({"org": "acme", "authorization": "wall-secret"})
    );
    assert_eq!(used.headers["cache-control"], "no-store");
    // What it handed back signs in.
    let me = app
        .get(
            "/me",
            &[("authorization", "wall-secret"), ("x-bland-org-id", "acme")],
        )
        .await;
    assert_eq!(me.status, 200, "{:#}", me.body);

    for headers in [
        vec![("x-callmux-sign-in", token.as_str())],
        vec![("x-callmux-sign-in", "0123456789abcdef")],
        vec![],
    ] {
        let again = post(&app, "/sign-in", &headers).await;
        assert_eq!(again.status, 401, "{headers:?}: {:#}", again.body);
        assert_eq!(again.body["errors"][0]["error"], "AUTH_FAILURE");
        assert_eq!(again.headers["www-authenticate"], "Bearer");
    }

    // Minting needs `read`, and a key that proves nothing mints nothing.
    let ender = post(
        &app,
        "/me/link",
        &[("authorization", "end-secret"), ("x-bland-org-id", "acme")],
    )
    .await;
    assert_eq!(ender.status, 403, "{:#}", ender.body);
    assert_eq!(ender.body["errors"][0]["error"], "FORBIDDEN");
    let wrong = post(
        &app,
        "/me/link",
        &[("authorization", "nope"), ("x-bland-org-id", "acme")],
    )
    .await;
    assert_eq!(wrong.status, 401, "{:#}", wrong.body);
}

#[tokio::test]
async fn a_sign_in_link_minted_on_one_replica_is_used_once_on_another_and_redis_holds_no_key() {
    let redis = RedisServer::start().await;
    let toml = format!("{}\n{}", link_keys(), state_toml());
    let env = redis.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let one = spawn_app_with_env(&toml, &env).await;
    let other = spawn_app_with_env(&toml, &env).await;
    for app in [&one, &other] {
        crate::replicas::state_becomes(app, "ok").await;
    }
    let minted = post(
        &one,
        "/me/link",
        &[("authorization", "wall-secret"), ("x-bland-org-id", "acme")],
    )
    .await;
    let token = minted.body["token"].as_str().unwrap().to_owned();
    // Redis holds neither the key nor the token, in names or values.
    let mut client = redis.client().await;
    for name in redis.keys().await {
        let value: Vec<u8> = redis::cmd("DUMP")
            .arg(&name)
            .query_async(&mut client)
            .await
            .unwrap();
        let value = String::from_utf8_lossy(&value);
        for secret in ["wall-secret", token.as_str(), &sha256_hex("wall-secret")] {
            assert!(
                !name.contains(secret) && !value.contains(secret),
                "{name} holds {secret}"
            );
        }
    }
    let used = post(&other, "/sign-in", &[("x-callmux-sign-in", &token)]).await;
    assert_eq!(used.status, 200, "{:#}", used.body);
    assert_eq!(used.body["authorization"], "wall-secret");
    // Spent for the whole fleet, the replica that minted it included.
    let again = post(&one, "/sign-in", &[("x-callmux-sign-in", &token)]).await;
    assert_eq!(again.status, 401, "{:#}", again.body);
}

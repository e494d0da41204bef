//! Every way a configuration can be wrong is refused with the field and the fix.

use crate::common::load_config;
use callmux::config::ConfigError;

const AGENTS: &str = r#"
[providers.agents]
kind = "twilio-media-stream"
base_url = "http://127.0.0.1:9000"
"#;

/// Loads `toml` and returns its error text, which must name `field` and say how to fix it.
fn refused(toml: &str, env: &[(&str, &str)], field: &str, needle: &str) -> String {
    let err = load_config(toml, env).expect_err("config should be refused");
    let text = err.to_string();
    if let ConfigError::Invalid(issues) = &err {
        assert!(
            issues.iter().any(|i| i.field == field && !i.fix.is_empty()),
            "no issue for {field} with a fix in:\n{text}"
        );
    }
    assert!(text.contains(needle), "{needle:?} not in:\n{text}");
    assert!(text.contains("fix:"), "no fix in:\n{text}");
    text
}

fn org(line: &str) -> String {
    format!("[orgs.acme]\n{line}\nproviders = [\"agents\"]\n{AGENTS}")
}

#[test]
fn a_valid_config_loads_with_defaults_filled_in() {
    let config = load_config(
        &org(&format!("api_key_sha256 = \"{}\"", "a".repeat(64))),
        &[],
    )
    .unwrap();
    assert_eq!(config.server.bind.to_string(), "127.0.0.1:8080");
    let agents = config.provider("agents").unwrap();
    assert_eq!(agents.common.http.timeout.as_millis(), 5000);
    assert_eq!(agents.common.http.max_body_bytes, 16 * 1024 * 1024);
}

#[test]
fn an_unknown_kind_is_refused_with_the_kinds_there_are() {
    let toml = format!(
        "[orgs.acme]\napi_key_sha256 = \"{}\"\nproviders = [\"x\"]\n[providers.x]\nkind = \"vonage\"\nbase_url = \"http://127.0.0.1:1\"",
        "a".repeat(64)
    );
    let text = refused(&toml, &[], "providers.x.kind", "unknown kind `vonage`");
    assert!(text.contains("twilio-media-stream, bland"), "{text}");
}

#[test]
fn an_org_naming_a_provider_that_does_not_exist_is_refused() {
    let toml = format!(
        "[orgs.acme]\napi_key_sha256 = \"{}\"\nproviders = [\"agents\", \"blnd\"]\n{AGENTS}",
        "a".repeat(64)
    );
    let text = refused(
        &toml,
        &[],
        "orgs.acme.providers",
        "no provider `blnd` is defined",
    );
    assert!(text.contains("define [providers.blnd]"), "{text}");
}

#[test]
fn a_missing_environment_variable_is_refused_by_name() {
    refused(
        &org("api_key_env = \"ACME_API_KEY\""),
        &[],
        "orgs.acme.api_key_env",
        "ACME_API_KEY is not set",
    );
    refused(
        &org("api_key_env = \"ACME_API_KEY\""),
        &[("ACME_API_KEY", "")],
        "orgs.acme.api_key_env",
        "ACME_API_KEY is empty",
    );
    let bland = format!(
        "[orgs.acme]\napi_key_sha256 = \"{}\"\nproviders = [\"b\"]\n[providers.b]\nkind = \"bland\"\napi_key_env = \"BLAND_API_KEY\"\norg_id = \"o\"",
        "a".repeat(64)
    );
    refused(
        &bland,
        &[],
        "providers.b.api_key_env",
        "BLAND_API_KEY is not set",
    );
}

#[test]
fn a_malformed_url_is_refused() {
    for (url, needle) in [
        ("127.0.0.1:9000", "is not"),
        ("ftp://127.0.0.1/", "not an http or https URL"),
        ("http://127.0.0.1:9000/?x=1", "query"),
        ("not a url", "is not a URL"),
    ] {
        let toml = format!(
            "[orgs.acme]\napi_key_sha256 = \"{}\"\nproviders = [\"agents\"]\n[providers.agents]\nkind = \"twilio-media-stream\"\nbase_url = \"{url}\"",
            "a".repeat(64)
        );
        refused(&toml, &[], "providers.agents.base_url", needle);
    }
}

#[test]
fn a_url_with_a_password_is_refused_without_echoing_it() {
    let toml = format!(
        "[orgs.acme]\napi_key_sha256 = \"{}\"\nproviders = [\"agents\"]\n[providers.agents]\nkind = \"twilio-media-stream\"\nbase_url = \"http://user:hunter2@127.0.0.1:9000\"",
        "a".repeat(64)
    );
    let text = refused(
        &toml,
        &[],
        "providers.agents.base_url",
        "user name or password",
    );
    assert!(!text.contains("hunter2"), "{text}");
}

#[test]
fn a_malformed_digest_is_refused() {
    refused(
        &org("api_key_sha256 = \"abc123\""),
        &[],
        "orgs.acme.api_key_sha256",
        "64 hex digits",
    );
    refused(
        &org(&format!("api_key_sha256 = \"{}\"", "g".repeat(64))),
        &[],
        "orgs.acme.api_key_sha256",
        "not hex",
    );
}

#[test]
fn duplicate_ids_are_refused() {
    // The same table twice is a TOML error, reported with where it is.
    let twice = format!(
        "{}\n{AGENTS}",
        org(&format!("api_key_sha256 = \"{}\"", "a".repeat(64)))
    );
    let err = load_config(&twice, &[]).expect_err("duplicate table refused");
    assert!(
        err.to_string().to_lowercase().contains("duplicate"),
        "{err}"
    );
    assert!(err.to_string().contains("fix:"), "{err}");
    // The same provider twice in one org's list.
    let toml = format!(
        "[orgs.acme]\napi_key_sha256 = \"{}\"\nproviders = [\"agents\", \"agents\"]\n{AGENTS}",
        "a".repeat(64)
    );
    refused(&toml, &[], "orgs.acme.providers", "names `agents` twice");
}

#[test]
fn an_unknown_field_is_refused_with_the_fields_there_are() {
    let toml = format!(
        "[orgs.acme]\napi_key_sha256 = \"{}\"\nproviders = [\"agents\"]\n{AGENTS}timout_ms = 10\n",
        "a".repeat(64)
    );
    let text = refused(
        &toml,
        &[],
        "providers.agents.timout_ms",
        "unknown field `timout_ms`",
    );
    assert!(text.contains("timeout_ms"), "{text}");
}

#[test]
fn an_org_needs_exactly_one_way_to_authenticate() {
    refused(&org(""), &[], "orgs.acme", "no way to authenticate");
    refused(
        &org(&format!(
            "api_key_env = \"K\"\napi_key_sha256 = \"{}\"",
            "a".repeat(64)
        )),
        &[("K", "k")],
        "orgs.acme",
        "more than one",
    );
}

#[test]
fn a_callmux_key_org_may_not_use_a_bland_provider_that_forwards_the_callers_key() {
    let toml = format!(
        "[orgs.acme]\napi_key_sha256 = \"{}\"\nproviders = [\"bland\"]\n[providers.bland]\nkind = \"bland\"",
        "a".repeat(64)
    );
    refused(
        &toml,
        &[],
        "orgs.acme.providers",
        "must never be sent upstream",
    );
}

#[test]
fn a_passthrough_org_must_name_a_forwarding_bland_provider_it_lists() {
    let toml = "[orgs.o]\nauth = \"agents\"\nproviders = [\"agents\"]\n".to_string() + AGENTS;
    refused(
        &toml,
        &[],
        "orgs.o.auth",
        "not a bland provider that forwards",
    );
    let toml = "[orgs.o]\nauth = \"bland\"\nproviders = [\"agents\"]\n[providers.bland]\nkind = \"bland\"\n".to_string() + AGENTS;
    refused(&toml, &[], "orgs.o.auth", "not in the org's providers");
}

#[test]
fn bland_credentials_come_as_a_pair() {
    let toml = format!(
        "[orgs.acme]\napi_key_sha256 = \"{}\"\nproviders = [\"b\"]\n[providers.b]\nkind = \"bland\"\napi_key_env = \"K\"",
        "a".repeat(64)
    );
    refused(
        &toml,
        &[("K", "k")],
        "providers.b.org_id",
        "required when api_key_env is set",
    );
}

#[test]
fn a_zero_timeout_and_a_bad_bind_address_are_refused() {
    let toml = format!(
        "[server]\nbind = \"localhost\"\n{}timeout_ms = 0\n",
        org(&format!("api_key_sha256 = \"{}\"", "a".repeat(64)))
    );
    let text = refused(
        &toml,
        &[],
        "providers.agents.timeout_ms",
        "is 0, outside 1..=",
    );
    assert!(text.contains("server.bind"), "{text}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let toml = "[orgs.a]\nproviders = [\"missing\"]\n[providers.p]\nkind = \"nope\"\n";
    let Err(ConfigError::Invalid(issues)) = load_config(toml, &[]) else {
        panic!("refused")
    };
    assert!(issues.len() >= 3, "{issues:#?}");
}

#[test]
fn no_orgs_at_all_is_refused() {
    refused(AGENTS, &[], "orgs", "no organisation");
}

#[test]
fn config_debug_output_holds_no_secret() {
    let toml = "[orgs.acme]\napi_key_env = \"ACME\"\nproviders = [\"b\"]\n[providers.b]\nkind = \"bland\"\napi_key_env = \"BK\"\norg_id = \"o\"";
    let config = load_config(
        toml,
        &[("ACME", "acme-secret-value"), ("BK", "bland-secret-value")],
    )
    .unwrap();
    let shown = format!("{config:?}\n{}", config.summary());
    assert!(!shown.contains("acme-secret-value"), "{shown}");
    assert!(!shown.contains("bland-secret-value"), "{shown}");
}

/// Found by fuzzing: values this large used to panic at start-up (cache lifetimes beyond
/// what moka accepts, more permits than a semaphore holds, deadlines that overflow).
#[test]
fn absurdly_large_numbers_are_refused_rather_than_crashing_at_start_up() {
    let huge = "40000000000000";
    for (section, field) in [
        ("server", "auth_cache_ttl_ms"),
        ("server", "max_concurrent_requests"),
        ("server", "request_timeout_ms"),
        ("server", "max_header_bytes"),
        ("server", "shutdown_grace_ms"),
        ("server", "stream_keepalive_ms"),
        ("providers.agents", "timeout_ms"),
        ("providers.agents", "connect_timeout_ms"),
        ("providers.agents", "cache_ttl_ms"),
        ("providers.agents", "max_body_bytes"),
        ("providers.agents", "retries"),
        ("providers.agents", "circuit_failures"),
        ("providers.agents", "circuit_cooldown_ms"),
    ] {
        let base = org(&format!("api_key_sha256 = \"{}\"", "a".repeat(64)));
        let toml = if section == "server" {
            format!("[server]\n{field} = {huge}\n{base}")
        } else {
            format!("{base}{field} = {huge}\n")
        };
        refused(&toml, &[], &format!("{section}.{field}"), "outside");
    }
}

/// The fuzzer's own crashing inputs, kept in `fuzz/regressions/app_new/`: there is no
/// `app_new` fuzz target to replay them, so this test does (the test above covers the same
/// fields by construction; these are the very files that crashed).
#[test]
fn every_config_that_once_crashed_start_up_is_now_refused() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/app_new");
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).expect("fuzz/regressions/app_new is readable") {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let toml = std::fs::read_to_string(&path).unwrap();
        let text = load_config(&toml, &[])
            .map(|_| ())
            .expect_err(&format!("{} should be refused", path.display()))
            .to_string();
        assert!(
            text.contains("outside") && text.contains("fix:"),
            "{}: {text}",
            path.display()
        );
        replayed += 1;
    }
    assert!(
        replayed >= 3,
        "only {replayed} regressions found in {dir:?}"
    );
}

#[tokio::test]
async fn the_largest_accepted_numbers_start_and_serve() {
    let toml = format!(
        "[server]\nauth_cache_ttl_ms = 86400000\nmax_concurrent_requests = 1000000\nrequest_timeout_ms = 86400000\n\
         max_header_bytes = 1048576\nshutdown_grace_ms = 86400000\nstream_keepalive_ms = 300000\n{}timeout_ms = 86400000\nconnect_timeout_ms = 86400000\n\
         cache_ttl_ms = 86400000\nmax_body_bytes = 1073741824\nretries = 10\ncircuit_failures = 1000000\ncircuit_cooldown_ms = 86400000\n",
        org(&format!("api_key_sha256 = \"{}\"", crate::common::sha256_hex("k")))
    );
    let app = crate::common::spawn_app(&toml).await;
    assert_eq!(app.get("/healthz", &[]).await.status, 200);
}

#[test]
fn a_key_pasted_where_a_variable_name_belongs_is_refused_without_showing_it() {
    let text = refused(
        &org("api_key_env = \"sk-live-pasted-key-9f8e7d\""),
        &[],
        "orgs.acme.api_key_env",
        "not an environment variable name",
    );
    assert!(!text.contains("sk-live-pasted-key-9f8e7d"), "{text}");
}

#[test]
fn a_url_is_never_echoed_with_its_query_or_user_info_even_when_malformed() {
    for url in [
        "http://127.0.0.1:9000/?api_key=sk-in-query-1234",
        "http://u:sk-in-password-5678@127.0.0.1:99999",
        "ftp://u:sk-in-password-5678@127.0.0.1/",
    ] {
        let toml = format!(
            "[orgs.acme]\napi_key_sha256 = \"{}\"\nproviders = [\"agents\"]\n[providers.agents]\nkind = \"twilio-media-stream\"\nbase_url = \"{url}\"",
            "a".repeat(64)
        );
        let text = load_config(&toml, &[]).unwrap_err().to_string();
        assert!(text.contains("providers.agents.base_url"), "{text}");
        assert!(!text.contains("sk-in-"), "{text}");
    }
}

/// Org `acme` (a callmux key) listing `providers` and forwarding to `passthrough`, beside
/// an agent server `agents` and a Bland provider `own` with a key of its own.
fn forwarding_org(providers: &str, passthrough: &str, more: &str) -> String {
    format!(
        "[orgs.acme]\napi_key_sha256 = \"{}\"\nproviders = [{providers}]\nbland_passthrough = \"{passthrough}\"\n\
         {more}\n[providers.own]\nkind = \"bland\"\napi_key_env = \"BLAND_KEY\"\norg_id = \"bland-org\"\n{AGENTS}",
        "a".repeat(64)
    )
}

const BLAND_KEY: &[(&str, &str)] = &[("BLAND_KEY", "sk-bland-own")];

#[test]
fn bland_passthrough_must_name_a_bland_provider_the_org_lists() {
    let text = refused(
        &forwarding_org("\"own\"", "blnd", ""),
        BLAND_KEY,
        "orgs.acme.bland_passthrough",
        "no provider `blnd` is defined",
    );
    assert!(text.contains("define [providers.blnd]"), "{text}");
    refused(
        &forwarding_org("\"agents\"", "own", ""),
        BLAND_KEY,
        "orgs.acme.bland_passthrough",
        "not in the org's providers",
    );
    let text = refused(
        &forwarding_org("\"agents\", \"own\"", "agents", ""),
        BLAND_KEY,
        "orgs.acme.bland_passthrough",
        "a `twilio-media-stream` provider",
    );
    assert!(text.contains("kind = \"bland\""), "{text}");
}

#[test]
fn forwarding_with_a_key_of_its_own_is_refused_when_another_org_lists_the_provider() {
    let other = format!(
        "[orgs.other]\napi_key_sha256 = \"{}\"\nproviders = [\"own\"]\n",
        "b".repeat(64)
    );
    let text = refused(
        &forwarding_org("\"own\"", "own", &other),
        BLAND_KEY,
        "orgs.acme.bland_passthrough",
        "`other`",
    );
    assert!(text.contains("a key of its own"), "{text}");
    assert!(text.contains("a bland provider of its own"), "{text}");
    assert!(!text.contains("sk-bland-own"), "{text}");
}

#[test]
fn an_org_forwards_to_its_bland_passthrough_or_else_its_bland_authority_or_not_at_all() {
    let config = load_config(&forwarding_org("\"agents\", \"own\"", "own", ""), BLAND_KEY).unwrap();
    assert_eq!(
        config.org("acme").unwrap().passthrough.as_deref(),
        Some("own")
    );
    assert!(config
        .summary()
        .contains("forwards other Bland routes to `own`"));

    let toml = "[orgs.o]\nauth = \"bland\"\nproviders = [\"bland\", \"agents\"]\n[providers.bland]\nkind = \"bland\"\n".to_string() + AGENTS;
    let config = load_config(&toml, &[]).unwrap();
    assert_eq!(
        config.org("o").unwrap().passthrough.as_deref(),
        Some("bland")
    );

    let config = load_config(
        &org(&format!("api_key_sha256 = \"{}\"", "a".repeat(64))),
        &[],
    )
    .unwrap();
    assert_eq!(config.org("acme").unwrap().passthrough, None);
}

#[test]
fn a_bland_provider_without_a_key_may_be_shared_by_orgs_that_forward_through_it() {
    // Each caller's own key goes upstream, so no org gets another's account.
    let toml =
        "[orgs.o]\nauth = \"bland\"\nproviders = [\"bland\"]\nbland_passthrough = \"bland\"\n\
                [orgs.p]\nauth = \"bland\"\nproviders = [\"bland\"]\n\
                [providers.bland]\nkind = \"bland\"\n";
    let config = load_config(toml, &[]).unwrap();
    assert_eq!(
        config.org("o").unwrap().passthrough.as_deref(),
        Some("bland")
    );
    assert_eq!(
        config.org("p").unwrap().passthrough.as_deref(),
        Some("bland")
    );
}

#[test]
fn placing_settings_that_cannot_work_are_refused_with_their_fix() {
    let key = format!("api_key_sha256 = \"{}\"", "a".repeat(64));
    let with = |lines: &str| format!("{}{lines}\n", org(&key));
    refused(
        &with("max_active_calls = 5"),
        &[],
        "providers.agents.max_active_calls",
        "place_calls is not",
    );
    refused(
        &with("place_calls = true\nmax_active_calls = 0"),
        &[],
        "providers.agents.max_active_calls",
        "outside 1..=1000000",
    );
    let config = load_config(&with("place_calls = true\nmax_active_calls = 10"), &[]).unwrap();
    let summary = config.summary();
    assert!(
        summary.contains("places calls, at most 10 active"),
        "{summary}"
    );
}

//! The `static` kind: calls from a JSON file in either list shape, read again when the file
//! changes, bad files refused at start or reported as that provider's failure.

use std::sync::Arc;
use std::time::Duration;

use callmux::provider::{EndError, RequestContext};
use serde_json::json;

use crate::common::*;

fn write(dir: &tempfile::TempDir, name: &str, body: &serde_json::Value) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, body.to_string()).unwrap();
    path.display().to_string()
}

fn static_org(key: &str, files: &[(&str, &str)]) -> String {
    let mut toml = format!(
        "[orgs.acme]\napi_key_sha256 = \"{}\"\nproviders = [{}]\n",
        sha256_hex(key),
        files
            .iter()
            .map(|(id, _)| format!("\"{id}\""))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (id, path) in files {
        toml += &format!("[providers.{id}]\nkind = \"static\"\npath = \"{path}\"\n");
    }
    toml
}

#[tokio::test]
async fn a_changed_file_is_read_again_on_the_next_request() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "calls.json",
        &json!({"calls": [agent_call("one", "+1", "ringing", "outbound")]}),
    );
    let app = spawn_app(&static_org("k", &[("f", &path)])).await;
    assert_eq!(
        app.calls("k", "acme").await.body["calls"][0]["call_id"],
        "one"
    );
    // A different length, so the change shows even where modification times are coarse.
    write(
        &dir,
        "calls.json",
        &json!({"calls": [agent_call("two-longer", "+1", "in-progress", "outbound")]}),
    );
    let mut seen = serde_json::Value::Null;
    for _ in 0..50 {
        seen = app.calls("k", "acme").await.body["calls"][0]["call_id"].clone();
        if seen == "two-longer" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen, "two-longer");
}

#[tokio::test]
async fn a_file_that_goes_bad_is_that_providers_failure_and_the_others_are_still_served() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(
        &dir,
        "good.json",
        &json!({"calls": [agent_call("g", "+1", "ringing", "outbound")]}),
    );
    let bad = write(&dir, "bad.json", &json!({"calls": []}));
    let app = spawn_app(&static_org("k", &[("good", &good), ("bad", &bad)])).await;
    assert_eq!(app.calls("k", "acme").await.body["count"], 1);
    std::fs::write(dir.path().join("bad.json"), "{ not json").unwrap();
    let r = app.calls("k", "acme").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["count"], 1);
    assert_eq!(r.body["errors"][0]["provider"], "bad");
    assert_eq!(r.body["errors"][0]["error"], "UPSTREAM_BAD_RESPONSE");
    std::fs::remove_file(dir.path().join("bad.json")).unwrap();
    let r = app.calls("k", "acme").await;
    assert_eq!(r.body["errors"][0]["error"], "UPSTREAM_UNREACHABLE");
    let message = r.body["errors"][0]["message"].as_str().unwrap();
    assert!(
        !message.contains(dir.path().to_str().unwrap()),
        "the path leaked: {message}"
    );
}

#[test]
fn a_static_provider_without_a_readable_file_is_refused_naming_the_field() {
    for (settings, problem) in [
        ("", "is required for kind static"),
        (
            "path = \"/nonexistent/calls.json\"",
            "is not a file callmux can read",
        ),
        (
            "path = \"x.json\"\nbase_url = \"http://127.0.0.1:1\"",
            "unknown field `base_url`",
        ),
    ] {
        let toml = format!(
            "[orgs.o]\napi_key_sha256 = \"{}\"\nproviders = [\"s\"]\n[providers.s]\nkind = \"static\"\n{settings}",
            "a".repeat(64)
        );
        let err = load_config(&toml, &[]).unwrap_err().to_string();
        assert!(err.contains("providers.s"), "{err}");
        assert!(err.contains(problem), "{settings}: {err}");
    }
}

#[tokio::test]
async fn ending_a_static_call_records_the_end_and_drops_it_from_the_list() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "calls.json",
        &json!({"calls": [
            agent_call("keep", "+1", "ringing", "outbound"),
            agent_call("end-me", "+2", "in-progress", "outbound"),
        ]}),
    );
    let config = load_config(&static_org("k", &[("s", &path)]), &[]).unwrap();
    let spec = config.provider("s").unwrap();
    let backend = spec.kind.build(Arc::from("s"), &spec.common).unwrap();
    let end = backend.end.expect("static providers end calls");
    let ctx = RequestContext {
        org_id: Arc::from("acme"),
        forwarded: None,
    };
    assert_eq!(end.end_call(&ctx, "nope").await, Err(EndError::NotFound));
    end.end_call(&ctx, "end-me").await.unwrap();
    let listed = backend.list.active_calls(&ctx).await.unwrap();
    let ids: Vec<&str> = listed.iter().map(|c| c.call_id.as_str()).collect();
    assert_eq!(ids, ["keep"]);
    assert_eq!(end.end_call(&ctx, "end-me").await, Err(EndError::NotFound));
}

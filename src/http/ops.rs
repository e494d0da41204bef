//! Endpoints for operators: liveness and readiness (`/metrics` has its rule in
//! `metrics_access`). No auth; no secrets and no call data in either.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use super::{json, Edge};

/// Liveness: the process is up and serving HTTP.
pub async fn healthz() -> Response {
    json(StatusCode::OK, r#"{"status":"ok"}"#)
}

/// Readiness: which configuration is live, and how each provider's last upstream ask went.
pub async fn readyz(State(edge): State<Arc<Edge>>) -> Response {
    let loaded = edge.live.current();
    let now = SystemTime::now();
    let age_ms = |t: SystemTime| now.duration_since(t).unwrap_or_default().as_millis() as u64;
    let providers: Vec<_> = loaded
        .service
        .provider_outcomes()
        .map(|(id, kind, outcome)| match outcome {
            Some(o) => json!({
                "id": id, "kind": kind, "last_outcome": o.result,
                "age_ms": age_ms(o.at), "latency_ms": o.latency.as_millis() as u64,
            }),
            None => json!({"id": id, "kind": kind, "last_outcome": null}),
        })
        .collect();
    let body = json!({
        "status": "ready",
        "config": {
            "version": loaded.version,
            "file_sha256": loaded.file_sha256,
            "loaded_at_unix_ms": loaded.loaded_at.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64,
            "age_ms": age_ms(loaded.loaded_at),
        },
        "providers": providers,
        // Never a reason to take a replica out of service: it serves on its own without Redis.
        "state": loaded.service.store().health(),
    });
    json(StatusCode::OK, body.to_string())
}

//! `GET /webhooks`: the caller's org's webhook endpoints and how their deliveries stand, in
//! callmux's own envelope; never a secret.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

pub use super::paths::WEBHOOKS_ROUTE;
use super::{json, presented, refusal, Edge};
use crate::service::auth::{self, Identity};
use crate::service::events::EndpointView;
use crate::service::ListError;
use crate::wire::Shape;

/// The org's endpoints with their pending count, last success and last failure. An org
/// whose callers bring Bland keys proves the key as a list would.
pub async fn list(State(edge): State<Arc<Edge>>, headers: HeaderMap) -> Response {
    let loaded = edge.live.current();
    let p = match presented(&headers) {
        Ok(p) => p,
        Err(e) => return refusal(Shape::Own, ListError::Auth(e)).0,
    };
    let org = match auth::identify(loaded.service.config(), &p) {
        Ok(Identity::Verified(org, _)) => org.id.clone(),
        Ok(Identity::ViaUpstream(org, ..)) => {
            let id = org.id.clone();
            if let Err(e) = loaded.service.list(&p).await {
                return refusal(Shape::Own, e).0;
            }
            id
        }
        Err(e) => return refusal(Shape::Own, ListError::Auth(e)).0,
    };
    let endpoints: Vec<Value> = edge
        .live
        .outboxes()
        .of(&org)
        .iter()
        .map(|e| shown(&e.view()))
        .collect();
    let body = json!({"webhooks": endpoints, "count": endpoints.len()});
    json(StatusCode::OK, body.to_string())
}

fn shown(v: &EndpointView) -> Value {
    json!({
        "name": v.name,
        "url": v.url,
        "events": v.events,
        "pending": v.pending,
        "last_success": v.last_success.map(iso),
        "last_failure": v.last_failure.as_ref().map(|(at, reason)| json!({"at": iso(*at), "reason": reason})),
    })
}

fn iso(t: SystemTime) -> Option<String> {
    let ms = t.duration_since(UNIX_EPOCH).ok()?.as_millis() as u64;
    crate::call::time::to_iso8601(ms)
}

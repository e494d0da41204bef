//! `GET /capacity`: the org's capacity in callmux's own shape, authenticated as every list
//! and refused in the `GET /calls` envelope.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

pub use super::paths::CAPACITY_ROUTE;
use super::{json, presented, refusal, Edge};
use crate::service::ListError;
use crate::wire::Shape;

pub async fn capacity(State(edge): State<Arc<Edge>>, headers: HeaderMap) -> Response {
    let loaded = edge.live.current();
    let answer = match presented(&headers) {
        Ok(p) => loaded.service.capacity(&p).await,
        Err(e) => Err(e),
    };
    match answer {
        Ok(capacity) => match serde_json::to_vec(&capacity) {
            Ok(body) => json(StatusCode::OK, body),
            // Plain numbers and strings: writing them cannot fail.
            Err(_) => json(StatusCode::INTERNAL_SERVER_ERROR, Vec::new()),
        },
        Err(e) => refusal(Shape::Own, ListError::Auth(e)).0,
    }
}

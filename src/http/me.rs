//! `GET /me`: the caller's org, key name, scopes and the org's routes in callmux's own shape,
//! so the dashboard offers only what the key may do.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;

use super::gate::Caller;
pub use super::paths::ME_ROUTE as ROUTE;
use super::{json, refusal, Edge};
use crate::service::ListError;
use crate::wire::Shape;

#[derive(Serialize)]
struct Me<'a> {
    org: &'a str,
    key: &'a str,
    scopes: Vec<&'static str>,
    routes: &'a [String],
}

pub async fn me(State(edge): State<Arc<Edge>>, Caller(caller): Caller) -> Response {
    let loaded = edge.live.current();
    let proved = match caller {
        Ok(p) => loaded.service.whoami(&p).await,
        Err(e) => Err(e),
    };
    match proved {
        Ok(c) => json(
            StatusCode::OK,
            serde_json::to_string(&Me {
                org: &c.org,
                key: &c.key,
                scopes: c.scopes.names(),
                routes: &c.routes,
            })
            .expect("strings serialise"),
        ),
        Err(e) => refusal(Shape::Own, ListError::Auth(e)).0,
    }
}

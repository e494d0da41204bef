//! Who may read `/metrics`, which names every org and provider: on its own listener
//! (`[server] metrics_bind`) anyone who reaches it, behind a bearer token from the environment
//! (`metrics_token_env`) whoever holds it, and otherwise only a peer on loopback that no
//! proxy forwarded, so the API listener does not hand it to the internet by default.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Extension;
use axum::Router;

use super::{challenge, json};
use crate::config::ServerConfig;
use crate::error_code::ErrorCode;
use crate::keys::KeyDigest;
use crate::telemetry::Telemetry;
use crate::wire::{self, ErrorItem};

/// Headers a reverse proxy adds: a request carrying one came from further away than its
/// loopback peer.
const FORWARDED: [&str; 3] = ["forwarded", "x-forwarded-for", "x-real-ip"];

/// Which listener a `/metrics` is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listener {
    Api,
    Own,
}

/// `/metrics` on one listener, with the rule it is served under.
#[derive(Clone)]
pub struct Metrics {
    telemetry: Arc<Telemetry>,
    listener: Listener,
    separate: bool,
    token: Option<KeyDigest>,
}

impl Metrics {
    /// `/metrics` as the API listener serves it.
    pub fn on_api(server: &ServerConfig, telemetry: Arc<Telemetry>) -> Self {
        Self::new(server, telemetry, Listener::Api)
    }

    fn new(server: &ServerConfig, telemetry: Arc<Telemetry>, listener: Listener) -> Self {
        Self {
            telemetry,
            listener,
            separate: server.metrics_bind.is_some(),
            token: server.metrics_token.as_ref().map(|t| t.digest.clone()),
        }
    }

    /// Why this request may not read the metrics, if it may not.
    fn refusal(
        &self,
        peer: Option<SocketAddr>,
        headers: &HeaderMap,
    ) -> Option<(StatusCode, ErrorCode, &'static str)> {
        if self.listener == Listener::Api && self.separate {
            return Some((
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                "/metrics is served on its own listener ([server] metrics_bind), not on this one",
            ));
        }
        if let Some(token) = &self.token {
            let given = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(|t| KeyDigest::of_bytes(t.trim().as_bytes()));
            return match given {
                Some(given) if given.matches(token) => None,
                _ => Some((
                    StatusCode::UNAUTHORIZED,
                    ErrorCode::AuthFailure,
                    "/metrics needs `authorization: Bearer <token>`, the token held by the \
                     variable [server] metrics_token_env names",
                )),
            };
        }
        if self.listener == Listener::Own {
            return None;
        }
        let near = peer.is_some_and(|p| p.ip().is_loopback())
            && FORWARDED.iter().all(|h| !headers.contains_key(*h));
        (!near).then_some((
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "/metrics on the API listener answers only this machine, unproxied; to scrape it \
             from elsewhere set [server] metrics_bind (a listener of its own) or \
             metrics_token_env (a bearer token)",
        ))
    }
}

/// Prometheus text exposition, to whoever may read it.
pub async fn metrics(
    State(metrics): State<Metrics>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
) -> Response {
    if let Some((status, code, message)) = metrics.refusal(peer.map(|c| c.0 .0), &headers) {
        let item = ErrorItem {
            provider: None,
            error: code,
            message,
        };
        let mut response = json(status, wire::bland::write_error(&[item]));
        challenge(&mut response);
        return response;
    }
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        metrics.telemetry.render(),
    )
        .into_response()
}

/// The router of `metrics_bind`'s own listener: `/metrics` and nothing else.
pub fn own_listener(server: &ServerConfig, telemetry: Arc<Telemetry>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(Metrics::new(server, telemetry, Listener::Own))
}

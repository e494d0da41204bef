//! Bland's other routes (DESIGN §10): a `/v1/...` request callmux does not serve itself is
//! forwarded, for an org that forwards, to its Bland provider and Bland's answer streamed
//! back as it arrives; for other orgs, and any other path, callmux's 404.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};

use super::bounds::Admitted;
use super::envelope::Envelope;
use super::{json, presented, Edge};
use crate::error_code::ErrorCode;
use crate::provider::bland::path_problem;
use crate::provider::{Outgoing, ProviderError};
use crate::service::auth::AuthError;
use crate::service::passthrough::{Passthrough, Route};
use crate::service::reload::Loaded;

/// The label forwarded requests are counted under in `callmux_requests_total`.
pub const ROUTE: &str = "/v1/{*path}";

/// The router's fallback: every request no route matched.
pub async fn fallback(State(edge): State<Arc<Edge>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    // This request keeps this configuration to the end, whatever reloads meanwhile.
    let loaded = edge.live.current();
    // Forwarding is off unless configured: where no org forwards, nothing changes.
    let forwarding = loaded
        .service
        .config()
        .orgs
        .iter()
        .any(|o| o.passthrough.is_some());
    if !forwarding || !parts.uri.path().starts_with("/v1/") {
        return super::not_found(State(edge), parts.method, parts.uri).await;
    }
    if let Some(refused) = super::methods::not_forwarded(&parts.method, parts.uri.path()) {
        return refused;
    }
    let started = Instant::now();
    let answer = answer(&edge, &loaded, &parts, body).await;
    let status = answer.response.status().as_u16();
    let provider = answer.provider.as_deref().unwrap_or("");
    // No query (it may hold data) and no header: neither is the log's business.
    tracing::info!(
        org = answer.org.as_deref().unwrap_or(""),
        provider,
        method = %parts.method,
        path = %parts.uri.path(),
        status,
        outcome = answer.outcome,
        "bland passthrough"
    );
    edge.live
        .telemetry()
        .counter(
            "callmux_passthrough_requests_total",
            &[("provider", provider), ("outcome", answer.outcome)],
        )
        .increment(1);
    if answer.outcome != "not_forwarded" {
        edge.requests.record(Some(ROUTE), status, started);
    }
    answer.response
}

/// What became of one request, for its log line and its count.
struct Answer {
    response: Response,
    org: Option<Arc<str>>,
    provider: Option<Arc<str>>,
    outcome: &'static str,
}

impl Answer {
    fn refused(status: StatusCode, code: ErrorCode, message: &str, outcome: &'static str) -> Self {
        Self {
            response: json(status, Envelope::Bland.error(code, message, None)),
            org: None,
            provider: None,
            outcome,
        }
    }

    fn auth(e: &AuthError) -> Self {
        let status = StatusCode::from_u16(e.status()).expect("auth statuses are valid");
        let mut answer = Self::refused(status, e.code(), &e.to_string(), "auth_failed");
        super::challenge(&mut answer.response);
        answer
    }

    fn on(mut self, route: &Route) -> Self {
        self.org = Some(route.org.clone());
        self.provider = Some(route.provider.clone());
        self
    }
}

async fn answer(edge: &Arc<Edge>, loaded: &Loaded, parts: &Parts, body: Body) -> Answer {
    // Checked before anything else, so a path that could reach another route goes nowhere,
    // not even to Bland to check a key.
    if let Some(problem) = path_problem(parts.uri.path()) {
        let message = format!(
            "callmux forwards no such path: {problem}; write each segment as it is, with `/` \
             only between segments"
        );
        return Answer::refused(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidPath,
            &message,
            "invalid_path",
        );
    }
    let presented = match presented(&parts.headers) {
        Ok(p) => p,
        Err(e) => return Answer::auth(&e),
    };
    // The scope and the key's rates, before Bland is asked anything (even about the key).
    if let Err(e) = super::gate::check(
        edge,
        &presented,
        super::access::FORWARDED,
        super::gate::peer_of(&parts.extensions),
    )
    .await
    {
        return Answer {
            response: super::gate::refused(super::access::Reply::Bland, &e),
            org: None,
            provider: None,
            outcome: match e {
                crate::service::auth::AuthError::RateLimited { .. }
                | crate::service::auth::AuthError::TooManyUnverified { .. } => "rate_limited",
                _ => "forbidden",
            },
        };
    }
    let route = match loaded.service.passthrough(&presented).await {
        Ok(Passthrough::Forward(route)) => route,
        Ok(Passthrough::NotForwarded { org }) => {
            return Answer {
                response: super::not_found(
                    State(edge.clone()),
                    parts.method.clone(),
                    parts.uri.clone(),
                )
                .await,
                org: Some(org),
                provider: None,
                outcome: "not_forwarded",
            }
        }
        Err(e) => return Answer::auth(&e),
    };
    let cap = loaded.service.config().server.forward_max_request_bytes;
    let body = match read_body(parts, body, cap).await {
        Ok(body) => body,
        Err(refused) => return refused.on(&route),
    };
    let outgoing = Outgoing {
        method: parts.method.clone(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers.clone(),
        body,
        not_after: parts.extensions.get::<Admitted>().map(|a| a.deadline),
    };
    match route.forward.forward(&route.ctx, outgoing).await {
        Ok(streamed) => {
            // The answer's place among the requests in flight is held until its body is
            // done, not only until its head is sent.
            let place = parts.extensions.get::<Admitted>().map(|a| a.place.clone());
            let provider = route.provider.clone();
            let body = streamed
                .body
                .inspect_err(move |e| {
                    tracing::warn!(provider = %provider, error = %e, "forwarded answer cut off");
                })
                .map(move |piece| {
                    let _held = &place;
                    piece
                });
            let mut response = Response::new(Body::from_stream(body));
            *response.status_mut() = streamed.status;
            *response.headers_mut() = streamed.headers;
            Answer {
                response,
                org: None,
                provider: None,
                outcome: "forwarded",
            }
            .on(&route)
        }
        Err(e) => {
            let (status, outcome) = match e {
                ProviderError::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
                _ => (StatusCode::BAD_GATEWAY, "failed"),
            };
            let message = format!("provider `{}` {e}", route.provider);
            Answer {
                response: json(
                    status,
                    Envelope::Bland.error(e.code(), &message, Some(&route.provider)),
                ),
                org: None,
                provider: None,
                outcome,
            }
            .on(&route)
        }
    }
}

/// The request's body, whole, if it is within `cap` bytes; `None` for a request that has
/// none (no `content-length` or `transfer-encoding`).
async fn read_body(parts: &Parts, body: Body, cap: usize) -> Result<Option<Bytes>, Answer> {
    let too_large = || {
        let message = format!(
            "the request's body is over the {cap}-byte limit on forwarded bodies \
             ([server] forward_max_request_bytes); send a smaller body"
        );
        Answer::refused(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::BodyTooLarge,
            &message,
            "body_too_large",
        )
    };
    let declared = parts.headers.get(header::CONTENT_LENGTH);
    if declared
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > cap as u64)
    {
        return Err(too_large());
    }
    if declared.is_none() && !parts.headers.contains_key(header::TRANSFER_ENCODING) {
        return Ok(None);
    }
    let mut stream = body.into_data_stream();
    let mut whole = BytesMut::new();
    while let Some(piece) = stream.next().await {
        let piece = piece.map_err(|_| {
            Answer::refused(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidBody,
                "the request's body broke off before its end; send it again",
                "invalid_body",
            )
        })?;
        if whole.len() + piece.len() > cap {
            return Err(too_large());
        }
        whole.extend_from_slice(&piece);
    }
    Ok(Some(whole.freeze()))
}

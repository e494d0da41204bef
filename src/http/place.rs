//! Placing on routes at the edge: `POST /calls` in callmux's own shape (201 with the call
//! and its `attempts`, refusals as `{"errors": [...]}`), and `POST /api/call` for an org with
//! routes, in the agent servers' envelope. `Idempotency-Key` in, `idempotent-replayed` out.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use serde::Serialize;

use super::envelope::{to_json, Envelope};
use super::gate::Caller;
use super::{challenge, json, Edge};
use crate::call::CallStatus;
use crate::error_code::ErrorCode;
use crate::provider::kind::Move;
use crate::service::auth::Presented;
use crate::service::control::ControlError;
use crate::service::place::MAX_PLACE_BODY_BYTES;
use crate::service::route::idempotency::Kept;
use crate::service::route::{Answered, Asked, Attempt, RoutePlaced};
use crate::service::Service;

pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
pub const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// `POST /calls`.
pub async fn place(
    State(edge): State<Arc<Edge>>,
    Caller(caller): Caller,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let answered = match caller {
        Err(e) => Err(ControlError::Auth(e)),
        Ok(p) => on_route(edge, Asked::Own, p, headers, body).await,
    };
    respond(Asked::Own, answered)
}

/// `POST /api/call` for an org with routes: its default route, in the agent envelope.
pub async fn place_agent(
    edge: Arc<Edge>,
    presented: Presented,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let answered = on_route(edge, Asked::Agent, presented, headers, body).await;
    respond(Asked::Agent, answered)
}

/// Places on a task of its own: a client that goes away mid-placement cancels nothing, so
/// the place held, the idempotency key and the audit line all learn what became of the call.
async fn on_route(
    edge: Arc<Edge>,
    asked: Asked,
    presented: Presented,
    headers: HeaderMap,
    body: Body,
) -> Result<Answered, ControlError> {
    let placing = tokio::spawn(async move {
        let loaded = edge.live.current();
        let service = &loaded.service;
        // Read only once the service has identified the caller.
        let body = async {
            axum::body::to_bytes(body, MAX_PLACE_BODY_BYTES)
                .await
                .map_err(|_| {
                    ControlError::InvalidBody(format!(
                        "the body is over {MAX_PLACE_BODY_BYTES} bytes, or was cut off; send \
                         {{\"to\": \"+14155550123\"}} with at most a route, variables and \
                         metadata"
                    ))
                })
        };
        let key = headers.get(&IDEMPOTENCY_KEY).map(HeaderValue::as_bytes);
        let answered = service
            .place_on_route(asked, &presented, key, body, |result| render(asked, result))
            .await;
        if let Ok(Answered {
            placed: Some(placed),
            ..
        }) = &answered
        {
            announce(&edge, service, placed);
        }
        answered
    });
    placing
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

/// A call just placed shows at once in every list shape, `/capacity` and every stream, here
/// and on every replica, as a started push would (until its provider's next answer).
fn announce(edge: &Edge, service: &Service, placed: &RoutePlaced) {
    let moved = Move {
        call_id: placed.call_id.clone(),
        status: CallStatus::Queued,
        started: Some(placed.call()),
    };
    edge.live.hub().push(&placed.provider, &moved);
    if let Some(redis) = service.store().redis() {
        crate::service::live::fleet::share(redis, &placed.provider, &moved);
    }
}

/// The answer a placement's outcome gets, as the client sees it (and a kept one is sent
/// again): 201 with the call in callmux's shape; 200 `{"success": true, ...}` in the agent
/// servers'; a refusal in the route's envelope.
fn render(asked: Asked, result: &Result<RoutePlaced, ControlError>) -> Kept {
    match (result, asked) {
        (Ok(placed), Asked::Own) => Kept {
            status: 201,
            body: Bytes::from(to_json(placed)),
        },
        (Ok(placed), Asked::Agent) => Kept {
            status: 200,
            body: Bytes::from(to_json(&AgentPlaced {
                success: true,
                placed,
            })),
        },
        (Err(e), asked) => Kept {
            status: e.status(),
            body: Bytes::from(refusal(asked, e)),
        },
    }
}

#[derive(Serialize)]
struct AgentPlaced<'a> {
    success: bool,
    #[serde(flatten)]
    placed: &'a RoutePlaced,
}

#[derive(Serialize)]
struct OwnRefused<'a> {
    errors: [OwnError<'a>; 1],
    #[serde(skip_serializing_if = "<[Attempt]>::is_empty")]
    attempts: &'a [Attempt],
}

#[derive(Serialize)]
struct OwnError<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    provider: Option<&'a str>,
    error: ErrorCode,
    message: &'a str,
}

fn refusal(asked: Asked, e: &ControlError) -> String {
    let message = e.to_string();
    let provider = e.provider().map(|p| &**p);
    match asked {
        Asked::Own => to_json(&OwnRefused {
            errors: [OwnError {
                provider,
                error: e.code(),
                message: &message,
            }],
            attempts: e.attempts(),
        }),
        Asked::Agent => Envelope::Agent.error(e.code(), &message, provider),
    }
}

fn respond(asked: Asked, answered: Result<Answered, ControlError>) -> Response {
    match answered {
        Ok(Answered { kept, replayed, .. }) => {
            let status = StatusCode::from_u16(kept.status).unwrap_or(StatusCode::OK);
            let mut response = json(status, kept.body);
            let replayed = if replayed { "true" } else { "false" };
            response
                .headers_mut()
                .insert(REPLAYED, HeaderValue::from_static(replayed));
            response
        }
        Err(e) => {
            let status = StatusCode::from_u16(e.status()).expect("control statuses are valid");
            let mut response = json(status, refusal(asked, &e));
            challenge(&mut response);
            if let Some(secs) = e.retry_after() {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            response
        }
    }
}

//! The call-control routes: `POST /api/calls/{call_id}/end` and `POST /api/call` in the agent
//! server's envelope, `POST /v1/calls/{call_id}/stop` and `POST /v1/calls/active/stop` in
//! Bland's, every answer (auth failures included) in the route's own envelope.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use serde::Serialize;

use super::envelope::{to_json, Envelope};
use super::gate::Caller;
pub use super::paths::{END_ROUTE, PLACE_ROUTE, STOP_ALL_ROUTE, STOP_ROUTE};
use super::{challenge, json, Edge};
use crate::service::control::ControlError;
use crate::service::place::MAX_PLACE_BODY_BYTES;
use crate::wire::ErrorItem;

#[derive(Serialize)]
struct BlandStoppedAll<'a> {
    status: &'a str,
    message: &'a str,
    num_calls: usize,
    errors: Option<&'a [ErrorItem<'a>]>,
}

pub async fn end(
    envelope: Envelope,
    State(edge): State<Arc<Edge>>,
    call_id: Result<Path<String>, PathRejection>,
    Caller(caller): Caller,
) -> Response {
    let loaded = edge.live.current();
    let result = match caller {
        Err(e) => Err(ControlError::Auth(e)),
        // An id that is not UTF-8 once decoded is no call's id.
        Ok(p) => {
            let id = call_id
                .map(|Path(id)| id)
                .unwrap_or_else(|_| "\0".to_owned());
            loaded
                .service
                .end_call_on(envelope.route(), &p, &id)
                .await
                .map(|ended| (id, ended))
        }
    };
    match result {
        Ok((id, ended)) => json(StatusCode::OK, envelope.ended(&id, &ended.provider)),
        Err(e) => failed(envelope, &e),
    }
}

/// `POST /v1/calls/active/stop`: every active call of the org, on every provider.
pub async fn stop_all(State(edge): State<Arc<Edge>>, Caller(caller): Caller) -> Response {
    let loaded = edge.live.current();
    let stopped = match caller {
        Err(e) => Err(ControlError::Auth(e)),
        Ok(p) => loaded.service.stop_all(&p).await,
    };
    let stopped = match stopped {
        Ok(stopped) => stopped,
        Err(e) => return failed(Envelope::Bland, &e),
    };
    let errors: Vec<ErrorItem<'_>> = stopped
        .failures
        .iter()
        .map(|f| ErrorItem {
            provider: Some(&f.provider),
            error: f.code,
            message: &f.message,
        })
        .collect();
    let n = stopped.ended;
    let calls = if n == 1 { "call" } else { "calls" };
    let (status, word, message) = match (errors.is_empty(), stopped.every_provider_failed) {
        (true, _) => (
            StatusCode::OK,
            "success",
            format!("Stopped {n} active {calls}."),
        ),
        (false, false) => (
            StatusCode::OK,
            "partial",
            format!("Stopped {n} active {calls}; some providers failed, see errors."),
        ),
        (false, true) => (
            StatusCode::BAD_GATEWAY,
            "error",
            "No provider of this organisation could stop its calls; see errors.".to_owned(),
        ),
    };
    let body = to_json(&BlandStoppedAll {
        status: word,
        message: &message,
        num_calls: n,
        errors: (!errors.is_empty()).then_some(&errors),
    });
    json(status, body)
}

/// `POST /api/call`: the chosen agent server's own answer, `"provider"` added; for an org
/// with routes, a placement on its default route.
pub async fn place(
    State(edge): State<Arc<Edge>>,
    Caller(caller): Caller,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let loaded = edge.live.current();
    let result = match caller {
        Err(e) => Err(ControlError::Auth(e)),
        // An org with routes places on its default route (DESIGN §16).
        Ok(p) if loaded.service.places_on_routes(&p) => {
            return super::place::place_agent(edge.clone(), p, headers, body).await
        }
        // Read only once the service has identified the caller.
        Ok(p) => {
            let body = async {
                axum::body::to_bytes(body, MAX_PLACE_BODY_BYTES)
                    .await
                    .map_err(|_| {
                        ControlError::InvalidBody(format!(
                            "the body is over {MAX_PLACE_BODY_BYTES} bytes, or was cut off; \
                             send {{\"to\": \"+1...\"}} with at most a prompt, a webhook_url \
                             and metadata"
                        ))
                    })
            };
            loaded.service.place_call(&p, body).await
        }
    };
    match result {
        Ok(placed) => json(
            StatusCode::from_u16(placed.status).unwrap_or(StatusCode::BAD_GATEWAY),
            placed.body,
        ),
        Err(e) => failed(Envelope::Agent, &e),
    }
}

/// A control failure in the route's envelope, with its status and the headers it asks for.
fn failed(envelope: Envelope, e: &ControlError) -> Response {
    let status = StatusCode::from_u16(e.status()).expect("control statuses are valid");
    let body = envelope.error(e.code(), &e.to_string(), e.provider().map(|p| &**p));
    let mut response = json(status, body);
    challenge(&mut response);
    if let Some(secs) = e.retry_after() {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

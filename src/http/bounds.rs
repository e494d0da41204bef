//! Server-side bounds on every request: header size, requests in flight, and a deadline —
//! each refusal written in the shape of the endpoint that was asked.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{json, shape_for};
use crate::error_code::ErrorCode;
use crate::wire::ErrorItem;

/// The limits, from `[server]`.
pub struct Bounds {
    pub max_header_bytes: usize,
    pub request_timeout: Duration,
    in_flight: Arc<Semaphore>,
    max_in_flight: usize,
}

impl Bounds {
    pub fn new(
        max_header_bytes: usize,
        max_concurrent_requests: usize,
        request_timeout: Duration,
    ) -> Self {
        Self {
            max_header_bytes,
            request_timeout,
            in_flight: Arc::new(Semaphore::new(max_concurrent_requests)),
            max_in_flight: max_concurrent_requests,
        }
    }
}

/// What a request admitted within the bounds carries (as an extension), for an answer whose
/// body outlives its handler (a forwarded answer, streamed): the place it holds among the
/// requests in flight, given back when the last clone is dropped, and when it must be over.
#[derive(Clone)]
pub struct Admitted {
    pub place: Arc<OwnedSemaphorePermit>,
    pub deadline: tokio::time::Instant,
}

pub async fn enforce(
    State(bounds): State<Arc<Bounds>>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let shape = (super::envelope::Envelope::of(path), shape_for(path));
    let header_bytes: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if header_bytes > bounds.max_header_bytes {
        let message = format!(
            "the request's headers are {header_bytes} bytes, over the {}-byte limit (max_header_bytes)",
            bounds.max_header_bytes
        );
        return refuse(
            shape,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorCode::HeadersTooLarge,
            &message,
        );
    }
    // Refuse rather than queue: a queued list request answers too late to be useful, and a
    // quick 503 lets the client back off.
    let Ok(permit) = bounds.in_flight.clone().try_acquire_owned() else {
        tracing::warn!(
            limit = bounds.max_in_flight,
            "request refused: too many in flight"
        );
        let message = format!(
            "callmux is answering {} requests already (max_concurrent_requests); retry shortly",
            bounds.max_in_flight
        );
        return refuse(
            shape,
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Overloaded,
            &message,
        );
    };
    let deadline = tokio::time::Instant::now() + bounds.request_timeout;
    // Held here to the end of the handler, whenever the handler drops the request.
    let _place = Arc::new(permit);
    request.extensions_mut().insert(Admitted {
        place: _place.clone(),
        deadline,
    });
    match tokio::time::timeout_at(deadline, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(
                timeout_ms = bounds.request_timeout.as_millis() as u64,
                "request timed out"
            );
            let message = format!(
                "the request took longer than {} ms (request_timeout_ms); retry shortly",
                bounds.request_timeout.as_millis()
            );
            refuse(
                shape,
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::RequestTimeout,
                &message,
            )
        }
    }
}

/// A refusal in the envelope of the route asked: a control route's own, else the list shape's.
fn refuse(
    shape: (Option<super::envelope::Envelope>, crate::wire::Shape),
    status: StatusCode,
    code: ErrorCode,
    message: &str,
) -> Response {
    let mut response = match shape {
        (Some(envelope), _) => json(status, envelope.error(code, message, None)),
        (None, shape) => {
            let item = ErrorItem {
                provider: None,
                error: code,
                message,
            };
            json(status, shape.write_error(&[item]))
        }
    };
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            HeaderValue::from_static("1"),
        );
    }
    response
}

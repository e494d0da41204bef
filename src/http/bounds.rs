//! Server-side bounds on every request: header size, requests in flight, and a deadline —
//! each refusal written in the shape of the endpoint that was asked.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use pin_project_lite::pin_project;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Timeout;
use tower_layer::Layer;
use tower_service::Service;

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

/// The bounds as a tower layer, around the list routes and the forwarded ones: a concrete
/// future (the handler's, under a deadline), where `from_fn` would box the next service and
/// the future and take the request apart for its extractors on every request.
#[derive(Clone)]
pub struct Enforce(pub Arc<Bounds>);

impl<S> Layer<S> for Enforce {
    type Service = Enforced<S>;

    fn layer(&self, inner: S) -> Enforced<S> {
        Enforced {
            inner,
            bounds: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Enforced<S> {
    inner: S,
    bounds: Arc<Bounds>,
}

/// The envelope of a refusal: a control route's own, else the list shape's.
type Reply = (Option<super::envelope::Envelope>, crate::wire::Shape);

impl<S> Service<Request> for Enforced<S>
where
    S: Service<Request, Error = Infallible>,
    S::Response: IntoResponse,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Bounded<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        match self.bounds.admit(&mut request) {
            Ok(admission) => admission.run(self.inner.call(request)),
            Err(refusal) => Bounded::Refused {
                response: Some(*refusal),
            },
        }
    }
}

/// A request let in within the bounds: its place among the requests in flight, held to the
/// end of its handler, and when its answer is due.
pub(super) struct Admission {
    place: Arc<OwnedSemaphorePermit>,
    deadline: tokio::time::Instant,
    reply: Reply,
    timeout: Duration,
}

impl Bounds {
    /// Lets `request` in (marking it [`Admitted`]), or refuses it in its route's envelope
    /// (boxed: a refusal is rare, and a large `Err` would be moved on every request).
    pub(super) fn admit(&self, request: &mut Request) -> Result<Admission, Box<Response>> {
        let path = request.uri().path();
        let reply = (super::envelope::Envelope::of(path), shape_for(path));
        let header_bytes: usize = request
            .headers()
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum();
        if header_bytes > self.max_header_bytes {
            let message = format!(
                "the request's headers are {header_bytes} bytes, over the {}-byte limit (max_header_bytes)",
                self.max_header_bytes
            );
            return Err(Box::new(refuse(
                reply,
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                ErrorCode::HeadersTooLarge,
                &message,
            )));
        }
        // Refuse rather than queue: a queued list request answers too late to be useful, and a
        // quick 503 lets the client back off.
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            tracing::warn!(
                limit = self.max_in_flight,
                "request refused: too many in flight"
            );
            let message = format!(
                "callmux is answering {} requests already (max_concurrent_requests); retry shortly",
                self.max_in_flight
            );
            return Err(Box::new(refuse(
                reply,
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Overloaded,
                &message,
            )));
        };
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        let place = Arc::new(permit);
        request.extensions_mut().insert(Admitted {
            place: place.clone(),
            deadline,
        });
        Ok(Admission {
            place,
            deadline,
            reply,
            timeout: self.request_timeout,
        })
    }
}

impl Admission {
    /// The handler's `answer` within the deadline, holding the place to its end.
    pub(super) fn run<F: Future>(self, answer: F) -> Bounded<F> {
        Bounded::Running {
            answer: tokio::time::timeout_at(self.deadline, answer),
            _place: self.place,
            reply: self.reply,
            timeout: self.timeout,
        }
    }
}

pin_project! {
    /// A bounded request's answer: refused at once, or the handler's within its deadline.
    #[project = BoundedProj]
    pub enum Bounded<F> {
        Refused { response: Option<Response> },
        Running {
            #[pin]
            answer: Timeout<F>,
            _place: Arc<OwnedSemaphorePermit>,
            reply: Reply,
            timeout: Duration,
        },
    }
}

impl<F, R> Future for Bounded<F>
where
    F: Future<Output = Result<R, Infallible>>,
    R: IntoResponse,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            BoundedProj::Refused { response } => Poll::Ready(Ok(response
                .take()
                .expect("a bounds future polled after it was ready"))),
            BoundedProj::Running {
                answer,
                reply,
                timeout,
                ..
            } => Poll::Ready(Ok(match ready!(answer.poll(cx)) {
                Ok(Ok(response)) => response.into_response(),
                Ok(Err(never)) => match never {},
                Err(_) => {
                    tracing::warn!(timeout_ms = timeout.as_millis() as u64, "request timed out");
                    let message = format!(
                        "the request took longer than {} ms (request_timeout_ms); retry shortly",
                        timeout.as_millis()
                    );
                    refuse(
                        *reply,
                        StatusCode::SERVICE_UNAVAILABLE,
                        ErrorCode::RequestTimeout,
                        &message,
                    )
                }
            })),
        }
    }
}

/// A refusal in the envelope of the route asked: a control route's own, else the list shape's.
fn refuse(shape: Reply, status: StatusCode, code: ErrorCode, message: &str) -> Response {
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

//! The HTTP edge: the routes, the layers around them, credentials read from headers, and
//! every outcome of a list request written in the shape that was asked.

pub mod access;
mod bounds;
pub mod capacity;
pub mod connections;
pub mod control;
mod dashboard;
mod direct_streams;
pub(crate) mod envelope;
mod gate;
pub mod hooks;
pub(crate) mod me;
mod methods;
mod metrics;
pub mod metrics_access;
mod openapi;
mod ops;
mod passthrough;
mod paths;
pub mod place;
pub mod render;
mod request_id;
mod sign_in;
mod stream_slots;
pub mod streams;
mod tracked;
mod unverified;
pub mod webhooks;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::handler::Handler;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tower_layer::Stack;

use crate::error_code::ErrorCode;
use crate::provider::bland::ORG_ID_HEADER;
use crate::service::auth::Presented;
use crate::service::reload::Live;
use crate::service::ListError;
use crate::wire::{self, ErrorItem, Shape, Written};
pub use paths::{BLAND_ROUTE, CALLS_ROUTE, OWN_ROUTE};
pub use render::with_error_items;

/// What every handler shares: the configuration being served, and what the edge keeps of
/// its own (bodies, request metrics).
pub struct Edge {
    pub live: Arc<Live>,
    requests: Arc<metrics::RequestMetrics>,
    streams: streams::Streams,
    /// Bland keys yet to be checked, by client address.
    unverified: unverified::Unverified,
    /// The dashboard's single-use sign-in links.
    sign_in: crate::service::sign_in::Links,
}

/// The whole service. The list routes sit behind the request bounds; `/healthz`, `/readyz`
/// and `/metrics` do not, so they still answer when callmux is overloaded.
pub fn router(live: Arc<Live>) -> Router {
    let server = live.current().service.config().server.clone();
    let telemetry = live.telemetry().clone();
    let edge = Arc::new(Edge {
        requests: Arc::new(metrics::RequestMetrics::new(telemetry.clone())),
        streams: streams::Streams::new(
            server.max_streams,
            server.max_streams_per_org,
            server.stream_keepalive,
        ),
        unverified: unverified::Unverified::new(server.unverified_keys_per_second),
        sign_in: crate::service::sign_in::Links::new(
            live.current().service.store().redis().cloned(),
        ),
        live,
    });
    let limits = Arc::new(bounds::Bounds::new(
        server.max_header_bytes,
        server.max_concurrent_requests,
        server.request_timeout,
    ));
    let lists = Router::new()
        .route(BLAND_ROUTE, get(|s, h| list(Shape::Bland, s, h)))
        .route(CALLS_ROUTE, get(|s, h| list(Shape::Calls, s, h)))
        .route(
            OWN_ROUTE,
            get(|s, h| list(Shape::Own, s, h)).post(place::place),
        )
        .route(capacity::CAPACITY_ROUTE, get(capacity::capacity))
        .route(
            control::END_ROUTE,
            post(|s, p, h| control::end(envelope::Envelope::Agent, s, p, h)),
        )
        .route(
            control::STOP_ROUTE,
            post(|s, p, h| control::end(envelope::Envelope::Bland, s, p, h)),
        )
        .route(control::STOP_ALL_ROUTE, post(control::stop_all))
        .route(control::PLACE_ROUTE, post(control::place))
        .route(hooks::HOOK_ROUTE, post(hooks::hook))
        .route(webhooks::WEBHOOKS_ROUTE, get(webhooks::list))
        .route(me::ROUTE, get(me::me))
        .route(sign_in::ME_LINK_ROUTE, post(sign_in::link))
        .route(sign_in::SIGN_IN_ROUTE, post(sign_in::exchange))
        .route_layer(tracked::Track {
            edge: edge.clone(),
            bounds: Some(limits.clone()),
        });
    // Outside the request bounds: a stream is long by nature, and `max_streams` bounds them.
    let streams = Router::new()
        .route(
            streams::BLAND_STREAM_ROUTE,
            get(|s, d, h| streams::stream(Shape::Bland, s, d, h)),
        )
        .route(
            streams::CALLS_STREAM_ROUTE,
            get(|s, d, h| streams::stream(Shape::Calls, s, d, h)),
        )
        .route(
            streams::OWN_STREAM_ROUTE,
            get(|s, d, h| streams::stream(Shape::Own, s, d, h)),
        );
    let open = Router::new()
        .merge(streams)
        .merge(dashboard::routes())
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route(
            "/metrics",
            get(metrics_access::metrics)
                .with_state(metrics_access::Metrics::on_api(&server, telemetry.clone())),
        )
        .route("/openapi.json", get(openapi::document))
        .route_layer(tracked::Track {
            edge: edge.clone(),
            bounds: None,
        });
    let routes = Router::new()
        .merge(lists)
        .merge(open)
        // After every route: it is given to each route added so far.
        .method_not_allowed_fallback(methods::not_allowed)
        // Forwarded Bland routes are ordinary requests, inside the same bounds.
        .fallback(passthrough::fallback.layer(bounds::Enforce(limits)))
        .with_state(edge);
    // The id is set first, then the span that carries it; the id is echoed on the way out.
    // One layer for the three: `Router::layer` gives it to each route, and axum clones a
    // route's whole stack of boxed layers on every call, so each layer of its own would
    // cost boxes on every request.
    let span = TraceLayer::new_for_http()
        .make_span_with(|request: &axum::http::Request<_>| {
            let id = request
                .headers()
                .get(&request_id::REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id = %id)
        })
        .on_request(())
        .on_response(DefaultOnResponse::new().level(tracing::Level::INFO));
    routes.layer(Stack::new(span, request_id::Identify))
}

/// Made once, at compile time: a `&str` name is parsed and checked on every insert.
const SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");

/// The shape a path's answers are written in; Bland's envelope for paths that are neither.
fn shape_for(path: &str) -> Shape {
    match path {
        CALLS_ROUTE | streams::CALLS_STREAM_ROUTE => Shape::Calls,
        OWN_ROUTE | streams::OWN_STREAM_ROUTE => Shape::Own,
        _ => Shape::Bland,
    }
}

/// The credentials a request presents, from its `authorization` and `x-bland-org-id`.
fn presented(headers: &HeaderMap) -> Result<Presented, crate::service::auth::AuthError> {
    Presented::new(
        headers.get(header::AUTHORIZATION),
        headers.get(ORG_ID_HEADER),
    )
}

async fn list(shape: Shape, State(edge): State<Arc<Edge>>, caller: gate::Caller) -> Response {
    let started = Instant::now();
    // This request keeps this configuration to the end, whatever reloads meanwhile.
    let loaded = edge.live.current();
    let listed = match caller.0 {
        Ok(p) => loaded.service.list(&p).await,
        Err(e) => Err(ListError::Auth(e)),
    };
    let (mut response, waited) = match listed {
        Ok(listed) => {
            let snapshot = &listed.snapshot;
            tracing::info!(org = %snapshot.org(), calls = snapshot.len(), failed = snapshot.failures().len(), "listed active calls");
            let body = render::body(&listed, shape, edge.live.telemetry()).await;
            (json(StatusCode::OK, body), listed.waited)
        }
        Err(e) => refusal(shape, e),
    };
    let timing = server_timing(waited, started.elapsed());
    response.headers_mut().insert(SERVER_TIMING, timing);
    response
}

/// A list request's answer when it got no snapshot: every provider failed (502, with their
/// errors), or the credentials were refused (the auth error's status), in `shape`. The
/// streams refuse exactly so.
fn refusal(shape: Shape, error: ListError) -> (Response, Duration) {
    match error {
        ListError::AllFailed { failures, waited } => {
            tracing::warn!(
                providers = failures.len(),
                "every provider of the org failed"
            );
            (
                json(
                    StatusCode::BAD_GATEWAY,
                    with_error_items(&failures, |errors| shape.write_error(errors)),
                ),
                waited,
            )
        }
        ListError::Auth(e) => {
            tracing::info!(code = e.code().as_str(), reason = %e, "request refused");
            let message = e.to_string();
            let item = ErrorItem {
                provider: None,
                error: e.code(),
                message: &message,
            };
            let status = StatusCode::from_u16(e.status()).expect("auth statuses are valid");
            let mut response = json(status, shape.write_error(&[item]));
            challenge(&mut response);
            (response, Duration::ZERO)
        }
    }
}

/// `Server-Timing`: time spent waiting on providers, and the rest, spent in callmux.
/// Milliseconds with microsecond precision, written digit by digit into the header's own
/// buffer: `format!` and 128-bit division cost more than the rest of the header.
fn server_timing(waited: Duration, total: Duration) -> HeaderValue {
    const PROVIDERS: &[u8] = b"providers;dur=";
    const CALLMUX: &[u8] = b";desc=\"waiting on providers\", callmux;dur=";
    const END: &[u8] = b";desc=\"callmux's own work\"";
    // Whole microseconds; u64 holds over half a million years of them.
    let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    let mut value = Vec::with_capacity(PROVIDERS.len() + CALLMUX.len() + END.len() + 2 * 24);
    value.extend_from_slice(PROVIDERS);
    write_ms(&mut value, micros(waited));
    value.extend_from_slice(CALLMUX);
    write_ms(&mut value, micros(total.saturating_sub(waited)));
    value.extend_from_slice(END);
    HeaderValue::from_maybe_shared(Bytes::from(value)).expect("ASCII digits and fixed text")
}

/// `us` microseconds as milliseconds with three decimals: `1234` as `1.234`.
fn write_ms(out: &mut Vec<u8>, us: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = us / 1000;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
    let fraction = us % 1000;
    out.extend_from_slice(&[
        b'.',
        b'0' + (fraction / 100) as u8,
        b'0' + (fraction / 10 % 10) as u8,
        b'0' + (fraction % 10) as u8,
    ]);
}

async fn not_found(State(edge): State<Arc<Edge>>, method: Method, uri: Uri) -> Response {
    edge.requests.record(None, 404, Instant::now());
    let mut message = format!(
        "no route {method} {}: callmux serves GET {BLAND_ROUTE}, GET {CALLS_ROUTE}, \
         GET {OWN_ROUTE}, GET {}, their streams (GET {}, GET {}, GET {}), POST {}, POST {}, POST {}, \
         POST {}, POST {}, the dashboard at GET / and GET /openapi.json",
        uri.path(),
        capacity::CAPACITY_ROUTE,
        streams::BLAND_STREAM_ROUTE,
        streams::CALLS_STREAM_ROUTE,
        streams::OWN_STREAM_ROUTE,
        control::END_ROUTE,
        control::STOP_ROUTE,
        control::STOP_ALL_ROUTE,
        control::PLACE_ROUTE,
        hooks::HOOK_ROUTE,
    );
    if uri.path().starts_with("/v1/") {
        message.push_str(
            "; Bland's other /v1/ routes are forwarded only for orgs that forward them \
             (bland_passthrough, or auth = a bland provider)",
        );
    }
    let item = ErrorItem {
        provider: None,
        error: ErrorCode::NotFound,
        message: &message,
    };
    json(StatusCode::NOT_FOUND, wire::bland::write_error(&[item]))
}

/// A 401 says how to authenticate (`WWW-Authenticate: Bearer`), whatever the route.
pub(crate) fn challenge(response: &mut Response) {
    if response.status() == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
}

/// A JSON answer, built directly: the tuple `IntoResponse` goes through extends the headers
/// from an iterator and re-checks them, a measurable share of a `/healthz`.
pub(crate) fn json(status: StatusCode, body: impl Into<axum::body::Body>) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

impl From<Written> for axum::body::Body {
    fn from(body: Written) -> Self {
        Self::new(body)
    }
}

/// A written body goes out piece by piece, with its exact length known up front (so it is
/// sent with `Content-Length`, not chunked).
impl http_body::Body for Written {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let next = if !self.head.is_empty() {
            std::mem::take(&mut self.head)
        } else if !self.tail.is_empty() {
            std::mem::take(&mut self.tail)
        } else {
            return std::task::Poll::Ready(None);
        };
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(next))))
    }

    fn is_end_stream(&self) -> bool {
        self.is_empty()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_timing_writes_milliseconds_with_three_decimals_as_format_did() {
        for (waited, total) in [(0, 0), (1, 999), (1_234, 5_678), (999_999, 1_000_000)] {
            let (waited, total) = (Duration::from_micros(waited), Duration::from_micros(total));
            let ms = |d: Duration| {
                let us = d.as_micros();
                format!("{}.{:03}", us / 1000, us % 1000)
            };
            let expected = format!(
                "providers;dur={};desc=\"waiting on providers\", callmux;dur={};desc=\"callmux's own work\"",
                ms(waited),
                ms(total.saturating_sub(waited)),
            );
            assert_eq!(server_timing(waited, total).to_str().unwrap(), expected);
        }
        let huge = server_timing(Duration::MAX, Duration::MAX);
        assert!(huge
            .to_str()
            .unwrap()
            .starts_with("providers;dur=18446744073709551.615;"));
    }
}

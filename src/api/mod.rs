//! The HTTP edge: the two list routes, and every outcome written in the shape that was asked.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;

use crate::app::{error_items, App, ListError};
use crate::wire::{self, ErrorItem, Shape};

pub const BLAND_ROUTE: &str = "/v1/calls/active";
pub const CALLS_ROUTE: &str = "/api/calls";

mod bounds;

pub fn router(app: Arc<App>) -> Router {
    let server = &app.config().server;
    let limits = Arc::new(bounds::Bounds::new(
        server.max_header_bytes,
        server.max_concurrent_requests,
        server.request_timeout,
    ));
    Router::new()
        .route(BLAND_ROUTE, get(|s, h| list(Shape::Bland, s, h)))
        .route(CALLS_ROUTE, get(|s, h| list(Shape::Calls, s, h)))
        .fallback(not_found)
        .with_state(app)
        .layer(axum::middleware::from_fn_with_state(
            limits,
            bounds::enforce,
        ))
}

/// The shape a path's answers are written in; Bland's envelope for paths that are neither.
fn shape_for(path: &str) -> Shape {
    if path == CALLS_ROUTE {
        Shape::Calls
    } else {
        Shape::Bland
    }
}

async fn list(shape: Shape, State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    match app.list(&headers, shape).await {
        Ok(listed) => {
            for f in &listed.failures {
                tracing::warn!(org = %listed.org, provider = %f.provider, code = f.error.code(), error = %f.error, "provider failed");
            }
            tracing::info!(org = %listed.org, calls = listed.calls, failed = listed.failures.len(), "listed active calls");
            json(StatusCode::OK, listed.body)
        }
        Err(ListError::AllFailed(failures)) => {
            for f in &failures {
                tracing::warn!(provider = %f.provider, code = f.error.code(), error = %f.error, "provider failed");
            }
            tracing::warn!(
                providers = failures.len(),
                "every provider of the org failed"
            );
            let messages: Vec<String> = failures.iter().map(|f| f.error.to_string()).collect();
            let errors = error_items(&failures, &messages);
            json(StatusCode::BAD_GATEWAY, shape.write_error(&errors))
        }
        Err(ListError::Auth(e)) => {
            tracing::info!(code = e.code(), reason = %e, "request refused");
            let message = e.to_string();
            let item = ErrorItem {
                provider: None,
                error: e.code(),
                message: &message,
            };
            let status = StatusCode::from_u16(e.status()).expect("auth statuses are valid");
            let mut response = json(status, shape.write_error(&[item]));
            if status == StatusCode::UNAUTHORIZED {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            response
        }
    }
}

async fn not_found(method: Method, uri: Uri) -> Response {
    let message = format!(
        "no route {method} {}: callmux serves GET {BLAND_ROUTE} and GET {CALLS_ROUTE}",
        uri.path()
    );
    let item = ErrorItem {
        provider: None,
        error: "NOT_FOUND",
        message: &message,
    };
    json(StatusCode::NOT_FOUND, wire::bland::write_error(&[item]))
}

pub(crate) fn json(status: StatusCode, body: impl Into<Bytes>) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        axum::body::Body::from(body.into()),
    )
        .into_response()
}

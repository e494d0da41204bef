//! The HTTP edge: the two list routes, and every outcome written in the shape that was asked.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::app::{App, ListError};
use crate::merge::ProviderFailure;
use crate::wire::{self, ErrorItem};

pub const BLAND_ROUTE: &str = "/v1/calls/active";
pub const CALLS_ROUTE: &str = "/api/calls";

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route(BLAND_ROUTE, get(|s, h| list(Shape::Bland, s, h)))
        .route(CALLS_ROUTE, get(|s, h| list(Shape::Calls, s, h)))
        .fallback(not_found)
        .with_state(app)
}

/// Which client wire shape a route speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Bland,
    Calls,
}

impl Shape {
    fn error_body(self, errors: &[ErrorItem<'_>]) -> Vec<u8> {
        match self {
            Shape::Bland => wire::bland::write_error(errors),
            Shape::Calls => wire::calls::write(&[], errors),
        }
    }
}

async fn list(shape: Shape, State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    match app.list(&headers).await {
        Ok((org, listing)) => {
            let messages = messages(&listing.failures);
            let errors = failure_items(&listing.failures, &messages);
            for f in &listing.failures {
                tracing::warn!(%org, provider = %f.provider, code = f.error.code(), error = %f.error, "provider failed");
            }
            tracing::info!(%org, calls = listing.calls.len(), failed = listing.failures.len(), "listed active calls");
            let body = match shape {
                Shape::Bland => wire::bland::write(&listing.calls, &errors),
                Shape::Calls => wire::calls::write(&listing.calls, &errors),
            };
            json(StatusCode::OK, body)
        }
        Err(ListError::AllFailed(failures)) => {
            for f in &failures {
                tracing::warn!(provider = %f.provider, code = f.error.code(), error = %f.error, "provider failed");
            }
            tracing::warn!(
                providers = failures.len(),
                "every provider of the org failed"
            );
            let messages = messages(&failures);
            let errors = failure_items(&failures, &messages);
            json(StatusCode::BAD_GATEWAY, shape.error_body(&errors))
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
            let mut response = json(status, shape.error_body(&[item]));
            if status == StatusCode::UNAUTHORIZED {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            response
        }
    }
}

fn messages(failures: &[ProviderFailure]) -> Vec<String> {
    failures.iter().map(|f| f.error.to_string()).collect()
}

fn failure_items<'a>(
    failures: &'a [ProviderFailure],
    messages: &'a [String],
) -> Vec<ErrorItem<'a>> {
    failures
        .iter()
        .zip(messages)
        .map(|(f, m)| ErrorItem {
            provider: Some(&f.provider),
            error: f.error.code(),
            message: m,
        })
        .collect()
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

fn json(status: StatusCode, body: Vec<u8>) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

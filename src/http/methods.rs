//! Methods: every served route's answer to a method it does not answer (405 in the route's
//! own envelope), and the methods forwarding sends on to Bland.

use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;

use super::envelope::Envelope;
use super::{json, shape_for};
use crate::error_code::ErrorCode;
use crate::wire::{self, ErrorItem};

/// The methods Bland's API uses; forwarding sends no other (`TRACE` would echo the provider's
/// key back, and the rest are nothing a Bland client sends).
pub const FORWARDED: [Method; 5] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
];

/// `Allow` for a forwarded path.
const FORWARDED_ALLOW: &str = "GET, POST, PUT, PATCH, DELETE";

/// The router's answer to a method a served route does not answer; axum adds `Allow`.
pub async fn not_allowed(method: Method, uri: Uri) -> Response {
    let path = uri.path();
    let control = Envelope::of(path);
    let hook = path.starts_with("/hooks/");
    let allowed = if control.is_some() || hook {
        "POST"
    } else {
        "GET"
    };
    let message = format!("{path} does not answer {method}: send {allowed}");
    let code = ErrorCode::MethodNotAllowed;
    let body = match control {
        Some(envelope) => axum::body::Body::from(envelope.error(code, &message, None)),
        None => {
            let item = ErrorItem {
                provider: None,
                error: code,
                message: &message,
            };
            // The Twilio callback refuses in Bland's list envelope, as its bounds do.
            let shape = if hook {
                wire::Shape::Bland
            } else {
                shape_for(path)
            };
            axum::body::Body::from(shape.write_error(&[item]))
        }
    };
    json(StatusCode::METHOD_NOT_ALLOWED, body)
}

/// A forwarded path asked with a method forwarding does not send: refused before anything
/// else (no key is checked, nothing goes upstream).
pub fn not_forwarded(method: &Method, path: &str) -> Option<Response> {
    if FORWARDED.contains(method) {
        return None;
    }
    let message =
        format!("callmux forwards only {FORWARDED_ALLOW} to Bland; {path} was asked with {method}");
    let body = Envelope::Bland.error(ErrorCode::MethodNotAllowed, &message, None);
    let mut response = json(StatusCode::METHOD_NOT_ALLOWED, body);
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(FORWARDED_ALLOW));
    Some(response)
}

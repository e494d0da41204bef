//! The call-control routes: `POST /api/calls/{call_id}/end` in the agent server's envelope and
//! `POST /v1/calls/{call_id}/stop` in Bland's, every answer (auth failures included) in the
//! route's own envelope.

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::json;

use super::{json, presented, Edge};
use crate::service::control::ControlError;

pub const END_ROUTE: &str = "/api/calls/{call_id}/end";
pub const STOP_ROUTE: &str = "/v1/calls/{call_id}/stop";

/// The envelope a control route answers in.
#[derive(Debug, Clone, Copy)]
pub enum Envelope {
    /// `{"success": ..., ...}`, as the agent server answers.
    Agent,
    /// `{"status": ..., "message": ...}`, as Bland's call routes answer.
    Bland,
}

impl Envelope {
    fn route(self) -> &'static str {
        match self {
            Self::Agent => END_ROUTE,
            Self::Bland => STOP_ROUTE,
        }
    }

    fn ended(self, call_id: &str, provider: &str) -> serde_json::Value {
        match self {
            Self::Agent => json!({
                "success": true,
                "message": format!("Call {call_id} ended"),
                "provider": provider,
            }),
            Self::Bland => json!({"status": "success", "message": "Call ended successfully."}),
        }
    }

    fn error(self, code: &str, text: &str, provider: Option<&str>) -> serde_json::Value {
        let mut body = match self {
            Self::Agent => json!({"success": false, "error": text, "code": code}),
            Self::Bland => json!({"status": "error", "message": text, "code": code}),
        };
        if let Some(provider) = provider {
            body["provider"] = json!(provider);
        }
        body
    }
}

pub async fn end(
    envelope: Envelope,
    State(edge): State<Arc<Edge>>,
    call_id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let loaded = edge.live.current();
    let result = match presented(&headers) {
        Err(e) => Err(ControlError::Auth(e)),
        // An id that is not UTF-8 once decoded is no call's id.
        Ok(p) => {
            let id = call_id.map(|Path(id)| id).unwrap_or_else(|_| "\0".to_owned());
            loaded
                .service
                .end_call_on(envelope.route(), &p, &id)
                .await
                .map(|ended| (id, ended))
        }
    };
    match result {
        Ok((id, ended)) => json(
            StatusCode::OK,
            envelope.ended(&id, &ended.provider).to_string(),
        ),
        Err(e) => {
            let status = StatusCode::from_u16(e.status()).expect("control statuses are valid");
            let body = envelope.error(e.code(), &e.to_string(), e.provider().map(|p| &**p));
            let mut response = json(status, body.to_string());
            if status == StatusCode::UNAUTHORIZED {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            response
        }
    }
}

//! The call-control routes: `POST /api/calls/{call_id}/end` in the agent server's envelope and
//! `POST /v1/calls/{call_id}/stop` in Bland's, every answer (auth failures included) in the
//! route's own envelope.

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use serde::Serialize;

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
    /// The envelope of a path that one of the control routes matches.
    pub fn of(path: &str) -> Option<Self> {
        let one_segment = |rest: &str, suffix: &str| {
            rest.strip_suffix(suffix)
                .is_some_and(|id| !id.is_empty() && !id.contains('/'))
        };
        if let Some(rest) = path.strip_prefix("/api/calls/") {
            one_segment(rest, "/end").then_some(Self::Agent)
        } else if let Some(rest) = path.strip_prefix("/v1/calls/") {
            one_segment(rest, "/stop").then_some(Self::Bland)
        } else {
            None
        }
    }

    fn route(self) -> &'static str {
        match self {
            Self::Agent => END_ROUTE,
            Self::Bland => STOP_ROUTE,
        }
    }

    /// The success body, fields in the order the route's own clients see them.
    fn ended(self, call_id: &str, provider: &str) -> String {
        match self {
            Self::Agent => to_json(&AgentEnded {
                success: true,
                message: &format!("Call {call_id} ended"),
                provider,
            }),
            Self::Bland => to_json(&BlandStopped {
                status: "success",
                message: "Call ended successfully.",
            }),
        }
    }

    pub fn error(self, code: &str, text: &str, provider: Option<&str>) -> String {
        match self {
            Self::Agent => to_json(&AgentFailed {
                success: false,
                error: text,
                code,
                provider,
            }),
            Self::Bland => to_json(&BlandFailed {
                status: "error",
                message: text,
                code,
                provider,
            }),
        }
    }
}

#[derive(Serialize)]
struct AgentEnded<'a> {
    success: bool,
    message: &'a str,
    provider: &'a str,
}

#[derive(Serialize)]
struct AgentFailed<'a> {
    success: bool,
    error: &'a str,
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    provider: Option<&'a str>,
}

#[derive(Serialize)]
struct BlandStopped<'a> {
    status: &'a str,
    message: &'a str,
}

#[derive(Serialize)]
struct BlandFailed<'a> {
    status: &'a str,
    message: &'a str,
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    provider: Option<&'a str>,
}

fn to_json(body: &impl Serialize) -> String {
    serde_json::to_string(body).expect("strings and booleans serialise")
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
        Err(e) => {
            let status = StatusCode::from_u16(e.status()).expect("control statuses are valid");
            let body = envelope.error(e.code(), &e.to_string(), e.provider().map(|p| &**p));
            let mut response = json(status, body);
            if status == StatusCode::UNAUTHORIZED {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            response
        }
    }
}

//! The envelopes of the call-control routes: the agent server's `{"success", ...}` and
//! Bland's `{"status", "message", ...}`, for answers and refusals alike.

use serde::Serialize;

use super::paths::{END_ROUTE, PLACE_ROUTE, STOP_ROUTE};
use crate::error_code::ErrorCode;

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
        if path == PLACE_ROUTE {
            Some(Self::Agent)
        } else if let Some(rest) = path.strip_prefix("/api/calls/") {
            one_segment(rest, "/end").then_some(Self::Agent)
        } else if let Some(rest) = path.strip_prefix("/v1/calls/") {
            one_segment(rest, "/stop").then_some(Self::Bland)
        } else {
            None
        }
    }

    pub(super) fn route(self) -> &'static str {
        match self {
            Self::Agent => END_ROUTE,
            Self::Bland => STOP_ROUTE,
        }
    }

    /// The success body, fields in the order the route's own clients see them.
    pub(super) fn ended(self, call_id: &str, provider: &str) -> String {
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

    pub fn error(self, code: ErrorCode, text: &str, provider: Option<&str>) -> String {
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
    code: ErrorCode,
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
    code: ErrorCode,
    #[serde(skip_serializing_if = "Option::is_none")]
    provider: Option<&'a str>,
}

pub(super) fn to_json(body: &impl Serialize) -> String {
    serde_json::to_string(body).expect("strings and booleans serialise")
}

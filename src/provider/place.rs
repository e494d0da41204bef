//! Placing a call on any kind: the one canonical request and outcome, and the rules every
//! kind shares for turning a create-call answer into an outcome (each kind reads its own call
//! id, in its own folder).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Map, Value};

use async_trait::async_trait;

use super::kind::TargetSettings;
use super::{ProviderError, RequestContext};
use crate::error_code::ErrorCode;

/// One call to place, in callmux's own terms; each kind turns it into its platform's body.
#[derive(Debug, Clone)]
pub struct PlaceRequest {
    /// The number to call, E.164 (checked before it gets here).
    pub to: String,
    /// Values the agent's prompt may use, by name.
    pub variables: BTreeMap<String, String>,
    /// Sent on to platforms that keep metadata with the call.
    pub metadata: Option<Map<String, Value>>,
    /// The agent's instructions and where its Twilio webhooks go: the agent servers' own
    /// fields (`POST /api/call`), sent only to agent-server targets.
    pub prompt: Option<String>,
    pub webhook_url: Option<String>,
    /// The route target's own settings, of the provider's kind.
    pub target: Arc<dyn TargetSettings>,
}

/// What became of a placement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlaceOutcome {
    /// The platform started the call.
    Placed {
        call_id: String,
        /// The platform's own concurrency figures, when its answer carries them (Vapi).
        limits: Option<Limits>,
    },
    /// Refused before the call existed (no room, rate limited, not reachable): another
    /// target may be tried.
    Refused {
        /// What kind of refusal, as `attempts` report it: `UPSTREAM_UNREACHABLE`,
        /// `UPSTREAM_RATE_LIMITED` (429) or `AT_CAPACITY` (503, or the platform's own).
        code: ErrorCode,
        reason: String,
        limits: Option<Limits>,
    },
    /// The platform refused this request (a number it will not call, a bad setting): no
    /// other target would do better. `message` is the platform's own.
    Rejected { message: String },
    /// The call may or may not exist: never sent again, anywhere.
    Unknown { reason: String },
}

/// A platform's concurrency figures, as its answer gave them (Vapi's `subscriptionLimits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// The account's limit of concurrent calls.
    pub concurrency_limit: Option<u32>,
    /// How many more calls may start, this one included.
    pub remaining: Option<u32>,
    /// Whether this call was refused for the limit.
    pub blocked: bool,
}

/// The most of a platform's message an outcome keeps: enough to read, never a whole page.
const MESSAGE_CHARS: usize = 300;

/// The outcome of a create-call request sent once (`Client::exchange`): a failure before any
/// byte went out (a refused or unreachable connection) is a refusal; a failure after (no
/// whole answer in time, a broken connection, an answer over the body cap) may have placed
/// the call. An answer is read by `read`, the kind's own reader of status and body.
pub fn outcome(
    sent: Result<(u16, Bytes), ProviderError>,
    read: impl FnOnce(u16, &[u8]) -> PlaceOutcome,
) -> PlaceOutcome {
    match sent {
        Ok((status, body)) => read(status, &body),
        Err(e @ ProviderError::Unreachable(_)) => PlaceOutcome::Refused {
            code: e.code(),
            reason: e.to_string(),
            limits: None,
        },
        Err(e) => PlaceOutcome::Unknown {
            reason: e.to_string(),
        },
    }
}

/// Sends a kind's create-call `request` once, by the client's deadline, and reads its answer
/// with `read`: the one tail every kind's placing shares.
pub async fn send_once(
    client: &super::http::Client,
    request: &super::http::Request,
    read: impl FnOnce(u16, &[u8]) -> PlaceOutcome,
) -> PlaceOutcome {
    outcome(client.exchange(request, client.deadline()).await, read)
}

/// The rules every kind shares, given the answer's JSON (if it is JSON) and the kind's
/// reading of a call id from it: a 2xx with an id is placed, without one unknown; 429 and 503
/// are refusals; any other 4xx rejects the request with the platform's message; anything
/// else (5xx, 1xx, 3xx) may have placed the call.
pub fn by_status(
    status: u16,
    body: &[u8],
    call_id: impl FnOnce(&Value) -> Option<&str>,
) -> PlaceOutcome {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    match status {
        200..=299 => match json.as_ref().and_then(call_id) {
            Some(id) if !id.is_empty() => PlaceOutcome::Placed {
                call_id: id.to_owned(),
                limits: None,
            },
            _ => PlaceOutcome::Unknown {
                reason: format!("answered HTTP {status} without a readable call id"),
            },
        },
        429 | 503 => PlaceOutcome::Refused {
            code: if status == 429 {
                ErrorCode::UpstreamRateLimited
            } else {
                ErrorCode::AtCapacity
            },
            reason: format!("answered HTTP {status}: {}", message(json.as_ref(), body)),
            limits: None,
        },
        400..=499 => PlaceOutcome::Rejected {
            message: message(json.as_ref(), body),
        },
        _ => PlaceOutcome::Unknown {
            reason: format!("answered HTTP {status}"),
        },
    }
}

/// The platform's own words for a failure: the first of `message`, `error_message`
/// (Retell's), `error` (text, or an object's `message`) and `errors[0]` (text or its `message`) that is text, else the body's
/// start, cut to [`MESSAGE_CHARS`].
pub fn message(json: Option<&Value>, body: &[u8]) -> String {
    let text = |v: &Value| -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Object(o) => o.get("message").and_then(Value::as_str).map(str::to_owned),
            _ => None,
        }
    };
    let found = json.and_then(|j| {
        j.get("message")
            .and_then(text)
            .or_else(|| j.get("error_message").and_then(text))
            .or_else(|| j.get("error").and_then(text))
            .or_else(|| j.get("errors").and_then(|e| e.get(0)).and_then(text))
    });
    let whole = found.unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    let shown: String = whole
        .chars()
        .filter(|c| !c.is_control())
        .take(MESSAGE_CHARS)
        .collect();
    if shown.trim().is_empty() {
        "gave no reason".to_owned()
    } else {
        shown
    }
}

/// Placing a call through a provider: the one canonical request in, the one canonical
/// outcome out. Sent once, never again after any byte went out; the kind's wire shapes stay
/// in its own folder.
#[async_trait]
pub trait Places: Send + Sync {
    async fn place(&self, ctx: &RequestContext, request: &PlaceRequest) -> PlaceOutcome;
}

/// The kind's own target settings out of `request`, or a refusal naming the mismatch (a
/// request built for another kind: callmux's bug, never the platform's).
pub fn target_of<T: 'static>(request: &PlaceRequest) -> Result<&T, PlaceOutcome> {
    request
        .target
        .as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| PlaceOutcome::Refused {
            code: ErrorCode::InternalError,
            reason: "the route target's settings are of another kind (a bug)".into(),
            limits: None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(v: &Value) -> Option<&str> {
        v.get("call_id")?.as_str()
    }

    #[test]
    fn statuses_read_as_placed_refused_rejected_or_unknown() {
        assert_eq!(
            by_status(201, br#"{"call_id":"c1"}"#, id),
            PlaceOutcome::Placed {
                call_id: "c1".into(),
                limits: None
            }
        );
        for (status, body) in [
            (200, &b"{}"[..]),
            (201, b"not json"),
            (201, br#"{"call_id":""}"#),
            (500, b"{}"),
            (302, b""),
        ] {
            assert!(
                matches!(by_status(status, body, id), PlaceOutcome::Unknown { .. }),
                "{status}"
            );
        }
        for status in [429, 503] {
            assert!(matches!(
                by_status(status, b"", id),
                PlaceOutcome::Refused { .. }
            ));
        }
        assert_eq!(
            by_status(400, br#"{"errors":[{"message":"bad number"}]}"#, id),
            PlaceOutcome::Rejected {
                message: "bad number".into()
            }
        );
    }

    #[test]
    fn a_failure_before_sending_is_a_refusal_and_after_sending_unknown() {
        let refused = outcome(
            Err(ProviderError::Unreachable("refused".into())),
            |_, _| unreachable!(),
        );
        assert!(matches!(refused, PlaceOutcome::Refused { .. }));
        for e in [
            ProviderError::Timeout(5),
            ProviderError::Transport("reset".into()),
            ProviderError::TooLarge(9),
        ] {
            assert!(matches!(
                outcome(Err(e), |_, _| unreachable!()),
                PlaceOutcome::Unknown { .. }
            ));
        }
    }

    #[test]
    fn a_message_is_cut_short_and_keeps_no_control_characters() {
        let long = format!("{{\"message\": \"{}\\n\"}}", "x".repeat(1000));
        let json: Value = serde_json::from_str(&long).unwrap();
        assert_eq!(message(Some(&json), b""), "x".repeat(MESSAGE_CHARS));
        assert_eq!(message(None, b""), "gave no reason");
    }
}

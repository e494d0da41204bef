//! Vapi's server messages (`POST /hooks/vapi/{provider_id}`): the server secret Vapi sends in
//! `x-vapi-secret`, or as `authorization: Bearer <secret>`, equal (compared in constant time)
//! to `server_secret_env`; `status-update` moves `message.call.id` to `message.status` (a
//! live one adds the call, with the fields `message.call` carries, if it is not listed),
//! `end-of-call-report` ends it.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::wire::{call_of, status_from_wire};
use crate::call::{Call, CallStatus};
use crate::provider::kind::{Hook, Move, Pushed, Refusal};

pub const SECRET_HEADER: &str = "x-vapi-secret";

/// A `vapi` provider's server secret (`server_secret_env`), marked sensitive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VapiHook {
    pub secret_env: String,
    pub secret: HeaderValue,
}

#[derive(Deserialize)]
struct Envelope {
    message: Message,
}

#[derive(Deserialize)]
struct Message {
    #[serde(rename = "type")]
    kind: String,
    status: Option<String>,
    call: Option<serde_json::Value>,
}

/// The secret the request carries: `x-vapi-secret`, else a Bearer `authorization`.
fn given(headers: &HeaderMap) -> Option<&[u8]> {
    if let Some(secret) = headers.get(SECRET_HEADER) {
        return Some(secret.as_bytes());
    }
    let auth = headers.get(axum::http::header::AUTHORIZATION)?.as_bytes();
    let scheme = auth.get(..7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| auth[7..].trim_ascii())
}

impl Hook for VapiHook {
    fn signed(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        match given(headers) {
            Some(_) => Ok(()),
            None => Err(Refusal::MissingSignature(
                "no x-vapi-secret header and no authorization: Bearer: set the assistant's or phone number's server secret in Vapi to the value of server_secret_env",
            )),
        }
    }

    fn read(&self, pushed: &Pushed<'_>) -> Result<Option<Move>, Refusal> {
        let secret = given(pushed.headers).unwrap_or_default();
        if !bool::from(secret.ct_eq(self.secret.as_bytes())) {
            return Err(Refusal::BadSignature(
                "the server secret does not match: x-vapi-secret (or authorization: Bearer) must equal the value of the provider's server_secret_env",
            ));
        }
        // Vapi sends many message types; only these two move a call.
        let envelope: Envelope = serde_json::from_slice(pushed.body).map_err(|e| {
            Refusal::BadBody(format!(
                "a Vapi server message is a JSON object with message.type: {e}"
            ))
        })?;
        let message = envelope.message;
        let status = match message.kind.as_str() {
            "status-update" => match message.status.as_deref() {
                Some(s) => status_from_wire(s),
                None => {
                    return Err(Refusal::BadBody(
                        "a Vapi status-update carries message.status".into(),
                    ))
                }
            },
            "end-of-call-report" => CallStatus::Completed,
            _ => return Ok(None),
        };
        if let CallStatus::Other(_) = status {
            return Ok(None);
        }
        let call = message.call.as_ref();
        let call_id = call
            .and_then(|c| c.get("id"))
            .and_then(|id| id.as_str())
            .filter(|id| !id.is_empty())
            .ok_or_else(|| {
                Refusal::BadBody(format!(
                    "a Vapi {} names its call in message.call.id",
                    message.kind
                ))
            })?
            .to_owned();
        // A live status-update starts the call as far as callmux knows; the provider is set
        // by the route, which knows which provider took the message.
        let started = (message.kind == "status-update" && status.is_active()).then(|| {
            let mut started = call
                .and_then(|c| call_of(c, &Arc::from("")))
                .unwrap_or_else(|| Call::new(call_id.as_str(), Arc::from(""), status.clone()));
            started.status = status.clone();
            started
        });
        Ok(Some(Move {
            call_id,
            status,
            started,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(body: &serde_json::Value) -> Result<Option<Move>, Refusal> {
        let hook = VapiHook {
            secret_env: "VAPI_SERVER_SECRET".into(),
            secret: HeaderValue::from_static("s3cret"),
        };
        let mut headers = HeaderMap::new();
        headers.insert(SECRET_HEADER, HeaderValue::from_static("s3cret"));
        let body = body.to_string();
        hook.read(&Pushed {
            query: None,
            headers: &headers,
            body: body.as_bytes(),
            now: std::time::SystemTime::now(),
        })
    }

    #[test]
    fn a_live_status_update_starts_its_call_with_the_fields_of_its_call_object() {
        let moved = read(&serde_json::json!({"message": {"type": "status-update",
            "status": "ringing", "call": {"id": "c2", "status": "queued",
            "type": "inboundPhoneCall", "customer": {"number": "+14155550123"},
            "phoneNumber": {"number": "+14155550100"}}}}))
        .unwrap()
        .unwrap();
        let started = moved.started.unwrap();
        assert_eq!(started.status, CallStatus::Ringing);
        assert_eq!(started.from.as_deref(), Some("+14155550123"));
        assert_eq!(started.to.as_deref(), Some("+14155550100"));
        let ended = read(&serde_json::json!({"message": {"type": "status-update",
            "status": "ended", "call": {"id": "c2"}}}))
        .unwrap()
        .unwrap();
        assert!(ended.started.is_none(), "an end starts nothing");
    }

    #[test]
    fn a_call_object_of_odd_shape_starts_the_call_by_its_id_alone() {
        for call in [
            serde_json::json!({"id": "c2"}),
            serde_json::json!({"id": "c2", "status": 7, "customer": [1, 2], "createdAt": {}}),
            serde_json::json!({"id": "c2", "type": null, "phoneNumber": "x".repeat(100_000)}),
        ] {
            let body = serde_json::json!({"message": {"type": "status-update",
                "status": "in-progress", "call": call}});
            let moved = read(&body).unwrap().unwrap();
            let started = moved.started.unwrap();
            assert_eq!(started.call_id, "c2");
            assert_eq!(started.status, CallStatus::InProgress);
        }
        for call in [
            serde_json::json!({"id": 7}),
            serde_json::json!([]),
            serde_json::json!("c2"),
        ] {
            let body = serde_json::json!({"message": {"type": "status-update",
                "status": "in-progress", "call": call}});
            assert!(matches!(read(&body), Err(Refusal::BadBody(_))), "{body}");
        }
    }
}

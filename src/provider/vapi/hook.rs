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

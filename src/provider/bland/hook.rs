//! Bland's webhooks (`POST /hooks/bland/{provider_id}`): `X-Webhook-Signature`, the hex
//! HMAC-SHA256 of the raw body keyed by `webhook_secret_env`; a body with `call_id` that
//! says the call is over (`completed: true`, or a terminal `status` or `queue_status`) ends it.

use axum::http::{HeaderMap, HeaderValue};
use serde::Deserialize;

use crate::call::CallStatus;
use crate::provider::kind::{header, hex_hmac_sha256_matches, Hook, Move, Pushed, Refusal};
use crate::wire::calls::status_from_wire;

pub const SIGNATURE_HEADER: &str = "x-webhook-signature";

/// A `bland` provider's webhook signing secret (`webhook_secret_env`), marked sensitive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlandHook {
    pub secret_env: String,
    pub secret: HeaderValue,
}

#[derive(Deserialize)]
struct Event {
    call_id: Option<String>,
    #[serde(default)]
    completed: Option<bool>,
    status: Option<String>,
    queue_status: Option<String>,
}

impl Hook for BlandHook {
    fn signed(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        match header(headers, SIGNATURE_HEADER) {
            Some(_) => Ok(()),
            None => Err(Refusal::MissingSignature(
                "no X-Webhook-Signature header: set a webhook signing secret in Bland and the same value in webhook_secret_env",
            )),
        }
    }

    fn read(&self, pushed: &Pushed<'_>) -> Result<Option<Move>, Refusal> {
        let given = header(pushed.headers, SIGNATURE_HEADER).unwrap_or("");
        if !hex_hmac_sha256_matches(self.secret.as_bytes(), &[pushed.body], given) {
            return Err(Refusal::BadSignature(
                "X-Webhook-Signature does not match the hex HMAC-SHA256 of the body: check that webhook_secret_env holds the signing secret set in Bland",
            ));
        }
        let event: Event = serde_json::from_slice(pushed.body).map_err(|e| {
            Refusal::BadBody(format!(
                "a Bland webhook is a JSON object with call_id: {e}"
            ))
        })?;
        let call_id = event
            .call_id
            .clone()
            .filter(|id| !id.is_empty())
            .ok_or_else(|| Refusal::BadBody("a Bland webhook names its call in call_id".into()))?;
        let status = ended(&event);
        Ok(status.map(|status| Move {
            call_id,
            status,
            started: None,
        }))
    }
}

/// How the body says the call ended, if it does.
fn ended(event: &Event) -> Option<CallStatus> {
    let by_status = event
        .status
        .as_deref()
        .map(|s| status_from_wire(&s.to_ascii_lowercase()))
        .filter(|s| !s.is_active());
    let by_queue = match event
        .queue_status
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("complete" | "completed") => Some(CallStatus::Completed),
        Some("failed" | "error") => Some(CallStatus::Failed),
        Some("canceled" | "cancelled") => Some(CallStatus::Canceled),
        _ => None,
    };
    by_status
        .or(by_queue)
        .or((event.completed == Some(true)).then_some(CallStatus::Completed))
}

//! Placing a call on Vapi: `POST {base_url}/call` with the target's assistant and phone
//! number, `id` from its 201 answer, and the account's `subscriptionLimits` when the answer
//! carries them (`concurrencyBlocked`: refused for the limit, so another target may take it).

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};

use super::Vapi;
use crate::provider::http::Request;
use crate::provider::kind::TargetSettings;
use crate::provider::place::{by_status, send_once, Limits, PlaceOutcome, PlaceRequest};
use crate::provider::place::{target_of, Places};
use crate::provider::RequestContext;
use crate::settings::Check;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    assistant_id: Option<String>,
    phone_number_id: Option<String>,
}

/// A `vapi` route target: the assistant that takes the call and the phone number it comes
/// from (Vapi's ids for both).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub assistant_id: String,
    pub phone_number_id: String,
}

impl TargetSettings for Target {
    fn summary(&self) -> String {
        format!(
            "assistant {} on phone number {}",
            self.assistant_id, self.phone_number_id
        )
    }
}

/// Reads a `vapi` target's settings.
pub fn target(
    at: &str,
    table: &figment::value::Value,
    check: &mut Check<'_>,
) -> Option<Arc<dyn TargetSettings>> {
    let raw: Raw = check.read(at, table, &["provider", "weight"])?;
    let assistant_id = check.required(
        at,
        "assistant_id",
        raw.assistant_id,
        "vapi",
        "set it to the id of the Vapi assistant that takes the calls",
    );
    let phone_number_id = check.required(
        at,
        "phone_number_id",
        raw.phone_number_id,
        "vapi",
        "set it to the id of a Vapi phone number (not the number itself) the calls come from",
    );
    Some(Arc::new(Target {
        assistant_id: assistant_id?,
        phone_number_id: phone_number_id?,
    }))
}

/// The create-call body for `request`.
pub fn body(target: &Target, request: &PlaceRequest) -> Value {
    let mut body = json!({
        "assistantId": target.assistant_id,
        "phoneNumberId": target.phone_number_id,
        "customer": {"number": request.to},
        "assistantOverrides": {"variableValues": request.variables},
    });
    if let Some(metadata) = &request.metadata {
        body["metadata"] = Value::Object(metadata.clone());
    }
    body
}

/// `subscriptionLimits` out of an answer, if it has them.
fn limits(json: &Value) -> Option<Limits> {
    let l = json.get("subscriptionLimits")?.as_object()?;
    let count = |name: &str| {
        l.get(name)
            .and_then(Value::as_f64)
            .filter(|n| *n >= 0.0)
            .map(|n| n.min(u32::MAX as f64) as u32)
    };
    Some(Limits {
        concurrency_limit: count("concurrencyLimit"),
        remaining: count("remainingConcurrentCalls"),
        blocked: l.get("concurrencyBlocked").and_then(Value::as_bool) == Some(true),
    })
}

/// Vapi's answer: the call (201) with its `id`; whatever the status, `subscriptionLimits`
/// with `concurrencyBlocked: true` means the call was not started for the account's limit.
pub fn read_answer(status: u16, body: &[u8]) -> PlaceOutcome {
    let limits = serde_json::from_slice::<Value>(body)
        .ok()
        .as_ref()
        .and_then(limits);
    if let Some(l) = limits.filter(|l| l.blocked) {
        return PlaceOutcome::Refused {
            code: crate::error_code::ErrorCode::AtCapacity,
            reason: format!(
                "answered HTTP {status}: blocked by the account's concurrency limit ({})",
                l.concurrency_limit
                    .map_or("not given".to_owned(), |n| n.to_string())
            ),
            limits: Some(l),
        };
    }
    match by_status(status, body, |v| v.get("id")?.as_str()) {
        PlaceOutcome::Placed { call_id, .. } => PlaceOutcome::Placed { call_id, limits },
        PlaceOutcome::Refused { code, reason, .. } => PlaceOutcome::Refused {
            code,
            reason,
            limits,
        },
        other => other,
    }
}

#[async_trait]
impl Places for Vapi {
    async fn place(&self, _ctx: &RequestContext, request: &PlaceRequest) -> PlaceOutcome {
        let target = match target_of::<Target>(request) {
            Ok(t) => t,
            Err(refused) => return refused,
        };
        let request =
            Request::post_json(self.list_url.clone(), &body(target, request)).auth(&self.auth);
        send_once(self.lister.client(), &request, read_answer).await
    }
}

//! Placing a call on Retell: `POST {base_url}/v2/create-phone-call`, the target's agent and
//! from number, and `call_id` from its 201 answer.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};

use super::Retell;
use crate::provider::http::Request;
use crate::provider::kind::TargetSettings;
use crate::provider::place::{by_status, send_once, PlaceOutcome, PlaceRequest};
use crate::provider::place::{target_of, Places};
use crate::provider::RequestContext;
use crate::settings::Check;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    agent_id: Option<String>,
    from_number: Option<String>,
}

/// A `retell` route target: the agent that takes the call and the number it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub agent_id: String,
    pub from_number: String,
}

impl TargetSettings for Target {
    fn summary(&self) -> String {
        format!("agent {} from {}", self.agent_id, self.from_number)
    }
}

/// Reads a `retell` target's settings.
pub fn target(
    at: &str,
    table: &figment::value::Value,
    check: &mut Check<'_>,
) -> Option<Arc<dyn TargetSettings>> {
    let raw: Raw = check.read(at, table, &["provider", "weight"])?;
    let agent_id = check.required(
        at,
        "agent_id",
        raw.agent_id,
        "retell",
        "set it to the Retell agent that takes the calls, e.g. \"agent_123\"",
    );
    let from_number = check.required(
        at,
        "from_number",
        raw.from_number,
        "retell",
        "set it to a number bought through Retell, in E.164, e.g. \"+14155550100\"",
    );
    Some(Arc::new(Target {
        agent_id: agent_id?,
        from_number: from_number?,
    }))
}

/// The create-phone-call body for `request`.
pub fn body(target: &Target, request: &PlaceRequest) -> Value {
    let mut body = json!({
        "from_number": target.from_number,
        "to_number": request.to,
        "override_agent_id": target.agent_id,
        "retell_llm_dynamic_variables": request.variables,
    });
    if let Some(metadata) = &request.metadata {
        body["metadata"] = Value::Object(metadata.clone());
    }
    body
}

/// Retell's answer: the call object (201) with its `call_id`; 429 when the account's
/// concurrency is used up, which the shared rules read as a refusal.
pub fn read_answer(status: u16, body: &[u8]) -> PlaceOutcome {
    by_status(status, body, |v| v.get("call_id")?.as_str())
}

#[async_trait]
impl Places for Retell {
    async fn place(&self, _ctx: &RequestContext, request: &PlaceRequest) -> PlaceOutcome {
        let target = match target_of::<Target>(request) {
            Ok(t) => t,
            Err(refused) => return refused,
        };
        let request =
            Request::post_json(self.create_url.clone(), &body(target, request)).auth(&self.auth);
        send_once(self.lister.client(), &request, read_answer).await
    }
}

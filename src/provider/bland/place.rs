//! Placing a call on Bland: `POST {base_url}/v1/calls` with the target's pathway or task,
//! the same credentials as listing, and `call_id` from its answer. A 4xx with
//! `"status": "error"` started nothing: at 429 another target may take the call, any other
//! is the platform's rejection.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{Bland, ORG_ID_HEADER};
use crate::provider::http::Request;
use crate::provider::kind::TargetSettings;
use crate::provider::place::{by_status, send_once, PlaceOutcome, PlaceRequest};
use crate::provider::place::{target_of, Places};
use crate::provider::RequestContext;
use crate::settings::Check;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    pathway_id: Option<String>,
    task: Option<String>,
    from: Option<String>,
}

/// What a Bland call follows: a conversational pathway, or a prompt of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Script {
    Pathway(String),
    Task(String),
}

/// A `bland` route target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub script: Script,
    /// The number the call comes from; `None`: Bland's choice.
    pub from: Option<String>,
}

impl TargetSettings for Target {
    fn summary(&self) -> String {
        let script = match &self.script {
            Script::Pathway(id) => format!("pathway {id}"),
            Script::Task(_) => "a task prompt".to_owned(),
        };
        match &self.from {
            Some(from) => format!("{script} from {from}"),
            None => script,
        }
    }
}

/// Reads a `bland` target's settings: `pathway_id` or `task`, exactly one.
pub fn target(
    at: &str,
    table: &figment::value::Value,
    check: &mut Check<'_>,
) -> Option<Arc<dyn TargetSettings>> {
    let raw: Raw = check.read(at, table, &["provider", "weight"])?;
    let script = match (raw.pathway_id, raw.task) {
        (Some(id), None) => Script::Pathway(id),
        (None, Some(task)) => Script::Task(task),
        (Some(_), Some(_)) => {
            check.push(
                format!("{at}.task"),
                "is set together with pathway_id: a Bland call follows one or the other",
                "keep pathway_id or task, not both",
            );
            return None;
        }
        (None, None) => {
            check.push(
                format!("{at}.pathway_id"),
                "is required for kind bland (or task)",
                "set pathway_id to a Bland pathway's id, or task to the prompt the agent follows",
            );
            return None;
        }
    };
    Some(Arc::new(Target {
        script,
        from: raw.from,
    }))
}

/// The send-call body for `request`.
pub fn body(target: &Target, request: &PlaceRequest) -> Value {
    let mut body = json!({
        "phone_number": request.to,
        "request_data": request.variables,
    });
    match &target.script {
        Script::Pathway(id) => body["pathway_id"] = id.as_str().into(),
        Script::Task(task) => body["task"] = task.as_str().into(),
    }
    if let Some(from) = &target.from {
        body["from"] = from.as_str().into();
    }
    if let Some(metadata) = &request.metadata {
        body["metadata"] = Value::Object(metadata.clone());
    }
    body
}

/// Bland's answer: `{"status": "success", "call_id": ...}`; errors as the shared rules read
/// them (429 a refusal, other 4xx a rejection with Bland's `message`).
pub fn read_answer(status: u16, body: &[u8]) -> PlaceOutcome {
    by_status(status, body, |v| v.get("call_id")?.as_str())
}

#[async_trait]
impl Places for Bland {
    async fn place(&self, ctx: &RequestContext, request: &PlaceRequest) -> PlaceOutcome {
        let target = match target_of::<Target>(request) {
            Ok(t) => t,
            Err(refused) => return refused,
        };
        let (authorization, org_id, _) = match self.credentials(ctx) {
            Ok(c) => c,
            Err(e) => {
                return PlaceOutcome::Refused {
                    code: e.code(),
                    reason: e.to_string(),
                    limits: None,
                }
            }
        };
        let request = Request::post_json(self.calls_url.clone(), &body(target, request))
            .header(axum::http::header::AUTHORIZATION, authorization.clone())
            .header(ORG_ID_HEADER, org_id.clone());
        send_once(self.lister.client(), &request, read_answer).await
    }
}

//! Kind `twilio-media-stream`: a Twilio media-stream agent server's `GET {base_url}/api/calls`,
//! `POST {base_url}/api/calls/{call_id}/end` to end one, and, with `place_calls`,
//! `POST {base_url}/api/call` to place one.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use serde::Deserialize;

use super::http::{endpoint, with_segment, Lister, Page, Request};
use super::kind::{Kind, KindSettings, NoFields, NoTargetSettings, TargetSettings};
use super::place::Places;
use super::place::{by_status, outcome, PlaceOutcome, PlaceRequest};
use super::{
    Backend, Calls, Common, EndCall, EndError, ListCalls, PlaceCall, Placed, ProviderError,
    RequestContext,
};
use crate::settings::Check;
use crate::wire;

pub static KIND: AgentServerKind = AgentServerKind;

pub struct AgentServerKind;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    base_url: Option<String>,
    #[serde(default)]
    place_calls: bool,
    max_active_calls: Option<u64>,
}

/// Validated settings of a `twilio-media-stream` provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub base_url: url::Url,
    /// Whether `POST /api/call` may choose this server.
    pub place_calls: bool,
    /// Active calls (listed, plus being placed) at which the server is full; `None`: no limit.
    pub max_active_calls: Option<u32>,
}

/// The most `max_active_calls` can be.
const MAX_ACTIVE_CALLS: u64 = 1_000_000;

impl Kind for AgentServerKind {
    fn name(&self) -> &'static str {
        "twilio-media-stream"
    }

    fn settings(
        &self,
        at: &str,
        table: &figment::value::Value,
        check: &mut Check<'_>,
    ) -> Option<Arc<dyn KindSettings>> {
        let raw: Raw = check.read(at, table, super::RawCommon::FIELDS)?;
        let url = check.required(
            at,
            "base_url",
            raw.base_url,
            KIND.name(),
            "set it to the agent server's address, e.g. \"http://127.0.0.1:9000\"",
        )?;
        let max_active_calls = raw.max_active_calls.map(|n| {
            check.ranged(
                &format!("{at}.max_active_calls"),
                n,
                MAX_ACTIVE_CALLS,
                1..=MAX_ACTIVE_CALLS,
            ) as u32
        });
        if max_active_calls.is_some() && !raw.place_calls {
            check.push(
                format!("{at}.max_active_calls"),
                "is set, but place_calls is not, so callmux never places calls here",
                "set place_calls = true, or remove max_active_calls",
            );
        }
        let base_url = check.base_url(&format!("{at}.base_url"), &url)?;
        Some(Arc::new(Settings {
            base_url,
            place_calls: raw.place_calls,
            max_active_calls,
        }))
    }
}

impl KindSettings for Settings {
    fn kind(&self) -> &'static str {
        KIND.name()
    }

    fn summary(&self) -> String {
        let places = match (self.place_calls, self.max_active_calls) {
            (false, _) => String::new(),
            (true, None) => "; places calls (no limit)".to_owned(),
            (true, Some(n)) => format!("; places calls, at most {n} active"),
        };
        format!("at {}{places}", self.base_url)
    }

    /// An agent server takes no target settings; it must place calls (`place_calls`).
    fn target(
        &self,
        at: &str,
        table: &figment::value::Value,
        check: &mut Check<'_>,
    ) -> Option<Arc<dyn TargetSettings>> {
        if !self.place_calls {
            check.push(
                format!("{at}.provider"),
                "is an agent server without place_calls, so it cannot place calls",
                "set place_calls = true on the provider, or choose another",
            );
            return None;
        }
        check.read::<NoFields>(at, table, &["provider", "weight"])?;
        Some(Arc::new(NoTargetSettings))
    }

    fn build(&self, id: Arc<str>, common: &Common) -> Result<Backend, String> {
        let server = Arc::new(AgentServer {
            id,
            url: endpoint(&self.base_url, "api/calls"),
            place_url: endpoint(&self.base_url, "api/call"),
            // `max_concurrent_calls` is `max_active_calls`'s alias: where both are set, the
            // smaller is the limit.
            max_active_calls: super::capacity::smaller(
                self.max_active_calls,
                common.max_concurrent_calls,
            ),
            lister: Lister::new(&common.http, false)?,
        });
        Ok(Backend {
            list: server.clone(),
            end: Some(server.clone()),
            capacity: Arc::new(super::capacity::Configured(server.max_active_calls)),
            place: self
                .place_calls
                .then_some(server.clone() as Arc<dyn PlaceCall>),
            places: self.place_calls.then_some(server as Arc<dyn Places>),
            forward: None,
        })
    }
}

pub struct AgentServer {
    id: Arc<str>,
    url: reqwest::Url,
    place_url: reqwest::Url,
    max_active_calls: Option<u32>,
    lister: Lister,
}

fn page(body: &[u8], provider: &Arc<str>) -> Result<Page, wire::ParseError> {
    wire::calls::parse(body, provider).map(Page::from)
}

#[async_trait]
impl ListCalls for AgentServer {
    fn id(&self) -> &str {
        &self.id
    }

    async fn active_calls(&self, _ctx: &RequestContext) -> Result<Calls, ProviderError> {
        self.lister
            .list_one(Request::get(self.url.clone()), None, &self.id, page)
            .await
    }
}

/// The agent server's answer to an end: `{"success": true, ...}`, or `{"success": false,
/// "error": ...}` at HTTP 200.
#[derive(Deserialize)]
struct Ended {
    success: bool,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

/// What an end answer says: ended, not found ("Call not found", in any case), or the
/// server's own failure.
fn read_end(body: &[u8]) -> Result<(), EndError> {
    let ended: Ended = serde_json::from_slice(body).map_err(|e| {
        EndError::Failed(ProviderError::BadBody(format!(
            "not an end answer ({{\"success\": ...}}): {e}"
        )))
    })?;
    if ended.success {
        return Ok(());
    }
    let text = match ended.error {
        Some(serde_json::Value::String(s)) => s,
        Some(other) => other.to_string(),
        None => "the call was not ended (no reason given)".to_owned(),
    };
    if text.to_lowercase().contains("not found") {
        Err(EndError::NotFound)
    } else {
        Err(EndError::Failed(ProviderError::Reported(text)))
    }
}

#[async_trait]
impl EndCall for AgentServer {
    async fn end_call(&self, _ctx: &RequestContext, call_id: &str) -> Result<(), EndError> {
        // `""`, `.` and `..` cannot be one path segment, and no call has such an id.
        let url = with_segment(&self.url, call_id)
            .and_then(|u| with_segment(&u, "end"))
            .ok_or(EndError::NotFound)?;
        let client = self.lister.client();
        read_end(
            &client
                .control(&Request::post(url), client.deadline(), &[404])
                .await?,
        )
    }
}

#[async_trait]
impl PlaceCall for AgentServer {
    fn max_active_calls(&self) -> Option<u32> {
        self.max_active_calls
    }

    async fn place_call(
        &self,
        _ctx: &RequestContext,
        body: Bytes,
    ) -> Result<Placed, ProviderError> {
        let (status, body) = self.send_place(body).await?;
        Ok(Placed { status, body })
    }
}

impl AgentServer {
    /// Sends a place body to `POST {base_url}/api/call` once (only a refused connection is
    /// tried again) and returns the server's answer, whatever its status: the one sender of
    /// both part two's `POST /api/call` and route targets.
    async fn send_place(&self, body: Bytes) -> Result<(u16, Bytes), ProviderError> {
        let client = self.lister.client();
        let request = Request::post(self.place_url.clone()).with_body(body, "application/json");
        client.exchange(&request, client.deadline()).await
    }
}

/// The agent server's place body for a route's request: `{"to", "prompt"?, "webhook_url"?,
/// "metadata"?}`, part two's shape.
pub fn place_body(request: &PlaceRequest) -> serde_json::Value {
    let mut body = serde_json::json!({"to": request.to});
    if let Some(prompt) = &request.prompt {
        body["prompt"] = prompt.as_str().into();
    }
    if let Some(url) = &request.webhook_url {
        body["webhook_url"] = url.as_str().into();
    }
    if let Some(metadata) = &request.metadata {
        body["metadata"] = serde_json::Value::Object(metadata.clone());
    }
    body
}

/// The agent server's answer: `call_id` from a 2xx, its refusals by the shared rules.
pub fn read_place_answer(status: u16, body: &[u8]) -> PlaceOutcome {
    by_status(status, body, |v| v.get("call_id")?.as_str())
}

#[async_trait]
impl Places for AgentServer {
    async fn place(&self, _ctx: &RequestContext, request: &PlaceRequest) -> PlaceOutcome {
        let body = Bytes::from(place_body(request).to_string());
        outcome(self.send_place(body).await, read_place_answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_answers_read_as_ended_not_found_or_the_servers_failure() {
        assert_eq!(read_end(br#"{"success": true, "message": "ok"}"#), Ok(()));
        assert_eq!(
            read_end(br#"{"success": false, "error": "Call NOT FOUND"}"#),
            Err(EndError::NotFound)
        );
        assert_eq!(
            read_end(br#"{"success": false, "error": "boom"}"#),
            Err(EndError::Failed(ProviderError::Reported("boom".into())))
        );
        assert!(matches!(
            read_end(b"<html>"),
            Err(EndError::Failed(ProviderError::BadBody(_)))
        ));
    }
}

//! Kind `static`: calls from a JSON file in either list shape, read on every ask and parsed
//! again whenever its bytes change. Ending a call records the end and drops the call from the list;
//! placing one adds it (`queued`, then `in-progress` after a second), so the demo can place calls.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Deserialize;

use super::kind::{Kind, KindSettings};
use super::{Backend, Calls, Common, EndCall, EndError, ListCalls, ProviderError, RequestContext};
use crate::call::{Call, CallStatus, Direction, Text};
use crate::provider::kind::{NoFields, NoTargetSettings, TargetSettings};
use crate::provider::place::Places;
use crate::provider::place::{PlaceOutcome, PlaceRequest};
use crate::settings::Check;
use crate::wire::{self, ParseError};

pub static KIND: StaticKind = StaticKind;

pub struct StaticKind;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    path: Option<String>,
}

/// Validated settings of a `static` provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Absolute: a relative `path` is taken from the config file's folder.
    pub path: PathBuf,
}

impl Kind for StaticKind {
    fn name(&self) -> &'static str {
        "static"
    }

    fn settings(
        &self,
        at: &str,
        table: &figment::value::Value,
        check: &mut Check<'_>,
    ) -> Option<Arc<dyn KindSettings>> {
        let raw: Raw = check.read(at, table, super::RawCommon::FIELDS)?;
        let text = check.required(
            at,
            "path",
            raw.path,
            KIND.name(),
            "set it to a JSON file in the calls shape or the Bland shape, e.g. \"demo/agent-calls.json\"",
        )?;
        let field = format!("{at}.path");
        let path = check.path(&text);
        if !path.is_file() {
            check.push(
                field,
                format!("`{}` is not a file callmux can read", path.display()),
                "give the path of a JSON file (relative paths start at the config file's folder)",
            );
            return None;
        }
        Some(Arc::new(Settings { path }))
    }
}

impl KindSettings for Settings {
    fn kind(&self) -> &'static str {
        KIND.name()
    }

    fn summary(&self) -> String {
        format!("from {}", self.path.display())
    }

    /// A `static` target takes no settings of its own.
    fn target(
        &self,
        at: &str,
        table: &figment::value::Value,
        check: &mut Check<'_>,
    ) -> Option<Arc<dyn TargetSettings>> {
        check.read::<NoFields>(at, table, &["provider", "weight"])?;
        Some(Arc::new(NoTargetSettings))
    }

    fn build(&self, id: Arc<str>, common: &Common) -> Result<Backend, String> {
        let file = Arc::new(StaticFile {
            id,
            path: self.path.clone(),
            max_bytes: common.http.max_body_bytes,
            state: Mutex::default(),
        });
        Ok(Backend {
            list: file.clone(),
            end: Some(file.clone()),
            place: None,
            places: Some(file),
            forward: None,
            capacity: Arc::new(super::capacity::Configured(common.max_concurrent_calls)),
        })
    }
}

pub struct StaticFile {
    id: Arc<str>,
    path: PathBuf,
    /// `max_body_bytes`: a larger file is the provider's error, as a larger body would be.
    max_bytes: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The file as last read, and its calls.
    read: Option<(Vec<u8>, Arc<Vec<Call>>)>,
    ended: HashSet<Text>,
    /// The list last handed out, less the ended calls: the same `Calls` while neither the
    /// file nor the ended set changes, so answers built from it are reused.
    listed: Option<Calls>,
    /// Calls placed through callmux, and when.
    placed: Vec<(Call, Instant)>,
    /// When a placed call next turns `in-progress`: the list handed out is stale then.
    promote_at: Option<Instant>,
}

/// How long a placed call stays `queued` before the list shows it `in-progress`.
const QUEUED_FOR: Duration = Duration::from_secs(1);

impl StaticFile {
    /// The file's bytes, read whole on every ask: a demo's or a test's file is small, and
    /// comparing bytes sees every change, where a modification time may not move between
    /// two writes close together.
    async fn read(&self) -> Result<Vec<u8>, ProviderError> {
        let len = tokio::fs::metadata(&self.path)
            .await
            .map_err(|e| unreadable(&e))?
            .len();
        if len > self.max_bytes as u64 {
            return Err(ProviderError::TooLarge(self.max_bytes));
        }
        let body = tokio::fs::read(&self.path)
            .await
            .map_err(|e| unreadable(&e))?;
        if body.len() > self.max_bytes {
            return Err(ProviderError::TooLarge(self.max_bytes));
        }
        Ok(body)
    }
}

fn unreadable(e: &std::io::Error) -> ProviderError {
    // The path is the operator's business, not the client's: the kind of failure only.
    ProviderError::Unreachable(format!("its file cannot be read ({})", e.kind()))
}

/// Either list shape: the calls shape when the body reads as one, else Bland's (whose own
/// error envelope is reported as such).
fn parse(body: &[u8], provider: &Arc<str>) -> Result<Vec<Call>, ParseError> {
    let as_calls = match wire::calls::parse(body, provider) {
        Ok(calls) => return Ok(calls),
        Err(e) => e,
    };
    match wire::bland::parse(body, provider) {
        Err(ParseError::Malformed(as_bland)) => Err(ParseError::Malformed(format!(
            "neither the calls shape ({as_calls}) nor the Bland shape ({as_bland})"
        ))),
        other => other,
    }
}

#[async_trait]
impl ListCalls for StaticFile {
    fn id(&self) -> &str {
        &self.id
    }

    async fn active_calls(&self, _ctx: &RequestContext) -> Result<Calls, ProviderError> {
        let body = self.read().await?;
        {
            let state = self.state.lock().expect("static state lock");
            if let (Some((read, _)), Some(listed)) = (&state.read, &state.listed) {
                let fresh = state.promote_at.is_none_or(|t| Instant::now() < t);
                if *read == body && fresh {
                    return Ok(listed.clone());
                }
            }
        }
        let calls = Arc::new(parse(&body, &self.id)?);
        let mut state = self.state.lock().expect("static state lock");
        state.read = Some((body, calls));
        Ok(state.relist())
    }
}

impl State {
    fn relist(&mut self) -> Calls {
        let calls = self
            .read
            .as_ref()
            .map(|(_, c)| c.as_slice())
            .unwrap_or_default();
        let now = Instant::now();
        self.promote_at = None;
        let placed = self.placed.iter().map(|(call, at)| {
            let mut call = call.clone();
            if now.duration_since(*at) >= QUEUED_FOR {
                call.status = CallStatus::InProgress;
            } else {
                let due = *at + QUEUED_FOR;
                self.promote_at = Some(self.promote_at.map_or(due, |t| t.min(due)));
            }
            call
        });
        let listed: Calls = Arc::new(
            calls
                .iter()
                .cloned()
                .chain(placed)
                .filter(|c| !self.ended.contains(&c.call_id))
                .collect(),
        );
        self.listed = Some(listed.clone());
        listed
    }
}

#[async_trait]
impl Places for StaticFile {
    async fn place(&self, _ctx: &RequestContext, request: &PlaceRequest) -> PlaceOutcome {
        let call_id = format!("static-{}", uuid::Uuid::new_v4());
        let mut call = Call::new(call_id.as_str(), self.id.clone(), CallStatus::Queued);
        call.to = Some(Text::from(request.to.as_str()));
        call.direction = Some(Direction::Outbound);
        call.created_at = Some(crate::call::time::now_ms());
        let mut state = self.state.lock().expect("static state lock");
        state.placed.push((call, Instant::now()));
        state.relist();
        PlaceOutcome::Placed {
            call_id,
            limits: None,
        }
    }
}

#[async_trait]
impl EndCall for StaticFile {
    async fn end_call(&self, ctx: &RequestContext, call_id: &str) -> Result<(), EndError> {
        self.active_calls(ctx).await.map_err(EndError::Failed)?;
        let mut state = self.state.lock().expect("static state lock");
        let listed = state.listed.clone().unwrap_or_default();
        if !listed
            .iter()
            .any(|c| c.call_id == call_id && c.status.is_active())
        {
            return Err(EndError::NotFound);
        }
        state.ended.insert(Text::from(call_id));
        state.relist();
        Ok(())
    }
}

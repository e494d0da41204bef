//! Kind `static`: calls from a JSON file in either list shape, read again whenever the file
//! changes. Ending a call records the end and drops the call from the list.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;
use serde::Deserialize;

use super::registry::{Kind, KindSettings};
use super::{Backend, Calls, Common, EndCall, EndError, ListCalls, ProviderError, RequestContext};
use crate::call::{Call, Text};
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
        let field = format!("{at}.path");
        let Some(text) = raw.path else {
            check.push(
                field,
                "is required for kind static",
                "set it to a JSON file in the calls shape or the Bland shape, e.g. \"demo/agent-calls.json\"",
            );
            return None;
        };
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

    fn build(&self, id: Arc<str>, _common: &Common) -> Result<Backend, String> {
        let file = Arc::new(StaticFile {
            id,
            path: self.path.clone(),
            state: Mutex::default(),
        });
        Ok(Backend {
            list: file.clone(),
            end: Some(file),
        })
    }
}

pub struct StaticFile {
    id: Arc<str>,
    path: PathBuf,
    state: Mutex<State>,
}

/// A file's modification time and length: when either changes, the file is read again.
type Stamp = (SystemTime, u64);

#[derive(Default)]
struct State {
    /// The file as last read: its modification time and length, and its calls.
    read: Option<(Stamp, Arc<Vec<Call>>)>,
    ended: HashSet<Text>,
    /// The list last handed out, less the ended calls: the same `Calls` while neither the
    /// file nor the ended set changes, so answers built from it are reused.
    listed: Option<Calls>,
}

impl StaticFile {
    fn stamp(&self) -> Result<Stamp, ProviderError> {
        let meta = std::fs::metadata(&self.path).map_err(|e| unreadable(&e))?;
        Ok((meta.modified().map_err(|e| unreadable(&e))?, meta.len()))
    }
}

fn unreadable(e: &std::io::Error) -> ProviderError {
    // The path is the operator's business, not the client's: the kind of failure only.
    ProviderError::Unreachable(format!("its file cannot be read ({})", e.kind()))
}

/// Either list shape: the calls shape when the body has `calls`, else Bland's.
fn parse(body: &[u8], provider: &Arc<str>) -> Result<Vec<Call>, ParseError> {
    match wire::calls::parse(body, provider) {
        Ok(calls) => Ok(calls),
        Err(as_calls) => wire::bland::parse(body, provider).map_err(|as_bland| {
            ParseError::Malformed(format!(
                "neither the calls shape ({as_calls}) nor the Bland shape ({as_bland})"
            ))
        }),
    }
}

#[async_trait]
impl ListCalls for StaticFile {
    fn id(&self) -> &str {
        &self.id
    }

    fn answers_per_caller(&self) -> bool {
        false
    }

    async fn active_calls(&self, _ctx: &RequestContext) -> Result<Calls, ProviderError> {
        let stamp = self.stamp()?;
        {
            let state = self.state.lock().expect("static state lock");
            if let (Some((read, _)), Some(listed)) = (&state.read, &state.listed) {
                if *read == stamp {
                    return Ok(listed.clone());
                }
            }
        }
        let body = tokio::fs::read(&self.path)
            .await
            .map_err(|e| unreadable(&e))?;
        let calls = Arc::new(parse(&body, &self.id)?);
        let mut state = self.state.lock().expect("static state lock");
        state.read = Some((stamp, calls));
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
        let listed: Calls = Arc::new(
            calls
                .iter()
                .filter(|c| !self.ended.contains(&c.call_id))
                .cloned()
                .collect(),
        );
        self.listed = Some(listed.clone());
        listed
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

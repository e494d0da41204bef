//! Kind `twilio-media-stream`: a Twilio media-stream agent server's `GET {base_url}/api/calls`.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;

use super::http::{endpoint, Lister, Page, Request};
use super::registry::{Kind, KindSettings};
use super::{Backend, Calls, Common, ListCalls, ProviderError, RequestContext};
use crate::settings::Check;
use crate::wire;

pub static KIND: AgentServerKind = AgentServerKind;

pub struct AgentServerKind;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    base_url: Option<String>,
}

/// Validated settings of a `twilio-media-stream` provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub base_url: url::Url,
}

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
        let Some(url) = raw.base_url else {
            check.push(
                format!("{at}.base_url"),
                "is required for kind twilio-media-stream",
                "set it to the agent server's address, e.g. \"http://127.0.0.1:9000\"",
            );
            return None;
        };
        let base_url = check.base_url(&format!("{at}.base_url"), &url)?;
        Some(Arc::new(Settings { base_url }))
    }
}

impl KindSettings for Settings {
    fn kind(&self) -> &'static str {
        KIND.name()
    }

    fn summary(&self) -> String {
        format!("at {}", self.base_url)
    }

    fn build(&self, id: Arc<str>, common: &Common) -> Result<Backend, String> {
        Ok(Backend {
            list: Arc::new(AgentServer {
                id,
                url: endpoint(&self.base_url, "api/calls"),
                lister: Lister::new(&common.http, false)?,
            }),
            end: None,
        })
    }
}

pub struct AgentServer {
    id: Arc<str>,
    url: reqwest::Url,
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

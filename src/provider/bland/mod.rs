//! Kind `bland`: Bland's `GET {base_url}/v1/calls/active` with `authorization` + `x-bland-org-id`,
//! with a key of its own or the caller's own, forwarded.

use std::sync::Arc;

use async_trait::async_trait;
use axum::http::{HeaderName, HeaderValue};
use serde::Deserialize;

use super::http::{endpoint, Lister, Page, Request};
use super::registry::{Kind, KindSettings};
use super::{Backend, Calls, Common, ListCalls, ProviderError, RequestContext};
use crate::settings::Check;
use crate::wire;

pub const DEFAULT_BASE_URL: &str = "https://api.bland.ai";
pub const ORG_ID_HEADER: HeaderName = HeaderName::from_static("x-bland-org-id");

pub static KIND: BlandKind = BlandKind;

pub struct BlandKind;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    base_url: Option<String>,
    api_key_env: Option<String>,
    org_id: Option<String>,
}

/// Validated settings of a `bland` provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub base_url: url::Url,
    /// `None`: forward the caller's own Bland credentials.
    pub credentials: Option<Credentials>,
}

/// The provider's own Bland key and org id. The key is a sensitive header value: its `Debug`
/// output is redacted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub api_key: HeaderValue,
    pub org_id: HeaderValue,
}

impl Kind for BlandKind {
    fn name(&self) -> &'static str {
        "bland"
    }

    fn settings(
        &self,
        at: &str,
        table: &figment::value::Value,
        check: &mut Check<'_>,
    ) -> Option<Arc<dyn KindSettings>> {
        let raw: Raw = check.read(at, table, super::RawCommon::FIELDS)?;
        let before = check.count();
        let url_text = raw.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL);
        let base_url = check.base_url(&format!("{at}.base_url"), url_text);
        let credentials = match (raw.api_key_env, raw.org_id) {
            (None, None) => None,
            (Some(var), Some(org_id)) => {
                let key = check.sensitive_header_from_env(&format!("{at}.api_key_env"), &var);
                let org_id = check.header_value(&format!("{at}.org_id"), &org_id);
                key.zip(org_id)
                    .map(|(api_key, org_id)| Credentials { api_key, org_id })
            }
            (Some(_), None) => {
                check.push(
                    format!("{at}.org_id"),
                    "is required when api_key_env is set (Bland needs both headers)",
                    "set org_id to the Bland org id the key belongs to",
                );
                None
            }
            (None, Some(_)) => {
                check.push(
                    format!("{at}.api_key_env"),
                    "is required when org_id is set",
                    "set api_key_env to the variable holding the Bland key, or remove org_id to forward callers' keys",
                );
                None
            }
        };
        if check.count() > before {
            return None;
        }
        Some(Arc::new(Settings {
            base_url: base_url?,
            credentials,
        }))
    }
}

impl KindSettings for Settings {
    fn kind(&self) -> &'static str {
        KIND.name()
    }

    fn summary(&self) -> String {
        match &self.credentials {
            Some(_) => format!(
                "at {}; own api key (hidden) and org id (hidden)",
                self.base_url
            ),
            None => format!("at {}; forwards the caller's Bland key", self.base_url),
        }
    }

    fn build(&self, id: Arc<str>, common: &Common) -> Result<Backend, String> {
        Ok(Backend {
            list: Arc::new(Bland {
                id,
                url: endpoint(&self.base_url, "v1/calls/active"),
                lister: Lister::new(&common.http, self.forwards_caller_credentials())?,
                credentials: self.credentials.clone(),
            }),
            end: None,
        })
    }

    fn forwards_caller_credentials(&self) -> bool {
        self.credentials.is_none()
    }
}

pub struct Bland {
    id: Arc<str>,
    url: reqwest::Url,
    lister: Lister,
    credentials: Option<Credentials>,
}

fn page(body: &[u8], provider: &Arc<str>) -> Result<Page, wire::ParseError> {
    wire::bland::parse(body, provider).map(Page::from)
}

#[async_trait]
impl ListCalls for Bland {
    fn id(&self) -> &str {
        &self.id
    }

    async fn active_calls(&self, ctx: &RequestContext) -> Result<Calls, ProviderError> {
        // A provider with credentials of its own never forwards the caller's.
        let (authorization, org_id, caller) = match (&self.credentials, &ctx.forwarded) {
            (Some(own), _) => (&own.api_key, &own.org_id, None),
            (None, Some(fwd)) => (&fwd.authorization, &fwd.org_id, Some(fwd.digest())),
            (None, None) => return Err(ProviderError::NoCredentials),
        };
        let request = Request::get(self.url.clone())
            .header(axum::http::header::AUTHORIZATION, authorization.clone())
            .header(ORG_ID_HEADER, org_id.clone());
        self.lister.list_one(request, caller, &self.id, page).await
    }
}

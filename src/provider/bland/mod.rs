//! Kind `bland`: Bland's `GET {base_url}/v1/calls/active` with `authorization` + `x-bland-org-id`,
//! with a key of its own or the caller's own, forwarded; `POST {base_url}/v1/calls/{call_id}/stop`
//! ends a call with the same credentials; any other route is forwarded as it came
//! (`forward.rs`).

mod forward;
pub mod hook;
pub mod place;

use std::sync::Arc;

use async_trait::async_trait;
use axum::http::{HeaderName, HeaderValue};
use serde::Deserialize;

use super::http::{endpoint, with_segment, Lister, Page, Request};
use super::kind::{Hook, Kind, KindSettings, TargetSettings};
use super::{Backend, Calls, Common, EndCall, EndError, ListCalls, ProviderError, RequestContext};
use crate::settings::Check;
use crate::wire;
pub use forward::path_problem;

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
    webhook_secret_env: Option<String>,
}

/// Validated settings of a `bland` provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub base_url: url::Url,
    /// `None`: forward the caller's own Bland credentials.
    pub credentials: Option<Credentials>,
    /// Bland's webhooks are taken when `webhook_secret_env` is set.
    pub webhook: Option<hook::BlandHook>,
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
        let base_url = check.base_url_or(at, raw.base_url.as_deref(), DEFAULT_BASE_URL);
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
        let webhook = raw.webhook_secret_env.and_then(|var| {
            let secret =
                check.sensitive_header_from_env(&format!("{at}.webhook_secret_env"), &var)?;
            Some(hook::BlandHook {
                secret_env: var,
                secret,
            })
        });
        if check.count() > before {
            return None;
        }
        Some(Arc::new(Settings {
            base_url: base_url?,
            credentials,
            webhook,
        }))
    }
}

impl KindSettings for Settings {
    fn kind(&self) -> &'static str {
        KIND.name()
    }

    fn summary(&self) -> String {
        let hook = match &self.webhook {
            Some(h) => format!(
                "; webhooks signed with ${} (set, value hidden)",
                h.secret_env
            ),
            None => String::new(),
        };
        match &self.credentials {
            Some(_) => format!(
                "at {}; own api key (hidden) and org id (hidden){hook}",
                self.base_url
            ),
            None => format!(
                "at {}; forwards the caller's Bland key{hook}",
                self.base_url
            ),
        }
    }

    fn hook(&self) -> Option<&dyn Hook> {
        self.webhook.as_ref().map(|h| h as &dyn Hook)
    }

    fn target(
        &self,
        at: &str,
        table: &figment::value::Value,
        check: &mut Check<'_>,
    ) -> Option<Arc<dyn TargetSettings>> {
        place::target(at, table, check)
    }

    fn build(&self, id: Arc<str>, common: &Common) -> Result<Backend, String> {
        let bland = Arc::new(Bland {
            id,
            url: endpoint(&self.base_url, "v1/calls/active"),
            calls_url: endpoint(&self.base_url, "v1/calls"),
            lister: Lister::new(&common.http, self.forwards_caller_credentials())?,
            credentials: self.credentials.clone(),
            base_url: self.base_url.clone(),
        });
        Ok(Backend {
            list: bland.clone(),
            end: Some(bland.clone()),
            place: None,
            places: Some(bland.clone()),
            forward: Some(bland),
            capacity: Arc::new(super::capacity::Configured(common.max_concurrent_calls)),
        })
    }

    fn forwards_caller_credentials(&self) -> bool {
        self.credentials.is_none()
    }
}

pub struct Bland {
    id: Arc<str>,
    url: reqwest::Url,
    /// `{base_url}/v1/calls`, which `{call_id}/stop` is appended to.
    calls_url: reqwest::Url,
    lister: Lister,
    credentials: Option<Credentials>,
    /// What forwarded paths are appended to.
    base_url: url::Url,
}

impl Bland {
    /// The credentials to send: the provider's own, or else the caller's, forwarded (with
    /// the caller's digest, which per-caller caches are keyed by).
    fn credentials<'a>(
        &'a self,
        ctx: &'a RequestContext,
    ) -> Result<(&'a HeaderValue, &'a HeaderValue, Option<[u8; 32]>), ProviderError> {
        // A provider with credentials of its own never forwards the caller's.
        match (&self.credentials, &ctx.forwarded) {
            (Some(own), _) => Ok((&own.api_key, &own.org_id, None)),
            (None, Some(fwd)) => Ok((&fwd.authorization, &fwd.org_id, Some(fwd.digest()))),
            (None, None) => Err(ProviderError::NoCredentials),
        }
    }
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
        let (authorization, org_id, caller) = self.credentials(ctx)?;
        let request = Request::get(self.url.clone())
            .header(axum::http::header::AUTHORIZATION, authorization.clone())
            .header(ORG_ID_HEADER, org_id.clone());
        self.lister.list_one(request, caller, &self.id, page).await
    }
}

/// Bland's answer to a stop: `{"status": "success", ...}` or `{"status": "error", "message": ...}`.
#[derive(Deserialize)]
struct Stopped {
    status: Option<String>,
    #[serde(default)]
    message: Option<serde_json::Value>,
}

fn read_stop(body: &[u8]) -> Result<(), EndError> {
    let stopped: Stopped = serde_json::from_slice(body).map_err(|e| {
        EndError::Failed(ProviderError::BadBody(format!(
            "not a stop answer ({{\"status\": ...}}): {e}"
        )))
    })?;
    let text = match stopped.message {
        Some(serde_json::Value::String(s)) => s,
        Some(other) => other.to_string(),
        None => String::new(),
    };
    match stopped.status.as_deref() {
        Some(s) if s.eq_ignore_ascii_case("success") => Ok(()),
        _ if text.to_lowercase().contains("not found") => Err(EndError::NotFound),
        Some(_) if !text.is_empty() => Err(EndError::Failed(ProviderError::Reported(text))),
        _ => Err(EndError::Failed(ProviderError::Reported(
            "the call was not stopped (no reason given)".to_owned(),
        ))),
    }
}

#[async_trait]
impl EndCall for Bland {
    async fn end_call(&self, ctx: &RequestContext, call_id: &str) -> Result<(), EndError> {
        let (authorization, org_id, _) = self.credentials(ctx).map_err(EndError::Failed)?;
        // `""`, `.` and `..` cannot be one path segment, and no call has such an id.
        let url = with_segment(&self.calls_url, call_id)
            .and_then(|u| with_segment(&u, "stop"))
            .ok_or(EndError::NotFound)?;
        let request = Request::post(url)
            .header(axum::http::header::AUTHORIZATION, authorization.clone())
            .header(ORG_ID_HEADER, org_id.clone());
        let client = self.lister.client();
        read_stop(&client.control(&request, client.deadline(), &[404]).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_answers_read_as_stopped_not_found_or_blands_failure() {
        assert_eq!(
            read_stop(br#"{"status": "success", "message": "ok"}"#),
            Ok(())
        );
        assert_eq!(
            read_stop(br#"{"status": "error", "message": "Call not found."}"#),
            Err(EndError::NotFound)
        );
        assert_eq!(
            read_stop(br#"{"status": "error", "message": "boom"}"#),
            Err(EndError::Failed(ProviderError::Reported("boom".into())))
        );
    }
}

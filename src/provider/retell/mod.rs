//! Kind `retell`: Retell AI's ongoing calls from `POST {base_url}/v3/list-calls`, page by
//! page, and ending one with `POST {base_url}/v2/stop-call/{call_id}`.

pub mod capacity;
pub mod hook;
pub mod place;
pub mod wire;

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;

use super::http::{endpoint, with_segment, Auth, Lister, Request};
use super::kind::{Hook, Kind, KindSettings, TargetSettings};
use super::{Backend, Calls, Common, EndCall, EndError, ListCalls, ProviderError, RequestContext};
use crate::settings::Check;

pub const DEFAULT_BASE_URL: &str = "https://api.retellai.com";

/// Retell's largest page: fewer requests, so fewer pages spent of `max_pages`.
const PAGE_LIMIT: u32 = 1000;

pub static KIND: RetellKind = RetellKind;

pub struct RetellKind;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    base_url: Option<String>,
    api_key_env: Option<String>,
    #[serde(default)]
    use_burst: bool,
    webhook_key_env: Option<String>,
}

/// Validated settings of a `retell` provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub base_url: url::Url,
    /// The variable the key was read from: check-config names it, never its value.
    pub api_key_env: String,
    /// `Bearer <key>`, a sensitive header value, so `Debug` redacts it.
    pub auth: Auth,
    /// Whether the limit is Retell's burst limit while Retell reports burst enabled.
    pub use_burst: bool,
    /// Retell's webhooks are taken when `webhook_key_env` is set.
    pub webhook: Option<hook::RetellHook>,
}

impl Kind for RetellKind {
    fn name(&self) -> &'static str {
        "retell"
    }

    fn settings(
        &self,
        at: &str,
        table: &figment::value::Value,
        check: &mut Check<'_>,
    ) -> Option<Arc<dyn KindSettings>> {
        let raw: Raw = check.read(at, table, super::RawCommon::FIELDS)?;
        let base_url = check.base_url_or(at, raw.base_url.as_deref(), DEFAULT_BASE_URL);
        let var = check.required(
            at,
            "api_key_env",
            raw.api_key_env,
            KIND.name(),
            "set it to the name of the environment variable holding your Retell API key, \
             e.g. \"RETELL_API_KEY\" (the key is in Retell's dashboard under Settings → API Keys)",
        )?;
        let auth = check.bearer_from_env(&format!("{at}.api_key_env"), &var);
        let webhook = raw.webhook_key_env.and_then(|var| {
            let key = check.sensitive_header_from_env(&format!("{at}.webhook_key_env"), &var)?;
            Some(hook::RetellHook { key_env: var, key })
        });
        Some(Arc::new(Settings {
            base_url: base_url?,
            api_key_env: var,
            auth: Auth::Bearer(auth?),
            use_burst: raw.use_burst,
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
            Some(h) => format!("; webhooks signed with ${} (set, value hidden)", h.key_env),
            None => String::new(),
        };
        format!(
            "at {}; api key from ${} (set, value hidden){hook}",
            self.base_url, self.api_key_env
        )
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
        let retell = Arc::new(Retell {
            id,
            list_url: endpoint(&self.base_url, "v3/list-calls"),
            stop_url: endpoint(&self.base_url, "v2/stop-call"),
            create_url: endpoint(&self.base_url, "v2/create-phone-call"),
            auth: self.auth.clone(),
            lister: Lister::new(&common.http, false)?,
        });
        Ok(Backend {
            list: retell.clone(),
            end: Some(retell.clone()),
            place: None,
            places: Some(retell),
            forward: None,
            capacity: Arc::new(capacity::RetellCapacity::new(
                endpoint(&self.base_url, "get-concurrency"),
                self.auth.clone(),
                super::http::Client::new(&common.http)?,
                common.max_concurrent_calls,
                self.use_burst,
                common.cache_ttl.max(common.poll_interval),
            )),
        })
    }
}

#[derive(Debug)]
pub struct Retell {
    id: Arc<str>,
    list_url: reqwest::Url,
    /// The call's id is appended as one segment.
    stop_url: reqwest::Url,
    create_url: reqwest::Url,
    auth: Auth,
    lister: Lister,
}

impl Retell {
    /// One page of ongoing calls; `pagination_key` is the key the page before gave.
    ///
    /// The filter asks Retell for `ongoing` calls only: its v3 filter takes `not_connected`,
    /// `ongoing`, `ended` and `error`, and a dashboard of live calls wants the one of those
    /// that is live. (`registered` cannot be filtered on; should Retell send one anyway, it
    /// is listed as queued.)
    fn page(&self, pagination_key: Option<&str>) -> Request {
        let mut body = serde_json::json!({
            "filter_criteria": {
                "call_status": {"op": "in", "type": "enum", "value": ["ongoing"]}
            },
            "limit": PAGE_LIMIT,
        });
        if let Some(key) = pagination_key {
            body["pagination_key"] = key.into();
        }
        Request::post_json(self.list_url.clone(), &body).auth(&self.auth)
    }
}

#[async_trait]
impl ListCalls for Retell {
    fn id(&self) -> &str {
        &self.id
    }

    async fn active_calls(&self, _ctx: &RequestContext) -> Result<Calls, ProviderError> {
        // A POST, but a read: the lister sends every page as retryable.
        self.lister
            .list(
                self.page(None),
                |key| Ok(self.page(Some(key))),
                None,
                &self.id,
                wire::parse_page,
            )
            .await
    }
}

#[async_trait]
impl EndCall for Retell {
    async fn end_call(&self, _ctx: &RequestContext, call_id: &str) -> Result<(), EndError> {
        // `""`, `.` and `..` cannot be one path segment, and no Retell call has such an id.
        let url = with_segment(&self.stop_url, call_id).ok_or(EndError::NotFound)?;
        let request = Request::post(url).auth(&self.auth);
        let client = self.lister.client();
        // Retell documents 422 "Cannot find requested asset under given api key" for a call
        // it does not know; the request names nothing but the call, so a 422 can only be
        // about the call.
        client
            .control(&request, client.deadline(), &[404, 422])
            .await?;
        Ok(())
    }
}

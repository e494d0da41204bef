//! Backend `bland`: Bland's `GET {base_url}/v1/calls/active` with `authorization` + `x-bland-org-id`.

use std::sync::Arc;

use async_trait::async_trait;
use axum::http::{HeaderMap, HeaderValue};

use super::http::HttpUpstream;
use super::{Calls, HttpSettings, Provider, ProviderError, RequestContext};
use crate::wire;

pub const DEFAULT_BASE_URL: &str = "https://api.bland.ai";
pub const ORG_ID_HEADER: &str = "x-bland-org-id";

/// Validated settings of a `bland` provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
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

pub struct Bland {
    id: Arc<str>,
    upstream: HttpUpstream,
    credentials: Option<Credentials>,
}

impl Bland {
    pub fn new(id: Arc<str>, spec: &Spec, http: &HttpSettings) -> Result<Self, String> {
        let url = super::endpoint(&spec.base_url, "v1/calls/active");
        Ok(Self {
            id,
            // Without credentials of its own, it forwards each caller's: answers per caller.
            upstream: HttpUpstream::new(url, http, spec.credentials.is_none())?,
            credentials: spec.credentials.clone(),
        })
    }
}

#[async_trait]
impl Provider for Bland {
    fn id(&self) -> &str {
        &self.id
    }

    fn answers_per_caller(&self) -> bool {
        self.credentials.is_none()
    }

    async fn active_calls(&self, ctx: &RequestContext) -> Result<Calls, ProviderError> {
        // A provider with credentials of its own never forwards the caller's.
        let (authorization, org_id, caller) = match (&self.credentials, &ctx.forwarded) {
            (Some(own), _) => (&own.api_key, &own.org_id, None),
            (None, Some(fwd)) => (&fwd.authorization, &fwd.org_id, Some(fwd.digest())),
            (None, None) => return Err(ProviderError::NoCredentials),
        };
        let mut headers = HeaderMap::with_capacity(2);
        headers.insert(axum::http::header::AUTHORIZATION, authorization.clone());
        headers.insert(ORG_ID_HEADER, org_id.clone());
        self.upstream
            .get_parsed(headers, caller, &self.id, wire::bland::parse)
            .await
    }
}

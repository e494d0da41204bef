//! Backend `twilio-media-stream`: a Twilio media-stream agent server's `GET {base_url}/api/calls`.

use std::sync::Arc;

use async_trait::async_trait;
use axum::http::HeaderMap;

use super::http::HttpUpstream;
use super::{Calls, HttpSettings, Provider, ProviderError, RequestContext};
use crate::wire;

/// Validated settings of a `twilio-media-stream` provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub base_url: url::Url,
}

pub struct TwilioMediaStream {
    id: Arc<str>,
    upstream: HttpUpstream,
}

impl TwilioMediaStream {
    pub fn new(id: Arc<str>, spec: &Spec, http: &HttpSettings) -> Result<Self, String> {
        let url = super::endpoint(&spec.base_url, "api/calls");
        Ok(Self {
            id,
            upstream: HttpUpstream::new(url, http, false)?,
        })
    }
}

#[async_trait]
impl Provider for TwilioMediaStream {
    fn id(&self) -> &str {
        &self.id
    }

    async fn active_calls(&self, _ctx: &RequestContext) -> Result<Calls, ProviderError> {
        self.upstream
            .get_parsed(HeaderMap::new(), None, &self.id, wire::calls::parse)
            .await
    }
}

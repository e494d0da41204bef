//! One upstream request for all concurrent requests that need the same answer, and the answer
//! kept for `cache_ttl_ms` (default 0: shared only while in flight). Errors are never kept.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::provider::{Calls, ListCalls, ProviderError, RequestContext};
use crate::telemetry::Telemetry;

/// Wraps a provider so concurrent asks share one upstream request.
pub struct Coalesced {
    inner: Arc<dyn ListCalls>,
    /// Keyed by the digest of the caller's forwarded credentials for providers whose answer
    /// depends on them, so no caller ever receives an answer fetched with another's key;
    /// by `None` for all others.
    answers: moka::future::Cache<Option<[u8; 32]>, Calls>,
    /// The provider sends the caller's own credentials upstream, so its answers are the
    /// caller's: from the kind's settings, the one place that fact is stated.
    per_caller: bool,
    /// Answers this request fetched itself, and answers it shared (in flight or cached);
    /// registered once, as the hot path should not build label sets.
    fetched: metrics::Counter,
    shared: metrics::Counter,
}

impl Coalesced {
    pub fn new(
        inner: Arc<dyn ListCalls>,
        ttl: Duration,
        per_caller: bool,
        telemetry: &Telemetry,
    ) -> Self {
        let counter = |source: &'static str| {
            telemetry.counter(
                "callmux_provider_answers_total",
                &[("provider", inner.id()), ("source", source)],
            )
        };
        Self {
            fetched: counter("fetched"),
            shared: counter("shared"),
            inner,
            per_caller,
            answers: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(ttl)
                .build(),
        }
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl ListCalls for Coalesced {
    fn id(&self) -> &str {
        self.inner.id()
    }

    async fn active_calls(&self, ctx: &RequestContext) -> Result<Calls, ProviderError> {
        let key = match &ctx.forwarded {
            Some(f) if self.per_caller => Some(f.digest()),
            _ => None,
        };
        let entry = self
            .answers
            .entry(key)
            .or_try_insert_with(self.inner.active_calls(ctx))
            .await
            .map_err(|e: Arc<ProviderError>| (*e).clone())?;
        // Fresh: this request's own ask filled the entry. Otherwise it shared another's
        // ask in flight, or a cached answer.
        if entry.is_fresh() {
            self.fetched.increment(1);
        } else {
            self.shared.increment(1);
        }
        Ok(entry.into_value())
    }
}

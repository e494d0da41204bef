//! One upstream request for all concurrent requests that need the same answer, and the answer
//! kept for `cache_ttl_ms` (default 0: shared only while in flight), served with the
//! platform's pushes since its ask laid over it. Errors are never kept.
//! With a fleet level (`[state] backend = "redis"`), the ask goes through it, so one replica
//! asks for every replica, and an answer another replica fetched is kept only as long as it
//! has left to live.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::fleet::{Fleet, Fresh, Source};
use super::overlay::{Asked, Pushes};
use crate::provider::{Calls, ListCalls, ProviderError, RequestContext};
use crate::telemetry::Telemetry;

/// Wraps a provider so concurrent asks share one upstream request.
pub struct Coalesced {
    inner: Arc<dyn ListCalls>,
    /// Keyed by the digest of the caller's forwarded credentials for providers whose answer
    /// depends on them, so no caller ever receives an answer fetched with another's key;
    /// by `None` for all others.
    /// Keyed by key digests, uniform already: foldhash rather than SipHash, on every ask.
    answers: moka::future::Cache<Option<[u8; 32]>, (Fresh, Asked), foldhash::fast::RandomState>,
    /// The provider sends the caller's own credentials upstream, so its answers are the
    /// caller's: from the kind's settings, the one place that fact is stated.
    per_caller: bool,
    fleet: Option<Fleet>,
    ttl: Duration,
    /// What the platform pushed, laid over every answer served until one asked after it.
    pushes: Arc<Pushes>,
    /// Answers this request fetched itself, answers it shared (in flight or cached), and
    /// answers another replica fetched; registered once, as the hot path should not build
    /// label sets.
    fetched: metrics::Counter,
    shared: metrics::Counter,
    from_fleet: metrics::Counter,
}

/// Each answer lives for what it has left: the whole TTL for this replica's own asks.
struct Life;

impl moka::Expiry<Option<[u8; 32]>, (Fresh, Asked)> for Life {
    fn expire_after_create(
        &self,
        _key: &Option<[u8; 32]>,
        value: &(Fresh, Asked),
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.0.life)
    }
}

impl Coalesced {
    pub fn new(
        inner: Arc<dyn ListCalls>,
        ttl: Duration,
        per_caller: bool,
        fleet: Option<Fleet>,
        pushes: Arc<Pushes>,
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
            from_fleet: counter("fleet"),
            inner,
            per_caller,
            fleet,
            ttl,
            pushes,
            answers: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(ttl)
                .expire_after(Life)
                .build_with_hasher(foldhash::fast::RandomState::default()),
        }
    }

    /// The answer, and when it was asked: pushes taken before then are replaced by it.
    async fn ask(
        &self,
        key: Option<[u8; 32]>,
        ctx: &RequestContext,
    ) -> Result<(Fresh, Asked), ProviderError> {
        let taken = self.pushes.taken();
        let fresh = match &self.fleet {
            Some(fleet) => fleet.ask(key, self.inner.active_calls(ctx)).await?,
            None => Fresh {
                calls: self.inner.active_calls(ctx).await?,
                life: self.ttl,
                source: Source::Upstream,
                stored_at: None,
            },
        };
        let asked = fresh.stored_at.map_or(Asked::Here(taken), Asked::Elsewhere);
        Ok((fresh, asked))
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
        // A cached answer first: the ask below is a large future, built and moved into the
        // cache's machinery on every call that reaches it, hit or miss. Boxed, so that this
        // function's own state (moved whole when it is boxed) holds a pointer, not the ask.
        if let Some((fresh, asked)) = self.answers.get(&key).await {
            self.shared.increment(1);
            return Ok(self.pushes.lay(key, fresh.calls, asked));
        }
        let entry = self
            .answers
            .entry(key)
            .or_try_insert_with(Box::pin(self.ask(key, ctx)))
            .await
            .map_err(|e: Arc<ProviderError>| (*e).clone())?;
        // Fresh: this request's own ask filled the entry. Otherwise it shared another's
        // ask in flight, or a cached answer.
        match (entry.is_fresh(), entry.value().0.source) {
            (true, Source::Upstream) => self.fetched.increment(1),
            (true, Source::Fleet) => self.from_fleet.increment(1),
            (false, _) => self.shared.increment(1),
        }
        let (fresh, asked) = entry.into_value();
        Ok(self.pushes.lay(key, fresh.calls, asked))
    }
}

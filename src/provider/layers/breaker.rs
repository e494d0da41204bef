//! A circuit breaker per provider: after `circuit_failures` failures in a row the provider is
//! not asked for `circuit_cooldown_ms`; then one probe is let through, and its outcome closes
//! the circuit or opens it again. With a fleet (`[state] backend = "redis"`) the time a
//! circuit is open until is shared, sealed: a replica that opens it keeps every replica from
//! asking, and a replica whose probe succeeds closes it for all.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::provider::{Calls, ListCalls, ProviderError, RequestContext};
use crate::state::redis::Redis;
use crate::state::seal::{Rejected, Sealer};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Consecutive failures that open the circuit; 0 turns the breaker off.
    pub failures: u32,
    pub cooldown: Duration,
}

pub struct Breaker {
    inner: Arc<dyn ListCalls>,
    settings: BreakerSettings,
    state: Mutex<State>,
    /// The fleet's Redis, and this provider's key in it.
    shared: Option<(Arc<Redis>, String)>,
}

/// What an ask's outcome changed, for the fleet to hear.
enum Change {
    /// Opened (or kept open) until this Unix time in milliseconds.
    Opened(u64),
    Closed,
}

#[derive(Default)]
struct State {
    consecutive_failures: u32,
    open_until: Option<Instant>,
    probe_in_flight: bool,
}

impl Breaker {
    pub fn new(
        inner: Arc<dyn ListCalls>,
        settings: BreakerSettings,
        fleet: Option<Arc<Redis>>,
    ) -> Self {
        let shared = fleet.map(|r| (r, Sealer::key("breaker", inner.id())));
        Self {
            inner,
            settings,
            state: Mutex::default(),
            shared,
        }
    }

    fn open_error(&self) -> ProviderError {
        // The cool-down, not the time left: a stable message lets the rendered answer
        // be reused while the circuit stays open.
        ProviderError::CircuitOpen(self.settings.cooldown.as_millis() as u64)
    }

    /// Whether another replica opened the circuit and it is still open.
    async fn open_in_fleet(&self) -> bool {
        let Some((redis, key)) = &self.shared else {
            return false;
        };
        let Some(payload) = redis.get_sealed("breaker", key).await else {
            return false;
        };
        match <[u8; 8]>::try_from(payload.as_slice()) {
            Ok(until) => crate::call::time::now_ms() < u64::from_be_bytes(until),
            Err(_) => {
                redis.rejected("breaker", Rejected::Decode);
                false
            }
        }
    }

    async fn tell_fleet(&self, change: Change) {
        let Some((redis, key)) = &self.shared else {
            return;
        };
        match change {
            Change::Opened(until) => {
                redis
                    .put_sealed(key, &until.to_be_bytes(), self.settings.cooldown)
                    .await;
            }
            Change::Closed => {
                redis.del(key).await;
            }
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state stays consistent even if a holder panicked: every update is one store.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Lets the ask through, or fails it fast. `Ok(true)` means this ask is the probe.
    fn admit(&self) -> Result<bool, ProviderError> {
        let mut s = self.state();
        let Some(until) = s.open_until else {
            return Ok(false);
        };
        if Instant::now() < until || s.probe_in_flight {
            return Err(self.open_error());
        }
        s.probe_in_flight = true;
        Ok(true)
    }

    fn record(&self, result: &Result<Calls, ProviderError>) -> Option<Change> {
        let mut s = self.state();
        if result.as_ref().is_err_and(counts_against_upstream) {
            s.consecutive_failures += 1;
            let reopen = s.open_until.is_some() || s.consecutive_failures >= self.settings.failures;
            if reopen {
                if s.open_until.is_none() {
                    tracing::warn!(
                        provider = self.inner.id(),
                        failures = s.consecutive_failures,
                        "circuit opened"
                    );
                }
                s.open_until = Some(Instant::now() + self.settings.cooldown);
                return Some(Change::Opened(
                    crate::call::time::now_ms() + self.settings.cooldown.as_millis() as u64,
                ));
            }
            None
        } else if result.is_ok() {
            let was_open = s.open_until.is_some();
            if was_open {
                tracing::info!(provider = self.inner.id(), "circuit closed");
            }
            *s = State::default();
            was_open.then_some(Change::Closed)
        } else {
            None
        }
    }
}

/// Failures that say the upstream is unwell. A rejected key, missing credentials or a bug in
/// callmux say nothing about it.
fn counts_against_upstream(e: &ProviderError) -> bool {
    !matches!(
        e,
        ProviderError::Rejected(_) | ProviderError::NoCredentials | ProviderError::Internal
    )
}

/// Frees the probe slot however the probe ends, even if its request is dropped midway.
struct ProbeGuard<'a>(&'a Breaker);

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        self.0.state().probe_in_flight = false;
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl ListCalls for Breaker {
    fn id(&self) -> &str {
        self.inner.id()
    }

    async fn active_calls(&self, ctx: &RequestContext) -> Result<Calls, ProviderError> {
        if self.settings.failures == 0 {
            return self.inner.active_calls(ctx).await;
        }
        let probe = self.admit()?;
        if !probe && self.open_in_fleet().await {
            return Err(self.open_error());
        }
        let _probe = probe.then(|| ProbeGuard(self));
        let result = self.inner.active_calls(ctx).await;
        if let Some(change) = self.record(&result) {
            self.tell_fleet(change).await;
        }
        result
    }
}

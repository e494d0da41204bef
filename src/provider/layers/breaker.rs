//! A circuit breaker per provider: after `circuit_failures` failures in a row the provider is
//! not asked for `circuit_cooldown_ms`; then one probe is let through, and its outcome closes
//! the circuit or opens it again.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::provider::{Calls, ListCalls, ProviderError, RequestContext};

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
}

#[derive(Default)]
struct State {
    consecutive_failures: u32,
    open_until: Option<Instant>,
    probe_in_flight: bool,
}

impl Breaker {
    pub fn new(inner: Arc<dyn ListCalls>, settings: BreakerSettings) -> Self {
        Self {
            inner,
            settings,
            state: Mutex::default(),
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
            // The cool-down, not the time left: a stable message lets the rendered answer
            // be reused while the circuit stays open.
            return Err(ProviderError::CircuitOpen(
                self.settings.cooldown.as_millis() as u64,
            ));
        }
        s.probe_in_flight = true;
        Ok(true)
    }

    fn record(&self, result: &Result<Calls, ProviderError>) {
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
            }
        } else if result.is_ok() {
            if s.open_until.is_some() {
                tracing::info!(provider = self.inner.id(), "circuit closed");
            }
            *s = State::default();
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
        let _probe = self.admit()?.then(|| ProbeGuard(self));
        let result = self.inner.active_calls(ctx).await;
        self.record(&result);
        result
    }
}

//! What operators see of one provider's real upstream asks: a span per ask, its metrics, and
//! the last outcome for `/readyz`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use metrics::{Counter, Gauge, Histogram};
use tracing::Instrument;

use crate::provider::{Calls, ListCalls, ProviderError, RequestContext};
use crate::telemetry::Telemetry;

/// A provider's most recent real upstream ask.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// `"ok"`, or the error code.
    pub result: &'static str,
    pub at: SystemTime,
    pub latency: Duration,
}

/// Wraps a provider: a span per ask with provider id, latency and outcome; metrics; and the
/// last outcome. Sits inside the coalescing layer, so it sees real upstream asks only.
pub struct Observed {
    inner: Arc<dyn ListCalls>,
    last: Mutex<Option<Outcome>>,
    telemetry: Arc<Telemetry>,
    duration: Histogram,
    active: Gauge,
    ok: Counter,
}

impl Observed {
    pub fn new(inner: Arc<dyn ListCalls>, telemetry: &Arc<Telemetry>) -> Self {
        let provider = [("provider", inner.id())];
        Self {
            duration: telemetry.histogram("callmux_provider_call_duration_seconds", &provider),
            active: telemetry.gauge("callmux_active_calls", &provider),
            ok: telemetry.counter(
                "callmux_provider_calls_total",
                &[("provider", inner.id()), ("outcome", "ok")],
            ),
            telemetry: telemetry.clone(),
            inner,
            last: Mutex::new(None),
        }
    }

    pub fn last_outcome(&self) -> Option<Outcome> {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl ListCalls for Observed {
    fn id(&self) -> &str {
        self.inner.id()
    }

    async fn active_calls(&self, ctx: &RequestContext) -> Result<Calls, ProviderError> {
        let provider = self.inner.id();
        let span = tracing::info_span!("provider_call", provider = %provider);
        let started = Instant::now();
        let result = self.inner.active_calls(ctx).instrument(span.clone()).await;
        let latency = started.elapsed();
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.code().as_str(),
        };
        span.in_scope(|| match &result {
            Ok(calls) => tracing::info!(latency_ms = latency.as_millis() as u64, outcome, calls = calls.len(), "provider answered"),
            Err(e) => tracing::warn!(latency_ms = latency.as_millis() as u64, outcome, error = %e, "provider failed"),
        });
        match &result {
            Ok(calls) => {
                self.ok.increment(1);
                let active = calls.iter().filter(|c| c.status.is_active()).count();
                self.active.set(active as f64);
            }
            // Failures are rare enough to register their handle when they happen.
            Err(_) => self
                .telemetry
                .counter(
                    "callmux_provider_calls_total",
                    &[("provider", provider), ("outcome", outcome)],
                )
                .increment(1),
        }
        self.duration.record(latency.as_secs_f64());
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(Outcome {
            result: outcome,
            at: SystemTime::now(),
            latency,
        });
        result
    }
}

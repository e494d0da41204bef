//! What operators see of providers and requests: one span per upstream ask, Prometheus
//! metrics, and each provider's last outcome for `/readyz`.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing::Instrument;

use crate::provider::{Calls, Provider, ProviderError, RequestContext};

/// Latency buckets in seconds, from a cached answer to a provider at its deadline.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The process's Prometheus recorder, installed on first use. One per process: every app in
/// it (tests start several) reports to the same registry.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(BUCKETS)
            .expect("fixed, non-empty buckets")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder was installed first; /metrics will be empty");
        }
        handle
    })
}

/// Counts and times every request by route and status. Labels are static strings: no
/// allocation per request.
pub async fn track_requests(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| route_label(p.as_str()));
    let started = Instant::now();
    let response = next.run(request).await;
    let status = status_label(response.status().as_u16());
    metrics::counter!("callmux_requests_total", "route" => route, "status" => status).increment(1);
    metrics::histogram!("callmux_request_duration_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

fn route_label(path: &str) -> &'static str {
    use crate::api::{BLAND_ROUTE, CALLS_ROUTE};
    match path {
        BLAND_ROUTE => BLAND_ROUTE,
        CALLS_ROUTE => CALLS_ROUTE,
        "/healthz" => "/healthz",
        "/readyz" => "/readyz",
        "/metrics" => "/metrics",
        "/openapi.json" => "/openapi.json",
        _ => "other",
    }
}

fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        400 => "400",
        401 => "401",
        404 => "404",
        405 => "405",
        431 => "431",
        500 => "500",
        502 => "502",
        503 => "503",
        _ => "other",
    }
}

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
    inner: Arc<dyn Provider>,
    last: Mutex<Option<Outcome>>,
}

impl Observed {
    pub fn new(inner: Arc<dyn Provider>) -> Self {
        Self {
            inner,
            last: Mutex::new(None),
        }
    }

    pub fn last_outcome(&self) -> Option<Outcome> {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[async_trait]
impl Provider for Observed {
    fn id(&self) -> &str {
        self.inner.id()
    }

    fn answers_per_caller(&self) -> bool {
        self.inner.answers_per_caller()
    }

    async fn active_calls(&self, ctx: &RequestContext) -> Result<Calls, ProviderError> {
        let provider = self.inner.id().to_string();
        let span = tracing::info_span!("provider_call", provider = %provider);
        let started = Instant::now();
        let result = self.inner.active_calls(ctx).instrument(span.clone()).await;
        let latency = started.elapsed();
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.code(),
        };
        span.in_scope(|| match &result {
            Ok(calls) => tracing::info!(latency_ms = latency.as_millis() as u64, outcome, calls = calls.len(), "provider answered"),
            Err(e) => tracing::warn!(latency_ms = latency.as_millis() as u64, outcome, error = %e, "provider failed"),
        });
        metrics::counter!("callmux_provider_calls_total", "provider" => provider.clone(), "outcome" => outcome)
            .increment(1);
        metrics::histogram!("callmux_provider_call_duration_seconds", "provider" => provider.clone())
            .record(latency.as_secs_f64());
        if let Ok(calls) = &result {
            let active = calls.iter().filter(|c| c.status.is_active()).count();
            metrics::gauge!("callmux_active_calls", "provider" => provider).set(active as f64);
        }
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(Outcome {
            result: outcome,
            at: SystemTime::now(),
            latency,
        });
        result
    }
}

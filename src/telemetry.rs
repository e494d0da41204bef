//! The metrics registry of one running callmux: every part that counts registers its handles
//! here, so two servers in one process (tests start many) never share figures.

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Metadata, Recorder, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Type {
    Counter,
    Gauge,
    Histogram,
}

/// Every family callmux exports, with its `# HELP` text: a name registered without a line
/// here is a bug, caught in debug builds where it is registered.
const FAMILIES: &[(&str, Type, &str)] = &[
    ("callmux_requests_total", Type::Counter, "HTTP requests answered, by route pattern and status"),
    ("callmux_request_duration_seconds", Type::Histogram, "Time to answer an HTTP request, by route pattern"),
    ("callmux_provider_calls_total", Type::Counter, "Asks of a provider for its active calls, by provider and outcome (ok or the error code)"),
    ("callmux_provider_call_duration_seconds", Type::Histogram, "Time a provider took to give its active calls, all pages included"),
    ("callmux_provider_answers_total", Type::Counter, "Provider answers used by list requests, by source: fetched (this request's own ask), shared (coalesced or cached), fleet (another replica's ask, read from Redis)"),
    ("callmux_active_calls", Type::Gauge, "Live calls in a provider's latest answer"),
    ("callmux_provider_active_calls", Type::Gauge, "A provider's active calls as /capacity counts them: listed (or as the platform counts them), plus being placed through callmux"),
    ("callmux_provider_call_limit", Type::Gauge, "Active calls at which a provider is full: the smaller of its configured and reported limit (absent when it has none)"),
    ("callmux_org_active_calls", Type::Gauge, "An org's active calls over all its providers, as /capacity counts them"),
    ("callmux_bodies_built_total", Type::Counter, "List bodies merged and written anew rather than reused, by org and shape"),
    ("callmux_callbacks_total", Type::Counter, "Twilio status callbacks received, by provider and outcome"),
    ("callmux_connections_closed_total", Type::Counter, "Client connections callmux closed, by reason: header_read_timeout (request headers not complete within header_read_timeout_ms) or idle_timeout (no request within idle_timeout_ms)"),
    ("callmux_control_actions_total", Type::Counter, "Call-control actions (ending and placing calls), by route, key name, provider and outcome"),
    ("callmux_placements_total", Type::Counter, "Placements on routes, by route, provider (empty when none was tried) and outcome (placed, rejected, outcome_unknown, at_capacity, ...)"),
    ("callmux_passthrough_requests_total", Type::Counter, "Requests for other Bland routes, by provider and outcome"),
    ("callmux_state_up", Type::Gauge, "1 while the shared Redis state answers, 0 while this replica serves on its own"),
    ("callmux_state_failures_total", Type::Counter, "Redis operations that failed or outlasted their timeout, by operation"),
    ("callmux_state_rejected_total", Type::Counter, "Values read back from Redis that were not used, by kind of value and reason"),
    ("callmux_streams_open", Type::Gauge, "Live streams open now, by shape"),
    ("callmux_stream_pollers_started_total", Type::Counter, "Stream pollers started: one per org, or caller, that gained its first subscriber"),
    ("callmux_webhook_deliveries_total", Type::Counter, "Webhook delivery attempts and events, by org, endpoint and outcome: delivered, retried (an attempt failed; another follows), given_up (the last attempt failed), dropped (the endpoint's queue was full)"),
    ("callmux_webhook_pending", Type::Gauge, "Webhook events waiting for or in a delivery attempt, by org and endpoint (with Redis, the fleet's)"),
    ("callmux_webhook_watch_polls_total", Type::Counter, "Lists of an org with webhooks made to watch it while no one is subscribed, by org: with Redis, by the one replica watching it for the fleet"),
    ("callmux_stream_fleet_notices_total", Type::Counter, "Live-change notices: sent (changes this replica announced to the fleet) and woken (topics polled at once on another replica's notice)"),
];

/// Latency buckets in seconds, from a cached answer to a provider at its deadline.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// One Prometheus registry, kept across configuration reloads.
pub struct Telemetry {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Telemetry")
    }
}

impl Default for Telemetry {
    fn default() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets(BUCKETS)
            .expect("fixed, non-empty buckets")
            .build_recorder();
        // This registry is not the process-wide one the `describe_*!` macros write to.
        for &(name, kind, help) in FAMILIES {
            let unit = name.ends_with("_seconds").then_some(Unit::Seconds);
            let (name, help) = (KeyName::from_const_str(name), help.into());
            match kind {
                Type::Counter => recorder.describe_counter(name, unit, help),
                Type::Gauge => recorder.describe_gauge(name, unit, help),
                Type::Histogram => recorder.describe_histogram(name, unit, help),
            }
        }
        Self {
            handle: recorder.handle(),
            recorder,
        }
    }
}

/// Labels as given at registration: static names, values of any text.
pub type Labels<'a> = &'a [(&'static str, &'a str)];

impl Telemetry {
    fn key(name: &'static str, kind: Type, labels: Labels<'_>) -> Key {
        debug_assert!(
            FAMILIES.iter().any(|f| f.0 == name && f.1 == kind),
            "metric {name} is not described in telemetry::FAMILIES as a {kind:?}"
        );
        let labels: Vec<Label> = labels
            .iter()
            .map(|(k, v)| Label::new(*k, v.to_string()))
            .collect();
        Key::from_parts(name, labels)
    }

    fn metadata() -> Metadata<'static> {
        Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()))
    }

    /// A handle to count with: register once, off the hot path, and keep it.
    pub fn counter(&self, name: &'static str, labels: Labels<'_>) -> Counter {
        self.recorder
            .register_counter(&Self::key(name, Type::Counter, labels), &Self::metadata())
    }

    pub fn gauge(&self, name: &'static str, labels: Labels<'_>) -> Gauge {
        self.recorder
            .register_gauge(&Self::key(name, Type::Gauge, labels), &Self::metadata())
    }

    pub fn histogram(&self, name: &'static str, labels: Labels<'_>) -> Histogram {
        self.recorder
            .register_histogram(&Self::key(name, Type::Histogram, labels), &Self::metadata())
    }

    /// The Prometheus text exposition of everything registered here.
    pub fn render(&self) -> String {
        self.handle.render()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_described_once() {
        for (i, (name, _, help)) in FAMILIES.iter().enumerate() {
            assert!(name.starts_with("callmux_") && !help.is_empty(), "{name}");
            assert!(
                FAMILIES[i + 1..].iter().all(|f| f.0 != *name),
                "{name} twice"
            );
        }
    }
}

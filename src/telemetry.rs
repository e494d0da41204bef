//! The metrics registry of one running callmux: every part that counts registers its handles
//! here, so two servers in one process (tests start many) never share figures.

use metrics::{Counter, Gauge, Histogram, Key, Label, Metadata, Recorder};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

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
        Self {
            handle: recorder.handle(),
            recorder,
        }
    }
}

/// Labels as given at registration: static names, values of any text.
pub type Labels<'a> = &'a [(&'static str, &'a str)];

impl Telemetry {
    fn key(name: &'static str, labels: Labels<'_>) -> Key {
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
            .register_counter(&Self::key(name, labels), &Self::metadata())
    }

    pub fn gauge(&self, name: &'static str, labels: Labels<'_>) -> Gauge {
        self.recorder
            .register_gauge(&Self::key(name, labels), &Self::metadata())
    }

    pub fn histogram(&self, name: &'static str, labels: Labels<'_>) -> Histogram {
        self.recorder
            .register_histogram(&Self::key(name, labels), &Self::metadata())
    }

    /// The Prometheus text exposition of everything registered here.
    pub fn render(&self) -> String {
        self.handle.render()
    }
}

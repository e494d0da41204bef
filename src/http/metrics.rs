//! Every request counted and timed by route and status, with handles registered once per
//! server rather than label sets built per request.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use metrics::{Counter, Histogram};

use super::control::{END_ROUTE, PLACE_ROUTE, STOP_ALL_ROUTE, STOP_ROUTE};
use super::{dashboard, hooks, streams, BLAND_ROUTE, CALLS_ROUTE, OWN_ROUTE};
use crate::telemetry::Telemetry;

const ROUTES: &[&str] = &[
    BLAND_ROUTE,
    CALLS_ROUTE,
    OWN_ROUTE,
    streams::BLAND_STREAM_ROUTE,
    streams::CALLS_STREAM_ROUTE,
    streams::OWN_STREAM_ROUTE,
    END_ROUTE,
    STOP_ROUTE,
    STOP_ALL_ROUTE,
    PLACE_ROUTE,
    hooks::HOOK_ROUTE,
    super::paths::ME_ROUTE,
    super::paths::ME_LINK_ROUTE,
    super::paths::SIGN_IN_ROUTE,
    dashboard::PAGE_ROUTE,
    dashboard::SCRIPT_ROUTE,
    dashboard::STYLE_ROUTE,
    dashboard::ICON_ROUTE,
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    super::passthrough::ROUTE,
    "other",
    "unmatched",
];

const STATUSES: &[&str] = &[
    "200", "204", "304", "400", "401", "403", "404", "405", "413", "431", "500", "501", "502",
    "503", "504", "other",
];

/// `callmux_requests_total` and `callmux_request_duration_seconds`, one handle per label
/// set, registered the first time it is used (so `/metrics` lists only what happened).
pub struct RequestMetrics {
    telemetry: Arc<Telemetry>,
    counts: Vec<OnceLock<Counter>>,
    durations: Vec<OnceLock<Histogram>>,
}

impl RequestMetrics {
    pub fn new(telemetry: Arc<Telemetry>) -> Self {
        Self {
            telemetry,
            counts: (0..ROUTES.len() * STATUSES.len())
                .map(|_| OnceLock::new())
                .collect(),
            durations: ROUTES.iter().map(|_| OnceLock::new()).collect(),
        }
    }

    /// The label index of the matched route `path`; `None` for no route.
    pub fn route(path: Option<&str>) -> Route {
        let Some(path) = path else {
            return Route(ROUTES.len() - 1);
        };
        Route(
            ROUTES[..ROUTES.len() - 2]
                .iter()
                .position(|r| *r == path)
                .unwrap_or(ROUTES.len() - 2),
        )
    }

    fn status(status: u16) -> usize {
        match status {
            200 => 0,
            204 => 1,
            304 => 2,
            400 => 3,
            401 => 4,
            403 => 5,
            404 => 6,
            405 => 7,
            413 => 8,
            431 => 9,
            500 => 10,
            501 => 11,
            502 => 12,
            503 => 13,
            504 => 14,
            _ => 15,
        }
    }

    /// Counts one answered request; `path` is the matched route, `None` for no route.
    pub fn record(&self, path: Option<&str>, status: u16, started: Instant) {
        self.record_route(Self::route(path), status, started);
    }

    /// [`RequestMetrics::record`] for a route already looked up.
    pub fn record_route(&self, Route(route): Route, status: u16, started: Instant) {
        let status = Self::status(status);
        self.counts[route * STATUSES.len() + status]
            .get_or_init(|| {
                self.telemetry.counter(
                    "callmux_requests_total",
                    &[("route", ROUTES[route]), ("status", STATUSES[status])],
                )
            })
            .increment(1);
        // No route matched: counted, not timed.
        if route != ROUTES.len() - 1 {
            self.durations[route]
                .get_or_init(|| {
                    self.telemetry.histogram(
                        "callmux_request_duration_seconds",
                        &[("route", ROUTES[route])],
                    )
                })
                .record(started.elapsed().as_secs_f64());
        }
    }
}

/// A route's place among the labels, looked up once per request.
#[derive(Clone, Copy)]
pub struct Route(usize);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_status_counts_under_its_own_label() {
        for (i, label) in STATUSES.iter().enumerate() {
            let code = label.parse().unwrap_or(299);
            assert_eq!(RequestMetrics::status(code), i, "{label}");
        }
    }
}

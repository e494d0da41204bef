//! `[server]`: the listener and its limits, read and checked.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::keys::KeyDigest;
use crate::settings::{Check, ONE_DAY_MS};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    pub bind: SocketAddr,
    /// How long a Bland key accepted by its upstream is trusted without asking again.
    pub auth_cache_ttl: Duration,
    /// How long a key Bland rejected is refused without asking again (zero: never kept).
    pub auth_rejection_ttl: Duration,
    /// Keys one client address may have checked by Bland per second (a burst of as many).
    pub unverified_keys_per_second: std::num::NonZeroU32,
    pub max_concurrent_requests: usize,
    pub request_timeout: Duration,
    pub max_header_bytes: usize,
    /// After SIGTERM, how long in-flight requests may take before the process exits anyway.
    pub shutdown_grace: Duration,
    /// From a connection opening, or its next request's first byte, to a complete head.
    pub header_read_timeout: Duration,
    /// How long a kept-alive connection may sit between requests.
    pub idle_timeout: Duration,
    /// Connections open at once; beyond this, new ones wait to be accepted.
    pub max_connections: usize,
    /// Live streams open at once; beyond this, a new one is refused with 503.
    pub max_streams: usize,
    /// Live streams one org may hold open at once, within `max_streams`.
    pub max_streams_per_org: usize,
    /// How often an idle stream gets a keepalive comment.
    pub stream_keepalive: Duration,
    /// The largest request body forwarded to Bland; the provider's `max_body_bytes` bounds
    /// Bland's answers, and its request bodies are small JSON.
    pub forward_max_request_bytes: usize,
    /// The org a request with a key and no `x-bland-org-id` is taken for when the key is no
    /// callmux key: an org whose callers bring their Bland keys, as Bland's SDKs send them.
    pub bland_default_org: Option<String>,
    /// Where `/metrics` is served: its own listener, or (`None`) the API listener.
    pub metrics_bind: Option<SocketAddr>,
    /// The bearer token `/metrics` asks for, as a digest, and the variable it came from;
    /// `None` with no `metrics_bind` either: the API listener answers loopback peers only.
    pub metrics_token: Option<MetricsToken>,
}

/// `metrics_token_env`'s token, held as its digest (compared in constant time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsToken {
    pub env: String,
    pub digest: KeyDigest,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    bind: String,
    auth_cache_ttl_ms: u64,
    auth_rejection_ttl_ms: u64,
    unverified_keys_per_second: u64,
    max_concurrent_requests: u64,
    request_timeout_ms: u64,
    max_header_bytes: u64,
    shutdown_grace_ms: u64,
    header_read_timeout_ms: u64,
    idle_timeout_ms: u64,
    max_connections: u64,
    max_streams: u64,
    max_streams_per_org: u64,
    stream_keepalive_ms: u64,
    forward_max_request_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bland_default_org: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    metrics_bind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    metrics_token_env: Option<String>,
}

impl RawServer {
    /// Checks every field, taking what is unset from `defaults` (the built-in layer).
    pub(super) fn validate(self, defaults: &RawServer, check: &mut Check<'_>) -> ServerConfig {
        let bind = self.bind.parse().unwrap_or_else(|_| {
            check.push(
                "server.bind",
                format!("`{}` is not an IP:port address", self.bind),
                "use an address such as 127.0.0.1:8080 (or 0.0.0.0:8080 to listen on every interface)",
            );
            defaults.bind.parse().expect("default bind address parses")
        });
        let metrics_bind = self.metrics_bind.as_deref().and_then(|text| {
            let parsed = text.parse::<SocketAddr>().ok();
            if parsed.is_none() {
                check.push(
                    "server.metrics_bind",
                    format!("`{text}` is not an IP:port address"),
                    "use an address such as 127.0.0.1:9464, or leave it out to serve /metrics on the API listener",
                );
            }
            parsed.filter(|addr| {
                let same = *addr == bind && addr.port() != 0;
                if same {
                    check.push(
                        "server.metrics_bind",
                        format!("`{text}` is the API listener's own address (server.bind)"),
                        "give /metrics another port, or leave metrics_bind out",
                    );
                }
                !same
            })
        });
        let metrics_token = self.metrics_token_env.as_deref().and_then(|var| {
            let token = check.secret_from_env("server.metrics_token_env", var)?;
            Some(MetricsToken {
                env: var.to_string(),
                digest: KeyDigest::of(&token),
            })
        });
        let mut n = |field: &str, value: u64, default: u64, range| {
            check.ranged(&format!("server.{field}"), value, default, range)
        };
        let ms = Duration::from_millis;
        ServerConfig {
            bind,
            max_concurrent_requests: n(
                "max_concurrent_requests",
                self.max_concurrent_requests,
                defaults.max_concurrent_requests,
                1..=1_000_000,
            ) as usize,
            request_timeout: ms(n(
                "request_timeout_ms",
                self.request_timeout_ms,
                defaults.request_timeout_ms,
                1..=ONE_DAY_MS,
            )),
            max_header_bytes: n(
                "max_header_bytes",
                self.max_header_bytes,
                defaults.max_header_bytes,
                1..=1024 * 1024,
            ) as usize,
            auth_cache_ttl: ms(n(
                "auth_cache_ttl_ms",
                self.auth_cache_ttl_ms,
                defaults.auth_cache_ttl_ms,
                0..=ONE_DAY_MS,
            )),
            auth_rejection_ttl: ms(n(
                "auth_rejection_ttl_ms",
                self.auth_rejection_ttl_ms,
                defaults.auth_rejection_ttl_ms,
                0..=ONE_DAY_MS,
            )),
            unverified_keys_per_second: std::num::NonZeroU32::new(n(
                "unverified_keys_per_second",
                self.unverified_keys_per_second,
                defaults.unverified_keys_per_second,
                1..=1_000_000,
            ) as u32)
            .expect("the range starts at 1"),
            shutdown_grace: ms(n(
                "shutdown_grace_ms",
                self.shutdown_grace_ms,
                defaults.shutdown_grace_ms,
                0..=ONE_DAY_MS,
            )),
            header_read_timeout: ms(n(
                "header_read_timeout_ms",
                self.header_read_timeout_ms,
                defaults.header_read_timeout_ms,
                1..=ONE_DAY_MS,
            )),
            idle_timeout: ms(n(
                "idle_timeout_ms",
                self.idle_timeout_ms,
                defaults.idle_timeout_ms,
                1..=ONE_DAY_MS,
            )),
            max_connections: n(
                "max_connections",
                self.max_connections,
                defaults.max_connections,
                1..=1_000_000,
            ) as usize,
            max_streams: n(
                "max_streams",
                self.max_streams,
                defaults.max_streams,
                1..=1_000_000,
            ) as usize,
            max_streams_per_org: n(
                "max_streams_per_org",
                self.max_streams_per_org,
                defaults.max_streams_per_org,
                1..=1_000_000,
            ) as usize,
            // At least a second: more often only costs bytes; at most five minutes, well
            // under the idle timeouts of the proxies a stream passes through.
            stream_keepalive: ms(n(
                "stream_keepalive_ms",
                self.stream_keepalive_ms,
                defaults.stream_keepalive_ms,
                1_000..=300_000,
            )),
            forward_max_request_bytes: n(
                "forward_max_request_bytes",
                self.forward_max_request_bytes,
                defaults.forward_max_request_bytes,
                1..=1024 * 1024 * 1024,
            ) as usize,
            bland_default_org: self.bland_default_org,
            metrics_bind,
            metrics_token,
        }
    }
}

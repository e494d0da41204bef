//! Providers: the capabilities a backend may have (listing calls, ending them), their errors,
//! the settings every kind shares, and the layers that wrap listing.

pub mod bland;
pub mod capacity;
pub mod http;
pub mod kind;
pub mod layers;
pub mod place;
pub mod registry;
pub mod retell;
pub mod static_file;
pub mod twilio;
pub mod twilio_media_stream;
pub mod vapi;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::http::HeaderValue;
use bytes::Bytes;
use serde::Deserialize;

use crate::call::Call;
use crate::error_code::ErrorCode;
use crate::settings::{Check, ONE_DAY_MS};

pub use http::HttpSettings;
pub use kind::{Kind, KindSettings, TargetSettings};
pub use layers::breaker::BreakerSettings;
pub use place::Places;

/// An upstream's answer: shared, so concurrent requests and the cache hand out one copy.
/// (`Arc<Vec<_>>` rather than `Arc<[_]>`: converting a parsed `Vec` into the latter copies
/// every call.)
pub type Calls = Arc<Vec<Call>>;

/// Listing: the calls one platform knows of.
#[async_trait]
pub trait ListCalls: Send + Sync {
    fn id(&self) -> &str;
    /// Every call the upstream reports, in any status; the merge leaves out the ended ones.
    async fn active_calls(&self, ctx: &RequestContext) -> Result<Calls, ProviderError>;
}

/// Control: ending a call the provider listed. A mutation, so no layer of listing's
/// (coalescing, caching, the breaker) ever wraps it.
#[async_trait]
pub trait EndCall: Send + Sync {
    async fn end_call(&self, ctx: &RequestContext, call_id: &str) -> Result<(), EndError>;
}

/// Placing a call: an outbound call started through the provider. A mutation, sent once.
#[async_trait]
pub trait PlaceCall: Send + Sync {
    /// At most this many active calls (listed, plus being placed through callmux) before the
    /// provider is full; `None` for no limit.
    fn max_active_calls(&self) -> Option<u32>;

    /// Sends the client's body (already checked) and returns the upstream's own answer,
    /// whatever its status.
    async fn place_call(&self, ctx: &RequestContext, body: Bytes) -> Result<Placed, ProviderError>;
}

/// An upstream's answer to placing a call.
#[derive(Debug, Clone)]
pub struct Placed {
    pub status: u16,
    pub body: Bytes,
}

/// Forwarding: a client's request sent on to the upstream as it came, and the answer handed
/// back as it arrives (Bland's routes callmux does not serve itself). Like control, never
/// coalesced, cached or retried once sent.
#[async_trait]
pub trait Forward: Send + Sync {
    async fn forward(
        &self,
        ctx: &RequestContext,
        request: Outgoing,
    ) -> Result<http::Streamed, ProviderError>;
}

/// A client's request, to forward as it came.
#[derive(Debug)]
pub struct Outgoing {
    pub method: axum::http::Method,
    /// The path as sent (still percent-encoded), starting with `/`.
    pub path: String,
    /// The query as sent, without its `?`.
    pub query: Option<String>,
    /// The client's headers, as sent: the forwarder takes out what must not go on.
    pub headers: axum::http::HeaderMap,
    /// `None` for a request that had no body.
    pub body: Option<bytes::Bytes>,
    /// When the client's request must be over, if sooner than the provider's own timeout.
    pub not_after: Option<tokio::time::Instant>,
}

/// Why a call was not ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndError {
    #[error("the provider does not know this call")]
    NotFound,
    #[error("{0}")]
    Failed(ProviderError),
}

/// A provider as built from its settings: what it can do.
#[derive(Clone)]
pub struct Backend {
    pub list: Arc<dyn ListCalls>,
    /// `None` for a kind that cannot end calls.
    pub end: Option<Arc<dyn EndCall>>,
    /// `None` for a kind (or a provider) that does not place calls.
    pub place: Option<Arc<dyn PlaceCall>>,
    /// Placing a call for a route target; `None` for a provider that cannot.
    pub places: Option<Arc<dyn Places>>,
    /// `None` for a kind whose other routes are not forwarded (all but `bland`).
    pub forward: Option<Arc<dyn Forward>>,
    /// How full the provider can get: each kind's own source of figures.
    pub capacity: Arc<dyn capacity::ReportCapacity>,
}

/// What a backend may need from the client's request.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The callmux org the request was authenticated as.
    pub org_id: Arc<str>,
    /// The client's own Bland credentials; set only for orgs that authenticate through Bland,
    /// so a key issued by callmux is never sent to any upstream.
    pub forwarded: Option<ForwardedCredentials>,
}

/// The client's `authorization` and `x-bland-org-id`, as sent. Both header values are marked
/// sensitive, so their `Debug` output is redacted.
#[derive(Clone)]
pub struct ForwardedCredentials {
    pub authorization: HeaderValue,
    pub org_id: HeaderValue,
    /// SHA-256 over both values, computed once: what every per-caller cache is keyed by.
    digest: [u8; 32],
}

impl ForwardedCredentials {
    pub fn new(mut authorization: HeaderValue, mut org_id: HeaderValue) -> Self {
        use sha2::{Digest, Sha256};
        authorization.set_sensitive(true);
        org_id.set_sensitive(true);
        let mut h = Sha256::new();
        h.update(authorization.as_bytes());
        h.update([0]);
        h.update(org_id.as_bytes());
        Self {
            authorization,
            org_id,
            digest: h.finalize().into(),
        }
    }

    /// Identifies the credentials without holding them.
    pub fn digest(&self) -> [u8; 32] {
        self.digest
    }
}

impl fmt::Debug for ForwardedCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ForwardedCredentials([REDACTED])")
    }
}

/// How long per-caller state (the last upstream body and merged bodies of a caller who
/// brings their own Bland key) is kept after that caller's last request. Dashboards poll
/// every few seconds; a caller back after longer pays one parse and one build.
pub const CALLER_IDLE: Duration = Duration::from_secs(60);

/// Why one provider gave no calls. Messages name no URL, key or header value: they are
/// shown to clients in `errors[].message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    #[error("did not answer within {0} ms")]
    Timeout(u64),
    #[error("could not be reached: {0}")]
    Unreachable(String),
    #[error("rejected the credentials (HTTP {0})")]
    Rejected(u16),
    #[error("answered HTTP 429 (rate limited) for longer than its deadline allowed")]
    RateLimited,
    #[error("answered HTTP {0}")]
    Status(u16),
    #[error("sent an answer callmux could not read: {0}")]
    BadBody(String),
    #[error("reported an error instead of calls: {0}")]
    Reported(String),
    #[error("sent an answer larger than its {0}-byte limit (max_body_bytes)")]
    TooLarge(usize),
    #[error("broke off its answer: {0}")]
    Transport(String),
    #[error("{0}")]
    Paging(String),
    #[error(
        "has no credentials of its own and the request carries no Bland key to forward; \
         set api_key_env on the provider or authenticate the org through it (auth = ...)"
    )]
    NoCredentials,
    #[error("failed inside callmux (a bug, logged on the server)")]
    Internal,
    #[error("failed repeatedly, so it is not asked for up to {0} ms (circuit open)")]
    CircuitOpen(u64),
    /// Call control the upstream's own data pointed somewhere callmux will not send to (or
    /// nowhere): nothing was sent. The text never names the address, nor the provider,
    /// which every message that shows it puts first.
    #[error("{0}")]
    ControlRefused(String),
}

impl ProviderError {
    /// The stable code clients see in `errors[].error`.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Timeout(_) => ErrorCode::UpstreamTimeout,
            Self::Unreachable(_) => ErrorCode::UpstreamUnreachable,
            Self::Rejected(_) => ErrorCode::UpstreamAuthRejected,
            Self::RateLimited => ErrorCode::UpstreamRateLimited,
            Self::Status(_) => ErrorCode::UpstreamError,
            Self::BadBody(_) => ErrorCode::UpstreamBadResponse,
            Self::Reported(_) => ErrorCode::UpstreamReportedError,
            Self::TooLarge(_) => ErrorCode::UpstreamTooLarge,
            Self::Transport(_) => ErrorCode::UpstreamBrokenResponse,
            Self::Paging(_) => ErrorCode::UpstreamEndlessList,
            Self::NoCredentials => ErrorCode::UpstreamNoCredentials,
            Self::Internal => ErrorCode::InternalError,
            Self::CircuitOpen(_) => ErrorCode::CircuitOpen,
            Self::ControlRefused(_) => ErrorCode::UpstreamControlRefused,
        }
    }

    /// Whether a mutation that failed so may still have taken effect: the request went out
    /// and its answer did not come back whole (no answer in time, or the connection broke).
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, Self::Timeout(_) | Self::Transport(_))
    }

    /// Whether the connection was refused outright, so no byte of the request was sent.
    pub fn refused(&self) -> bool {
        matches!(self, Self::Unreachable(cause) if cause.contains("refused"))
    }
}

impl From<crate::wire::ParseError> for ProviderError {
    fn from(e: crate::wire::ParseError) -> Self {
        match e {
            crate::wire::ParseError::Malformed(m) => Self::BadBody(m),
            crate::wire::ParseError::Reported(m) => Self::Reported(m),
        }
    }
}

/// The settings every provider takes, whatever its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Common {
    pub http: HttpSettings,
    /// How long an answer is served to later requests; zero shares it only while in flight.
    pub cache_ttl: Duration,
    pub breaker: BreakerSettings,
    /// How often an org's live streams ask this provider while anyone is subscribed.
    pub poll_interval: Duration,
    /// Active calls at which the provider is full, as configured; `None`: no configured
    /// limit (the kind may still know one, or default one).
    pub max_concurrent_calls: Option<u32>,
    /// When a provider stops taking placements for a while after failing them.
    pub placing: PlacingCooldown,
}

/// `cooldown_failures` placements failed in a row cool a provider down for `cooldown`: every
/// route passes it over meanwhile (DESIGN §16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlacingCooldown {
    pub failures: u32,
    pub cooldown: Duration,
}

/// The common settings as written, after the built-in defaults (`config/defaults.toml`).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawCommon {
    pub timeout_ms: u64,
    /// `None`: 1,000 ms, or `timeout_ms` if smaller.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_timeout_ms: Option<u64>,
    pub max_body_bytes: u64,
    pub retries: u64,
    pub max_pages: u64,
    pub cache_ttl_ms: u64,
    pub circuit_failures: u64,
    pub circuit_cooldown_ms: u64,
    pub poll_interval_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent_calls: Option<u64>,
    pub cooldown_failures: u64,
    pub cooldown_ms: u64,
}

impl RawCommon {
    /// Every field name, for splitting a provider's table into the common part and its
    /// kind's part.
    pub const FIELDS: &'static [&'static str] = &[
        "timeout_ms",
        "connect_timeout_ms",
        "max_body_bytes",
        "retries",
        "max_pages",
        "cache_ttl_ms",
        "circuit_failures",
        "circuit_cooldown_ms",
        "poll_interval_ms",
        "max_concurrent_calls",
        "cooldown_failures",
        "cooldown_ms",
    ];

    /// Validated against the ranges; `defaults` is what a removed field would fall back to.
    pub fn validate(&self, at: &str, defaults: &RawCommon, check: &mut Check<'_>) -> Common {
        let mut n = |field: &str, value: u64, default: u64, range| {
            check.ranged(&format!("{at}.{field}"), value, default, range)
        };
        let timeout = n(
            "timeout_ms",
            self.timeout_ms,
            defaults.timeout_ms,
            1..=ONE_DAY_MS,
        );
        let connect_default = CONNECT_TIMEOUT_MS.min(timeout);
        let connect = n(
            "connect_timeout_ms",
            self.connect_timeout_ms.unwrap_or(connect_default),
            connect_default,
            1..=ONE_DAY_MS,
        );
        Common {
            http: HttpSettings {
                timeout: Duration::from_millis(timeout),
                connect_timeout: Duration::from_millis(connect),
                max_body_bytes: n(
                    "max_body_bytes",
                    self.max_body_bytes,
                    defaults.max_body_bytes,
                    1..=1024 * 1024 * 1024,
                ) as usize,
                retries: n("retries", self.retries, defaults.retries, 0..=10) as u32,
                max_pages: n("max_pages", self.max_pages, defaults.max_pages, 1..=10_000) as usize,
            },
            cache_ttl: Duration::from_millis(n(
                "cache_ttl_ms",
                self.cache_ttl_ms,
                defaults.cache_ttl_ms,
                0..=ONE_DAY_MS,
            )),
            breaker: BreakerSettings {
                failures: n(
                    "circuit_failures",
                    self.circuit_failures,
                    defaults.circuit_failures,
                    0..=1_000_000,
                ) as u32,
                cooldown: Duration::from_millis(n(
                    "circuit_cooldown_ms",
                    self.circuit_cooldown_ms,
                    defaults.circuit_cooldown_ms,
                    1..=ONE_DAY_MS,
                )),
            },
            poll_interval: Duration::from_millis(n(
                "poll_interval_ms",
                self.poll_interval_ms,
                defaults.poll_interval_ms,
                10..=ONE_DAY_MS,
            )),
            placing: PlacingCooldown {
                failures: n(
                    "cooldown_failures",
                    self.cooldown_failures,
                    defaults.cooldown_failures,
                    1..=1_000_000,
                ) as u32,
                cooldown: Duration::from_millis(n(
                    "cooldown_ms",
                    self.cooldown_ms,
                    defaults.cooldown_ms,
                    0..=ONE_DAY_MS,
                )),
            },
            max_concurrent_calls: self.max_concurrent_calls.and_then(|limit| {
                if (1..=capacity::MAX_LIMIT).contains(&limit) {
                    return Some(limit as u32);
                }
                check.push(
                    format!("{at}.max_concurrent_calls"),
                    format!("is {limit}, outside 1..={}", capacity::MAX_LIMIT),
                    "give the most calls the provider may carry at once, or remove it for \
                     no configured limit",
                );
                None
            }),
        }
    }
}

/// The default connect timeout, capped by the provider's whole timeout.
const CONNECT_TIMEOUT_MS: u64 = 1_000;

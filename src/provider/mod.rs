//! The `Provider` trait every backend implements, its error, and building backends from config.

pub mod bland;
mod http;
pub mod twilio;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use axum::http::HeaderValue;

use crate::call::Call;
use crate::config::{KindSpec, ProviderSpec};

pub use http::HttpSettings;

/// An upstream's answer: shared, so concurrent requests and the cache hand out one copy.
/// (`Arc<Vec<_>>` rather than `Arc<[_]>`: converting a parsed `Vec` into the latter copies
/// every call.)
pub type Calls = Arc<Vec<Call>>;

/// A source of live calls on one platform.
#[async_trait]
pub trait Provider: Send + Sync {
    fn id(&self) -> &str;
    /// Every call the upstream reports, in any status; the merge leaves out the ended ones.
    async fn active_calls(&self, ctx: &RequestContext) -> Result<Calls, ProviderError>;
    /// Whether the answer depends on the caller's forwarded credentials. Answers that do
    /// are only ever shared between requests carrying the same credentials.
    fn answers_per_caller(&self) -> bool {
        false
    }
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
    pub fn new(authorization: HeaderValue, org_id: HeaderValue) -> Self {
        use sha2::{Digest, Sha256};
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

/// How long per-caller state (the last upstream body and merged bodies of a caller who
/// brings their own Bland key) is kept after that caller's last request. Dashboards poll
/// every few seconds; a caller back after longer pays one parse and one build.
pub const CALLER_IDLE: std::time::Duration = std::time::Duration::from_secs(60);

impl fmt::Debug for ForwardedCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ForwardedCredentials([REDACTED])")
    }
}

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
    #[error(
        "has no credentials of its own and the request carries no Bland key to forward; \
         set api_key_env on the provider or authenticate the org through it (auth = ...)"
    )]
    NoCredentials,
    #[error("failed inside callmux (a bug, logged on the server)")]
    Internal,
    #[error("failed repeatedly, so it is not asked for up to {0} ms (circuit open)")]
    CircuitOpen(u64),
}

impl ProviderError {
    /// The stable code clients see in `errors[].error`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Timeout(_) => "UPSTREAM_TIMEOUT",
            Self::Unreachable(_) => "UPSTREAM_UNREACHABLE",
            Self::Rejected(_) => "UPSTREAM_AUTH_REJECTED",
            Self::Status(_) => "UPSTREAM_ERROR",
            Self::BadBody(_) => "UPSTREAM_BAD_RESPONSE",
            Self::Reported(_) => "UPSTREAM_REPORTED_ERROR",
            Self::TooLarge(_) => "UPSTREAM_TOO_LARGE",
            Self::Transport(_) => "UPSTREAM_BROKEN_RESPONSE",
            Self::NoCredentials => "UPSTREAM_NO_CREDENTIALS",
            Self::Internal => "INTERNAL_ERROR",
            Self::CircuitOpen(_) => "CIRCUIT_OPEN",
        }
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

/// Builds the backend a validated spec describes. The one place that knows every kind.
pub fn build(spec: &ProviderSpec) -> Result<Arc<dyn Provider>, String> {
    let id: Arc<str> = Arc::from(spec.id.as_str());
    Ok(match &spec.kind {
        KindSpec::TwilioMediaStream(s) => {
            Arc::new(twilio::TwilioMediaStream::new(id, s, &spec.http)?)
        }
        KindSpec::Bland(s) => Arc::new(bland::Bland::new(id, s, &spec.http)?),
    })
}

/// `{base_url}/{path}`, whether or not the base URL ends in a slash or has a path of its own.
fn endpoint(base: &url::Url, path: &str) -> reqwest::Url {
    let joined = format!("{}/{path}", base.as_str().trim_end_matches('/'));
    reqwest::Url::parse(&joined).expect("a valid base URL joined with a fixed path is valid")
}

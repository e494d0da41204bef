//! Which failed attempts are tried again, and when: jittered backoff, or the upstream's own
//! `retry-after`, all within the one deadline.

use std::time::Duration;

use axum::http::HeaderMap;
use tokio::time::Instant;

use super::Client;
use crate::provider::ProviderError;

/// First retry waits about this long, doubling each time, with ±50 % jitter so many callmux
/// instances do not retry in step.
const BACKOFF_BASE: Duration = Duration::from_millis(50);

impl Client {
    /// Runs `attempt` until it succeeds, fails in a way not worth retrying, runs out of
    /// retries, or would go past `deadline`, which also bounds each attempt.
    pub(super) async fn attempts<T, F>(
        &self,
        deadline: Instant,
        idempotent: bool,
        attempt: impl Fn() -> F,
    ) -> Result<T, ProviderError>
    where
        F: std::future::Future<Output = Result<T, Failure>>,
    {
        let limit_ms = self.settings.timeout.as_millis() as u64;
        let attempts = async {
            let mut tried = 0;
            loop {
                let result = attempt().await;
                let wait = match &result {
                    Err(Failure { error, retry_after })
                        if tried < self.settings.retries && retryable(error, idempotent) =>
                    {
                        retry_after.unwrap_or_else(|| {
                            BACKOFF_BASE
                                .mul_f64((1u32 << tried.min(10)) as f64 * (0.5 + fastrand::f64()))
                        })
                    }
                    _ => return result.map_err(|f| f.error),
                };
                if Instant::now() + wait >= deadline {
                    return result.map_err(|f| f.error);
                }
                tracing::debug!(error = %result.as_ref().err().map(|f| &f.error).expect("a failure"), attempt = tried, ?wait, "retrying upstream");
                tokio::time::sleep(wait).await;
                tried += 1;
            }
        };
        tokio::time::timeout_at(deadline, attempts)
            .await
            .unwrap_or(Err(ProviderError::Timeout(limit_ms)))
    }
}

/// A failed attempt, and how long the upstream asked callmux to wait before the next.
pub(super) struct Failure {
    pub(super) error: ProviderError,
    pub(super) retry_after: Option<Duration>,
}

impl From<ProviderError> for Failure {
    fn from(error: ProviderError) -> Self {
        Self {
            error,
            retry_after: None,
        }
    }
}

/// `retry-after` in seconds (the form rate limiters send); an HTTP date is not honoured.
pub(super) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs.min(3600)))
}

/// Failures a second attempt may not meet. Only a refused connection proves that nothing
/// reached the upstream, so it alone is retried for a request that is not idempotent.
fn retryable(e: &ProviderError, idempotent: bool) -> bool {
    match e {
        ProviderError::Unreachable(_) if !idempotent => e.refused(),
        _ if !idempotent => false,
        ProviderError::Unreachable(_)
        | ProviderError::Transport(_)
        | ProviderError::RateLimited
        | ProviderError::Status(502..=504) => true,
        _ => false,
    }
}

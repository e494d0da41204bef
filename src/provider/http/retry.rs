//! Which failed attempts are tried again, and when: jittered backoff, or the upstream's own
//! `retry-after`, all within the one deadline.

use std::time::{Duration, SystemTime};

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

/// The longest wait a `retry-after` is taken at; a longer one is cut to this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// How long `retry-after` (RFC 9110 §10.2.3) asks callmux to wait: a number of seconds, or an
/// HTTP date to wait until. `None` when there is no such header or it is neither.
pub(super) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    wait_asked(value, SystemTime::now())
}

/// The wait a `retry-after` value asks for at `now`. A date already past asks for none; the
/// date forms are every one RFC 9110 has a recipient accept (IMF-fixdate, RFC 850, asctime).
fn wait_asked(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // More seconds than a u64 holds is still a number of seconds: the longest wait.
        Duration::from_secs(value.parse().unwrap_or(u64::MAX))
    } else {
        httpdate::parse_http_date(value)
            .ok()?
            .duration_since(now)
            .unwrap_or(Duration::ZERO)
    };
    Some(wait.min(MAX_RETRY_AFTER))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Wed, 21 Oct 2015 07:28:00 GMT.
    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480)
    }

    #[test]
    fn a_number_of_seconds_is_that_long_a_wait() {
        assert_eq!(wait_asked("120", now()), Some(Duration::from_secs(120)));
        assert_eq!(wait_asked(" 0 ", now()), Some(Duration::ZERO));
    }

    #[test]
    fn an_http_date_ahead_is_a_wait_until_then() {
        assert_eq!(
            wait_asked("Wed, 21 Oct 2015 07:28:30 GMT", now()),
            Some(Duration::from_secs(30))
        );
    }

    #[test]
    fn the_obsolete_date_forms_are_read_too() {
        for value in [
            "Wednesday, 21-Oct-15 07:28:30 GMT",
            "Wed Oct 21 07:28:30 2015",
        ] {
            assert_eq!(
                wait_asked(value, now()),
                Some(Duration::from_secs(30)),
                "{value}"
            );
        }
    }

    #[test]
    fn an_http_date_already_past_is_no_wait() {
        assert_eq!(
            wait_asked("Wed, 21 Oct 2015 07:27:00 GMT", now()),
            Some(Duration::ZERO)
        );
        assert_eq!(
            wait_asked("Wed, 21 Oct 2015 07:28:00 GMT", now()),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn a_wait_of_more_than_an_hour_is_cut_to_an_hour() {
        assert_eq!(wait_asked("86400", now()), Some(MAX_RETRY_AFTER));
        assert_eq!(
            wait_asked("99999999999999999999999", now()),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(
            wait_asked("Thu, 22 Oct 2015 07:28:00 GMT", now()),
            Some(MAX_RETRY_AFTER)
        );
    }

    #[test]
    fn anything_else_is_no_retry_after() {
        for value in [
            "",
            "soon",
            "-5",
            "1.5",
            "Wed, 21 Oct 2015 07:28:30",
            "Wed, 32 Oct 2015 07:28:30 GMT",
            "2015-10-21T07:28:30Z",
        ] {
            assert_eq!(wait_asked(value, now()), None, "{value:?}");
        }
    }

    #[test]
    fn a_header_that_is_not_text_is_no_retry_after() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(
            reqwest::header::RETRY_AFTER,
            axum::http::HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
        );
        assert_eq!(retry_after(&headers), None);
    }
}

//! Capacity: the capability a kind has of saying how many calls its provider may carry at
//! once (DESIGN §15). Each kind's folder builds its own source; most only know a configured
//! limit, Retell asks its platform, Vapi learns its limit from placements' answers.

use std::sync::Mutex;

use async_trait::async_trait;
use serde::Serialize;

use super::ProviderError;

/// The largest limit callmux takes, configured or reported.
pub const MAX_LIMIT: u64 = 1_000_000;

/// Where a provider's limit comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// `max_concurrent_calls` (or `max_active_calls`) in the provider's settings.
    Configured,
    /// What the platform itself reported.
    Platform,
    /// No limit is known.
    None,
}

/// What a kind knows of its provider's capacity at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Figures {
    /// Active calls as the platform counts them, where it counts them itself (Retell's
    /// `current_concurrency`); `None`: the listed calls are the count.
    pub reported_active: Option<u32>,
    /// The smaller of the configured and the reported limit; `None`: no limit.
    pub limit: Option<u32>,
    pub source: Source,
    /// Why the platform's own figures could not be had this time; the last ones are kept.
    pub error: Option<ProviderError>,
}

/// Capacity: how full a provider can get.
#[async_trait]
pub trait ReportCapacity: Send + Sync {
    /// The provider's figures now. Kinds that ask their platform do it here, no more often
    /// than their own cache allows.
    async fn figures(&self) -> Figures;

    /// Takes the figures a placement's answer carried (Vapi's `subscriptionLimits`); most
    /// kinds learn nothing from placing.
    fn learn(&self, _limits: &super::place::Limits) {}
}

/// The smaller of two optional limits: where both are known the smaller wins.
pub fn smaller(a: Option<u32>, b: Option<u32>) -> Option<u32> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A limit known only from the provider's settings (`bland`, `twilio`, `static`,
/// `twilio-media-stream`): configured, or none.
#[derive(Debug, Clone, Copy)]
pub struct Configured(pub Option<u32>);

#[async_trait]
impl ReportCapacity for Configured {
    async fn figures(&self) -> Figures {
        Figures {
            reported_active: None,
            limit: self.0,
            source: if self.0.is_some() {
                Source::Configured
            } else {
                Source::None
            },
            error: None,
        }
    }
}

/// A limit configured with a default, that the platform's answers may lower or raise once
/// they carry one (Vapi: `subscriptionLimits.concurrencyLimit` in a `POST /call` answer).
#[derive(Debug)]
pub struct Learned {
    configured: u32,
    learned: Mutex<Option<u32>>,
}

impl Learned {
    pub fn new(configured: u32) -> Self {
        Self {
            configured,
            learned: Mutex::new(None),
        }
    }

    /// Takes the platform's limit. A figure of 0 or above [`MAX_LIMIT`] is refused, named
    /// in the error, and the limit known before is kept.
    pub fn learn(&self, field: &str, limit: i64) -> Result<(), ProviderError> {
        let limit = checked(field, Some(limit))?;
        *self.learned.lock().expect("learned limit lock") = Some(limit);
        Ok(())
    }
}

#[async_trait]
impl ReportCapacity for Learned {
    async fn figures(&self) -> Figures {
        let learned = *self.learned.lock().expect("learned limit lock");
        Figures {
            reported_active: None,
            limit: Some(learned.unwrap_or(self.configured)),
            source: if learned.is_some() {
                Source::Platform
            } else {
                Source::Configured
            },
            error: None,
        }
    }
}

/// A figure a platform reported, checked: present, at least 0 and at most [`MAX_LIMIT`].
/// The error names the field and what was wrong.
pub fn count(field: &str, value: Option<i64>) -> Result<u32, ProviderError> {
    match value {
        None => Err(ProviderError::BadBody(format!(
            "field `{field}` is missing from the capacity answer"
        ))),
        Some(v) if v < 0 => Err(ProviderError::BadBody(format!(
            "field `{field}` is {v}, below 0"
        ))),
        Some(v) if v as u64 > MAX_LIMIT => Err(ProviderError::BadBody(format!(
            "field `{field}` is {v}, above the {MAX_LIMIT} callmux accepts"
        ))),
        Some(v) => Ok(v as u32),
    }
}

/// A limit a platform reported, checked as [`count`] and also refused at 0: no account can
/// place calls with a limit of 0, so such an answer is taken as wrong rather than as full.
pub fn checked(field: &str, value: Option<i64>) -> Result<u32, ProviderError> {
    match count(field, value)? {
        0 => Err(ProviderError::BadBody(format!(
            "field `{field}` is 0, which would let no call through"
        ))),
        n => Ok(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_learned_limit_replaces_the_configured_one_and_bad_figures_keep_it() {
        let vapi = Learned::new(10);
        assert_eq!(vapi.figures().await.limit, Some(10));
        assert_eq!(vapi.figures().await.source, Source::Configured);
        vapi.learn("subscriptionLimits.concurrencyLimit", 25)
            .unwrap();
        assert_eq!(vapi.figures().await.limit, Some(25));
        assert_eq!(vapi.figures().await.source, Source::Platform);
        for bad in [-1, 0, 1_000_001] {
            let e = vapi
                .learn("subscriptionLimits.concurrencyLimit", bad)
                .unwrap_err();
            assert!(e.to_string().contains("concurrencyLimit"), "{e}");
            assert_eq!(vapi.figures().await.limit, Some(25));
        }
    }

    #[test]
    fn the_smaller_of_two_limits_wins() {
        assert_eq!(smaller(Some(3), Some(5)), Some(3));
        assert_eq!(smaller(None, Some(5)), Some(5));
        assert_eq!(smaller(Some(3), None), Some(3));
        assert_eq!(smaller(None, None), None);
    }
}

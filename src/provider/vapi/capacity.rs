//! Vapi's capacity: `max_concurrent_calls` (default 10, Vapi's default per account), replaced
//! by `subscriptionLimits.concurrencyLimit` whenever a placement's answer carries it.

use async_trait::async_trait;
use serde::Deserialize;

use crate::provider::capacity::{Figures, Learned, ReportCapacity};
use crate::provider::place::Limits;
use crate::provider::ProviderError;

/// Vapi's default concurrency per account.
pub const DEFAULT_LIMIT: u32 = 10;

/// `subscriptionLimits` as Vapi sends it in a `POST /call` answer.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionLimits {
    pub concurrency_blocked: Option<bool>,
    pub concurrency_limit: Option<i64>,
    pub remaining_concurrent_calls: Option<i64>,
}

/// A Vapi provider's limit: configured until an answer teaches it the platform's.
#[derive(Debug)]
pub struct VapiCapacity(Learned);

impl VapiCapacity {
    pub fn new(configured: Option<u32>) -> Self {
        Self(Learned::new(configured.unwrap_or(DEFAULT_LIMIT)))
    }

    /// Takes the limit a placement's answer carried. An answer without a
    /// limit changes nothing; a bad one is refused, naming the field, and the limit kept.
    pub fn update(&self, limits: &SubscriptionLimits) -> Result<(), ProviderError> {
        match limits.concurrency_limit {
            Some(limit) => self.0.learn("subscriptionLimits.concurrencyLimit", limit),
            None => Ok(()),
        }
    }
}

#[async_trait]
impl ReportCapacity for VapiCapacity {
    async fn figures(&self) -> Figures {
        self.0.figures().await
    }

    fn learn(&self, limits: &Limits) {
        let update = SubscriptionLimits {
            concurrency_limit: limits.concurrency_limit.map(i64::from),
            ..SubscriptionLimits::default()
        };
        if let Err(e) = self.update(&update) {
            tracing::warn!(error = %e, "Vapi's concurrency limit was not taken");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::capacity::Source;

    /// A `POST /call` answer's `subscriptionLimits`, as Vapi documents it.
    const ANSWER: &str = r#"{"concurrencyBlocked": false, "concurrencyLimit": 25,
        "remainingConcurrentCalls": 24}"#;

    #[tokio::test]
    async fn a_placement_answer_s_subscription_limits_set_the_limit() {
        let vapi = VapiCapacity::new(None);
        assert_eq!(vapi.figures().await.limit, Some(DEFAULT_LIMIT));
        vapi.update(&serde_json::from_str(ANSWER).unwrap()).unwrap();
        let figures = vapi.figures().await;
        assert_eq!(
            (figures.limit, figures.source),
            (Some(25), Source::Platform)
        );
        vapi.update(&SubscriptionLimits::default()).unwrap();
        assert_eq!(vapi.figures().await.limit, Some(25));
        let absurd = r#"{"concurrencyLimit": 2000000}"#;
        let e = vapi
            .update(&serde_json::from_str(absurd).unwrap())
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("subscriptionLimits.concurrencyLimit"),
            "{e}"
        );
        assert_eq!(vapi.figures().await.limit, Some(25));
    }

    #[tokio::test]
    async fn a_configured_limit_stands_until_vapi_reports_one() {
        let vapi = VapiCapacity::new(Some(3));
        let figures = vapi.figures().await;
        assert_eq!(
            (figures.limit, figures.source),
            (Some(3), Source::Configured)
        );
    }
}

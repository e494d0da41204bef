//! Retell's capacity: `GET {base_url}/get-concurrency` (Bearer), asked through the provider's
//! own HTTP limits (timeout, body cap, retries) and at most once per `cache_ttl_ms` or
//! `poll_interval_ms`, whichever is longer, however many requests want it.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use crate::provider::capacity::{self, Figures, ReportCapacity, Source};
use crate::provider::http::{Auth, Client, Fetched, Request};
use crate::provider::ProviderError;

/// `get-concurrency`'s answer, as Retell documents it. Every field is read as a signed
/// number so a negative one is named rather than a parse error.
#[derive(Debug, Deserialize)]
struct Concurrency {
    current_concurrency: Option<i64>,
    concurrency_limit: Option<i64>,
    #[allow(dead_code)] // documented, shown by nothing yet
    base_concurrency: Option<i64>,
    #[allow(dead_code)]
    purchased_concurrency: Option<i64>,
    #[allow(dead_code)]
    concurrency_purchase_limit: Option<i64>,
    #[allow(dead_code)]
    remaining_purchase_limit: Option<i64>,
    #[serde(default)]
    concurrency_burst_enabled: bool,
    concurrency_burst_limit: Option<i64>,
}

/// The two figures callmux uses of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reported {
    active: u32,
    limit: u32,
}

pub struct RetellCapacity {
    url: reqwest::Url,
    auth: Auth,
    client: Client,
    configured: Option<u32>,
    use_burst: bool,
    /// One answer (or failure) shared by every ask within its life; concurrent asks wait for
    /// the one in flight.
    answers: moka::future::Cache<(), Result<Reported, ProviderError>>,
    /// The last good figures, kept through failures.
    last: Mutex<Option<Reported>>,
}

impl RetellCapacity {
    pub fn new(
        url: reqwest::Url,
        auth: Auth,
        client: Client,
        configured: Option<u32>,
        use_burst: bool,
        life: Duration,
    ) -> Self {
        Self {
            url,
            auth,
            client,
            configured,
            use_burst,
            // Failures live as long as answers: a failing Retell is not asked more often.
            answers: moka::future::Cache::builder()
                .max_capacity(1)
                .time_to_live(life.max(Duration::from_millis(1)))
                .build(),
            last: Mutex::new(None),
        }
    }

    async fn ask(&self) -> Result<Reported, ProviderError> {
        let request = Request::get(self.url.clone()).auth(&self.auth);
        let body = match self
            .client
            .send(&request, self.client.deadline(), None, true)
            .await?
        {
            Fetched::New(body) => body,
            Fetched::Same => return Err(ProviderError::Internal),
        };
        self.read(&body)
    }

    fn read(&self, body: &[u8]) -> Result<Reported, ProviderError> {
        let answer: Concurrency = serde_json::from_slice(body).map_err(|e| {
            ProviderError::BadBody(format!("get-concurrency is not the documented JSON: {e}"))
        })?;
        let active = capacity::count("current_concurrency", answer.current_concurrency)?;
        let limit = if self.use_burst && answer.concurrency_burst_enabled {
            capacity::checked("concurrency_burst_limit", answer.concurrency_burst_limit)?
        } else {
            capacity::checked("concurrency_limit", answer.concurrency_limit)?
        };
        Ok(Reported { active, limit })
    }
}

#[async_trait]
impl ReportCapacity for RetellCapacity {
    async fn figures(&self) -> Figures {
        let answer = self.answers.get_with((), self.ask()).await;
        let (reported, error) = match answer {
            Ok(r) => {
                *self.last.lock().expect("capacity lock") = Some(r);
                (Some(r), None)
            }
            Err(e) => (*self.last.lock().expect("capacity lock"), Some(e)),
        };
        let limit = capacity::smaller(self.configured, reported.map(|r| r.limit));
        let source = match (reported, self.configured) {
            (Some(r), Some(c)) if c < r.limit => Source::Configured,
            (Some(_), _) => Source::Platform,
            (None, Some(_)) => Source::Configured,
            (None, None) => Source::None,
        };
        Figures {
            reported_active: reported.map(|r| r.active),
            limit,
            source,
            error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(use_burst: bool) -> RetellCapacity {
        let settings = crate::provider::HttpSettings {
            timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            max_body_bytes: 1 << 20,
            retries: 0,
            max_pages: 1,
        };
        RetellCapacity::new(
            "http://127.0.0.1:9/get-concurrency".parse().unwrap(),
            Auth::bearer("k").unwrap(),
            Client::new(&settings).unwrap(),
            None,
            use_burst,
            Duration::from_secs(1),
        )
    }

    /// All eight fields, as Retell documents them.
    const BODY: &str = r#"{"current_concurrency": 4, "concurrency_limit": 20,
        "base_concurrency": 20, "purchased_concurrency": 0, "concurrency_purchase_limit": 100,
        "remaining_purchase_limit": 100, "concurrency_burst_enabled": true,
        "concurrency_burst_limit": 60}"#;

    #[test]
    fn the_burst_limit_counts_only_when_the_provider_uses_it() {
        assert_eq!(source(false).read(BODY.as_bytes()).unwrap().limit, 20);
        assert_eq!(source(true).read(BODY.as_bytes()).unwrap().limit, 60);
        assert_eq!(source(true).read(BODY.as_bytes()).unwrap().active, 4);
    }

    #[test]
    fn bad_figures_name_their_field() {
        for (body, field) in [
            (r#"{"concurrency_limit": 20}"#, "current_concurrency"),
            (
                r#"{"current_concurrency": -1, "concurrency_limit": 20}"#,
                "current_concurrency",
            ),
            (
                r#"{"current_concurrency": 1, "concurrency_limit": 0}"#,
                "concurrency_limit",
            ),
            (
                r#"{"current_concurrency": 1, "concurrency_limit": 1000001}"#,
                "concurrency_limit",
            ),
            (r#"{"current_concurrency": 1}"#, "concurrency_limit"),
        ] {
            let e = source(false).read(body.as_bytes()).unwrap_err();
            assert!(e.to_string().contains(field), "{body}: {e}");
        }
        assert!(source(false).read(b"[1,").is_err());
    }
}

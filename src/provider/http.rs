//! One upstream GET under a total deadline and a body-size cap, errors folded into `ProviderError`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use bytes::{Bytes, BytesMut};

use super::{Calls, ProviderError};
use crate::wire::Parser;

/// Per-provider HTTP limits, from `timeout_ms`, `connect_timeout_ms`, `max_body_bytes` and
/// `retries`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// The whole ask, every attempt included: connecting to the last byte of the body.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub max_body_bytes: usize,
    /// Further attempts after a failure worth retrying, while `timeout` allows.
    pub retries: u32,
}

impl HttpSettings {
    pub const DEFAULT_TIMEOUT_MS: u64 = 5_000;
    pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 1_000;
    pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
    pub const DEFAULT_RETRIES: u32 = 1;
}

/// Bodies at least this large are parsed on the blocking pool (about 1,000 calls).
const PARSE_OFF_RUNTIME_BYTES: usize = 128 * 1024;

/// First retry waits about this long, doubling each time, with ±50 % jitter so many callmux
/// instances do not retry in step.
const BACKOFF_BASE: Duration = Duration::from_millis(50);

/// A pooled keep-alive client bound to one upstream URL.
#[derive(Debug)]
pub(crate) struct HttpUpstream {
    client: reqwest::Client,
    url: reqwest::Url,
    settings: HttpSettings,
    /// The last body read and what it parsed to: an upstream that answers with the same
    /// bytes as last time is not parsed again, and hands out the same `Calls`, which lets
    /// the merged answer built from it be reused too.
    last: Mutex<Option<Memo>>,
    /// The same per caller (by the digest of the caller's credentials), for an upstream that
    /// answers each caller differently: callers taking turns must not each find the other's
    /// body. Bounded by body bytes; the least recently asked go first.
    last_per_caller: Option<moka::sync::Cache<[u8; 32], Memo>>,
}

type Memo = (Bytes, Calls);

impl HttpUpstream {
    /// `per_caller`: the upstream's answer depends on the caller's forwarded credentials.
    pub fn new(
        url: reqwest::Url,
        settings: &HttpSettings,
        per_caller: bool,
    ) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("callmux/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("could not build an HTTP client: {e}"))?;
        Ok(Self {
            client,
            url,
            settings: settings.clone(),
            last: Mutex::new(None),
            // Room for a few callers' largest bodies, or for hundreds of ordinary ones.
            last_per_caller: per_caller.then(|| {
                moka::sync::Cache::builder()
                    .weigher(|_, (body, _): &Memo| u32::try_from(body.len()).unwrap_or(u32::MAX))
                    .max_capacity((settings.max_body_bytes as u64).saturating_mul(4))
                    .eviction_policy(moka::policy::EvictionPolicy::lru())
                    .time_to_idle(super::CALLER_IDLE)
                    .build()
            }),
        })
    }

    /// GETs the URL and parses the body with `parse`, unless it is the same body as last time
    /// (for `caller`, the digest of the forwarded credentials, if the upstream answers per
    /// caller). A large body is parsed on the blocking pool, so that two providers' large
    /// answers are parsed on two cores and the runtime's threads stay free for other requests.
    pub async fn get_parsed(
        &self,
        headers: HeaderMap,
        caller: Option<[u8; 32]>,
        provider: &Arc<str>,
        parse: Parser,
    ) -> Result<Calls, ProviderError> {
        let per_caller = self.last_per_caller.as_ref().zip(caller);
        let last = match per_caller {
            Some((memos, caller)) => memos.get(&caller),
            None => self.last.lock().expect("memo lock").clone(),
        };
        let body = match self
            .get(headers, last.as_ref().map(|(body, _)| body))
            .await?
        {
            Fetched::Same => return Ok(last.expect("`Same` only follows a last body").1),
            Fetched::New(body) => body,
        };
        let calls = if body.len() >= PARSE_OFF_RUNTIME_BYTES {
            let (body, provider) = (body.clone(), provider.clone());
            tokio::task::spawn_blocking(move || parse(&body, &provider))
                .await
                .map_err(|_| ProviderError::Internal)??
        } else {
            parse(&body, provider)?
        };
        let calls: Calls = Arc::new(calls);
        let memo = (body, calls.clone());
        match per_caller {
            Some((memos, caller)) => memos.insert(caller, memo),
            None => *self.last.lock().expect("memo lock") = Some(memo),
        }
        Ok(calls)
    }

    /// GETs the URL and returns the whole body of a 2xx answer. The deadline covers every
    /// attempt, connecting, the headers and the body, so an upstream that stalls mid-body is
    /// cut off too. A list request is idempotent, so failures that say nothing about the
    /// request itself (a refused or broken connection, 502/503/504) are retried with jittered
    /// backoff, as long as the backoff ends before the deadline.
    ///
    /// `last` is the previous body, if any: a body that turns out byte-for-byte the same is
    /// [`Fetched::Same`], and is compared as it streams in rather than copied.
    pub async fn get(
        &self,
        headers: HeaderMap,
        last: Option<&Bytes>,
    ) -> Result<Fetched, ProviderError> {
        let limit_ms = self.settings.timeout.as_millis() as u64;
        let deadline = tokio::time::Instant::now() + self.settings.timeout;
        let attempts = async {
            let mut attempt = 0;
            loop {
                let result = self.fetch(headers.clone(), last).await;
                match result {
                    Err(e) if attempt < self.settings.retries && retryable(&e) => {
                        let backoff = BACKOFF_BASE
                            .mul_f64((1u32 << attempt.min(10)) as f64 * (0.5 + fastrand::f64()));
                        if tokio::time::Instant::now() + backoff >= deadline {
                            return Err(e);
                        }
                        tracing::debug!(error = %e, attempt, ?backoff, "retrying upstream");
                        tokio::time::sleep(backoff).await;
                        attempt += 1;
                    }
                    other => return other,
                }
            }
        };
        tokio::time::timeout_at(deadline, attempts)
            .await
            .unwrap_or(Err(ProviderError::Timeout(limit_ms)))
    }

    async fn fetch(
        &self,
        headers: HeaderMap,
        last: Option<&Bytes>,
    ) -> Result<Fetched, ProviderError> {
        let mut response = self
            .client
            .get(self.url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .headers(headers)
            .send()
            .await
            .map_err(classify)?;
        let status = response.status();
        if status == 401 || status == 403 {
            return Err(ProviderError::Rejected(status.as_u16()));
        }
        if !status.is_success() {
            return Err(ProviderError::Status(status.as_u16()));
        }
        let cap = self.settings.max_body_bytes;
        if response.content_length().is_some_and(|n| n > cap as u64) {
            return Err(ProviderError::TooLarge(cap));
        }
        let mut body = Collector::new(last, response.content_length().unwrap_or(0) as usize);
        while let Some(chunk) = response.chunk().await.map_err(classify)? {
            if body.len() + chunk.len() > cap {
                return Err(ProviderError::TooLarge(cap));
            }
            body.push(&chunk);
        }
        Ok(body.finish())
    }
}

/// A whole upstream body: the same bytes as the last one, or new ones.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Fetched {
    Same,
    New(Bytes),
}

/// Gathers a body that is usually byte-for-byte the last one (an upstream whose calls have
/// not changed). While the chunks match the last body they are only compared, in cache as
/// they arrive; the bytes are copied into a buffer of their own only from the first
/// difference on.
struct Collector<'a> {
    last: Option<&'a Bytes>,
    /// How many leading bytes of `last` the body has matched so far, while `copy` is `None`.
    matched: usize,
    copy: Option<BytesMut>,
    capacity: usize,
}

impl<'a> Collector<'a> {
    fn new(last: Option<&'a Bytes>, capacity: usize) -> Self {
        Self {
            last,
            matched: 0,
            copy: last.is_none().then(|| BytesMut::with_capacity(capacity)),
            capacity,
        }
    }

    fn len(&self) -> usize {
        self.copy.as_ref().map_or(self.matched, BytesMut::len)
    }

    fn push(&mut self, chunk: &[u8]) {
        if let Some(copy) = &mut self.copy {
            copy.extend_from_slice(chunk);
            return;
        }
        let last = self.last.map_or(&[][..], |b| &b[..]);
        let end = self.matched + chunk.len();
        if last.get(self.matched..end) == Some(chunk) {
            self.matched = end;
            return;
        }
        let mut copy = BytesMut::with_capacity(self.capacity.max(end));
        copy.extend_from_slice(&last[..self.matched]);
        copy.extend_from_slice(chunk);
        self.copy = Some(copy);
    }

    fn finish(self) -> Fetched {
        match (self.copy, self.last) {
            (Some(copy), _) => Fetched::New(copy.freeze()),
            (None, Some(last)) if self.matched == last.len() => Fetched::Same,
            // A body that stopped short of the last one: a copy of that prefix, so the memo
            // does not keep the whole of the last body alive behind a shorter one.
            (None, Some(last)) => Fetched::New(Bytes::copy_from_slice(&last[..self.matched])),
            (None, None) => Fetched::New(Bytes::new()),
        }
    }
}

/// Failures a second attempt may not meet: the request itself was not at fault.
fn retryable(e: &ProviderError) -> bool {
    matches!(
        e,
        ProviderError::Unreachable(_)
            | ProviderError::Transport(_)
            | ProviderError::Status(502..=504)
    )
}

/// Names what went wrong from the error's cause chain; reqwest's own text carries the URL,
/// which is not the client's business.
fn classify(e: reqwest::Error) -> ProviderError {
    let e = e.without_url();
    let mut root: &dyn std::error::Error = &e;
    while let Some(next) = root.source() {
        root = next;
    }
    let cause = root.to_string();
    if e.is_connect() {
        ProviderError::Unreachable(cause)
    } else if e.is_timeout() {
        ProviderError::Unreachable(format!("timed out connecting: {cause}"))
    } else {
        ProviderError::Transport(cause)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Feeds `body` to a collector in chunks of the given sizes (cycled).
    fn collect(last: Option<&Bytes>, body: &[u8], sizes: &[usize]) -> Fetched {
        let mut c = Collector::new(last, 0);
        let mut rest = body;
        for size in sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (chunk, tail) = rest.split_at((*size).clamp(1, rest.len()));
            c.push(chunk);
            assert_eq!(c.len(), body.len() - tail.len());
            rest = tail;
        }
        c.finish()
    }

    proptest! {
        #[test]
        fn a_body_is_same_exactly_when_it_equals_the_last_and_new_bytes_are_kept_whole(
            last in proptest::option::of(proptest::collection::vec(0u8..4, 0..64)),
            edit in proptest::option::of((0usize..64, proptest::collection::vec(0u8..4, 0..8), 0usize..8)),
            sizes in proptest::collection::vec(1usize..20, 1..4),
        ) {
            // Mostly bodies close to the last one: the last body with one splice, or as it is.
            let mut body = last.clone().unwrap_or_default();
            if let Some((at, insert, remove)) = edit {
                let at = at.min(body.len());
                let end = (at + remove).min(body.len());
                body.splice(at..end, insert);
            }
            let last = last.map(Bytes::from);
            let expected = if last.as_deref() == Some(&body[..]) {
                Fetched::Same
            } else {
                Fetched::New(Bytes::from(body.clone()))
            };
            prop_assert_eq!(collect(last.as_ref(), &body, &sizes), expected);
        }
    }
}

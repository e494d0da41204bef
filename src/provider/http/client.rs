//! A pooled keep-alive client with one provider's limits: sends a request under one
//! deadline and reads its whole answer, up to the body cap.

use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::collect::Collector;
use super::retry::{retry_after, Failure};
use super::{Fetched, Request};
use crate::provider::{EndError, ProviderError};

/// Per-provider HTTP limits, from `timeout_ms`, `connect_timeout_ms`, `max_body_bytes`,
/// `retries` and `max_pages`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// The whole ask, every attempt and every page included: connecting to the last byte.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub max_body_bytes: usize,
    /// Further attempts after a failure worth retrying, while `timeout` allows.
    pub retries: u32,
    /// Pages followed at most before the list is that provider's error.
    pub max_pages: usize,
}

/// A pooled keep-alive client with one provider's limits.
#[derive(Debug)]
pub struct Client {
    pub(super) client: reqwest::Client,
    pub(super) settings: HttpSettings,
}

impl Client {
    pub fn new(settings: &HttpSettings) -> Result<Self, String> {
        Self::with_options(settings, |builder| builder)
    }

    /// A client with one provider's limits and something more of the kind's own, such as
    /// no redirects, or a host pinned to addresses the kind has checked.
    pub fn with_options(
        settings: &HttpSettings,
        options: impl FnOnce(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
    ) -> Result<Self, String> {
        let builder = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            // An upstream's redirect is its answer, never an address to take credentials
            // or a control request to: a 3xx is that provider's `UPSTREAM_ERROR`.
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("callmux/", env!("CARGO_PKG_VERSION")));
        let client = options(builder)
            .build()
            .map_err(|e| format!("could not build an HTTP client: {e}"))?;
        Ok(Self {
            client,
            settings: settings.clone(),
        })
    }

    pub fn settings(&self) -> &HttpSettings {
        &self.settings
    }

    /// When an ask that starts now must be over.
    pub fn deadline(&self) -> Instant {
        Instant::now() + self.settings.timeout
    }

    /// Sends `request` and returns the whole body of a 2xx answer, by `deadline`: the
    /// deadline covers every attempt, connecting, the headers and the body, so an upstream
    /// that stalls mid-body is cut off too. `idempotent` requests (lists) are retried with
    /// jittered backoff after failures that say nothing about the request itself (a refused
    /// or broken connection, 502/503/504, or a 429 whose `retry-after` ends before the
    /// deadline); other requests only after a refused connection, when no byte was sent.
    ///
    /// `last` is the previous body, if any: a body that turns out byte-for-byte the same is
    /// [`Fetched::Same`], and is compared as it streams in rather than copied.
    pub async fn send(
        &self,
        request: &Request,
        deadline: Instant,
        last: Option<&Bytes>,
        idempotent: bool,
    ) -> Result<Fetched, ProviderError> {
        self.attempts(deadline, idempotent, || self.fetch(request, last))
            .await
    }

    /// Sends a control request (ending a call) once, by `deadline`: never again once any
    /// byte of it was sent, whatever the answer (only a refused connection is tried
    /// again). Returns the answer's body; an HTTP status in `not_found` (404, and any the
    /// platform documents for an unknown call) is [`EndError::NotFound`].
    pub async fn control(
        &self,
        request: &Request,
        deadline: Instant,
        not_found: &[u16],
    ) -> Result<Bytes, EndError> {
        match self.send(request, deadline, None, false).await {
            Ok(Fetched::New(body)) => Ok(body),
            Ok(Fetched::Same) => unreachable!("no last body was given"),
            Err(ProviderError::Status(status)) if not_found.contains(&status) => {
                Err(EndError::NotFound)
            }
            Err(e) => Err(EndError::Failed(e)),
        }
    }

    async fn fetch(&self, request: &Request, last: Option<&Bytes>) -> Result<Fetched, Failure> {
        let response = self.start(request).await?;
        let status = response.status();
        if status == 401 || status == 403 {
            return Err(ProviderError::Rejected(status.as_u16()).into());
        }
        if status == 429 {
            return Err(Failure {
                error: ProviderError::RateLimited,
                retry_after: retry_after(response.headers()),
            });
        }
        if !status.is_success() {
            return Err(ProviderError::Status(status.as_u16()).into());
        }
        self.read(response, last).await
    }

    /// Sends a control request once, by `deadline`, and returns the upstream's status and
    /// body whatever the status: placing a call forwards the agent server's own answer, its
    /// refusals included. Only a refused connection is tried again.
    pub async fn exchange(
        &self,
        request: &Request,
        deadline: Instant,
    ) -> Result<(u16, Bytes), ProviderError> {
        self.attempts(deadline, false, || async {
            let response = self.start(request).await?;
            let status = response.status().as_u16();
            match self.read(response, None).await? {
                Fetched::New(body) => Ok((status, body)),
                Fetched::Same => unreachable!("no last body was given"),
            }
        })
        .await
    }

    /// Sends `request`, asking for JSON, and waits for the answer's head.
    async fn start(&self, request: &Request) -> Result<reqwest::Response, Failure> {
        let mut builder = self
            .client
            .request(request.method.clone(), request.url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .headers(request.headers.clone());
        if let Some(body) = &request.body {
            builder = builder.body(body.clone());
        }
        builder.send().await.map_err(|e| Failure::from(classify(e)))
    }

    /// Reads an answer's whole body, up to `max_body_bytes`.
    async fn read(
        &self,
        mut response: reqwest::Response,
        last: Option<&Bytes>,
    ) -> Result<Fetched, Failure> {
        let cap = self.settings.max_body_bytes;
        if response.content_length().is_some_and(|n| n > cap as u64) {
            return Err(ProviderError::TooLarge(cap).into());
        }
        let mut body = Collector::new(last, response.content_length().unwrap_or(0) as usize);
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| Failure::from(classify(e)))?
        {
            if body.len() + chunk.len() > cap {
                return Err(ProviderError::TooLarge(cap).into());
            }
            body.push(&chunk);
        }
        Ok(body.finish())
    }
}

/// Names what went wrong from the error's cause chain; reqwest's own text carries the URL,
/// which is not the client's business.
pub(super) fn classify(e: reqwest::Error) -> ProviderError {
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

//! The HTTP machinery every upstream kind shares: a request (method, query, JSON or form
//! body, auth scheme), sent under one deadline with bounded retries and a body cap, and a
//! lister that follows pages and reuses the last parse when the bytes have not changed.

mod collect;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use bytes::Bytes;
use tokio::time::Instant;

use collect::Collector;
pub use collect::Fetched;

use super::{Calls, EndError, ProviderError};
use crate::call::Call;
use crate::wire::ParseError;

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

/// Bodies at least this large are parsed on the blocking pool (about 1,000 calls).
const PARSE_OFF_RUNTIME_BYTES: usize = 128 * 1024;

/// First retry waits about this long, doubling each time, with ±50 % jitter so many callmux
/// instances do not retry in step.
const BACKOFF_BASE: Duration = Duration::from_millis(50);

/// How a request proves itself to the upstream. Every secret is a header value marked
/// sensitive, so `Debug` output redacts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    None,
    /// A header of the platform's own, sent as given.
    Header(HeaderName, HeaderValue),
    /// `authorization: Bearer <token>`.
    Bearer(HeaderValue),
    /// `authorization: Basic base64(user:password)`.
    Basic(HeaderValue),
}

impl Auth {
    /// `Bearer <token>`, or `None` when the token cannot be a header value.
    pub fn bearer(token: &str) -> Option<Self> {
        let mut v = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
        v.set_sensitive(true);
        Some(Self::Bearer(v))
    }

    pub fn basic(user: &str, password: &str) -> Option<Self> {
        use base64::Engine;
        let pair = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let mut v = HeaderValue::from_str(&format!("Basic {pair}")).ok()?;
        v.set_sensitive(true);
        Some(Self::Basic(v))
    }

    fn apply(&self, headers: &mut HeaderMap) {
        match self {
            Self::None => {}
            Self::Header(name, value) => {
                headers.insert(name.clone(), value.clone());
            }
            Self::Bearer(value) | Self::Basic(value) => {
                headers.insert(axum::http::header::AUTHORIZATION, value.clone());
            }
        }
    }
}

/// One upstream request, as a kind describes it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    pub url: reqwest::Url,
    /// Every header to send, `content-type` included where there is a body.
    pub headers: HeaderMap,
    pub body: Option<Bytes>,
}

impl Request {
    pub fn get(url: reqwest::Url) -> Self {
        Self {
            method: Method::GET,
            url,
            headers: HeaderMap::new(),
            body: None,
        }
    }

    /// A POST with no body.
    pub fn post(url: reqwest::Url) -> Self {
        Self {
            method: Method::POST,
            url,
            headers: HeaderMap::new(),
            body: None,
        }
    }

    /// A POST with a JSON body.
    pub fn post_json(url: reqwest::Url, body: &serde_json::Value) -> Self {
        Self::post(url).with_body(Bytes::from(body.to_string()), "application/json")
    }

    /// A POST with a form body.
    pub fn post_form(url: reqwest::Url, fields: &[(&str, &str)]) -> Self {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        Self::post(url).with_body(Bytes::from(body), "application/x-www-form-urlencoded")
    }

    /// The same request with `body`, sent as `content_type`.
    pub fn with_body(mut self, body: Bytes, content_type: &'static str) -> Self {
        self.headers.insert(
            reqwest::header::CONTENT_TYPE,
            HeaderValue::from_static(content_type),
        );
        self.body = Some(body);
        self
    }

    /// The same request with a query parameter added.
    pub fn query(mut self, name: &str, value: &str) -> Self {
        self.url.query_pairs_mut().append_pair(name, value);
        self
    }

    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }

    pub fn auth(mut self, auth: &Auth) -> Self {
        auth.apply(&mut self.headers);
        self
    }
}

/// `{base_url}/{path}`, whether or not the base URL ends in a slash or has a path of its own.
pub fn endpoint(base: &url::Url, path: &str) -> reqwest::Url {
    let joined = format!("{}/{path}", base.as_str().trim_end_matches('/'));
    reqwest::Url::parse(&joined).expect("a valid base URL joined with a fixed path is valid")
}

/// `base` with `segment` appended as one path segment, percent-encoded: an id from a client
/// or an upstream can never add a segment, a query or a fragment of its own. `None` for
/// `""`, `.` and `..`, which no encoding keeps from meaning "this" or "the parent" folder.
pub fn with_segment(base: &reqwest::Url, segment: &str) -> Option<reqwest::Url> {
    if matches!(segment, "" | "." | "..") {
        return None;
    }
    let mut url = base.clone();
    url.path_segments_mut().ok()?.pop_if_empty().push(segment);
    Some(url)
}

/// A pooled keep-alive client with one provider's limits.
#[derive(Debug)]
pub struct Client {
    client: reqwest::Client,
    settings: HttpSettings,
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

    /// Runs `attempt` until it succeeds, fails in a way not worth retrying, runs out of
    /// retries, or would go past `deadline`, which also bounds each attempt.
    async fn attempts<T, F>(
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

    /// Sends `request` as it is, adding no header of callmux's own beyond reqwest's defaults
    /// for the ones it lacks, and hands back the answer whatever its status: the head by
    /// `deadline`, then the body as it arrives. It is sent once, as a control request is
    /// (again only after a refused connection). The body stream ends in an error, never
    /// silently, when a piece misses the deadline or the body passes `max_body_bytes`; an
    /// answer that declares a longer body is [`ProviderError::TooLarge`] at once.
    pub async fn stream(
        &self,
        request: &Request,
        deadline: Instant,
    ) -> Result<Streamed, ProviderError> {
        let response = self
            .attempts(deadline, false, || async {
                let mut builder = self
                    .client
                    .request(request.method.clone(), request.url.clone())
                    .headers(request.headers.clone());
                if let Some(body) = &request.body {
                    builder = builder.body(body.clone());
                }
                builder.send().await.map_err(|e| Failure::from(classify(e)))
            })
            .await?;
        let cap = self.settings.max_body_bytes;
        if response.content_length().is_some_and(|n| n > cap as u64) {
            return Err(ProviderError::TooLarge(cap));
        }
        let status = response.status();
        let headers = response.headers().clone();
        let limit_ms = self.settings.timeout.as_millis() as u64;
        // The answer and the bytes passed on so far; `None` once the stream has failed.
        let body = futures::stream::unfold(Some((response, 0)), move |state| async move {
            let (mut response, sent) = state?;
            let failed = |e| Some((Err(e), None));
            let piece = match tokio::time::timeout_at(deadline, response.chunk()).await {
                Err(_) => return failed(ProviderError::Timeout(limit_ms)),
                Ok(Err(e)) => return failed(classify(e)),
                Ok(Ok(None)) => return None,
                Ok(Ok(Some(piece))) => piece,
            };
            let sent = sent + piece.len();
            if sent > cap {
                return failed(ProviderError::TooLarge(cap));
            }
            Some((Ok(piece), Some((response, sent))))
        });
        Ok(Streamed {
            status,
            headers,
            body: Box::pin(body),
        })
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

/// An answer on its way: its head, and its body as it arrives (see [`Client::stream`]).
pub struct Streamed {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: futures::stream::BoxStream<'static, Result<Bytes, ProviderError>>,
}

impl std::fmt::Debug for Streamed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streamed")
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// Headers that describe one connection rather than the message (RFC 9110 §7.6.1), and
/// `host`, which names the server asked: a proxy never passes them on. Any header that
/// `connection` names is one of them too.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

/// Takes out of `headers` every hop-by-hop header: those of [`HOP_BY_HOP`], any other
/// `proxy-*`, and those the `connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(axum::http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
    let proxy: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("proxy-"))
        .cloned()
        .collect();
    for name in proxy {
        headers.remove(name);
    }
}

/// A failed attempt, and how long the upstream asked callmux to wait before the next.
struct Failure {
    error: ProviderError,
    retry_after: Option<Duration>,
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
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
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

/// One page of a list: its calls, and where the next page is, if there is one.
#[derive(Debug, Default)]
pub struct Page {
    pub calls: Vec<Call>,
    /// A next link or a cursor, as the upstream gave it; the kind turns it into a request.
    pub next: Option<String>,
}

impl From<Vec<Call>> for Page {
    fn from(calls: Vec<Call>) -> Self {
        Self { calls, next: None }
    }
}

/// Reads one page of one upstream's list shape, its calls named after the provider given.
pub type PageParser = fn(&[u8], &Arc<str>) -> Result<Page, ParseError>;

/// An upstream's list, asked and parsed. The last pages read and what they parsed to are
/// kept: an upstream that answers with the same bytes as last time is not parsed again,
/// and hands out the same `Calls`, which lets everything built from it be reused too.
#[derive(Debug)]
pub struct Lister {
    client: Client,
    last: Mutex<Option<Arc<Memo>>>,
    /// The same per caller (by the digest of the caller's credentials), for an upstream that
    /// answers each caller differently: callers taking turns must not each find the other's
    /// pages. Bounded by body bytes; the least recently asked go first.
    last_per_caller: Option<moka::sync::Cache<[u8; 32], Arc<Memo>>>,
}

/// Shared, so that an ask takes the last pages with one reference count rather than a copy
/// of their list.
#[derive(Debug)]
struct Memo {
    pages: Vec<MemoPage>,
    calls: Calls,
}

/// One page as last read: its bytes, and the cursor it named for the next page.
#[derive(Debug, Clone)]
struct MemoPage {
    body: Bytes,
    next: Option<String>,
}

impl Lister {
    /// `per_caller`: the upstream's answer depends on the caller's forwarded credentials.
    pub fn new(settings: &HttpSettings, per_caller: bool) -> Result<Self, String> {
        Ok(Self {
            client: Client::new(settings)?,
            last: Mutex::new(None),
            // Room for a few callers' largest bodies, or for hundreds of ordinary ones.
            last_per_caller: per_caller.then(|| {
                moka::sync::Cache::builder()
                    .weigher(|_, m: &Arc<Memo>| {
                        let bytes: usize = m.pages.iter().map(|p| p.body.len()).sum();
                        u32::try_from(bytes).unwrap_or(u32::MAX)
                    })
                    .max_capacity((settings.max_body_bytes as u64).saturating_mul(4))
                    .eviction_policy(moka::policy::EvictionPolicy::lru())
                    .time_to_idle(super::CALLER_IDLE)
                    .build()
            }),
        })
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Asks `first`, then each next page that `next` makes from the page's cursor, until a
    /// page has none: at most `max_pages` pages, all within the one deadline. A cursor seen
    /// twice is the provider's error, as is one more page than the bound: a list is never
    /// silently short. `caller` is the digest of forwarded credentials, for an upstream
    /// that answers per caller.
    pub async fn list(
        &self,
        first: Request,
        next: impl Fn(&str) -> Result<Request, ProviderError>,
        caller: Option<[u8; 32]>,
        provider: &Arc<str>,
        parse: PageParser,
    ) -> Result<Calls, ProviderError> {
        let parse = move |body: &[u8], provider: &Arc<str>| parse(body, provider).map(|p| (p, ()));
        let (calls, _) = self.list_with(first, next, caller, provider, parse).await?;
        Ok(calls)
    }

    /// [`Lister::list`] for a kind that reads something of its own from each page beside
    /// the calls (Vapi: each call's control URL, which must never be in a `Call`). The
    /// extras come from this ask's pages, in page order; `None` when every page was the
    /// same as last time, when what the kind took from the last list still holds (an
    /// unchanged page is not parsed again).
    pub async fn list_with<X: Send + 'static>(
        &self,
        first: Request,
        next: impl Fn(&str) -> Result<Request, ProviderError>,
        caller: Option<[u8; 32]>,
        provider: &Arc<str>,
        parse: impl Fn(&[u8], &Arc<str>) -> Result<(Page, X), ParseError> + Copy + Send + 'static,
    ) -> Result<(Calls, Option<Vec<X>>), ProviderError> {
        let per_caller = self.last_per_caller.as_ref().zip(caller);
        let last = match per_caller {
            Some((memos, caller)) => memos.get(&caller),
            None => self.last.lock().expect("memo lock").clone(),
        };
        let deadline = self.client.deadline();
        let max_pages = self.client.settings.max_pages;
        // Each page's bytes and next cursor, and what it parsed to where it was parsed: a
        // page the same as last time is not parsed unless another page changed.
        let mut pages: Vec<MemoPage> = Vec::new();
        let mut parsed: Vec<Option<(Vec<Call>, X)>> = Vec::new();
        let mut seen = HashSet::new();
        let mut request = first;
        loop {
            let previous = last.as_ref().and_then(|m| m.pages.get(pages.len()));
            let fetched = self
                .client
                .send(&request, deadline, previous.map(|p| &p.body), true)
                .await?;
            let (page, read) = match (fetched, previous) {
                (Fetched::Same, Some(previous)) => (previous.clone(), None),
                (Fetched::Same, None) => unreachable!("`Same` only follows a last body"),
                (Fetched::New(body), _) => {
                    let (page, extra) = parse_off_runtime(&body, provider, parse).await?;
                    let next = page.next;
                    (MemoPage { body, next }, Some((page.calls, extra)))
                }
            };
            let next_cursor = page.next.clone();
            pages.push(page);
            parsed.push(read);
            let Some(cursor) = next_cursor else { break };
            if pages.len() >= max_pages {
                return Err(ProviderError::Paging(format!(
                    "listed more than {max_pages} pages (max_pages) and still had more"
                )));
            }
            if !seen.insert(cursor.clone()) {
                return Err(ProviderError::Paging(
                    "sent the same next-page cursor twice, so its list would never end".into(),
                ));
            }
            request = next(&cursor)?;
        }
        let unchanged = parsed.iter().all(Option::is_none);
        if let Some(last) = last.filter(|m| unchanged && m.pages.len() == pages.len()) {
            return Ok((last.calls.clone(), None));
        }
        let mut calls: Vec<Call> = Vec::new();
        let mut extras = Vec::with_capacity(pages.len());
        for (page, read) in pages.iter().zip(parsed) {
            let (page_calls, extra) = match read {
                Some(read) => read,
                None => {
                    let (page, extra) = parse_off_runtime(&page.body, provider, parse).await?;
                    (page.calls, extra)
                }
            };
            extras.push(extra);
            if calls.is_empty() {
                calls = page_calls;
            } else {
                calls.extend(page_calls);
            }
        }
        let calls: Calls = Arc::new(calls);
        let memo = Arc::new(Memo {
            pages,
            calls: calls.clone(),
        });
        match per_caller {
            Some((memos, caller)) => memos.insert(caller, memo),
            None => *self.last.lock().expect("memo lock") = Some(memo),
        }
        Ok((calls, Some(extras)))
    }

    /// A list that is one request and one page.
    pub async fn list_one(
        &self,
        request: Request,
        caller: Option<[u8; 32]>,
        provider: &Arc<str>,
        parse: PageParser,
    ) -> Result<Calls, ProviderError> {
        self.list(
            request,
            |_| Err(ProviderError::Internal),
            caller,
            provider,
            parse,
        )
        .await
    }
}

/// A large body is parsed on the blocking pool, so that two providers' large answers are
/// parsed on two cores and the runtime's threads stay free for other requests.
async fn parse_off_runtime<T: Send + 'static>(
    body: &Bytes,
    provider: &Arc<str>,
    parse: impl Fn(&[u8], &Arc<str>) -> Result<T, ParseError> + Send + 'static,
) -> Result<T, ProviderError> {
    if body.len() < PARSE_OFF_RUNTIME_BYTES {
        return Ok(parse(body, provider)?);
    }
    let (body, provider) = (body.clone(), provider.clone());
    Ok(tokio::task::spawn_blocking(move || parse(&body, &provider))
        .await
        .map_err(|_| ProviderError::Internal)??)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_goes_into_a_url_as_one_encoded_segment() {
        let base = reqwest::Url::parse("http://127.0.0.1:1/v1/calls").unwrap();
        for (id, want) in [
            ("abc", "http://127.0.0.1:1/v1/calls/abc"),
            ("a/b", "http://127.0.0.1:1/v1/calls/a%2Fb"),
            ("a?b#c", "http://127.0.0.1:1/v1/calls/a%3Fb%23c"),
            ("a b%2F", "http://127.0.0.1:1/v1/calls/a%20b%252F"),
            ("%2e%2e", "http://127.0.0.1:1/v1/calls/%252e%252e"),
            ("...", "http://127.0.0.1:1/v1/calls/..."),
        ] {
            let url = with_segment(&base, id).unwrap();
            assert_eq!(url.as_str(), want, "{id}");
            assert_eq!(url.path_segments().unwrap().count(), 3, "{id}");
        }
        for id in ["", ".", ".."] {
            assert_eq!(with_segment(&base, id), None, "{id:?}");
        }
    }

    #[test]
    fn basic_and_bearer_credentials_are_redacted_in_debug_output() {
        let basic = Auth::basic("AC123", "sekrit-token").unwrap();
        let bearer = Auth::bearer("sekrit-token").unwrap();
        let shown = format!("{basic:?} {bearer:?}");
        assert!(!shown.contains("sekrit"), "{shown}");
        assert!(!shown.contains(&base64_of("AC123:sekrit-token")), "{shown}");
    }

    fn base64_of(s: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(s)
    }
}

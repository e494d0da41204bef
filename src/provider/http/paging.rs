//! An upstream's list: its pages followed under one deadline and bound, and the last pages
//! kept so that unchanged bytes are not parsed again.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::{Client, Fetched, HttpSettings, Request};
use crate::call::Call;
use crate::provider::{Calls, ProviderError};
use crate::wire::ParseError;

/// Bodies at least this large are parsed on the blocking pool (about 1,000 calls).
const PARSE_OFF_RUNTIME_BYTES: usize = 128 * 1024;

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
                    .time_to_idle(crate::provider::CALLER_IDLE)
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

//! The HTTP machinery every kind shares, against real loopback upstreams: paging with its
//! bounds, request bodies and auth schemes on the wire, retries and `retry-after`, and one
//! deadline over every attempt and every page.

use std::sync::Arc;
use std::time::{Duration, Instant};

use callmux::call::{Call, CallStatus};
use callmux::provider::http::{Auth, HttpSettings, Lister, Page, Request};
use callmux::provider::ProviderError;
use callmux::wire::ParseError;
use serde_json::{json, Value};
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::*;

fn settings(timeout_ms: u64, retries: u32, max_pages: usize) -> HttpSettings {
    HttpSettings {
        timeout: Duration::from_millis(timeout_ms),
        connect_timeout: Duration::from_millis(timeout_ms.min(1_000)),
        max_body_bytes: 1 << 20,
        retries,
        max_pages,
    }
}

/// A paged test shape: `{"calls": ["id", ...], "next": "cursor" | null}`.
fn paged(body: &[u8], provider: &Arc<str>) -> Result<Page, ParseError> {
    let v: Value = serde_json::from_slice(body)?;
    let calls = v["calls"]
        .as_array()
        .ok_or_else(|| ParseError::Malformed("no calls".into()))?
        .iter()
        .map(|id| {
            Call::new(
                id.as_str().unwrap_or("?"),
                provider.clone(),
                CallStatus::InProgress,
            )
        })
        .collect();
    Ok(Page {
        calls,
        next: v["next"].as_str().map(str::to_owned),
    })
}

fn page_body(ids: &[&str], next: Option<&str>) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"calls": ids, "next": next}))
}

fn ids(calls: &[Call]) -> Vec<&str> {
    calls.iter().map(|c| c.call_id.as_str()).collect()
}

/// The next page: the first request's URL with `cursor` set.
fn by_cursor(url: &str) -> impl Fn(&str) -> Result<Request, ProviderError> + '_ {
    move |cursor| Ok(Request::get(url.parse().unwrap()).query("cursor", cursor))
}

#[tokio::test]
async fn a_paged_list_is_followed_to_its_last_page_and_read_as_one_list() {
    let upstream = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/list"))
        .and(query_param("cursor", "p2"))
        .respond_with(page_body(&["c3"], None))
        .with_priority(1)
        .mount(&upstream)
        .await;
    Mock::given(method("GET"))
        .and(path("/list"))
        .and(query_param("cursor", "p1"))
        .respond_with(page_body(&["c2"], Some("p2")))
        .with_priority(1)
        .mount(&upstream)
        .await;
    Mock::given(method("GET"))
        .and(path("/list"))
        .respond_with(page_body(&["c1"], Some("p1")))
        .with_priority(5)
        .mount(&upstream)
        .await;
    let url = format!("{}/list", upstream.uri());
    let lister = Lister::new(&settings(5_000, 0, 50), false).unwrap();
    let provider: Arc<str> = Arc::from("p");
    let first = lister
        .list(
            Request::get(url.parse().unwrap()),
            by_cursor(&url),
            None,
            &provider,
            paged,
        )
        .await
        .unwrap();
    assert_eq!(ids(&first), ["c1", "c2", "c3"]);
    // Every page the same bytes as last time: the same calls, not parsed again.
    let again = lister
        .list(
            Request::get(url.parse().unwrap()),
            by_cursor(&url),
            None,
            &provider,
            paged,
        )
        .await
        .unwrap();
    assert!(Arc::ptr_eq(&first, &again));
}

#[tokio::test]
async fn a_cursor_seen_twice_is_the_providers_error_not_an_endless_list() {
    let upstream = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(page_body(&["c"], Some("same")))
        .mount(&upstream)
        .await;
    let url = format!("{}/list", upstream.uri());
    let lister = Lister::new(&settings(5_000, 0, 50), false).unwrap();
    let got = lister
        .list(
            Request::get(url.parse().unwrap()),
            by_cursor(&url),
            None,
            &Arc::from("p"),
            paged,
        )
        .await;
    assert!(
        matches!(&got, Err(ProviderError::Paging(m)) if m.contains("same next-page cursor twice")),
        "{got:?}"
    );
    assert_eq!(upstream.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn more_pages_than_max_pages_is_the_providers_error_never_a_short_list() {
    let upstream = MockServer::start().await;
    let counter = std::sync::atomic::AtomicUsize::new(0);
    Mock::given(method("GET"))
        .respond_with(move |_: &wiremock::Request| {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            page_body(&["c"], Some(&format!("page-{n}")))
        })
        .mount(&upstream)
        .await;
    let url = format!("{}/list", upstream.uri());
    let lister = Lister::new(&settings(5_000, 0, 3), false).unwrap();
    let got = lister
        .list(
            Request::get(url.parse().unwrap()),
            by_cursor(&url),
            None,
            &Arc::from("p"),
            paged,
        )
        .await;
    assert!(
        matches!(&got, Err(ProviderError::Paging(m)) if m.contains("more than 3 pages (max_pages)")),
        "{got:?}"
    );
    assert_eq!(got.unwrap_err().code(), "UPSTREAM_ENDLESS_LIST");
    assert_eq!(upstream.received_requests().await.unwrap().len(), 3);
}

#[tokio::test]
async fn the_deadline_covers_every_page_not_each_one() {
    let upstream = MockServer::start().await;
    let counter = std::sync::atomic::AtomicUsize::new(0);
    // Each page alone is well within the deadline; all of them are not.
    Mock::given(method("GET"))
        .respond_with(move |_: &wiremock::Request| {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            page_body(&["c"], Some(&format!("page-{n}"))).set_delay(Duration::from_millis(150))
        })
        .mount(&upstream)
        .await;
    let url = format!("{}/list", upstream.uri());
    let lister = Lister::new(&settings(400, 0, 50), false).unwrap();
    let started = Instant::now();
    let got = lister
        .list(
            Request::get(url.parse().unwrap()),
            by_cursor(&url),
            None,
            &Arc::from("p"),
            paged,
        )
        .await;
    assert_eq!(got, Err(ProviderError::Timeout(400)));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_json_body_and_each_auth_scheme_arrive_on_the_wire_as_the_platform_expects() {
    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/list"))
        .and(header("content-type", "application/json"))
        .and(header("authorization", "Bearer tok-1"))
        .and(body_json(json!({"limit": 1000, "filter": ["ongoing"]})))
        .respond_with(page_body(&["bearer"], None))
        .mount(&upstream)
        .await;
    Mock::given(method("POST"))
        .and(path("/form"))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        // base64("AC1:secret")
        .and(header("authorization", "Basic QUMxOnNlY3JldA=="))
        .respond_with(page_body(&["basic"], None))
        .mount(&upstream)
        .await;
    Mock::given(method("GET"))
        .and(path("/h"))
        .and(header("x-api-key", "k-9"))
        .and(query_param("limit", "1000"))
        .respond_with(page_body(&["header"], None))
        .mount(&upstream)
        .await;
    let lister = Lister::new(&settings(5_000, 0, 50), false).unwrap();
    let p: Arc<str> = Arc::from("p");
    let base = upstream.uri();
    let bearer = Request::post_json(
        format!("{base}/v3/list").parse().unwrap(),
        &json!({"limit": 1000, "filter": ["ongoing"]}),
    )
    .auth(&Auth::bearer("tok-1").unwrap());
    let got = lister.list_one(bearer, None, &p, paged).await.unwrap();
    assert_eq!(ids(&got), ["bearer"]);

    let lister = Lister::new(&settings(5_000, 0, 50), false).unwrap();
    let basic = Request::post_form(
        format!("{base}/form").parse().unwrap(),
        &[("Status", "completed")],
    )
    .auth(&Auth::basic("AC1", "secret").unwrap());
    assert_eq!(
        ids(&lister.list_one(basic, None, &p, paged).await.unwrap()),
        ["basic"]
    );
    let form = &upstream.received_requests().await.unwrap()[1];
    assert_eq!(form.body, b"Status=completed");

    let lister = Lister::new(&settings(5_000, 0, 50), false).unwrap();
    let custom = Request::get(format!("{base}/h").parse().unwrap())
        .query("limit", "1000")
        .auth(&Auth::Header(
            "x-api-key".parse().unwrap(),
            "k-9".parse().unwrap(),
        ));
    assert_eq!(
        ids(&lister.list_one(custom, None, &p, paged).await.unwrap()),
        ["header"]
    );
}

#[tokio::test]
async fn a_429_with_retry_after_is_waited_out_when_the_deadline_allows() {
    let upstream = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "1"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&upstream)
        .await;
    Mock::given(method("GET"))
        .respond_with(page_body(&["after-wait"], None))
        .with_priority(5)
        .mount(&upstream)
        .await;
    let lister = Lister::new(&settings(5_000, 1, 50), false).unwrap();
    let started = Instant::now();
    let got = lister
        .list_one(
            Request::get(upstream.uri().parse().unwrap()),
            None,
            &Arc::from("p"),
            paged,
        )
        .await
        .unwrap();
    assert_eq!(ids(&got), ["after-wait"]);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_429_whose_retry_after_outlasts_the_deadline_fails_at_once_as_rate_limited() {
    let upstream = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "30"))
        .mount(&upstream)
        .await;
    let lister = Lister::new(&settings(2_000, 3, 50), false).unwrap();
    let started = Instant::now();
    let got = lister
        .list_one(
            Request::get(upstream.uri().parse().unwrap()),
            None,
            &Arc::from("p"),
            paged,
        )
        .await;
    assert_eq!(got, Err(ProviderError::RateLimited));
    assert_eq!(got.unwrap_err().code(), "UPSTREAM_RATE_LIMITED");
    assert!(
        started.elapsed() < Duration::from_millis(1_500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(upstream.received_requests().await.unwrap().len(), 1);
}

/// Org `acme` (key `acme-key`) seeing one agent server `agents` at `url`, with these of its
/// settings.
async fn app_over_agents(url: &str, settings: &[(&str, u64)]) -> TestApp {
    let provider = settings
        .iter()
        .fold(ProviderB::agent("agents", url), |p, (k, v)| p.set(k, *v));
    spawn_app(
        &TestConfig::new()
            .org(OrgB::key("acme", "acme-key").providers(&["agents"]))
            .provider(provider)
            .toml(),
    )
    .await
}

/// `retry-after` as an HTTP date (IMF-fixdate) `ahead` from now.
fn http_date_in(ahead: Duration) -> String {
    httpdate::fmt_http_date(std::time::SystemTime::now() + ahead)
}

#[tokio::test]
async fn a_429_with_an_http_date_retry_after_is_waited_out_until_that_date() {
    let upstream = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", http_date_in(Duration::from_secs(2))),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&upstream)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/calls"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "calls": [agent_call("a1", "+1", "in-progress", "outbound")], "count": 1})))
        .with_priority(5)
        .mount(&upstream)
        .await;
    let app = app_over_agents(&upstream.uri(), &[("timeout_ms", 20_000), ("retries", 1)]).await;
    let started = Instant::now();
    let calls = app.calls("acme-key", "acme").await;
    assert_eq!(calls.status, 200, "{:#}", calls.body);
    assert_eq!(calls.body["calls"][0]["call_id"], "a1", "{:#}", calls.body);
    assert!(
        calls.body["errors"].as_array().is_none_or(Vec::is_empty),
        "{:#}",
        calls.body
    );
    assert_eq!(hits(&upstream).await, 2);
    // The date has whole seconds, so two seconds ahead is more than one second's wait; the
    // backoff callmux picks itself is tens of milliseconds.
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_429_with_an_http_date_retry_after_past_the_deadline_is_rate_limited_without_a_retry() {
    let upstream = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", http_date_in(Duration::from_secs(60))),
        )
        .mount(&upstream)
        .await;
    let app = app_over_agents(&upstream.uri(), &[("timeout_ms", 10_000), ("retries", 3)]).await;
    let calls = app.calls("acme-key", "acme").await;
    assert_eq!(calls.status, 502, "{:#}", calls.body);
    assert_eq!(
        calls.body["errors"][0]["provider"], "agents",
        "{:#}",
        calls.body
    );
    assert_eq!(
        calls.body["errors"][0]["error"], "UPSTREAM_RATE_LIMITED",
        "{:#}",
        calls.body
    );
    // Read as a wait past the deadline: not retried, as it would be with backoff were the
    // date not understood.
    assert_eq!(hits(&upstream).await, 1);
}

#[tokio::test]
async fn a_request_that_is_not_idempotent_is_never_sent_twice_after_an_answer() {
    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&upstream)
        .await;
    let client = callmux::provider::http::Client::new(&settings(5_000, 3, 50)).unwrap();
    let request = Request::post_json(
        upstream.uri().parse().unwrap(),
        &json!({"type": "end-call"}),
    );
    let got = client.send(&request, client.deadline(), None, false).await;
    assert_eq!(got, Err(ProviderError::Status(503)));
    assert_eq!(upstream.received_requests().await.unwrap().len(), 1);
    // A list may be asked again after the same answer.
    let got = client.send(&request, client.deadline(), None, true).await;
    assert_eq!(got, Err(ProviderError::Status(503)));
    assert_eq!(upstream.received_requests().await.unwrap().len(), 1 + 4);
}

static COUNTED_PARSES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// [`paged`], counting its calls (only one test uses it).
fn counted(body: &[u8], provider: &Arc<str>) -> Result<Page, ParseError> {
    COUNTED_PARSES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    paged(body, provider)
}

#[tokio::test]
async fn pages_the_same_as_last_time_are_not_parsed_again_and_a_changed_one_is_read_whole() {
    let upstream = MockServer::start().await;
    Mock::given(method("GET"))
        .and(query_param("cursor", "p1"))
        .respond_with(page_body(&["c2"], None))
        .with_priority(1)
        .mount(&upstream)
        .await;
    Mock::given(method("GET"))
        .respond_with(page_body(&["c1"], Some("p1")))
        .with_priority(5)
        .mount(&upstream)
        .await;
    let url = format!("{}/list", upstream.uri());
    let lister = Lister::new(&settings(5_000, 0, 50), false).unwrap();
    let p: Arc<str> = Arc::from("p");
    let ask = || {
        lister.list(
            Request::get(url.parse().unwrap()),
            by_cursor(&url),
            None,
            &p,
            counted,
        )
    };
    let first = ask().await.unwrap();
    let parses = COUNTED_PARSES.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(parses, 2);
    let again = ask().await.unwrap();
    assert!(Arc::ptr_eq(&first, &again));
    assert_eq!(
        COUNTED_PARSES.load(std::sync::atomic::Ordering::SeqCst),
        parses,
        "an unchanged page was parsed again"
    );

    // The second page changes: the list is the first page as before and the new second one.
    upstream.reset().await;
    Mock::given(method("GET"))
        .and(query_param("cursor", "p1"))
        .respond_with(page_body(&["c2-new"], None))
        .with_priority(1)
        .mount(&upstream)
        .await;
    Mock::given(method("GET"))
        .respond_with(page_body(&["c1"], Some("p1")))
        .with_priority(5)
        .mount(&upstream)
        .await;
    let changed = ask().await.unwrap();
    assert_eq!(ids(&changed), ["c1", "c2-new"]);
}

#[tokio::test]
async fn a_redirect_is_the_upstreams_answer_and_is_never_followed() {
    let elsewhere = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(page_body(&["should-not-be-read"], None))
        .mount(&elsewhere)
        .await;
    let upstream = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(302).insert_header("location", elsewhere.uri().as_str()),
        )
        .mount(&upstream)
        .await;
    let lister = Lister::new(&settings(5_000, 0, 50), false).unwrap();
    let request = Request::get(upstream.uri().parse().unwrap()).auth(&Auth::bearer("tok").unwrap());
    let got = lister.list_one(request, None, &Arc::from("p"), paged).await;
    assert_eq!(got, Err(ProviderError::Status(302)));
    assert!(elsewhere.received_requests().await.unwrap().is_empty());
}

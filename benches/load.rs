//! Load benchmark of the real `callmux` binary over fake loopback upstreams.
//!
//! `cargo bench --bench load [-- --quick] [--size N]...`: callmux (coalescing only, and
//! cached) under closed-loop keep-alive load, beside one upstream asked directly and a
//! bare-axum floor that serves callmux's own answer; one table, and the targets of issue 3 as
//! PASS/MISS lines. `--size` keeps only the given numbers of calls per upstream (for
//! profiling one size).
//!
//! `cargo bench --bench load -- soak [--clients 1000] [--seconds 60] [--calls 100]`: many
//! keep-alive clients while one of the three upstreams flaps; responses by kind.
//!
//! `cargo bench --bench load -- replicas [--quick]`: 1 and 3 replicas sharing state on a real
//! `redis-server` (and 1 on memory, the baseline), behind a round-robin client (`replicas.rs`).
//!
//! `cargo bench --bench load -- --help`: every option.
//!
//! Everything listens on 127.0.0.1 and nothing else is contacted: the fake upstreams and the
//! floor are in-process axum servers serving precomputed bytes, callmux runs as child
//! processes on generated configs, and every HTTP client ignores proxy settings. The child
//! processes, their configs, Redis and the calls' wire shapes are the integration tests' own
//! (`tests/it/common/`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;
use serde::Deserialize;
use tokio::runtime::{Handle, Runtime};
use tokio::sync::oneshot;

use common::{agent_call, bland_call, Binary, OrgB, ProviderB, TestConfig};

/// The integration tests' harness, the one copy: this benchmark uses a part of it.
#[allow(dead_code, unused_imports)]
#[path = "../tests/it/common/mod.rs"]
mod common;

#[path = "load/replicas.rs"]
mod replicas;

const ORG: &str = "bench";
const ORG_KEY: &str = "bench-org-key";
const BLAND_KEY_VAR: &str = "BENCH_BLAND_API_KEY";
const BLAND_KEY: &str = "bench-bland-key";
const BLAND_ORG: &str = "bdffa9e8-436c-416d-b95f-a77b19ae4411";
const CALLS_ROUTE: &str = "/api/calls";
const BLAND_ROUTE: &str = "/v1/calls/active";

const SIZES: [usize; 3] = [100, 1_000, 10_000];
const CONCURRENCIES: [usize; 3] = [1, 16, 64];
const CACHE_TTL_MS: u64 = 1_000;
const UPSTREAM_TIMEOUT_MS: u64 = 5_000;
/// The reference agent server: 84 req/s × 1,000 calls.
const REFERENCE_CALLS_PER_SEC: f64 = 84_000.0;
const LOAD_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

const SOAK_FLAPPER: usize = 1;
const SOAK_FLAPPER_TIMEOUT_MS: u64 = 500;
/// The flapping upstream is up for one half-period, then down for the next: 503 at once for
/// the first half of the down phase, 503 after `FLAP_STALL` (beyond its timeout) for the rest.
const FLAP_HALF_PERIOD_MS: u64 = 2_000;
const FLAP_STALL: Duration = Duration::from_millis(800);
const SOAK_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

fn main() {
    let args = Args::parse();
    match args.mode {
        None if args.sizes.is_empty() => run_load(args.quick, &SIZES),
        None => run_load(args.quick, &args.sizes),
        Some(Mode::Soak(options)) => run_soak(&options),
        Some(Mode::Replicas { quick }) => replicas::run(quick || args.quick),
    }
}

// ---------------------------------------------------------------------------------------------
// Command line

/// Load benchmark of the real callmux binary over fake loopback upstreams (BENCHMARKS.md).
/// Without a mode: the load table and the targets of issue 3.
#[derive(Parser)]
#[command(name = "load", bin_name = "cargo bench --bench load --")]
struct Args {
    #[command(subcommand)]
    mode: Option<Mode>,
    /// Short windows: 0.25 s of warm-up and 1 s per cell.
    #[arg(long)]
    quick: bool,
    /// Keep only this number of calls per upstream (give it again for more) [default: 100,
    /// 1000 and 10000].
    #[arg(long = "size", value_name = "N", value_parser = positive())]
    sizes: Vec<usize>,
    /// What `cargo bench` passes to every benchmark.
    #[arg(long, global = true, hide = true)]
    bench: bool,
}

#[derive(Subcommand)]
enum Mode {
    /// Many keep-alive clients while one of the three upstreams flaps; responses by kind.
    Soak(SoakOptions),
    /// 1 and 3 replicas sharing state on a real redis-server, and 1 on memory.
    Replicas {
        /// One short round.
        #[arg(long)]
        quick: bool,
    },
}

#[derive(clap::Args)]
struct SoakOptions {
    /// Keep-alive clients, each on its own connection.
    #[arg(long, default_value_t = 1_000, value_parser = positive())]
    clients: usize,
    /// Seconds the soak lasts.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    seconds: u64,
    /// Active calls held by each of the three upstreams.
    #[arg(long, default_value_t = 100, value_parser = positive())]
    calls: usize,
}

/// A whole number above zero.
fn positive() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::new().range(1..)
}

// ---------------------------------------------------------------------------------------------
// Fake upstreams and the floor: precomputed bytes, requests counted

#[derive(Clone, Copy)]
enum Kind {
    Agent,
    Bland,
}

impl Kind {
    fn route(self) -> &'static str {
        match self {
            Self::Agent => CALLS_ROUTE,
            Self::Bland => BLAND_ROUTE,
        }
    }

    /// `n` active calls in this kind's wire shape, with ids distinct across `server`s.
    fn body(self, server: usize, n: usize) -> Bytes {
        let calls: Vec<serde_json::Value> = (0..n)
            .map(|i| match self {
                Self::Agent => agent_server_call(server, i),
                Self::Bland => bland_server_call(server, i),
            })
            .collect();
        let body = match self {
            Self::Agent => serde_json::json!({"calls": calls, "count": n}),
            Self::Bland => serde_json::json!({"data": calls, "errors": null}),
        };
        serde_json::to_vec(&body).expect("JSON").into()
    }
}

fn call_id(server: usize, i: usize) -> String {
    format!(
        "{server:08x}-{:04x}-4{:03x}-8abc-{i:012x}",
        i >> 16,
        i & 0xfff
    )
}

/// The `i`th agent-server call of `server`.
fn agent_server_call(server: usize, i: usize) -> serde_json::Value {
    let to_number = format!("+1{:03}{:07}", 200 + server, i);
    let status = ["in-progress", "ringing", "initiating"][i % 3];
    let direction = ["outbound", "incoming"][i % 2];
    agent_call(&call_id(server, i), &to_number, status, direction)
}

/// The `i`th Bland call of `server`.
fn bland_server_call(server: usize, i: usize) -> serde_json::Value {
    let status = ["QUEUED", "IN_PROGRESS"][i % 2];
    let timestamp = (1_758_656_817_432u64 + 37 * i as u64).to_string();
    bland_call(&call_id(server, i), status, &timestamp)
}

/// One fake server's state: its answer, its request counter, and whether it flaps.
struct Upstream {
    body: Bytes,
    hits: AtomicU64,
    /// Bland checks the provider's own credentials.
    check_bland_credentials: bool,
    base: Instant,
    /// Milliseconds after `base` (plus one) when flapping began; 0: steady.
    flapping_since: AtomicU64,
}

enum Phase {
    Up,
    Down,
    Stalled,
}

impl Upstream {
    fn new(body: Bytes, check_bland_credentials: bool) -> Arc<Self> {
        Arc::new(Self {
            body,
            hits: AtomicU64::new(0),
            check_bland_credentials,
            base: Instant::now(),
            flapping_since: AtomicU64::new(0),
        })
    }

    fn set_flapping(&self, on: bool) {
        let since = if on {
            self.base.elapsed().as_millis() as u64 + 1
        } else {
            0
        };
        self.flapping_since.store(since, Relaxed);
    }

    fn phase(&self) -> Phase {
        let since = self.flapping_since.load(Relaxed);
        if since == 0 {
            return Phase::Up;
        }
        let t = (self.base.elapsed().as_millis() as u64 + 1).saturating_sub(since);
        let into_cycle = t % (2 * FLAP_HALF_PERIOD_MS);
        if into_cycle < FLAP_HALF_PERIOD_MS {
            Phase::Up
        } else if into_cycle < FLAP_HALF_PERIOD_MS * 3 / 2 {
            Phase::Down
        } else {
            Phase::Stalled
        }
    }
}

async fn answer(State(up): State<Arc<Upstream>>, headers: HeaderMap) -> Response {
    up.hits.fetch_add(1, Relaxed);
    if up.check_bland_credentials && !has_bland_credentials(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    match up.phase() {
        Phase::Up => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            up.body.clone(),
        )
            .into_response(),
        Phase::Down => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        Phase::Stalled => {
            tokio::time::sleep(FLAP_STALL).await;
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

fn has_bland_credentials(headers: &HeaderMap) -> bool {
    let key = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.strip_prefix("Bearer ").unwrap_or(v));
    key == Some(BLAND_KEY)
        && headers
            .get("x-bland-org-id")
            .is_some_and(|v| v == BLAND_ORG)
}

/// A server running on a loopback port; dropping it shuts it down.
struct Served {
    url: String,
    _stop: oneshot::Sender<()>,
}

fn serve(rt: &Handle, route: &str, state: Arc<Upstream>) -> Served {
    let router = Router::new().route(route, get(answer)).with_state(state);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.set_nonblocking(true).expect("non-blocking socket");
    let url = format!("http://{}", listener.local_addr().expect("local address"));
    let (stop, stopped) = oneshot::channel::<()>();
    rt.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
        let shutdown = async {
            let _ = stopped.await;
        };
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await;
    });
    Served { url, _stop: stop }
}

/// One of the three upstreams callmux lists for the org.
struct FakeProvider {
    id: &'static str,
    kind: Kind,
    timeout_ms: u64,
    state: Arc<Upstream>,
    served: Served,
}

impl FakeProvider {
    fn url(&self) -> String {
        format!("{}{}", self.served.url, self.kind.route())
    }
}

/// The org's providers, in its list's order: two agent servers and one Bland.
const FLEET: [(&str, Kind); PROVIDERS] = [
    ("agents_a", Kind::Agent),
    ("agents_b", Kind::Agent),
    ("bland", Kind::Bland),
];
const PROVIDERS: usize = 3;

/// The fleet's servers, `n` calls each, with per-provider timeouts.
fn start_fleet(rt: &Handle, n: usize, timeouts_ms: [u64; PROVIDERS]) -> Vec<FakeProvider> {
    FLEET
        .into_iter()
        .zip(timeouts_ms)
        .enumerate()
        .map(|(server, ((id, kind), timeout_ms))| {
            let state = Upstream::new(kind.body(server, n), matches!(kind, Kind::Bland));
            let served = serve(rt, kind.route(), state.clone());
            FakeProvider {
                id,
                kind,
                timeout_ms,
                state,
                served,
            }
        })
        .collect()
}

/// A counter read at the start and at the end of a measured window.
enum Probe {
    /// Requests an upstream received.
    Hits(Arc<Upstream>),
    /// CPU time (user + system, in clock ticks) a process has used.
    CpuTicks(u32),
}

impl Probe {
    fn read(&self) -> u64 {
        match self {
            Self::Hits(up) => up.hits.load(Relaxed),
            Self::CpuTicks(pid) => cpu_ticks(*pid).unwrap_or(0),
        }
    }
}

/// Linux reports process times in USER_HZ ticks, 100 per second on every mainstream arch.
const TICKS_PER_SEC: f64 = 100.0;

/// utime + stime of `pid`, from /proc/<pid>/stat (fields 14 and 15).
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields after it start at field 3.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// In this order: each upstream's request counter, this process's CPU time (the upstreams,
/// the floor and the load generator), and callmux's CPU time when `callmux` is given.
fn probes(fleet: &[FakeProvider], callmux: Option<u32>) -> Vec<Probe> {
    let hits = fleet.iter().map(|p| Probe::Hits(p.state.clone()));
    let cpu = std::iter::once(std::process::id())
        .chain(callmux)
        .map(Probe::CpuTicks);
    hits.chain(cpu).collect()
}

// ---------------------------------------------------------------------------------------------
// callmux as a child process

fn config_toml(fleet: &[FakeProvider], cache_ttl_ms: u64) -> String {
    let ids: Vec<&str> = fleet.iter().map(|p| p.id).collect();
    let org = OrgB::key(ORG, ORG_KEY).providers(&ids);
    let config = fleet.iter().fold(TestConfig::new().org(org), |config, p| {
        let provider = match p.kind {
            Kind::Agent => ProviderB::agent(p.id, &p.served.url),
            Kind::Bland => ProviderB::bland(p.id, &p.served.url, BLAND_KEY_VAR, BLAND_ORG),
        };
        config.provider(
            provider
                .set("timeout_ms", p.timeout_ms)
                .set("cache_ttl_ms", cache_ttl_ms),
        )
    });
    config.toml()
}

/// `callmux serve` on `config`, with the Bland key and `env` set, logging at `warn`.
fn start_callmux(config: &str, env: &[(&str, &str)]) -> Binary {
    let mut all = vec![(BLAND_KEY_VAR, BLAND_KEY)];
    all.extend_from_slice(env);
    Binary::start_quiet(config, &all)
}

/// What callmux has logged (at `warn`: warnings and errors only): how many lines, the last few.
fn log_report(callmux: &Binary) -> String {
    const KEEP: usize = 5;
    let lines = callmux.stderr_lines();
    let mut out = format!("{} line(s) at warn or above", lines.len());
    for line in &lines[lines.len().saturating_sub(KEEP)..] {
        out += &format!("\n    {line}");
    }
    out
}

/// A `VmHWM` or `VmRSS` figure from /proc, in KiB; `None` once the process is gone.
fn memory_kib(callmux: &Binary, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", callmux.pid())).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Peak RSS so far, in KiB; says so on stderr if callmux has exited.
fn peak_rss_kib(callmux: &mut Binary) -> Option<u64> {
    if let Some(how) = callmux.try_wait() {
        eprintln!("callmux exited ({how}); {}", log_report(callmux));
    }
    memory_kib(callmux, "VmHWM")
}

fn open_fds(callmux: &Binary) -> Option<usize> {
    let dir = std::fs::read_dir(format!("/proc/{}/fd", callmux.pid())).ok()?;
    Some(dir.count())
}

// ---------------------------------------------------------------------------------------------
// Closed-loop load

/// One keep-alive connection's client: HTTP/1.1 only, no proxy, the org's headers on every
/// request (the upstreams and the floor ignore them).
fn client(timeout: Duration) -> reqwest::Client {
    let mut headers = HeaderMap::new();
    headers.insert(header::AUTHORIZATION, HeaderValue::from_static(ORG_KEY));
    headers.insert("x-bland-org-id", HeaderValue::from_static(ORG));
    reqwest::Client::builder()
        .http1_only()
        .no_proxy()
        .pool_max_idle_per_host(1)
        .tls_built_in_root_certs(false)
        .timeout(timeout)
        .default_headers(headers)
        .build()
        .expect("an HTTP client")
}

struct Reply {
    status: u16,
    body: Bytes,
}

async fn fetch(client: &reqwest::Client, url: &str) -> Result<Reply, reqwest::Error> {
    let response = client.get(url).send().await?;
    let status = response.status().as_u16();
    let body = response.bytes().await?;
    Ok(Reply { status, body })
}

/// Fetches `url` once and checks it is a complete calls-shape answer listing `calls` calls.
async fn first_answer(url: &str, calls: usize) -> Result<Bytes, String> {
    let reply = fetch(&client(LOAD_REQUEST_TIMEOUT), url)
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let head = String::from_utf8_lossy(&reply.body[..reply.body.len().min(300)]).into_owned();
    if reply.status != 200 {
        return Err(format!("GET {url}: status {}: {head}", reply.status));
    }
    let value: serde_json::Value =
        serde_json::from_slice(&reply.body).map_err(|e| format!("GET {url}: {e}: {head}"))?;
    let count = value["count"].as_u64();
    let listed = value["calls"].as_array().map(Vec::len);
    if count != Some(calls as u64) || listed != Some(calls) || value.get("errors").is_some() {
        return Err(format!(
            "GET {url}: expected {calls} calls and no errors, got count {count:?}, {listed:?} listed: {head}"
        ));
    }
    Ok(reply.body)
}

#[derive(Clone, Copy)]
struct Window {
    warmup: Duration,
    measure: Duration,
}

/// What the requests started after the warm-up got.
struct Tally {
    latency_us: Histogram<u64>,
    kinds: BTreeMap<String, u64>,
    elapsed: Duration,
    /// How much each probe advanced in the same window, in the order of `probes`.
    deltas: Vec<u64>,
}

impl Tally {
    fn new() -> Self {
        Self {
            latency_us: Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram"),
            kinds: BTreeMap::new(),
            elapsed: Duration::ZERO,
            deltas: Vec::new(),
        }
    }

    fn record(&mut self, latency: Duration, kind: String) {
        self.latency_us
            .saturating_record(latency.as_micros() as u64);
        *self.kinds.entry(kind).or_default() += 1;
    }

    fn absorb(&mut self, other: Tally) {
        self.latency_us
            .add(&other.latency_us)
            .expect("histograms with the same bounds");
        for (kind, n) in other.kinds {
            *self.kinds.entry(kind).or_default() += n;
        }
    }

    fn requests(&self) -> u64 {
        self.latency_us.len()
    }

    fn per_second(&self, count: u64) -> f64 {
        count as f64 / self.elapsed.as_secs_f64()
    }

    fn quantile_ms(&self, q: f64) -> f64 {
        self.latency_us.value_at_quantile(q) as f64 / 1_000.0
    }

    fn upstream_hits(&self) -> &[u64] {
        &self.deltas[..PROVIDERS]
    }

    /// CPU seconds used by this process (at PROVIDERS) or by callmux (the next probe).
    fn cpu_seconds(&self, probe: usize) -> Option<f64> {
        Some(*self.deltas.get(probe)? as f64 / TICKS_PER_SEC)
    }

    fn bench_cpu_percent(&self) -> Option<f64> {
        Some(100.0 * self.cpu_seconds(PROVIDERS)? / self.elapsed.as_secs_f64())
    }

    fn callmux_cpu_percent(&self) -> Option<f64> {
        Some(100.0 * self.cpu_seconds(PROVIDERS + 1)? / self.elapsed.as_secs_f64())
    }

    fn callmux_cpu_us_per_request(&self) -> Option<f64> {
        Some(self.cpu_seconds(PROVIDERS + 1)? * 1e6 / self.requests() as f64)
    }
}

type Classify = dyn Fn(Result<Reply, reqwest::Error>) -> String + Send + Sync;

/// `clients` workers, each on its own keep-alive connection (one per URL), request `urls`
/// back to back for the window, round robin; the requests started after the warm-up are
/// classified and timed.
async fn drive(
    urls: &[String],
    clients: usize,
    window: Window,
    request_timeout: Duration,
    probes: &[Probe],
    classify: Arc<Classify>,
) -> Tally {
    let start = Instant::now();
    let measured_from = start + window.warmup;
    let end = measured_from + window.measure;
    let workers: Vec<_> = (0..clients)
        .map(|w| {
            let client = client(request_timeout);
            // Workers start at different URLs, so every replica is busy from the first request.
            let mut urls = urls.to_vec();
            let first = w % urls.len();
            urls.rotate_left(first);
            let classify = classify.clone();
            tokio::spawn(async move { worker(client, urls, measured_from, end, classify).await })
        })
        .collect();
    tokio::time::sleep_until(measured_from.into()).await;
    let before: Vec<u64> = probes.iter().map(Probe::read).collect();
    let mut total = Tally::new();
    for w in workers {
        total.absorb(w.await.expect("a load worker panicked"));
    }
    total.elapsed = measured_from.elapsed();
    total.deltas = probes
        .iter()
        .zip(before)
        .map(|(p, b)| p.read().saturating_sub(b))
        .collect();
    total
}

async fn worker(
    client: reqwest::Client,
    urls: Vec<String>,
    measured_from: Instant,
    end: Instant,
    classify: Arc<Classify>,
) -> Tally {
    let mut tally = Tally::new();
    for url in urls.iter().cycle() {
        let sent = Instant::now();
        if sent >= end {
            break;
        }
        let reply = fetch(&client, url).await;
        let latency = sent.elapsed();
        if sent >= measured_from {
            tally.record(latency, classify(reply));
        }
    }
    tally
}

fn transport_kind(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect error"
    } else if e.is_body() || e.is_decode() {
        "body error"
    } else if e.is_request() {
        "request error"
    } else {
        "error"
    };
    format!("client-side {what}")
}

const OK: &str = "ok";

/// Load cells: a 200 of exactly the first answer's length is `ok`.
fn same_length(len: usize) -> Arc<Classify> {
    Arc::new(move |reply| match reply {
        Ok(r) if r.status == 200 && r.body.len() == len => OK.to_string(),
        Ok(r) if r.status == 200 => format!("200 of {} bytes, not {len}", r.body.len()),
        Ok(r) => format!("status {}", r.status),
        Err(e) => transport_kind(&e),
    })
}

// ---------------------------------------------------------------------------------------------
// The load benchmark

#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Direct,
    Floor,
    Coalescing,
    Cached,
}

impl Target {
    fn label(self) -> &'static str {
        match self {
            Self::Direct => "direct (1 agent server)",
            Self::Floor => "floor (bare axum)",
            Self::Coalescing => "callmux coalescing only",
            Self::Cached => "callmux cached 1000 ms",
        }
    }

    fn is_callmux(self) -> bool {
        matches!(self, Self::Coalescing | Self::Cached)
    }
}

struct Row {
    n: usize,
    c: usize,
    target: Target,
    /// Calls in each answer.
    calls: usize,
    outcome: Result<Tally, String>,
    peak_rss_kib: Option<u64>,
}

impl Row {
    fn tally(&self) -> Option<&Tally> {
        self.outcome.as_ref().ok()
    }

    fn rps(&self) -> Option<f64> {
        self.tally().map(|t| t.per_second(t.requests()))
    }

    fn ms(&self, q: f64) -> Option<f64> {
        self.tally().map(|t| t.quantile_ms(q))
    }

    fn calls_per_sec(&self) -> Option<f64> {
        self.rps().map(|r| r * self.calls as f64)
    }

    fn errors(&self) -> Option<u64> {
        self.tally()
            .map(|t| t.requests() - t.kinds.get(OK).copied().unwrap_or(0))
    }
}

fn runtime(name: &str) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn run_load(quick: bool, sizes: &[usize]) {
    let window = if quick {
        Window {
            warmup: Duration::from_millis(250),
            measure: Duration::from_secs(1),
        }
    } else {
        Window {
            warmup: Duration::from_secs(1),
            measure: Duration::from_secs(5),
        }
    };
    // Servers and load generator on separate runtimes, so neither queues behind the other.
    let servers = runtime("upstreams");
    let load = runtime("load");
    let mut rows = Vec::new();
    for &n in sizes {
        rows.extend(load.block_on(measure_size(servers.handle(), n, window)));
    }
    print_table(&rows, window);
    println!();
    for line in verdicts(&rows, window) {
        println!("{line}");
    }
}

/// Every (C, target) cell for `n` calls per upstream, on fresh upstreams and callmux processes.
async fn measure_size(servers: &Handle, n: usize, window: Window) -> Vec<Row> {
    let fleet = start_fleet(servers, n, [UPSTREAM_TIMEOUT_MS; PROVIDERS]);
    let mut coalescing = start_callmux(&config_toml(&fleet, 0), &[]);
    let mut cached = start_callmux(&config_toml(&fleet, CACHE_TTL_MS), &[]);
    let merged = first_answer(&coalescing.url(CALLS_ROUTE), 3 * n)
        .await
        .unwrap_or_else(|e| panic!("callmux's merged answer is wrong, so no floor: {e}"));
    let floor = serve(servers, CALLS_ROUTE, Upstream::new(merged, false));
    let floor_url = format!("{}{CALLS_ROUTE}", floor.url);
    let mut rows = Vec::new();
    for c in CONCURRENCIES {
        for target in [
            Target::Direct,
            Target::Floor,
            Target::Coalescing,
            Target::Cached,
        ] {
            let (url, calls, process) = match target {
                Target::Direct => (fleet[0].url(), n, None),
                Target::Floor => (floor_url.clone(), 3 * n, None),
                Target::Coalescing => (coalescing.url(CALLS_ROUTE), 3 * n, Some(&mut coalescing)),
                Target::Cached => (cached.url(CALLS_ROUTE), 3 * n, Some(&mut cached)),
            };
            let probes = probes(&fleet, process.as_ref().map(|p| p.pid()));
            let outcome = run_cell(&url, calls, c, window, &probes).await;
            let peak_rss_kib = process.and_then(peak_rss_kib);
            let row = Row {
                n,
                c,
                target,
                calls,
                outcome,
                peak_rss_kib,
            };
            eprintln!("{}", progress_line(&row));
            rows.push(row);
        }
    }
    for (name, p) in [("coalescing only", &coalescing), ("cached", &cached)] {
        eprintln!("N={n}: callmux {name}: {}", log_report(p));
    }
    rows
}

/// One load cell: check the first answer, then drive `c` connections for the window.
async fn run_cell(
    url: &str,
    calls: usize,
    c: usize,
    window: Window,
    probes: &[Probe],
) -> Result<Tally, String> {
    let first = first_answer(url, calls).await?;
    let classify = same_length(first.len());
    Ok(drive(
        &[url.to_string()],
        c,
        window,
        LOAD_REQUEST_TIMEOUT,
        probes,
        classify,
    )
    .await)
}

fn progress_line(row: &Row) -> String {
    let head = format!("N={} C={} {}", row.n, row.c, row.target.label());
    match &row.outcome {
        Ok(t) => format!(
            "{head}: {:.0} req/s, p50 {:.3} ms, p99 {:.3} ms, {} not ok",
            t.per_second(t.requests()),
            t.quantile_ms(0.5),
            t.quantile_ms(0.99),
            row.errors().unwrap_or(0)
        ),
        Err(e) => format!("{head}: FAILED: {e}"),
    }
}

fn find(rows: &[Row], n: usize, c: usize, target: Target) -> Option<&Row> {
    rows.iter()
        .find(|r| r.n == n && r.c == c && r.target == target)
}

fn fmt_opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or("—".into(), |v| format!("{v:.decimals$}"))
}

fn fmt_si(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(a? / b?)
}

fn difference(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(a? - b?)
}

const TABLE_COLUMNS: usize = 20;

fn print_table(rows: &[Row], window: Window) {
    println!(
        "Load: closed loop, HTTP/1.1 keep-alive, one connection per client; {:.2} s warm-up then \
         {:.2} s per cell; latencies in ms; ratios are callmux ÷ direct and callmux ÷ floor; \
         overhead = callmux − floor at the same N and C; ×84k = calls/s ÷ 84,000; upstream \
         req/s = requests agents_a / agents_b / bland received per second during the cell; \
         CPU % = share of one core used by callmux and by this process (upstreams, floor and \
         load generator together); 2 cores in all.",
        window.warmup.as_secs_f64(),
        window.measure.as_secs_f64()
    );
    println!();
    println!(
        "| N | C | target | req/s | p50 | p99 | p99.9 | not ok | req/s ÷direct | req/s ÷floor \
         | p50 ÷direct | p50 ÷floor | overhead p50 | overhead p99 | calls/s | ×84k \
         | upstream req/s | peak RSS MiB | callmux CPU µs/req | CPU % callmux / bench |"
    );
    println!("|{}", "---|".repeat(TABLE_COLUMNS));
    for row in rows {
        println!("{}", table_line(rows, row));
    }
}

fn table_line(rows: &[Row], row: &Row) -> String {
    let head = format!("| {} | {} | {} |", row.n, row.c, row.target.label());
    let Ok(tally) = &row.outcome else {
        return format!(
            "{head} setup check FAILED |{}",
            " |".repeat(TABLE_COLUMNS - 4)
        );
    };
    let direct = find(rows, row.n, row.c, Target::Direct);
    let floor = find(rows, row.n, row.c, Target::Floor);
    // Figures that compare callmux with another target are left blank on the other rows.
    let mux = row.target.is_callmux();
    let compared = |v: Option<f64>, decimals| fmt_opt(v.filter(|_| mux), decimals);
    let p50 = |r: &Row| r.ms(0.5);
    let p99 = |r: &Row| r.ms(0.99);
    let upstream: Vec<String> = tally
        .upstream_hits()
        .iter()
        .map(|&h| format!("{:.1}", tally.per_second(h)))
        .collect();
    let calls_per_sec = row.calls_per_sec().unwrap_or(0.0);
    let cells = [
        fmt_opt(row.rps(), 0),
        fmt_opt(p50(row), 3),
        fmt_opt(p99(row), 3),
        fmt_opt(row.ms(0.999), 3),
        row.errors().unwrap_or(0).to_string(),
        compared(ratio(row.rps(), direct.and_then(Row::rps)), 2),
        compared(ratio(row.rps(), floor.and_then(Row::rps)), 2),
        compared(ratio(p50(row), direct.and_then(p50)), 2),
        compared(ratio(p50(row), floor.and_then(p50)), 2),
        compared(difference(p50(row), floor.and_then(p50)), 3),
        compared(difference(p99(row), floor.and_then(p99)), 3),
        fmt_si(calls_per_sec),
        format!("{:.1}", calls_per_sec / REFERENCE_CALLS_PER_SEC),
        if mux {
            upstream.join(" / ")
        } else {
            "—".into()
        },
        fmt_opt(row.peak_rss_kib.map(|k| k as f64 / 1024.0), 1),
        fmt_opt(tally.callmux_cpu_us_per_request(), 0),
        format!(
            "{} / {}",
            fmt_opt(tally.callmux_cpu_percent(), 0),
            fmt_opt(tally.bench_cpu_percent(), 0)
        ),
    ];
    format!("{head} {} |", cells.join(" | "))
}

fn verdict(pass: bool, text: String) -> String {
    format!("{}  {text}", if pass { "PASS" } else { "MISS" })
}

/// The targets of issue 3, PASS or MISS; SKIP for a target whose size was left out (`--size`).
fn verdicts(rows: &[Row], window: Window) -> Vec<String> {
    let mut out = Vec::new();
    let skipped = |n: usize, name: &str| {
        (!rows.iter().any(|r| r.n == n)).then(|| format!("SKIP  {name}: N={n} not in this run"))
    };
    let name = "coalescing only, N=1000 (3 upstreams × 1,000 calls), C=16";
    if let Some(line) = skipped(1_000, name) {
        out.push(line);
    } else {
        out.extend(coalescing_verdicts(rows, name));
    }
    let name = "cached (cache_ttl_ms = 1000), N=100, C=64";
    if let Some(line) = skipped(100, name) {
        out.push(line);
    } else {
        out.extend(cached_verdicts(rows, window, name));
    }
    out
}

fn coalescing_verdicts(rows: &[Row], name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mux = find(rows, 1_000, 16, Target::Coalescing);
    let floor = find(rows, 1_000, 16, Target::Floor);
    for (q, limit) in [(0.5, 1.0), (0.99, 3.0)] {
        let over = difference(mux.and_then(|r| r.ms(q)), floor.and_then(|r| r.ms(q)));
        out.push(verdict(
            over.is_some_and(|o| o <= limit),
            format!(
                "{name}: p{} overhead {} ms (limit ≤ {limit} ms)",
                q * 100.0,
                fmt_opt(over, 3)
            ),
        ));
    }
    let calls = mux.and_then(Row::calls_per_sec);
    let want = 50.0 * REFERENCE_CALLS_PER_SEC;
    out.push(verdict(
        calls.is_some_and(|c| c >= want),
        format!(
            "{name}: {} calls/s = {}× the reference 84,000 (limit ≥ 50× = {})",
            calls.map_or("—".into(), fmt_si),
            fmt_opt(calls.map(|c| c / REFERENCE_CALLS_PER_SEC), 1),
            fmt_si(want)
        ),
    ));
    out
}

fn cached_verdicts(rows: &[Row], window: Window, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mux = find(rows, 100, 64, Target::Cached);
    let floor = find(rows, 100, 64, Target::Floor);
    let share = ratio(mux.and_then(Row::rps), floor.and_then(Row::rps));
    out.push(verdict(
        share.is_some_and(|s| s >= 0.7),
        format!(
            "{name}: {} req/s = {} × floor's {} req/s (limit ≥ 0.70 ×)",
            fmt_opt(mux.and_then(Row::rps), 0),
            fmt_opt(share, 2),
            fmt_opt(floor.and_then(Row::rps), 0)
        ),
    ));
    let allowed = (window.measure.as_secs_f64() * 1_000.0 / CACHE_TTL_MS as f64).ceil() as u64 + 1;
    let hits = mux
        .and_then(Row::tally)
        .map(|t| (t.upstream_hits().to_vec(), t.elapsed));
    let pass = hits
        .as_ref()
        .is_some_and(|(h, _)| h.iter().all(|&n| n <= allowed));
    let detail = hits.map_or("—".into(), |(h, elapsed)| {
        let each: Vec<String> = h.iter().map(u64::to_string).collect();
        format!(
            "{} requests in {:.2} s (agents_a / agents_b / bland)",
            each.join(" / "),
            elapsed.as_secs_f64()
        )
    });
    out.push(verdict(
        pass,
        format!(
            "{name}: upstream requests {detail}; limit ≤ 1000 / cache_ttl_ms = 1/s per provider, \
             i.e. ≤ {allowed} each including one warm-up fetch"
        ),
    ));
    out
}

// ---------------------------------------------------------------------------------------------
// Soak: many clients while one upstream flaps

#[derive(Deserialize)]
struct AnswerTail {
    count: usize,
    #[serde(default)]
    errors: Option<Vec<ErrorEntry>>,
}

#[derive(Deserialize)]
struct ErrorEntry {
    #[serde(default)]
    provider: Option<String>,
    error: String,
}

/// The `count` and `errors` that follow a calls-shape answer's `calls`, read without parsing
/// the calls: `{` + everything from the last `"count":` is a small JSON object of its own.
fn answer_tail(body: &[u8]) -> Option<AnswerTail> {
    let key = b"\"count\":";
    let at = body.windows(key.len()).rposition(|w| w == key)?;
    let mut tail = Vec::with_capacity(body.len() - at + 1);
    tail.push(b'{');
    tail.extend_from_slice(&body[at..]);
    serde_json::from_slice(&tail).ok()
}

/// Soak replies by kind: complete, partial by error, 502, other statuses, client-side errors.
/// A 200 whose count does not match the failures it names is called out.
fn soak_kind(per_provider: usize, providers: usize) -> Arc<Classify> {
    Arc::new(move |reply| {
        let r = match reply {
            Ok(r) => r,
            Err(e) => return transport_kind(&e),
        };
        let Some(tail) = answer_tail(&r.body) else {
            return format!("{} with an unreadable body", r.status);
        };
        let errors = tail.errors.unwrap_or_default();
        let expected = per_provider * (providers - errors.len().min(providers));
        let label = match (r.status, errors.is_empty()) {
            (200, true) => "200 complete".to_string(),
            (200, false) => "200 partial".to_string(),
            (status, _) => status.to_string(),
        };
        let codes: Vec<String> = errors
            .iter()
            .map(|e| format!("{} {}", e.provider.as_deref().unwrap_or("-"), e.error))
            .collect();
        let codes = if codes.is_empty() {
            String::new()
        } else {
            format!(" [{}]", codes.join(", "))
        };
        let count = if r.status != 200 || tail.count == expected {
            String::new()
        } else {
            format!(" WRONG COUNT {} (expected {expected})", tail.count)
        };
        format!("{label}{codes}{count}")
    })
}

/// The soft limit on open files, from /proc/self/limits.
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Exits with a message when `clients` connections would not fit under the open-files limit
/// (callmux inherits the same limit and holds as many connections).
fn ensure_open_files(clients: usize) {
    let needed = clients as u64 + 256;
    if let Some(limit) = open_files_limit().filter(|&l| l < needed) {
        eprintln!(
            "error: {clients} clients need about {needed} open files in this process and in \
             callmux, but the limit is {limit}: raise it first (`ulimit -n {needed}`)"
        );
        std::process::exit(2);
    }
}

fn run_soak(options: &SoakOptions) {
    ensure_open_files(options.clients);
    let servers = runtime("upstreams");
    let load = runtime("load");
    let n = options.calls;
    let mut timeouts = [UPSTREAM_TIMEOUT_MS; PROVIDERS];
    timeouts[SOAK_FLAPPER] = SOAK_FLAPPER_TIMEOUT_MS;
    let fleet = start_fleet(servers.handle(), n, timeouts);
    let mut callmux = start_callmux(&config_toml(&fleet, 0), &[]);
    let url = callmux.url(CALLS_ROUTE);
    if let Err(e) = load.block_on(first_answer(&url, 3 * n)) {
        panic!("callmux's first answer is wrong before the soak starts: {e}");
    }
    fleet[SOAK_FLAPPER].state.set_flapping(true);
    let window = Window {
        warmup: Duration::ZERO,
        measure: Duration::from_secs(options.seconds),
    };
    let tally = load.block_on(drive(
        std::slice::from_ref(&url),
        options.clients,
        window,
        SOAK_REQUEST_TIMEOUT,
        &probes(&fleet, Some(callmux.pid())),
        soak_kind(n, fleet.len()),
    ));
    fleet[SOAK_FLAPPER].state.set_flapping(false);
    let recovery_start = Instant::now();
    let recovered = load.block_on(first_answer(&url, 3 * n));
    let recovery = recovery_start.elapsed();
    print_soak(options, &fleet, &tally, &mut callmux);
    match recovered {
        Ok(_) => println!(
            "after the flapping stopped: 200 complete with {} calls in {:.1} ms",
            3 * n,
            recovery.as_secs_f64() * 1e3
        ),
        Err(e) => println!("after the flapping stopped: NOT RECOVERED: {e}"),
    }
}

fn print_soak(options: &SoakOptions, fleet: &[FakeProvider], tally: &Tally, callmux: &mut Binary) {
    let flapper = &fleet[SOAK_FLAPPER];
    println!(
        "Soak: {} keep-alive clients × {} s against callmux GET /api/calls (cache_ttl_ms = 0; \
         3 upstreams × {} calls); {} flaps: {} s up, then {} s down ({:.1} s of immediate 503, \
         {:.1} s of 503 after {} ms, beyond its timeout_ms = {}); client timeout {} s.",
        options.clients,
        options.seconds,
        options.calls,
        flapper.id,
        FLAP_HALF_PERIOD_MS / 1_000,
        FLAP_HALF_PERIOD_MS / 1_000,
        FLAP_HALF_PERIOD_MS as f64 / 2_000.0,
        FLAP_HALF_PERIOD_MS as f64 / 2_000.0,
        FLAP_STALL.as_millis(),
        flapper.timeout_ms,
        SOAK_REQUEST_TIMEOUT.as_secs()
    );
    println!(
        "requests served: {} in {:.1} s ({:.0} req/s)",
        tally.requests(),
        tally.elapsed.as_secs_f64(),
        tally.per_second(tally.requests())
    );
    println!("responses by kind:");
    for (kind, count) in &tally.kinds {
        println!("  {count:>9}  {kind}");
    }
    println!(
        "latency: p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms",
        tally.quantile_ms(0.5),
        tally.quantile_ms(0.99),
        tally.quantile_ms(0.999),
        tally.latency_us.max() as f64 / 1e3
    );
    let upstream: Vec<String> = fleet
        .iter()
        .zip(tally.upstream_hits())
        .map(|(p, &h)| format!("{} {:.1}", p.id, tally.per_second(h)))
        .collect();
    println!("upstream requests/s: {}", upstream.join(", "));
    println!(
        "CPU (% of one core, 2 cores in all): callmux {}, this process (upstreams and clients) {}; \
         callmux {} µs per request",
        fmt_opt(tally.callmux_cpu_percent(), 0),
        fmt_opt(tally.bench_cpu_percent(), 0),
        fmt_opt(tally.callmux_cpu_us_per_request(), 0)
    );
    let mib = |field| fmt_opt(memory_kib(callmux, field).map(|k| k as f64 / 1024.0), 1);
    println!(
        "callmux: peak RSS (VmHWM) {} MiB, RSS at the end {} MiB, open fds at the end {}, {}",
        mib("VmHWM"),
        mib("VmRSS"),
        open_fds(callmux).map_or("—".into(), |n: usize| n.to_string()),
        match callmux.try_wait() {
            Some(how) => format!("EXITED ({how})"),
            None => "still running".into(),
        }
    );
    println!("callmux log: {}", log_report(callmux));
}

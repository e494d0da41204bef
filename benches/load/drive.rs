//! Closed-loop load: clients on keep-alive connections sending requests back to back, what
//! each answer was and how long it took, and the counters read around the measured window.

use super::*;

/// A counter read at the start and at the end of a measured window.
pub enum Probe {
    /// Requests an upstream received.
    Hits(Arc<Upstream>),
    /// CPU time (user + system, in clock ticks) a process has used.
    CpuTicks(u32),
}

impl Probe {
    pub fn read(&self) -> u64 {
        match self {
            Self::Hits(up) => up.hits.load(Relaxed),
            Self::CpuTicks(pid) => cpu_ticks(*pid).unwrap_or(0),
        }
    }
}

/// Linux reports process times in USER_HZ ticks, 100 per second on every mainstream arch.
pub const TICKS_PER_SEC: f64 = 100.0;

/// utime + stime of `pid`, from /proc/<pid>/stat (fields 14 and 15).
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields after it start at field 3.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// In this order: each upstream's request counter, this process's CPU time (the upstreams,
/// the floor and the load generator), and callmux's CPU time when `callmux` is given.
pub fn probes(fleet: &[FakeProvider], callmux: Option<u32>) -> Vec<Probe> {
    let hits = fleet.iter().map(|p| Probe::Hits(p.state.clone()));
    let cpu = std::iter::once(std::process::id())
        .chain(callmux)
        .map(Probe::CpuTicks);
    hits.chain(cpu).collect()
}

/// One keep-alive connection's client: HTTP/1.1 only, no proxy, the org's headers on every
/// request (the upstreams and the floor ignore them).
pub fn client(timeout: Duration) -> reqwest::Client {
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

pub struct Reply {
    pub status: u16,
    pub body: Bytes,
}

pub async fn fetch(client: &reqwest::Client, url: &str) -> Result<Reply, reqwest::Error> {
    let response = client.get(url).send().await?;
    let status = response.status().as_u16();
    let body = response.bytes().await?;
    Ok(Reply { status, body })
}

/// Fetches `url` once and checks it is a complete calls-shape answer listing `calls` calls.
pub async fn first_answer(url: &str, calls: usize) -> Result<Bytes, String> {
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
pub struct Window {
    pub warmup: Duration,
    pub measure: Duration,
}

impl Window {
    /// 1 s of warm-up, then 5 s measured; `quick`: 0.25 s, then `quick_measure`.
    pub fn of(quick: bool, quick_measure: Duration) -> Self {
        if quick {
            Self {
                warmup: Duration::from_millis(250),
                measure: quick_measure,
            }
        } else {
            Self {
                warmup: Duration::from_secs(1),
                measure: Duration::from_secs(5),
            }
        }
    }
}

/// What the requests started after the warm-up got.
pub struct Tally {
    pub latency_us: Histogram<u64>,
    pub kinds: BTreeMap<String, u64>,
    pub elapsed: Duration,
    /// How much each probe advanced in the same window, in the order of `probes`.
    pub deltas: Vec<u64>,
}

impl Tally {
    pub fn new() -> Self {
        Self {
            latency_us: Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram"),
            kinds: BTreeMap::new(),
            elapsed: Duration::ZERO,
            deltas: Vec::new(),
        }
    }

    pub fn record(&mut self, latency: Duration, kind: String) {
        self.latency_us
            .saturating_record(latency.as_micros() as u64);
        *self.kinds.entry(kind).or_default() += 1;
    }

    pub fn absorb(&mut self, other: Tally) {
        self.latency_us
            .add(&other.latency_us)
            .expect("histograms with the same bounds");
        for (kind, n) in other.kinds {
            *self.kinds.entry(kind).or_default() += n;
        }
    }

    pub fn requests(&self) -> u64 {
        self.latency_us.len()
    }

    pub fn per_second(&self, count: u64) -> f64 {
        count as f64 / self.elapsed.as_secs_f64()
    }

    pub fn quantile_ms(&self, q: f64) -> f64 {
        self.latency_us.value_at_quantile(q) as f64 / 1_000.0
    }

    pub fn upstream_hits(&self) -> &[u64] {
        &self.deltas[..PROVIDERS]
    }

    /// CPU seconds used by this process (at PROVIDERS) or by callmux (the next probe).
    pub fn cpu_seconds(&self, probe: usize) -> Option<f64> {
        Some(*self.deltas.get(probe)? as f64 / TICKS_PER_SEC)
    }

    pub fn bench_cpu_percent(&self) -> Option<f64> {
        Some(100.0 * self.cpu_seconds(PROVIDERS)? / self.elapsed.as_secs_f64())
    }

    pub fn callmux_cpu_percent(&self) -> Option<f64> {
        Some(100.0 * self.cpu_seconds(PROVIDERS + 1)? / self.elapsed.as_secs_f64())
    }

    pub fn callmux_cpu_us_per_request(&self) -> Option<f64> {
        Some(self.cpu_seconds(PROVIDERS + 1)? * 1e6 / self.requests() as f64)
    }
}

pub type Classify = dyn Fn(Result<Reply, reqwest::Error>) -> String + Send + Sync;

/// `clients` workers, each on its own keep-alive connection (one per URL), request `urls`
/// back to back for the window, round robin; the requests started after the warm-up are
/// classified and timed.
pub async fn drive(
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

pub async fn worker(
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

pub fn transport_kind(e: &reqwest::Error) -> String {
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

pub const OK: &str = "ok";

/// Load cells: a 200 of exactly the first answer's length is `ok`.
pub fn same_length(len: usize) -> Arc<Classify> {
    Arc::new(move |reply| match reply {
        Ok(r) if r.status == 200 && r.body.len() == len => OK.to_string(),
        Ok(r) if r.status == 200 => format!("200 of {} bytes, not {len}", r.body.len()),
        Ok(r) => format!("status {}", r.status),
        Err(e) => transport_kind(&e),
    })
}

pub fn runtime(name: &str) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

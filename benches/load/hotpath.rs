//! The hot path against its floor: callmux's `/healthz` and cached lists beside a bare axum
//! server replaying exactly the bytes callmux answered, driven by a raw keep-alive HTTP/1.1
//! client light enough that the servers, not the load generator, set the pace.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;

/// Calls per provider of the cached lists (three providers, so three times as many listed).
pub const HOT_SIZES: [usize; 3] = [5, 100, 1_000];
/// The figures are judged at this many connections (issue 25).
const TARGET_C: usize = 64;
const TARGET_RATIO: f64 = 0.9;
/// `--check` judges cells from this many connections up: at C = 1 each cell times one
/// request at a time, where a wake-up late by a few microseconds on a busy machine moves the
/// ratio by 2× either way (as runs on this two-core machine have shown), so a guard there
/// would fail for reasons that are not the change.
const CHECKED_FROM_C: usize = 16;
/// `--check` measures a cell below its floor this many times more and keeps the best: a
/// regression is slow every time, a noisy moment is not.
const CHECK_RETRIES: usize = 2;
/// Above this, a response head is malformed for this bench's purposes.
const MAX_HEAD: usize = 16 * 1024;

/// What one path answered: its status line and headers (less `date` and `content-length`,
/// which the floor's hyper writes itself) and its body.
#[derive(Clone)]
pub struct Recorded {
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

/// One measured (target, C) pair: the floor replaying the target's bytes, then callmux.
pub struct HotCell {
    pub target: String,
    pub c: usize,
    pub floor: Tally,
    pub callmux: Tally,
}

impl HotCell {
    pub fn ratio(&self) -> f64 {
        rps(&self.callmux) / rps(&self.floor)
    }
}

fn rps(t: &Tally) -> f64 {
    t.per_second(t.requests())
}

/// The request every client sends: the org's key and Bland org id, as a dashboard would.
fn request_bytes(path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: {ORG_KEY}\r\nx-bland-org-id: {ORG}\r\n\r\n"
    )
    .into_bytes()
}

/// A keep-alive connection sending one fixed request and reading each answer whole.
pub struct RawClient {
    stream: TcpStream,
    request: Vec<u8>,
    buf: Vec<u8>,
}

/// An answer as it came: status, lower-cased headers, body.
pub struct RawReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl RawClient {
    pub async fn connect(addr: &str, path: &str) -> io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            request: request_bytes(path),
            buf: Vec::with_capacity(64 * 1024),
        })
    }

    /// Sends the request and reads the answer; returns its status and body length.
    pub async fn round_trip(&mut self) -> io::Result<(u16, usize)> {
        self.stream.write_all(&self.request).await?;
        let (status, head_len, body_len) = self.read_head().await?;
        while self.buf.len() < head_len + body_len {
            self.fill().await?;
        }
        // Keep-alive with one request in flight: nothing follows the body.
        self.buf.clear();
        Ok((status, body_len))
    }

    /// One answer, parsed in full (for recording what the floor replays).
    pub async fn reply(&mut self) -> io::Result<RawReply> {
        self.stream.write_all(&self.request).await?;
        let (status, head_len, body_len) = self.read_head().await?;
        while self.buf.len() < head_len + body_len {
            self.fill().await?;
        }
        let head = String::from_utf8_lossy(&self.buf[..head_len]).into_owned();
        let headers = head
            .split("\r\n")
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let body = Bytes::copy_from_slice(&self.buf[head_len..head_len + body_len]);
        self.buf.clear();
        Ok(RawReply {
            status,
            headers,
            body,
        })
    }

    async fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed"));
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// Status, head length (through the blank line) and `content-length`.
    async fn read_head(&mut self) -> io::Result<(u16, usize, usize)> {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = std::str::from_utf8(&self.buf[..end])
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
                let status = head
                    .get(9..12)
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| bad("no status"))?;
                let length = head
                    .split("\r\n")
                    .filter_map(|l| l.split_once(':'))
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.trim().parse().ok())
                    .ok_or_else(|| bad("no content-length"))?;
                return Ok((status, end + 4, length));
            }
            if self.buf.len() > MAX_HEAD {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "head too long"));
            }
            self.fill().await?;
        }
    }
}

/// `c` raw clients on `addr` asking `path` back to back for the window; an answer is `ok`
/// when it is a 200 of `len` bytes.
pub async fn drive_raw(addr: &str, path: &str, len: usize, c: usize, window: Window) -> Tally {
    let start = Instant::now();
    let measured_from = start + window.warmup;
    let end = measured_from + window.measure;
    let mut workers = Vec::with_capacity(c);
    for _ in 0..c {
        let mut client = RawClient::connect(addr, path)
            .await
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        workers.push(tokio::spawn(async move {
            let mut tally = Tally::new();
            loop {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let kind = match client.round_trip().await {
                    Ok((200, n)) if n == len => OK.to_string(),
                    Ok((status, n)) => format!("status {status}, {n} bytes"),
                    Err(e) => {
                        let kind = format!("client-side {e}");
                        if sent >= measured_from {
                            tally.record(sent.elapsed(), kind);
                        }
                        break;
                    }
                };
                if sent >= measured_from {
                    tally.record(sent.elapsed(), kind);
                }
            }
            tally
        }));
    }
    let mut total = Tally::new();
    for w in workers {
        total.absorb(w.await.expect("a load worker panicked"));
    }
    total.elapsed = measured_from.elapsed();
    total
}

/// Asks `path` once and keeps what the floor must replay.
async fn record(addr: &str, path: &str, calls: Option<usize>) -> Recorded {
    let mut client = RawClient::connect(addr, path)
        .await
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    let reply = client
        .reply()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    assert_eq!(reply.status, 200, "GET {path} answered {}", reply.status);
    if let Some(n) = calls {
        let value: serde_json::Value = serde_json::from_slice(&reply.body).expect("a JSON list");
        assert_eq!(value["count"].as_u64(), Some(n as u64), "GET {path}: count");
    }
    let headers = reply
        .headers
        .into_iter()
        .filter(|(k, _)| k != "date" && k != "content-length")
        .collect();
    Recorded {
        headers,
        body: reply.body,
    }
}

/// A bare axum server answering every request with `recorded`'s headers and body.
fn serve_recorded(rt: &Handle, recorded: Recorded) -> Served {
    let headers: Vec<(HeaderName, HeaderValue)> = recorded
        .headers
        .iter()
        .map(|(k, v)| {
            (
                HeaderName::from_bytes(k.as_bytes()).expect("a recorded header name"),
                HeaderValue::from_str(v).expect("a recorded header value"),
            )
        })
        .collect();
    let state = Arc::new((headers, recorded.body));
    let router = Router::new()
        .fallback(|State(s): State<Arc<Replayed>>| async move {
            let mut response = s.1.clone().into_response();
            let map = response.headers_mut();
            map.clear();
            for (k, v) in &s.0 {
                map.insert(k.clone(), v.clone());
            }
            response
        })
        .with_state(state);
    serve_router(rt, router)
}

fn addr_of(url: &str) -> String {
    url.trim_start_matches("http://")
        .split('/')
        .next()
        .expect("a host")
        .to_string()
}

pub struct HotOptions {
    pub quick: bool,
    /// Fail (exit 1) when a ratio at `CHECKED_FROM_C` or more connections is below this,
    /// after measuring that cell up to `CHECK_RETRIES` times more, or when any answer differs
    /// from the one recorded.
    pub check: Option<f64>,
}

/// Whether `--check` judges `cell`'s ratio.
fn checked(cell: &HotCell) -> bool {
    cell.c >= CHECKED_FROM_C
}

pub fn run(options: &HotOptions) {
    let window = Window::of(options.quick, Duration::from_millis(750));
    let servers = runtime("floor");
    let load = runtime("load");
    let cells = load.block_on(measure_all(servers.handle(), window, options.check));
    print_hot_table(&cells, window);
    println!();
    let mut failed = false;
    for cell in cells.iter().filter(|c| c.c == TARGET_C) {
        let pass = cell.ratio() >= TARGET_RATIO;
        println!(
            "{}",
            verdict(
                pass,
                format!(
                    "{} at C={TARGET_C}: {:.2}x the floor (target >= {TARGET_RATIO:.1}x)",
                    cell.target,
                    cell.ratio()
                )
            )
        );
    }
    if let Some(floor) = options.check {
        for cell in &cells {
            if not_ok(&cell.floor) + not_ok(&cell.callmux) > 0 {
                println!(
                    "CHECK FAILED: {} at C={}: answers not as recorded: floor {:?}, callmux {:?}",
                    cell.target, cell.c, cell.floor.kinds, cell.callmux.kinds
                );
                failed = true;
            }
            if checked(cell) && cell.ratio() < floor {
                println!(
                    "CHECK FAILED: {} at C={}: {:.2}x the floor, below {floor:.2}x",
                    cell.target,
                    cell.c,
                    cell.ratio()
                );
                failed = true;
            }
        }
        if !failed {
            println!(
                "check: every ratio at C >= {CHECKED_FROM_C} at or above {floor:.2}x, every answer as recorded"
            );
        }
    }
    if failed {
        std::process::exit(1);
    }
}

/// The floors of `/healthz` and of the cached list at 5 calls per provider, alone: prints
/// `healthz <url>` and `calls <url>`, then serves until stdin closes. Under callgrind this
/// process is the floor alone (callmux and the load run in other processes).
pub fn serve_floor() {
    let servers = runtime("floor");
    let n = HOT_SIZES[0];
    let fleet = start_fleet(servers.handle(), n, [UPSTREAM_TIMEOUT_MS; PROVIDERS]);
    let callmux = start_callmux(&config_toml(&fleet, CACHE_TTL_MS), &[]);
    let addr = addr_of(&callmux.url("/"));
    let (healthz, calls) = servers.block_on(async {
        let healthz = record(&addr, "/healthz", None).await;
        // The first ask fills the cache; the recorded answer is a cached one.
        record(&addr, CALLS_ROUTE, Some(3 * n)).await;
        (healthz, record(&addr, CALLS_ROUTE, Some(3 * n)).await)
    });
    let healthz = serve_recorded(servers.handle(), healthz);
    let calls = serve_recorded(servers.handle(), calls);
    println!("healthz {}", healthz.url);
    println!("calls {}", calls.url);
    let _ = std::io::Write::flush(&mut std::io::stdout());
    let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
    drop((healthz, calls, callmux, fleet));
}

async fn measure_all(servers: &Handle, window: Window, check: Option<f64>) -> Vec<HotCell> {
    // One fleet and one callmux per size, all up before any cell is measured.
    let mut setups = Vec::new();
    for n in HOT_SIZES {
        let fleet = start_fleet(servers, n, [UPSTREAM_TIMEOUT_MS; PROVIDERS]);
        let callmux = start_callmux(&config_toml(&fleet, CACHE_TTL_MS), &[]);
        setups.push((n, fleet, callmux));
    }
    let mut targets = Vec::new();
    let first = &setups[0].2;
    let addr = addr_of(&first.url("/"));
    targets.push((
        "callmux /healthz".to_string(),
        addr.clone(),
        "/healthz",
        record(&addr, "/healthz", None).await,
    ));
    for (n, _, callmux) in &setups {
        let addr = addr_of(&callmux.url("/"));
        // The first ask fills the cache; the recorded answer is a cached one.
        record(&addr, CALLS_ROUTE, Some(3 * n)).await;
        targets.push((
            format!("callmux cached {CALLS_ROUTE}, {n} calls/provider"),
            addr.clone(),
            CALLS_ROUTE,
            record(&addr, CALLS_ROUTE, Some(3 * n)).await,
        ));
    }
    let mut cells = Vec::new();
    for (name, addr, path, recorded) in &targets {
        let len = recorded.body.len();
        let floor = serve_recorded(servers, recorded.clone());
        let floor_addr = addr_of(&floor.url);
        for c in CONCURRENCIES {
            let mut cell = measure_cell(name, &floor_addr, addr, path, len, c, window).await;
            for _ in 0..CHECK_RETRIES {
                if !check.is_some_and(|f| checked(&cell) && cell.ratio() < f) {
                    break;
                }
                eprintln!("{name} C={c}: {:.2}x, measuring once more", cell.ratio());
                let again = measure_cell(name, &floor_addr, addr, path, len, c, window).await;
                if again.ratio() > cell.ratio() {
                    cell = again;
                }
            }
            eprintln!(
                "{name} C={c}: floor {:.0} req/s, callmux {:.0} req/s, {:.2}x",
                rps(&cell.floor),
                rps(&cell.callmux),
                cell.ratio()
            );
            cells.push(cell);
        }
    }
    for (n, _, callmux) in &setups {
        eprintln!("N={n}: callmux: {}", log_report(callmux));
    }
    cells
}

async fn measure_cell(
    name: &str,
    floor_addr: &str,
    addr: &str,
    path: &str,
    len: usize,
    c: usize,
    window: Window,
) -> HotCell {
    let floor = drive_raw(floor_addr, path, len, c, window).await;
    let callmux = drive_raw(addr, path, len, c, window).await;
    HotCell {
        target: name.to_string(),
        c,
        floor,
        callmux,
    }
}

fn not_ok(t: &Tally) -> u64 {
    t.requests() - t.kinds.get(OK).copied().unwrap_or(0)
}

pub fn print_hot_table(cells: &[HotCell], window: Window) {
    println!(
        "Hot path vs the floor: {:.2} s warm-up, {:.2} s per cell, raw keep-alive HTTP/1.1 clients",
        window.warmup.as_secs_f64(),
        window.measure.as_secs_f64()
    );
    println!(
        "| target | C | floor req/s | floor p50 ms | floor p99 ms | callmux req/s | p50 ms | p99 ms | ratio | not ok |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for cell in cells {
        let (f, m) = (&cell.floor, &cell.callmux);
        println!(
            "| {} | {} | {:.0} | {:.3} | {:.3} | {:.0} | {:.3} | {:.3} | {:.2}x | {} |",
            cell.target,
            cell.c,
            rps(f),
            f.quantile_ms(0.5),
            f.quantile_ms(0.99),
            rps(m),
            m.quantile_ms(0.5),
            m.quantile_ms(0.99),
            cell.ratio(),
            not_ok(f) + not_ok(m),
        );
    }
}

/// The headers and body a floor server replays.
type Replayed = (Vec<(HeaderName, HeaderValue)>, Bytes);

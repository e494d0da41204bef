//! The load benchmark: every (N, C, target) cell, the table, and the targets of issue 3.

use super::*;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Direct,
    Floor,
    Coalescing,
    Cached,
}

impl Target {
    pub fn label(self) -> &'static str {
        match self {
            Self::Direct => "direct (1 agent server)",
            Self::Floor => "floor (bare axum)",
            Self::Coalescing => "callmux coalescing only",
            Self::Cached => "callmux cached 1000 ms",
        }
    }

    pub fn is_callmux(self) -> bool {
        matches!(self, Self::Coalescing | Self::Cached)
    }
}

pub struct Row {
    pub n: usize,
    pub c: usize,
    pub target: Target,
    /// Calls in each answer.
    pub calls: usize,
    pub outcome: Result<Tally, String>,
    pub peak_rss_kib: Option<u64>,
}

impl Row {
    pub fn tally(&self) -> Option<&Tally> {
        self.outcome.as_ref().ok()
    }

    pub fn rps(&self) -> Option<f64> {
        self.tally().map(|t| t.per_second(t.requests()))
    }

    pub fn ms(&self, q: f64) -> Option<f64> {
        self.tally().map(|t| t.quantile_ms(q))
    }

    pub fn calls_per_sec(&self) -> Option<f64> {
        self.rps().map(|r| r * self.calls as f64)
    }

    pub fn errors(&self) -> Option<u64> {
        self.tally()
            .map(|t| t.requests() - t.kinds.get(OK).copied().unwrap_or(0))
    }
}

pub fn run_load(quick: bool, sizes: &[usize]) {
    let window = Window::of(quick, Duration::from_secs(1));
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
pub async fn measure_size(servers: &Handle, n: usize, window: Window) -> Vec<Row> {
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
pub async fn run_cell(
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

pub fn progress_line(row: &Row) -> String {
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

pub fn find(rows: &[Row], n: usize, c: usize, target: Target) -> Option<&Row> {
    rows.iter()
        .find(|r| r.n == n && r.c == c && r.target == target)
}

pub fn fmt_opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or("—".into(), |v| format!("{v:.decimals$}"))
}

pub fn fmt_si(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

pub fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(a? / b?)
}

pub fn difference(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(a? - b?)
}

pub const TABLE_COLUMNS: usize = 20;

pub fn print_table(rows: &[Row], window: Window) {
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

pub fn table_line(rows: &[Row], row: &Row) -> String {
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

pub fn verdict(pass: bool, text: String) -> String {
    format!("{}  {text}", if pass { "PASS" } else { "MISS" })
}

/// The targets of issue 3, PASS or MISS; SKIP for a target whose size was left out (`--size`).
pub fn verdicts(rows: &[Row], window: Window) -> Vec<String> {
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

pub fn coalescing_verdicts(rows: &[Row], name: &str) -> Vec<String> {
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

pub fn cached_verdicts(rows: &[Row], window: Window, name: &str) -> Vec<String> {
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

//! Soak: many clients while one upstream flaps; answers by kind.

use super::*;

#[derive(Deserialize)]
pub struct AnswerTail {
    pub count: usize,
    #[serde(default)]
    pub errors: Option<Vec<ErrorEntry>>,
}

#[derive(Deserialize)]
pub struct ErrorEntry {
    #[serde(default)]
    pub provider: Option<String>,
    pub error: String,
}

/// The `count` and `errors` that follow a calls-shape answer's `calls`, read without parsing
/// the calls: `{` + everything from the last `"count":` is a small JSON object of its own.
pub fn answer_tail(body: &[u8]) -> Option<AnswerTail> {
    let key = b"\"count\":";
    let at = body.windows(key.len()).rposition(|w| w == key)?;
    let mut tail = Vec::with_capacity(body.len() - at + 1);
    tail.push(b'{');
    tail.extend_from_slice(&body[at..]);
    serde_json::from_slice(&tail).ok()
}

/// Soak replies by kind: complete, partial by error, 502, other statuses, client-side errors.
/// A 200 whose count does not match the failures it names is called out.
pub fn soak_kind(per_provider: usize, providers: usize) -> Arc<Classify> {
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
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Exits with a message when `clients` connections would not fit under the open-files limit
/// (callmux inherits the same limit and holds as many connections).
pub fn ensure_open_files(clients: usize) {
    let needed = clients as u64 + 256;
    if let Some(limit) = open_files_limit().filter(|&l| l < needed) {
        eprintln!(
            "error: {clients} clients need about {needed} open files in this process and in \
             callmux, but the limit is {limit}: raise it first (`ulimit -n {needed}`)"
        );
        std::process::exit(2);
    }
}

pub fn run_soak(options: &SoakOptions) {
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

pub fn print_soak(
    options: &SoakOptions,
    fleet: &[FakeProvider],
    tally: &Tally,
    callmux: &mut Binary,
) {
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

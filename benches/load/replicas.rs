//! Replicas sharing state on Redis, measured: 1 replica on `memory` (the baseline), 1 and 3
//! replicas on a real `redis-server` started here on a free loopback port, all over the same
//! three fake upstreams (N calls each) at C connections, each client round robin over the
//! replicas, request by request. Upstream requests per second should not grow with the
//! replicas; the Redis path's added p50 is the one cost of sharing. The setups take turns,
//! round after round (the machine is shared, and its load drifts), and the table gives each
//! figure's median over the rounds.

use super::common::{RedisServer, REDIS_URL_VAR, STATE_SECRET_VAR};
use super::*;

/// Calls per upstream, and clients.
const N: usize = 1_000;
const C: usize = 64;
/// Short enough that a window holds many TTLs, so upstream request rates compare closely.
const TTL_MS: u64 = 100;

const SETUPS: [Setup; 3] = [Setup::Memory, Setup::Redis(1), Setup::Redis(3)];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Setup {
    Memory,
    Redis(usize),
}

impl Setup {
    fn label(self) -> String {
        match self {
            Self::Memory => "1 replica, memory".into(),
            Self::Redis(1) => "1 replica, redis".into(),
            Self::Redis(n) => format!("{n} replicas, redis"),
        }
    }
}

/// Rounds of every setup, in turn.
const ROUNDS: usize = 3;

struct Measured {
    setup: Setup,
    tally: Tally,
}

impl Measured {
    fn rps(&self) -> f64 {
        self.tally.per_second(self.tally.requests())
    }

    fn p50(&self) -> f64 {
        self.tally.quantile_ms(0.5)
    }

    fn p99(&self) -> f64 {
        self.tally.quantile_ms(0.99)
    }

    fn upstream_rps(&self) -> f64 {
        self.tally
            .per_second(self.tally.upstream_hits().iter().sum())
    }

    fn not_ok(&self) -> u64 {
        self.tally.requests() - self.tally.kinds.get(OK).copied().unwrap_or(0)
    }
}

/// The median over the rounds of `setup` of one figure.
fn median(results: &[Measured], setup: Setup, figure: fn(&Measured) -> f64) -> f64 {
    let mut v: Vec<f64> = results
        .iter()
        .filter(|m| m.setup == setup)
        .map(figure)
        .collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Waits until a replica's `/readyz` says its store is `ok` (it has joined the fleet).
pub async fn joined(replica: &Binary) {
    let url = replica.url("/readyz");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = reqwest::Client::new().get(&url).send().await {
            if let Ok(v) = r.json::<serde_json::Value>().await {
                if v["state"] == "ok" {
                    return;
                }
            }
        }
        assert!(Instant::now() < deadline, "replica never joined the fleet");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn run(quick: bool) {
    let window = Window::of(quick, Duration::from_secs(2));
    let servers = runtime("upstreams");
    let load = runtime("load");
    let fleet = start_fleet(servers.handle(), N, [UPSTREAM_TIMEOUT_MS; PROVIDERS]);
    let redis = load.block_on(RedisServer::start());
    let memory = config_toml(&fleet, TTL_MS);
    // The state store's own timeout left at its default, as an operator runs it.
    let shared = format!(
        "{memory}\n[state]\nbackend = \"redis\"\nredis_url_env = \"{REDIS_URL_VAR}\"\nsecret_env = \"{STATE_SECRET_VAR}\"\n"
    );
    let env = redis.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let rounds = if quick { 1 } else { ROUNDS };
    let mut results = Vec::new();
    for setup in (0..rounds).flat_map(|_| SETUPS) {
        let replicas: Vec<Binary> = match setup {
            Setup::Memory => vec![start_callmux(&memory, &[])],
            Setup::Redis(n) => (0..n).map(|_| start_callmux(&shared, &env)).collect(),
        };
        let urls: Vec<String> = replicas.iter().map(|r| r.url(CALLS_ROUTE)).collect();
        let tally = load.block_on(async {
            if setup != Setup::Memory {
                for r in &replicas {
                    joined(r).await;
                }
            }
            let first = first_answer(&urls[0], PROVIDERS * N)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", setup.label()));
            let probes = probes(&fleet, None);
            drive(
                &urls,
                C,
                window,
                LOAD_REQUEST_TIMEOUT,
                &probes,
                same_length(first.len()),
            )
            .await
        });
        let m = Measured { setup, tally };
        eprintln!(
            "{}: {:.0} req/s, p50 {:.3} ms, p99 {:.3} ms, upstream {:.1} req/s, {} not ok",
            m.setup.label(),
            m.rps(),
            m.p50(),
            m.p99(),
            m.upstream_rps(),
            m.not_ok()
        );
        for r in &replicas {
            eprintln!("  replica: {}", log_report(r));
        }
        results.push(m);
    }
    print(&results, window);
}

fn print(results: &[Measured], window: Window) {
    let rounds = results.len() / SETUPS.len();
    println!(
        "Replicas: closed loop at C = {C}, each client round robin over the replicas request by \
         request, HTTP/1.1 keep-alive; N = {N} calls per upstream (3 upstreams), cache_ttl_ms = \
         {TTL_MS}; {:.2} s warm-up then {:.2} s per setup, the setups in turn for {rounds} \
         round(s); medians over the rounds; latencies in ms; upstream req/s = requests the three \
         upstreams received per second, together.",
        window.warmup.as_secs_f64(),
        window.measure.as_secs_f64()
    );
    println!();
    println!("| setup | req/s | p50 | p99 | upstream req/s | not ok (all rounds) |");
    println!("|---|---:|---:|---:|---:|---:|");
    for setup in SETUPS {
        let not_ok: u64 = results
            .iter()
            .filter(|m| m.setup == setup)
            .map(Measured::not_ok)
            .sum();
        println!(
            "| {} | {:.0} | {:.3} | {:.3} | {:.1} | {not_ok} |",
            setup.label(),
            median(results, setup, Measured::rps),
            median(results, setup, Measured::p50),
            median(results, setup, Measured::p99),
            median(results, setup, Measured::upstream_rps),
        );
    }
    println!();
    let upstream = |s| median(results, s, Measured::upstream_rps);
    let (one, three) = (upstream(Setup::Redis(1)), upstream(Setup::Redis(3)));
    let r = three / one;
    println!(
        "{}",
        verdict(
            (r - 1.0).abs() <= 0.10,
            format!(
                "upstream req/s, 3 replicas ÷ 1: {three:.1} ÷ {one:.1} = {r:.3} (target: within 10 %)"
            )
        )
    );
    let p50 = |s| median(results, s, Measured::p50);
    let added = p50(Setup::Redis(1)) - p50(Setup::Memory);
    println!(
        "{}",
        verdict(
            added < 0.5,
            format!(
                "the Redis path's added p50 over memory, 1 replica: {added:.3} ms (target: < 0.5 ms)"
            )
        )
    );
    let errors: u64 = results.iter().map(Measured::not_ok).sum();
    println!(
        "{}",
        verdict(errors == 0, format!("{errors} answers not ok in all"))
    );
}

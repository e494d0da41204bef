//! `keys` mode: what a key's rate limiter adds to a warm (cached) list. The org's key is the
//! same in every setup; once it is part two's `default` key (every scope, no limits: the gate
//! identifies it and checks the route's scope), once a `[[orgs.<id>.keys]]` key with scope
//! `read` and a `requests_per_second` too high to refuse, so every request also takes a GCRA
//! cell: in memory (`governor`), and on a real `redis-server` (the fleet's Lua script).
//! Alternating rounds on one machine, so each setup sees the same moments.

use super::common::{sha256_hex, RedisServer, REDIS_URL_VAR, STATE_SECRET_VAR};
use super::*;

const ROUNDS: usize = 3;
const N: usize = 100;

/// `config` with the org's default key swapped for a limited key of the same value.
fn limited(config: &str) -> String {
    let without: Vec<&str> = config
        .lines()
        .filter(|l| !l.starts_with("api_key_sha256"))
        .collect();
    format!(
        "{}\n[[orgs.{ORG}.keys]]\nname = \"limited\"\nsha256 = \"{}\"\nscopes = [\"read\"]\nrequests_per_second = 1000000\n",
        without.join("\n"),
        sha256_hex(ORG_KEY)
    )
}

pub fn run(quick: bool) {
    let window = Window::of(quick, Duration::from_millis(700));
    let servers = runtime("upstreams");
    let load = runtime("load");
    let fleet = start_fleet(servers.handle(), N, [UPSTREAM_TIMEOUT_MS; PROVIDERS]);
    let redis = load.block_on(RedisServer::start());
    let memory = config_toml(&fleet, CACHE_TTL_MS);
    let state = format!(
        "\n[state]\nbackend = \"redis\"\nredis_url_env = \"{REDIS_URL_VAR}\"\nsecret_env = \"{STATE_SECRET_VAR}\"\n"
    );
    let env = redis.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let setups = [
        ("memory, default key", start_callmux(&memory, &[])),
        ("memory, limited key", start_callmux(&limited(&memory), &[])),
        (
            "redis, default key",
            start_callmux(&format!("{memory}{state}"), &env),
        ),
        (
            "redis, limited key",
            start_callmux(&format!("{}{state}", limited(&memory)), &env),
        ),
    ];
    load.block_on(async {
        for (_, callmux) in &setups[2..] {
            replicas::joined(callmux).await;
        }
        println!("N={N} calls per upstream (3 upstreams), cache_ttl_ms={CACHE_TTL_MS}, GET {CALLS_ROUTE}:");
        println!("  C   setup                  p50 ms   p99 ms    req/s");
        for c in [1, 16] {
            let mut p50 = BTreeMap::<&str, Vec<f64>>::new();
            for _ in 0..if quick { 1 } else { ROUNDS } {
                for (label, callmux) in &setups {
                    let tally = drive(
                        &[callmux.url(CALLS_ROUTE)],
                        c,
                        window,
                        LOAD_REQUEST_TIMEOUT,
                        &[],
                        Arc::new(|reply: Result<Reply, reqwest::Error>| match reply {
                            Ok(r) if r.status == 200 => OK.to_string(),
                            Ok(r) => format!("status {}", r.status),
                            Err(e) => transport_kind(&e),
                        }),
                    )
                    .await;
                    let ok = tally.kinds.get(OK).copied().unwrap_or(0);
                    assert_eq!(ok, tally.requests(), "{label}: {:?}", tally.kinds);
                    println!(
                        "  {c:<3} {label:<21} {:>7.3} {:>8.3} {:>8.0}",
                        tally.quantile_ms(0.5),
                        tally.quantile_ms(0.99),
                        tally.per_second(tally.requests()),
                    );
                    p50.entry(label).or_default().push(tally.quantile_ms(0.5));
                }
            }
            let median = |v: &[f64]| {
                let mut v = v.to_vec();
                v.sort_by(f64::total_cmp);
                v[v.len() / 2]
            };
            for backend in ["memory", "redis"] {
                let plain = median(&p50[format!("{backend}, default key").as_str()]);
                let limited = median(&p50[format!("{backend}, limited key").as_str()]);
                println!(
                    "  C={c} {backend}: median p50 limited {limited:.3} ms vs default {plain:.3} ms: \
                     {:+.3} ms; target at most +0.05 ms",
                    limited - plain,
                );
            }
        }
    });
}

//! `capacity` mode: `GET /capacity` against `GET /calls` on the same warm (cached) snapshot,
//! in alternating rounds on one callmux, so both see the same machine at the same moments.

use super::*;

const OWN_ROUTE: &str = "/calls";
const CAPACITY_ROUTE: &str = "/capacity";
const ROUNDS: usize = 3;

pub fn run(quick: bool) {
    let window = Window::of(quick, Duration::from_millis(700));
    let servers = runtime("upstreams");
    let load = runtime("load");
    load.block_on(async {
        for n in [100, 1_000] {
            let fleet = start_fleet(servers.handle(), n, [UPSTREAM_TIMEOUT_MS; PROVIDERS]);
            let callmux = start_callmux(&config_toml(&fleet, CACHE_TTL_MS), &[]);
            println!("N={n} calls per upstream (3 upstreams), cache_ttl_ms={CACHE_TTL_MS}:");
            println!("  C   route        p50 ms   p99 ms    req/s");
            for c in [1, 16] {
                let mut p50 = BTreeMap::<&str, Vec<f64>>::new();
                for _ in 0..ROUNDS {
                    for route in [OWN_ROUTE, CAPACITY_ROUTE] {
                        let url = callmux.url(route);
                        let tally = drive(
                            &[url],
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
                        assert_eq!(ok, tally.requests(), "{route}: {:?}", tally.kinds);
                        println!(
                            "  {c:<3} {route:<11} {:>7.3} {:>8.3} {:>8.0}",
                            tally.quantile_ms(0.5),
                            tally.quantile_ms(0.99),
                            tally.per_second(tally.requests()),
                        );
                        p50.entry(route).or_default().push(tally.quantile_ms(0.5));
                    }
                }
                let median = |v: &[f64]| {
                    let mut v = v.to_vec();
                    v.sort_by(f64::total_cmp);
                    v[v.len() / 2]
                };
                let (calls, capacity) = (median(&p50[OWN_ROUTE]), median(&p50[CAPACITY_ROUTE]));
                println!(
                    "  C={c}: median p50 /capacity {capacity:.3} ms vs /calls {calls:.3} ms: \
                     {:+.3} ms ({:.2}x); target at most +0.2 ms",
                    capacity - calls,
                    capacity / calls,
                );
            }
        }
    });
}

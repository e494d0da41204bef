//! `routes` mode: placing calls on a route (the speed targets of issue 21) over a small axum
//! fake agent server: what `POST /calls` adds over sending the same body straight to the
//! fake's `POST /api/call`, how soon a queued placement is sent once a call ends through
//! callmux, and how fast an `Idempotency-Key` replay is answered beside `GET /healthz`.

use std::sync::atomic::AtomicUsize;

use axum::routing::post;
use tokio::sync::{mpsc, Notify};

use super::common::sha256_hex;
use super::*;

/// The one body every placement sends, through callmux and straight to the fake.
const BODY: &str = r#"{"to": "+14155550123"}"#;
const REPLAY_KEY: &str = "routebench-replay-1";
const PLACE_ROUTE: &str = "/calls";
const HEALTH_ROUTE: &str = "/healthz";
/// The fake's own placing route.
const FAKE_PLACE: &str = "/api/call";
const CONCURRENCIES: [usize; 2] = [1, 8];
/// Bounds for waits that only a broken setup would reach.
const PATIENCE: Duration = Duration::from_secs(70);

const PLACE_TARGET_MS: f64 = 1.0;
const WAKE_TARGET_MS: f64 = 50.0;
const REPLAY_TARGET_MS: f64 = 0.5;

/// How much each scenario does; `--quick` is a smoke run of the same code.
struct Sizes {
    rounds: usize,
    /// Requests per worker before the measured ones, on the same connections.
    warmup_each: usize,
    /// Measured requests per cell and round, by concurrency.
    measured: fn(usize) -> usize,
    wakes: usize,
}

const FULL: Sizes = Sizes {
    rounds: 3,
    warmup_each: 50,
    measured: |c| if c == 1 { 1_000 } else { 2_000 },
    wakes: 250,
};

const QUICK: Sizes = Sizes {
    rounds: 1,
    warmup_each: 20,
    measured: |c| if c == 1 { 200 } else { 400 },
    wakes: 40,
};

// ---------------------------------------------------------------------------------------------
// The fake agent server

/// A `twilio-media-stream` agent server that places at once, lists nothing and ends anything.
struct Fake {
    lists: AtomicU64,
    listed: Notify,
    next: AtomicU64,
    /// When each `POST /api/call` arrived, and the id it was given (the wake scenario's).
    posts: Option<mpsc::UnboundedSender<(Instant, String)>>,
}

impl Fake {
    fn start(
        rt: &Handle,
        posts: Option<mpsc::UnboundedSender<(Instant, String)>>,
    ) -> (Arc<Self>, Served) {
        let fake = Arc::new(Self {
            lists: AtomicU64::new(0),
            listed: Notify::new(),
            next: AtomicU64::new(0),
            posts,
        });
        let router = Router::new()
            .route(CALLS_ROUTE, get(fake_list))
            .route(FAKE_PLACE, post(fake_place))
            .route("/api/calls/{id}/end", post(fake_end))
            .with_state(fake.clone());
        (fake, serve_router(rt, router))
    }

    /// Waits until the fake has answered at least `n` lists in all.
    async fn lists_reach(&self, n: u64) {
        let wait = async {
            loop {
                let listed = self.listed.notified();
                let mut listed = std::pin::pin!(listed);
                listed.as_mut().enable();
                if self.lists.load(Relaxed) >= n {
                    return;
                }
                listed.await;
            }
        };
        tokio::time::timeout(PATIENCE, wait)
            .await
            .expect("the queued placement never asked the fake's list");
    }
}

fn json_answer(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn fake_list(State(fake): State<Arc<Fake>>) -> Response {
    fake.lists.fetch_add(1, Relaxed);
    fake.listed.notify_waiters();
    json_answer(r#"{"calls": [], "count": 0}"#.to_owned())
}

async fn fake_place(State(fake): State<Arc<Fake>>) -> Response {
    let arrived = Instant::now();
    let id = format!("rb-{:08x}", fake.next.fetch_add(1, Relaxed));
    if let Some(posts) = &fake.posts {
        let _ = posts.send((arrived, id.clone()));
    }
    json_answer(format!(r#"{{"success": true, "call_id": "{id}"}}"#))
}

async fn fake_end() -> Response {
    json_answer(r#"{"success": true}"#.to_owned())
}

/// Org `bench` (the load client's key) placing on route `r` over the one agent server.
fn route_toml(fake: &Served, max_active_calls: Option<u32>) -> String {
    let max = max_active_calls.map_or(String::new(), |m| format!("max_active_calls = {m}\n"));
    format!(
        "[orgs.{ORG}]\napi_key_sha256 = \"{}\"\nproviders = [\"agents\"]\nroutes = [\"r\"]\n\n\
         [providers.agents]\nkind = \"twilio-media-stream\"\nbase_url = \"{}\"\n\
         place_calls = true\ntimeout_ms = {UPSTREAM_TIMEOUT_MS}\n{max}\n\
         [routes.r]\nqueue_timeout_ms = 60000\ntargets = [{{ provider = \"agents\" }}]\n",
        sha256_hex(ORG_KEY),
        fake.url
    )
}

// ---------------------------------------------------------------------------------------------
// Requests and measured cells

/// One kind of request, and the answer it must get.
#[derive(Clone)]
struct Ask {
    url: String,
    /// `None`: a GET.
    body: Option<&'static str>,
    idempotency: Option<&'static str>,
    status: u16,
    replayed: bool,
}

impl Ask {
    fn place(url: String, status: u16) -> Self {
        Self {
            url,
            body: Some(BODY),
            idempotency: None,
            status,
            replayed: false,
        }
    }

    /// Sends it once: `ok`, or what was wrong.
    async fn once(&self, client: &reqwest::Client) -> String {
        let request = match self.body {
            Some(body) => client
                .post(&self.url)
                .header(header::CONTENT_TYPE, "application/json")
                .body(body),
            None => client.get(&self.url),
        };
        let request = match self.idempotency {
            Some(key) => request.header("idempotency-key", key),
            None => request,
        };
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => return transport_kind(&e),
        };
        let status = response.status().as_u16();
        let replayed = response
            .headers()
            .get("idempotent-replayed")
            .is_some_and(|v| v == "true");
        if let Err(e) = response.bytes().await {
            return transport_kind(&e);
        }
        if status != self.status {
            format!("status {status}")
        } else if self.replayed && !replayed {
            "not replayed".to_owned()
        } else {
            OK.to_owned()
        }
    }
}

/// `c` workers, each on its own keep-alive connection, send `ask` back to back: first
/// `warmup_each` each, unmeasured, then `measured` among them.
async fn measure(ask: &Ask, c: usize, warmup_each: usize, measured: usize) -> Tally {
    let left = Arc::new(AtomicUsize::new(measured));
    let start = Instant::now();
    let workers: Vec<_> = (0..c)
        .map(|_| {
            let (ask, left) = (ask.clone(), left.clone());
            let client = client(LOAD_REQUEST_TIMEOUT);
            tokio::spawn(async move {
                let mut tally = Tally::new();
                for _ in 0..warmup_each {
                    ask.once(&client).await;
                }
                while left
                    .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
                    .is_ok()
                {
                    let sent = Instant::now();
                    let kind = ask.once(&client).await;
                    tally.record(sent.elapsed(), kind);
                }
                tally
            })
        })
        .collect();
    let mut total = Tally::new();
    for w in workers {
        total.absorb(w.await.expect("a routes worker panicked"));
    }
    total.elapsed = start.elapsed();
    total
}

fn not_ok(t: &Tally) -> u64 {
    t.requests() - t.kinds.get(OK).copied().unwrap_or(0)
}

fn line(label: &str, c: usize, t: &Tally) -> String {
    format!(
        "  {label:<26} C={c:<2} n={:<6} p50 {:>7.3} ms  p99 {:>7.3} ms  {:>6.0} req/s  not ok {}{}",
        t.requests(),
        t.quantile_ms(0.5),
        t.quantile_ms(0.99),
        t.per_second(t.requests()),
        not_ok(t),
        if not_ok(t) > 0 {
            format!(" {:?}", t.kinds)
        } else {
            String::new()
        }
    )
}

/// One side of a comparison: what it sends, and the callmux whose CPU time it reads.
struct Side<'a> {
    label: &'a str,
    ask: &'a Ask,
    callmux: Option<u32>,
}

/// What one side got, pooled over the rounds, and the CPU its callmux used meanwhile.
struct Pooled {
    tally: Tally,
    cpu_ticks: u64,
    /// Every request sent while the CPU time was read, warm-up ones too.
    sent: usize,
}

impl Pooled {
    /// callmux's CPU time (user and system) per request sent, in µs.
    fn cpu_us_per_request(&self) -> f64 {
        self.cpu_ticks as f64 / TICKS_PER_SEC * 1e6 / self.sent as f64
    }
}

/// Cells measured in turn, round after round, the order rotated each round so that no side
/// always runs first; pooled over the rounds.
async fn in_turn(sizes: &Sizes, c: usize, sides: &[Side<'_>]) -> Vec<Pooled> {
    let mut pooled: Vec<Pooled> = sides
        .iter()
        .map(|_| Pooled {
            tally: Tally::new(),
            cpu_ticks: 0,
            sent: 0,
        })
        .collect();
    let mut seconds = vec![0.0; sides.len()];
    let measured = (sizes.measured)(c);
    for round in 0..sizes.rounds {
        for k in 0..sides.len() {
            let at = (k + round) % sides.len();
            let side = &sides[at];
            let cpu = || side.callmux.and_then(cpu_ticks).unwrap_or(0);
            let before = cpu();
            let t = measure(side.ask, c, sizes.warmup_each, measured).await;
            pooled[at].cpu_ticks += cpu().saturating_sub(before);
            pooled[at].sent += measured + c * sizes.warmup_each;
            eprintln!("round {}: {}", round + 1, line(side.label, c, &t));
            seconds[at] += t.elapsed.as_secs_f64();
            pooled[at].tally.absorb(t);
        }
    }
    for (p, s) in pooled.iter_mut().zip(seconds) {
        p.tally.elapsed = Duration::from_secs_f64(s);
    }
    pooled
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|e| format!("unreadable: {e}"))
}

// ---------------------------------------------------------------------------------------------
// The three scenarios

pub fn run(quick: bool) {
    let sizes = if quick { QUICK } else { FULL };
    let servers = runtime("fakes");
    let load = runtime("load");
    println!("Routes (issue 21): one twilio-media-stream target with place_calls, an axum fake");
    println!(
        "placing at once and listing nothing; {} round(s), the sides in turn; reqwest \
         HTTP/1.1 keep-alive, one connection per worker; /proc/loadavg at start: {}",
        sizes.rounds,
        loadavg()
    );
    let mut verdicts = Vec::new();
    verdicts.extend(placing(&servers, &load, &sizes));
    verdicts.extend(wakes(&servers, &load, &sizes));
    verdicts.extend(replays(&servers, &load, &sizes));
    println!();
    println!("/proc/loadavg at end: {}", loadavg());
    for v in verdicts {
        println!("{v}");
    }
}

/// Scenario 1, placing: `POST /calls` through callmux against the same body straight to the
/// fake; and through a callmux whose lists are cached, to show the share of the list that
/// each placement asks for.
fn placing(servers: &Runtime, load: &Runtime, sizes: &Sizes) -> Vec<String> {
    let (_fake, served) = Fake::start(servers.handle(), None);
    println!();
    println!("1. Placing: POST /calls through callmux vs POST /api/call straight to the fake");
    let direct = Ask::place(format!("{}{FAKE_PLACE}", served.url), 200);
    let mut out = Vec::new();
    for c in CONCURRENCIES {
        // Fresh callmuxes for each concurrency: their held places (the fake never lists the
        // calls, so each is held for place::HOLD) start from none.
        let plain = start_callmux(&route_toml(&served, None), &[]);
        let cached_toml = route_toml(&served, None).replace(
            "place_calls = true\n",
            "place_calls = true\ncache_ttl_ms = 1000\n",
        );
        let cached = start_callmux(&cached_toml, &[]);
        let via = Ask::place(plain.url(PLACE_ROUTE), 201);
        let via_cached = Ask::place(cached.url(PLACE_ROUTE), 201);
        let sides = [
            Side {
                label: "straight to the fake",
                ask: &direct,
                callmux: None,
            },
            Side {
                label: "through callmux",
                ask: &via,
                callmux: Some(plain.pid()),
            },
            Side {
                label: "through callmux, cached",
                ask: &via_cached,
                callmux: Some(cached.pid()),
            },
        ];
        let pooled = load.block_on(in_turn(sizes, c, &sides));
        for (side, p) in sides.iter().zip(&pooled) {
            let cpu = match side.callmux {
                Some(_) => format!("  callmux CPU {:.0} µs/req", p.cpu_us_per_request()),
                None => String::new(),
            };
            println!("{}{cpu}", line(side.label, c, &p.tally));
        }
        let (d, v, k) = (&pooled[0].tally, &pooled[1].tally, &pooled[2].tally);
        let added50 = v.quantile_ms(0.5) - d.quantile_ms(0.5);
        let added99 = v.quantile_ms(0.99) - d.quantile_ms(0.99);
        println!("  C={c}: callmux adds {added50:+.3} ms at p50, {added99:+.3} ms at p99");
        println!(
            "  C={c}: with cache_ttl_ms = 1000, {:+.3} ms at p50",
            k.quantile_ms(0.5) - d.quantile_ms(0.5)
        );
        println!("  callmux: {}", log_report(&plain));
        println!("  callmux, cached: {}", log_report(&cached));
        let bad = not_ok(d) + not_ok(v) + not_ok(k);
        out.push(verdict(
            added50 <= PLACE_TARGET_MS && bad == 0,
            format!(
                "placing, C={c}: callmux adds {added50:+.3} ms at p50 over the fake alone \
                 (target: at most +{PLACE_TARGET_MS} ms; {bad} not ok)"
            ),
        ));
    }
    out
}

/// Signed microseconds, sorted: the quantile `q`.
fn quantile_us(sorted: &[i64], q: f64) -> i64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// 2. A queued placement, sent once the call holding the only place ends through callmux.
fn wakes(servers: &Runtime, load: &Runtime, sizes: &Sizes) -> Vec<String> {
    let (tx, mut posts) = mpsc::unbounded_channel();
    let (fake, served) = Fake::start(servers.handle(), Some(tx));
    let callmux = start_callmux(&route_toml(&served, Some(1)), &[]);
    let place = Ask::place(callmux.url(PLACE_ROUTE), 201);
    let placer = client(PATIENCE);
    let ender = client(PATIENCE);
    let (from_answer, from_sent) = load.block_on(async {
        let place_one = |client: reqwest::Client| {
            let url = place.url.clone();
            async move {
                let response = client
                    .post(&url)
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(BODY)
                    .send()
                    .await
                    .expect("callmux answers a placement");
                let status = response.status().as_u16();
                let body: serde_json::Value = response.json().await.expect("a JSON answer");
                assert_eq!(status, 201, "a placement was refused: {body}");
                body["call_id"].as_str().expect("a call_id").to_owned()
            }
        };
        let mut holding = place_one(placer.clone()).await;
        posts
            .recv()
            .await
            .expect("the first placement reached the fake");
        let (mut from_answer, mut from_sent) = (Vec::new(), Vec::new());
        for _ in 0..sizes.wakes {
            let lists = fake.lists.load(Relaxed);
            let waiting = tokio::spawn(place_one(placer.clone()));
            // The placement has found no room twice (before and after joining the line), so
            // it waits for a place to free.
            fake.lists_reach(lists + 2).await;
            let sent = Instant::now();
            let ended = ender
                .post(callmux.url(&format!("/api/calls/{holding}/end")))
                .send()
                .await
                .expect("callmux answers an end");
            let answered = Instant::now();
            let status = ended.status().as_u16();
            let text = ended.text().await.unwrap_or_default();
            assert_eq!(status, 200, "the end was refused: {text}");
            let (arrived, id) = tokio::time::timeout(PATIENCE, posts.recv())
                .await
                .expect("the queued placement was sent within its queue_timeout_ms")
                .expect("the fake is up");
            holding = waiting.await.expect("the placement task");
            assert_eq!(
                holding, id,
                "the fake placed another call than the one answered"
            );
            let signed = |from: Instant| {
                if arrived >= from {
                    (arrived - from).as_micros() as i64
                } else {
                    -((from - arrived).as_micros() as i64)
                }
            };
            from_answer.push(signed(answered));
            from_sent.push(signed(sent));
        }
        from_answer.sort_unstable();
        from_sent.sort_unstable();
        (from_answer, from_sent)
    });
    let ms = |us: i64| us as f64 / 1_000.0;
    println!();
    println!(
        "2. Queue wake: max_active_calls = 1, queue_timeout_ms = 60000; {} ends through callmux, \
         each with one placement waiting",
        from_answer.len()
    );
    for (label, v) in [
        ("from the end's answer", &from_answer),
        ("from sending the end", &from_sent),
    ] {
        println!(
            "  {label:<22} to the fake receiving the POST: p50 {:.3} ms, p99 {:.3} ms, \
             min {:.3} ms, max {:.3} ms ({} before the answer)",
            ms(quantile_us(v, 0.5)),
            ms(quantile_us(v, 0.99)),
            ms(v[0]),
            ms(v[v.len() - 1]),
            v.iter().filter(|&&us| us < 0).count(),
        );
    }
    println!("  callmux: {}", log_report(&callmux));
    let p99 = ms(quantile_us(&from_answer, 0.99));
    vec![verdict(
        p99 <= WAKE_TARGET_MS,
        format!(
            "queue wake: p99 {p99:.3} ms from the end's answer to the queued POST at the fake \
             (target: at most {WAKE_TARGET_MS} ms; n = {})",
            from_answer.len()
        ),
    )]
}

/// 3. The same body and `Idempotency-Key` again, against `GET /healthz` in the same run.
fn replays(servers: &Runtime, load: &Runtime, sizes: &Sizes) -> Vec<String> {
    let (fake, served) = Fake::start(servers.handle(), None);
    let callmux = start_callmux(&route_toml(&served, None), &[]);
    let first = Ask {
        idempotency: Some(REPLAY_KEY),
        ..Ask::place(callmux.url(PLACE_ROUTE), 201)
    };
    let replay = Ask {
        replayed: true,
        ..first.clone()
    };
    let health = Ask {
        url: callmux.url(HEALTH_ROUTE),
        body: None,
        idempotency: None,
        status: 200,
        replayed: false,
    };
    println!();
    println!("3. Idempotent replay: the same body and Idempotency-Key after a first placement");
    let mut out = Vec::new();
    load.block_on(async {
        let placed = first.once(&client(LOAD_REQUEST_TIMEOUT)).await;
        assert_eq!(placed, OK, "the first placement");
        for c in CONCURRENCIES {
            let sides = [
                Side {
                    label: "GET /healthz",
                    ask: &health,
                    callmux: Some(callmux.pid()),
                },
                Side {
                    label: "replayed POST /calls",
                    ask: &replay,
                    callmux: Some(callmux.pid()),
                },
            ];
            let pooled = in_turn(sizes, c, &sides).await;
            let (h, r) = (&pooled[0].tally, &pooled[1].tally);
            for (side, p) in sides.iter().zip(&pooled) {
                let cpu = p.cpu_us_per_request();
                println!(
                    "{}  callmux CPU {cpu:.0} µs/req",
                    line(side.label, c, &p.tally)
                );
            }
            if c == 1 {
                let p50 = r.quantile_ms(0.5);
                out.push(verdict(
                    p50 < REPLAY_TARGET_MS && not_ok(r) == 0,
                    format!(
                        "idempotent replay, C=1: p50 {p50:.3} ms (GET /healthz {:.3} ms; target: \
                         under {REPLAY_TARGET_MS} ms; {} not ok)",
                        h.quantile_ms(0.5),
                        not_ok(r)
                    ),
                ));
            }
        }
    });
    let posts = fake.next.load(Relaxed);
    println!("  the fake received {posts} placement(s) (1 expected)");
    println!("  callmux: {}", log_report(&callmux));
    out.push(verdict(
        posts == 1,
        format!("idempotent replay: {posts} call(s) placed for one key"),
    ));
    out
}

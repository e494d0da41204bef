//! Criterion: parse → merge → serialise at 2 × 100,000 calls (one Bland, one agent-server
//! upstream), each stage alone and the whole, plus one pass's peak memory.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use callmux::http::render::write;
use callmux::service::merge::{merge, Answer};
use callmux::service::Snapshot;
use callmux::wire::{bland, calls, Shape, Written};
use criterion::{criterion_group, Criterion};

/// The allocator the `callmux` binary uses.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const N: usize = 100_000;

/// The two upstream bodies, as the upstreams would send them. Written as text, so building
/// them leaves no large intermediate values behind to blur the memory figure.
fn upstream_bodies() -> (Vec<u8>, Vec<u8>) {
    // Sized up front: regrowing would leave freed pages behind in the peak RSS figure.
    let mut bland = String::with_capacity(N * 290);
    let mut agents = String::with_capacity(N * 130);
    bland += r#"{"data":["#;
    agents += r#"{"calls":["#;
    // Call ids are random UUIDs in the wild; ids sharing a long prefix would make the
    // merge's sort look slower than it is.
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut uuid = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let h = format!("{seed:016x}{:016x}", seed.rotate_left(29) ^ 0xdead_beef);
        format!(
            "{}-{}-4{}-a{}-{}",
            &h[0..8],
            &h[8..12],
            &h[13..16],
            &h[17..20],
            &h[20..32]
        )
    };
    for i in 0..N {
        let sep = if i == 0 { "" } else { "," };
        let (bland_id, agent_id) = (uuid(), uuid());
        let status = if i % 3 == 0 { "QUEUED" } else { "IN_PROGRESS" };
        let ts = 1_758_656_817_432u64 + i as u64;
        bland += &format!(
            r#"{sep}{{"call_id":"{bland_id}","user_id":"bdffa9e8-436c-416d-b95f-a77b19ae4411","from":"+18475586665","to":"+1310{i:07}","objective":"You are a 2...","pathway_id":"","start_time":"","international":"false","status":"{status}","timestamp":"{ts}"}}"#
        );
        let status = if i % 2 == 0 { "in-progress" } else { "ringing" };
        let direction = if i % 5 == 0 { "incoming" } else { "outbound" };
        agents += &format!(
            r#"{sep}{{"call_id":"{agent_id}","to_number":"+1555{i:07}","status":"{status}","direction":"{direction}"}}"#
        );
    }
    bland += r#"],"errors":null}"#;
    agents += &format!(r#"],"count":{N}}}"#);
    (bland.into_bytes(), agents.into_bytes())
}

/// 100,000 calls of one kind, in that platform's documented list shape (one page, as the
/// pipeline reads each page), every field as the platform sends it.
fn platform_body(kind: &str) -> Vec<u8> {
    let mut out = String::with_capacity(N * 900);
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (open, close) = match kind {
        "twilio" => (
            r#"{"calls":["#,
            r#"],"end":99999,"first_page_uri":"/2010-04-01/Accounts/AC7e1c02f6a58b4d3e9f10c2d4b6a8e0f1/Calls.json?Status=in-progress&PageSize=1000&Page=0","next_page_uri":null,"page":0,"page_size":1000,"previous_page_uri":null,"start":0,"uri":"/2010-04-01/Accounts/AC7e1c02f6a58b4d3e9f10c2d4b6a8e0f1/Calls.json?Status=in-progress&PageSize=1000&Page=0"}"#,
        ),
        "vapi" => ("[", "]"),
        _ => (r#"{"items":["#, r#"],"has_more":false}"#),
    };
    out += open;
    for i in 0..N {
        let sep = if i == 0 { "" } else { "," };
        let call_sid = format!("CA{:016x}{:016x}", next(), next());
        let ms = 1_758_656_817_432u64 + i as u64;
        match kind {
            "twilio" => {
                out += &format!(
                    r#"{sep}{{"account_sid":"AC7e1c02f6a58b4d3e9f10c2d4b6a8e0f1","answered_by":null,"api_version":"2010-04-01","caller_name":"","date_created":"Tue, 23 Sep 2025 19:48:17 +0000","date_updated":"Tue, 23 Sep 2025 19:48:21 +0000","direction":"outbound-api","duration":null,"end_time":null,"forwarded_from":null,"from":"+15005550006","from_formatted":"(500) 555-0006","group_sid":null,"parent_call_sid":null,"phone_number_sid":"PN0a1b2c3d4e5f60718293a4b5c6d7e8f9","price":null,"price_unit":"USD","sid":"{call_sid}","start_time":"Tue, 23 Sep 2025 19:48:20 +0000","status":"in-progress","to":"+1415{i:07}","to_formatted":"(415) 555-0123","trunk_sid":null,"uri":"/2010-04-01/Accounts/AC7e1c02f6a58b4d3e9f10c2d4b6a8e0f1/Calls/{call_sid}.json","queue_time":"0"}}"#
                )
            }
            "vapi" => {
                out += &format!(
                    r#"{sep}{{"id":"{:016x}-{:016x}","assistantId":"5b0a4a08-133c-4146-9315-0984f8c6be80","phoneNumberId":"42b4b25d-031e-4786-857f-63b346c9580f","type":"outboundPhoneCall","createdAt":"2025-09-23T19:48:17.432Z","updatedAt":"2025-09-23T19:48:21.000Z","orgId":"eb166faa-7145-46ef-8044-589b47ae3b56","customer":{{"number":"+1415{i:07}"}},"phoneNumber":{{"number":"+15005550006"}},"status":"in-progress","phoneCallProvider":"twilio","phoneCallProviderId":"{call_sid}","phoneCallTransport":"pstn","monitor":{{"listenUrl":"wss://phone-call-websocket.vapi.ai/{i}/listen","controlUrl":"https://phone-call-websocket.vapi.ai/{i}/control"}}}}"#,
                    next(),
                    next()
                )
            }
            _ => {
                out += &format!(
                    r#"{sep}{{"call_type":"phone_call","from_number":"+14157774444","to_number":"+1213{i:07}","direction":"outbound","call_id":"{:016x}{:016x}","agent_id":"oBeDLoLOeuAbiuaMFXRtDOLriTJ5tSxD","agent_version":1,"call_status":"ongoing","agent_name":"My Agent","metadata":{{}},"start_timestamp":{ms},"telephony_identifier":{{"twilio_call_sid":"{call_sid}"}}}}"#,
                    next(),
                    next()
                )
            }
        }
    }
    out += close;
    out.into_bytes()
}

/// One kind's 100,000 calls parsed and merged into a snapshot: what a list of that one
/// provider costs callmux, before writing.
fn parse_and_merge(kind: &str, body: &[u8]) -> Snapshot {
    let provider: Arc<str> = Arc::from(kind);
    let calls = match kind {
        "twilio" => callmux::provider::twilio::wire::parse_page(body, &provider).map(|p| p.calls),
        "vapi" => callmux::provider::vapi::wire::parse_page(body, &provider).map(|p| p.calls),
        "retell" => callmux::provider::retell::wire::parse_page(body, &provider).map(|p| p.calls),
        "bland" => bland::parse(body, &provider),
        _ => calls::parse(body, &provider),
    }
    .unwrap();
    assert_eq!(calls.len(), N, "{kind}");
    Snapshot::new(
        Arc::from("org"),
        vec![Ok(Arc::new(calls))],
        Vec::new(),
        None,
    )
}

fn parse_both(bland_body: &[u8], agent_body: &[u8]) -> [Answer; 2] {
    [
        Ok(Arc::new(
            bland::parse(bland_body, &Arc::from("bland")).unwrap(),
        )),
        Ok(Arc::new(
            calls::parse(agent_body, &Arc::from("agents")).unwrap(),
        )),
    ]
}

/// The two bodies parsed at once, each on a thread of a pool that outlives the pass (rayon's
/// here), as the server parses each large answer on a long-lived thread of its blocking pool.
/// A thread started per pass would begin each pass with an empty allocator heap.
fn parse_at_once(bland_body: &[u8], agent_body: &[u8]) -> [Answer; 2] {
    let (bland, agents) = rayon_core::join(
        || bland::parse(bland_body, &Arc::from("bland")).unwrap(),
        || calls::parse(agent_body, &Arc::from("agents")).unwrap(),
    );
    [Ok(Arc::new(bland)), Ok(Arc::new(agents))]
}

/// As the server does it: the two bodies parsed at once, then merged into a snapshot (with
/// its version), and written, each in two halves at once when the list is long. Returns the
/// snapshot with the body, as the server keeps both.
fn whole_pipeline(bland_body: &[u8], agent_body: &[u8], shape: Shape) -> (Snapshot, Written) {
    let answers = parse_at_once(bland_body, agent_body);
    let snapshot = Snapshot::new(Arc::from("org"), answers.to_vec(), Vec::new(), None);
    let body = write(&snapshot, shape);
    (snapshot, body)
}

/// Times `f` without dropping what it returns: the server keeps the parsed answers and the
/// body, and frees them only when newer ones replace them, not while answering. Each result
/// is still dropped before the next run, so memory is reused as in the server.
fn timed_without_drop<T>(b: &mut criterion::Bencher<'_>, mut f: impl FnMut() -> T) {
    b.iter_custom(|runs| {
        let mut spent = Duration::ZERO;
        for _ in 0..runs {
            let started = Instant::now();
            let kept = black_box(f());
            spent += started.elapsed();
            drop(kept);
        }
        spent
    })
}

fn bench(c: &mut Criterion) {
    let (bland_body, agent_body) = upstream_bodies();
    let answers = parse_both(&bland_body, &agent_body);
    let merged = merge(&answers);

    let mut g = c.benchmark_group("2x100k");
    g.sample_size(10);
    g.bench_function("parse one after the other", |b| {
        timed_without_drop(b, || {
            parse_both(black_box(&bland_body), black_box(&agent_body))
        })
    });
    g.bench_function("parse both at once", |b| {
        timed_without_drop(b, || {
            parse_at_once(black_box(&bland_body), black_box(&agent_body))
        })
    });
    g.bench_function("merge", |b| b.iter(|| merge(black_box(&answers)).len()));
    g.bench_function("snapshot (merge and version)", |b| {
        timed_without_drop(b, || {
            Snapshot::new(
                Arc::from("org"),
                black_box(answers.to_vec()),
                Vec::new(),
                None,
            )
        })
    });
    for shape in Shape::ALL {
        g.bench_function(format!("serialise {shape:?}"), |b| {
            timed_without_drop(b, || shape.write_parts(black_box(&merged), "org", &[]))
        });
        g.bench_function(format!("parse+merge+serialise {shape:?}"), |b| {
            timed_without_drop(b, || {
                whole_pipeline(black_box(&bland_body), black_box(&agent_body), shape)
            })
        });
    }
    g.finish();

    // Each kind alone, 100,000 calls: parse and merge (the existing two kinds' too, in
    // the same run, to compare against).
    let mut kinds = c.benchmark_group("100k per kind");
    kinds.sample_size(10);
    for (kind, body) in [
        ("bland", bland_body.clone()),
        ("calls", agent_body.clone()),
        ("twilio", platform_body("twilio")),
        ("vapi", platform_body("vapi")),
        ("retell", platform_body("retell")),
    ] {
        kinds.bench_function(
            format!("parse+merge {kind} ({:.1} MiB)", mib(body.len() as u64)),
            |b| timed_without_drop(b, || parse_and_merge(kind, black_box(&body))),
        );
    }
    kinds.finish();
}

/// One pass's wall time and the process's peak RSS against the target
/// (peak RSS < 4 × response bytes + 30 MiB), measured before criterion's repetitions.
fn one_pass_report() {
    let (bland_body, agent_body) = upstream_bodies();
    // Start the pool's threads first: the pass should pay for fresh memory, not for them.
    rayon_core::join(|| (), || ());
    let before = peak_rss_bytes();
    let started = Instant::now();
    let (_answers, body) = whole_pipeline(&bland_body, &agent_body, Shape::Bland);
    let elapsed = started.elapsed();
    let peak = peak_rss_bytes();
    let limit = 4 * body.len() as u64 + 30 * 1024 * 1024;
    println!(
        "one pass, Bland shape: {:.1} ms; upstream bodies {:.1} + {:.1} MiB; response {:.1} MiB; \
         peak RSS {:.1} MiB ({:.1} MiB before the pass, holding the upstream bodies); \
         target < {:.1} MiB: {}",
        elapsed.as_secs_f64() * 1e3,
        mib(bland_body.len() as u64),
        mib(agent_body.len() as u64),
        mib(body.len() as u64),
        mib(peak),
        mib(before),
        mib(limit),
        if peak < limit { "PASS" } else { "MISS" },
    );
}

/// `--stages`: where the whole pass's time goes, stage by stage, over 20 passes; freeing
/// the answers afterwards is shown apart, as it is not part of answering.
fn stages_report() {
    const PASSES: usize = 20;
    let (bland_body, agent_body) = upstream_bodies();
    let mut runs: Vec<[f64; 5]> = Vec::new();
    for _ in 0..PASSES {
        let t0 = Instant::now();
        let answers = parse_at_once(&bland_body, &agent_body);
        let t1 = Instant::now();
        let snapshot = Snapshot::new(Arc::from("org"), answers.to_vec(), Vec::new(), None);
        let t2 = Instant::now();
        let body = write(&snapshot, Shape::Bland);
        let t3 = Instant::now();
        drop((snapshot, body));
        drop(answers);
        let t4 = Instant::now();
        runs.push([t1 - t0, t2 - t1, t3 - t2, t3 - t0, t4 - t3].map(|d| d.as_secs_f64() * 1e3));
    }
    println!("stages of {PASSES} passes, Bland shape (ms):");
    let names = [
        "parse both at once",
        "snapshot",
        "write",
        "whole (the three)",
        "then freeing all",
    ];
    for (i, name) in names.iter().enumerate() {
        let mut v: Vec<f64> = runs.iter().map(|r| r[i]).collect();
        v.sort_by(f64::total_cmp);
        println!(
            "{name:>20}: min {:5.1}  median {:5.1}  max {:5.1}",
            v[0],
            v[PASSES / 2],
            v[PASSES - 1]
        );
    }
}

fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

criterion_group!(benches, bench);

fn main() {
    one_pass_report();
    // `--once`: a single pass and no criterion, for profiling under callgrind.
    // `--stages`: each stage's time, without criterion.
    if std::env::args().any(|a| a == "--once") {
        return;
    }
    if std::env::args().any(|a| a == "--stages") {
        return stages_report();
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}

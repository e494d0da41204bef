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
//! `cargo bench --bench load -- capacity [--quick]`: `GET /capacity` against `GET /calls` on
//! the same warm snapshot, in alternating rounds (`load/capacity.rs`).
//! `cargo bench --bench load -- keys [--quick]`: a warm list with a limited key against the
//! default key, on memory and on a real `redis-server` (`load/keys.rs`).
//! `cargo bench --bench load -- hotpath [--quick] [--check 0.6]`: callmux's `/healthz` and
//! cached lists (5, 100 and 1,000 calls per provider) against a bare axum server replaying
//! their exact bytes, at C = 1, 16, 64 (`hotpath.rs`); `--check` fails below a ratio (CI).
//! `cargo bench --bench load -- hotpath-floor`: only the floor servers of `hotpath`, serving
//! until stdin closes (for `benches/hotpath-callgrind.py`).
//! `cargo bench --bench load -- routes [--quick]`: placing on a route against the fake agent
//! server alone, a queued placement's wake, and idempotent replays (`load/routes.rs`).
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
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
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

#[path = "load/capacity.rs"]
mod capacity;
#[path = "load/drive.rs"]
mod drive;
#[path = "load/hotpath.rs"]
mod hotpath;
#[path = "load/keys.rs"]
mod keys;
#[path = "load/process.rs"]
mod process;
#[path = "load/replicas.rs"]
mod replicas;
#[path = "load/routes.rs"]
mod routes;
#[path = "load/soak.rs"]
mod soak;
#[path = "load/table.rs"]
mod table;
#[path = "load/upstreams.rs"]
mod upstreams;

use drive::*;
use process::*;
use soak::*;
use table::*;
use upstreams::*;

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
        Some(Mode::Capacity { quick }) => capacity::run(quick || args.quick),
        Some(Mode::Routes { quick }) => routes::run(quick || args.quick),
        Some(Mode::Keys { quick }) => keys::run(quick || args.quick),
        Some(Mode::Hotpath { quick, check }) => hotpath::run(&hotpath::HotOptions {
            quick: quick || args.quick,
            check,
        }),
        Some(Mode::HotpathFloor) => hotpath::serve_floor(),
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
    /// callmux's /healthz and cached lists against a bare server replaying their bytes.
    Hotpath {
        /// 0.25 s of warm-up and 0.75 s per cell (the CI guard).
        #[arg(long)]
        quick: bool,
        /// Exit 1 when a cell's ratio to the floor is below this (after one more try), or
        /// when any answer was not the expected one.
        #[arg(long, value_name = "RATIO")]
        check: Option<f64>,
    },
    /// Only the hot path's floor servers (5 calls per provider), serving until stdin closes:
    /// what `benches/hotpath-callgrind.py` counts the floor's instructions on.
    HotpathFloor,
    /// 1 and 3 replicas sharing state on a real redis-server, and 1 on memory.
    Replicas {
        /// One short round.
        #[arg(long)]
        quick: bool,
    },
    /// `GET /capacity` against `GET /calls` on the same warm snapshot.
    Capacity {
        /// Short rounds.
        #[arg(long)]
        quick: bool,
    },
    /// Placing on a route: overhead over the platform alone, queue wake, idempotent replay.
    Routes {
        /// One short round.
        #[arg(long)]
        quick: bool,
    },
    /// A warm list with a key's rate limiter (memory, Redis) against the default key's.
    Keys {
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

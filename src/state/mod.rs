//! What replicas share (DESIGN §13): `memory`, the default, shares nothing and every part
//! keeps its own state as one process always has; `redis` adds a fleet level under each part
//! (answers, Bland key verdicts, circuit breakers, the call → provider index, live pushes
//! and poll notices), every value sealed with a MAC under the
//! fleet's secret and checked when read back. Nothing a client sees depends on Redis being
//! up: without it each part falls back to its memory behaviour.

pub mod redis;
pub mod seal;
pub mod settings;

use std::sync::Arc;

use self::redis::Redis;
use self::settings::StateConfig;
use crate::telemetry::Telemetry;

/// The process's store, chosen by `[state] backend`; one per process, kept across reloads.
#[derive(Clone, Debug)]
pub enum Store {
    Memory,
    Redis(Arc<Redis>),
}

impl Store {
    /// Starts the configured store. A Redis that is not there yet is no error: the store
    /// starts degraded and joins when it can.
    pub fn new(config: &StateConfig, telemetry: &Arc<Telemetry>) -> Result<Self, String> {
        Ok(match config {
            StateConfig::Memory => Self::Memory,
            StateConfig::Redis(redis) => Self::Redis(Redis::start(redis, telemetry)?),
        })
    }

    /// The Redis the fleet shares, if this process uses one (up or not).
    pub fn redis(&self) -> Option<&Arc<Redis>> {
        match self {
            Self::Memory => None,
            Self::Redis(r) => Some(r),
        }
    }

    /// What `/readyz` says: `memory`, `ok` (Redis answering) or `degraded` (serving on
    /// this replica's own memory until Redis is back).
    pub fn health(&self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Redis(r) if r.is_up() => "ok",
            Self::Redis(_) => "degraded",
        }
    }
}

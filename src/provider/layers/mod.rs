//! The layers that wrap listing, never a mutation: a circuit breaker, observation,
//! coalescing with an optional cache, and the pushes laid over answers. Each forwards every
//! method of `ListCalls`, which `#[deny(clippy::missing_trait_methods)]` on each impl
//! enforces.

pub mod breaker;
pub mod coalesce;
pub mod fleet;
pub mod observe;
pub mod overlay;

use std::sync::Arc;

use super::{Common, ListCalls};
use crate::state::Store;
use crate::telemetry::Telemetry;

/// A provider's listing wrapped, inside out: the backend; a circuit breaker; observation (a
/// span, metrics, the last outcome); coalescing, outermost so that requests waiting on one
/// ask share its outcome and it is observed and counted once, which lays the platform's
/// pushes over every answer it serves (returned too, for the hook route to push into).
///
/// `per_caller`: the backend sends each caller's own credentials upstream
/// (`KindSettings::forwards_caller_credentials`), so answers are shared only between
/// requests carrying the same credentials.
///
/// With a Redis `store`, coalescing and the breaker each have a fleet level in it.
pub fn wrap(
    backend: Arc<dyn ListCalls>,
    common: &Common,
    per_caller: bool,
    store: &Store,
    telemetry: &Arc<Telemetry>,
) -> (
    Arc<dyn ListCalls>,
    Arc<observe::Observed>,
    Arc<overlay::Pushes>,
) {
    let redis = store.redis().cloned();
    let id: Arc<str> = Arc::from(backend.id());
    let guarded = Arc::new(breaker::Breaker::new(
        backend,
        common.breaker,
        redis.clone(),
    ));
    let observed = Arc::new(observe::Observed::new(guarded, telemetry));
    let fleet = redis.map(|r| fleet::Fleet::new(r, id, common.cache_ttl, common.http.timeout));
    let pushes = Arc::new(overlay::Pushes::default());
    let served = Arc::new(coalesce::Coalesced::new(
        observed.clone(),
        common.cache_ttl,
        per_caller,
        fleet,
        pushes.clone(),
        telemetry,
    ));
    (served, observed, pushes)
}

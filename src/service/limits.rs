//! Each key's own rates (`requests_per_second`, `calls_per_second`) as GCRA cells: on Redis
//! for the whole fleet when the state is shared (`limits_fleet`), else (and while Redis is
//! down) held in memory with `governor`, kept across reloads for keys that did not change.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, LazyLock, RwLock};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use super::limits_fleet::{self, Cell, Lease, Taken};
use crate::config::KeySpec;
use crate::service::auth::AuthError;
use crate::state::redis::Redis;

/// The clock a refusal's wait is read from: one for the process, since making a clock costs
/// far more than reading one, and only a refusal needs it.
pub(crate) static CLOCK: LazyLock<DefaultClock> = LazyLock::new(DefaultClock::default);

/// What a request spends of its key's rates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spend {
    /// One request (`requests_per_second`).
    Request,
    /// One request that places a call (`requests_per_second` and `calls_per_second`).
    Placing,
}

impl Spend {
    /// What a request needing `scope` spends: placing spends the calls rate too.
    pub fn of(scope: crate::scope::Scope) -> Self {
        if scope == crate::scope::Scope::Place {
            Self::Placing
        } else {
            Self::Request
        }
    }

    /// Whether `key` has a rate this spend takes from; if not, it costs nothing.
    fn limited(self, key: &KeySpec) -> bool {
        let limits = &key.limits;
        limits.requests_per_second.is_some()
            || (self == Self::Placing && limits.calls_per_second.is_some())
    }
}

/// One key's cells, with the settings they were made for: a key whose settings changed
/// starts afresh.
struct Cells {
    spec: KeySpec,
    requests: Option<DefaultDirectRateLimiter>,
    calls: Option<DefaultDirectRateLimiter>,
    /// This replica's lease of the fleet's `requests` cell.
    lease: Lease,
}

impl Cells {
    fn new(spec: &KeySpec) -> Self {
        let cell = |rate: Option<NonZeroU32>| {
            // A burst of one second's worth: a client may send its second's requests at once.
            rate.map(|r| RateLimiter::direct(Quota::per_second(r).allow_burst(r)))
        };
        Self {
            requests: cell(spec.limits.requests_per_second),
            calls: cell(spec.limits.calls_per_second),
            lease: Lease::default(),
            spec: spec.clone(),
        }
    }
}

/// Each limited key's cells, by (org, key name).
type ByKey = HashMap<(Arc<str>, Arc<str>), Arc<Cells>>;

/// Every limited key's cells.
#[derive(Default)]
pub struct KeyRates {
    cells: RwLock<ByKey>,
}

fn refusal(key: &KeySpec, what: &'static str, per_second: u32, wait: Duration) -> AuthError {
    AuthError::RateLimited {
        key: key.name.clone(),
        what,
        per_second,
        retry_after_secs: retry_after_secs(wait),
    }
}

/// Whole seconds to wait, rounded up and at least one: a refusal read a moment after its
/// check may find the wait already over, and `retry-after: 0` would invite a retry storm.
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

impl KeyRates {
    /// Takes what `spend` costs from `key`'s cells, or says when to retry: on `redis` when
    /// given (the fleet's cells), in this process's memory without it or while it is down,
    /// so a replica cut off from Redis limits each key to its rate on its own. A key without
    /// limits costs a branch or two.
    pub async fn take(
        &self,
        redis: Option<&Arc<Redis>>,
        org: &Arc<str>,
        key: &KeySpec,
        spend: Spend,
    ) -> Result<(), AuthError> {
        if let Some(taken) = self.take_now(redis, org, key, spend) {
            return taken;
        }
        let limits = &key.limits;
        let mut cells = Vec::with_capacity(2);
        if let Some(per_second) = limits.requests_per_second {
            cells.push(Cell {
                what: "requests",
                per_second,
            });
        }
        if let (Spend::Placing, Some(per_second)) = (spend, limits.calls_per_second) {
            cells.push(Cell {
                what: "calls placed",
                per_second,
            });
        }
        if cells.is_empty() {
            return Ok(());
        }
        if let Some(redis) = redis {
            let taken = match cells.as_slice() {
                // A plain request spends from this replica's lease of the cell.
                [requests] if spend == Spend::Request => {
                    let held = self.cells_of(org, key);
                    held.lease.take(redis, org, key, *requests).await
                }
                _ => limits_fleet::take(redis, org, key, &cells, 1).await,
            };
            match taken {
                Some(Taken::Admitted(_)) => return Ok(()),
                Some(Taken::Refused { index, wait }) => {
                    let cell = &cells[index];
                    return Err(refusal(key, cell.what, cell.per_second.get(), wait));
                }
                None => {}
            }
        }
        self.take_here(org, key, spend)
    }

    /// [`KeyRates::take`] when it needs no waiting: always for a key without limits, and in
    /// this process's memory without `redis`; `None` when the fleet's cells must be asked.
    pub fn take_now(
        &self,
        redis: Option<&Arc<Redis>>,
        org: &Arc<str>,
        key: &KeySpec,
        spend: Spend,
    ) -> Option<Result<(), AuthError>> {
        if !spend.limited(key) {
            return Some(Ok(()));
        }
        match redis {
            Some(_) => None,
            None => Some(self.take_here(org, key, spend)),
        }
    }

    /// [`KeyRates::take`] in this process's memory.
    pub fn take_here(&self, org: &Arc<str>, key: &KeySpec, spend: Spend) -> Result<(), AuthError> {
        if !spend.limited(key) {
            return Ok(());
        }
        let limits = &key.limits;
        let cells = self.cells_of(org, key);
        let refuse = |what, per_second: Option<NonZeroU32>, wait: Duration| {
            refusal(key, what, per_second.map_or(0, NonZeroU32::get), wait)
        };
        if let Some(cell) = &cells.requests {
            cell.check().map_err(|not| {
                refuse(
                    "requests",
                    limits.requests_per_second,
                    not.wait_time_from(CLOCK.now()),
                )
            })?;
        }
        if spend == Spend::Placing {
            if let Some(cell) = &cells.calls {
                cell.check().map_err(|not| {
                    refuse(
                        "calls placed",
                        limits.calls_per_second,
                        not.wait_time_from(CLOCK.now()),
                    )
                })?;
            }
        }
        Ok(())
    }

    fn cells_of(&self, org: &Arc<str>, key: &KeySpec) -> Arc<Cells> {
        let id = (org.clone(), key.name.clone());
        if let Some(cells) = self.read().get(&id) {
            if cells.spec.same_as(key) {
                return cells.clone();
            }
        }
        let mut all = self.cells.write().unwrap_or_else(|e| e.into_inner());
        let cells = all.entry(id).or_insert_with(|| Arc::new(Cells::new(key)));
        if !cells.spec.same_as(key) {
            *cells = Arc::new(Cells::new(key));
        }
        cells.clone()
    }

    /// After a reload: drops the cells of every key that is gone or changed.
    pub fn reloaded(&self, still: impl Fn(&str, &KeySpec) -> bool) {
        self.cells
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(org, _), cells| still(org, &cells.spec));
    }

    /// How many keys have cells: for tests of what a reload drops.
    pub fn held(&self) -> usize {
        self.read().len()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, ByKey> {
        self.cells.read().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{KeyLimits, KeySource};
    use crate::keys::KeyDigest;
    use crate::scope::Scopes;

    fn key(rps: u32, cps: Option<u32>) -> KeySpec {
        KeySpec {
            name: Arc::from("dialer"),
            digest: KeyDigest::of_bytes(b"k"),
            source: KeySource::Sha256,
            scopes: Scopes::all(),
            limits: KeyLimits {
                requests_per_second: NonZeroU32::new(rps),
                calls_per_second: cps.and_then(NonZeroU32::new),
                max_active_placed: None,
            },
        }
    }

    #[test]
    fn a_key_gets_its_second_of_requests_then_a_retry_after() {
        let rates = KeyRates::default();
        let org = Arc::from("acme");
        let k = key(3, None);
        for _ in 0..3 {
            rates.take_here(&org, &k, Spend::Request).unwrap();
        }
        match rates.take_here(&org, &k, Spend::Request) {
            Err(AuthError::RateLimited {
                retry_after_secs, ..
            }) => assert_eq!(retry_after_secs, 1),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn placing_spends_the_calls_rate_too_and_a_changed_key_starts_afresh() {
        let rates = KeyRates::default();
        let org = Arc::from("acme");
        let k = key(100, Some(1));
        rates.take_here(&org, &k, Spend::Placing).unwrap();
        let refused = rates.take_here(&org, &k, Spend::Placing).unwrap_err();
        assert!(refused.to_string().contains("calls placed"), "{refused}");
        rates.take_here(&org, &k, Spend::Request).unwrap();
        let changed = key(100, Some(2));
        rates.take_here(&org, &changed, Spend::Placing).unwrap();
        rates.reloaded(|_, _| false);
        assert_eq!(rates.held(), 0);
    }
}

//! `max_active_placed` (DESIGN §18): the calls one key placed that may still be active, on
//! this replica. A placement takes a slot before it is sent; the slot counts while the call is
//! in flight, while the org's list shows it, and for `place::HOLD` after the answer while no
//! list has shown it yet (or when the answer left it unknown).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use super::super::place::HOLD;

/// Each (org, key name)'s slots.
type Slots = HashMap<(Arc<str>, Arc<str>), Vec<Slot>>;

/// Every key's placed calls.
#[derive(Debug, Default)]
pub struct PlacedByKey {
    calls: Mutex<Slots>,
    next: std::sync::atomic::AtomicU64,
}

#[derive(Debug)]
struct Slot {
    token: u64,
    state: State,
    /// When the answer came (or the slot was taken, while in flight).
    at: Instant,
}

#[derive(Debug)]
enum State {
    InFlight,
    Placed {
        provider: Arc<str>,
        call_id: String,
        seen: bool,
    },
    Unknown,
}

/// A slot taken by one placement.
#[derive(Debug, Clone)]
pub struct Taken {
    org: Arc<str>,
    key: Arc<str>,
    token: u64,
}

impl PlacedByKey {
    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a slot for a placement through `key` of `org` if fewer than `max` of the key's
    /// calls are active; `listed(provider, call_id)` says whether the org's latest list shows
    /// the call.
    pub fn take(
        &self,
        org: &Arc<str>,
        key: &Arc<str>,
        max: u32,
        listed: impl Fn(&str, &str) -> bool,
    ) -> Option<Taken> {
        let mut all = self.lock();
        let slots = all.entry((org.clone(), key.clone())).or_default();
        let now = Instant::now();
        slots.retain_mut(|slot| match &mut slot.state {
            State::InFlight => true,
            State::Placed {
                provider,
                call_id,
                seen,
            } => {
                if listed(provider, call_id) {
                    *seen = true;
                    true
                } else {
                    !*seen && now.duration_since(slot.at) < HOLD
                }
            }
            State::Unknown => now.duration_since(slot.at) < HOLD,
        });
        if slots.len() >= max as usize {
            return None;
        }
        let token = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        slots.push(Slot {
            token,
            state: State::InFlight,
            at: now,
        });
        Some(Taken {
            org: org.clone(),
            key: key.clone(),
            token,
        })
    }

    fn settle(&self, taken: &Taken, state: Option<State>) {
        let mut all = self.lock();
        let Some(slots) = all.get_mut(&(taken.org.clone(), taken.key.clone())) else {
            return;
        };
        match state {
            None => slots.retain(|s| s.token != taken.token),
            Some(state) => {
                if let Some(slot) = slots.iter_mut().find(|s| s.token == taken.token) {
                    slot.state = state;
                    slot.at = Instant::now();
                }
            }
        }
    }

    /// The placement placed `call_id` on `provider`.
    pub fn placed(&self, taken: &Taken, provider: &str, call_id: &str) {
        let state = State::Placed {
            provider: Arc::from(provider),
            call_id: call_id.to_owned(),
            seen: false,
        };
        self.settle(taken, Some(state));
    }

    /// The placement may have placed a call, id unknown.
    pub fn unknown(&self, taken: &Taken) {
        self.settle(taken, Some(State::Unknown));
    }

    /// The placement placed nothing.
    pub fn release(&self, taken: &Taken) {
        self.settle(taken, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_s_calls_count_while_in_flight_listed_or_just_placed() {
        let by_key = PlacedByKey::default();
        let (org, key): (Arc<str>, Arc<str>) = (Arc::from("o"), Arc::from("dialer"));
        let none = |_: &str, _: &str| false;
        let a = by_key.take(&org, &key, 2, none).unwrap();
        let b = by_key.take(&org, &key, 2, none).unwrap();
        assert!(by_key.take(&org, &key, 2, none).is_none(), "two in flight");
        by_key.release(&b);
        let c = by_key.take(&org, &key, 2, none).unwrap();
        by_key.placed(&a, "p", "c1");
        by_key.placed(&c, "p", "c2");
        // Listed: still active.
        let shows_both = |_: &str, id: &str| id == "c1" || id == "c2";
        assert!(by_key.take(&org, &key, 2, shows_both).is_none());
        // c1 listed once and gone now: ended, its slot free.
        let shows_c2 = |_: &str, id: &str| id == "c2";
        assert!(by_key.take(&org, &key, 2, shows_c2).is_some());
        // Another key is counted apart.
        assert!(by_key.take(&org, &Arc::from("other"), 1, none).is_some());
    }
}

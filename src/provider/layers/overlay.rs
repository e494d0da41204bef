//! What the platforms pushed, laid over a provider's answers until its next one (DESIGN
//! §17): a status moved forward, an ended call gone from the list, a started call added.
//! Laid by the coalescing layer on every answer it serves (fresh, shared or cached), so
//! every view built from the answers (each list shape, `/capacity`, the streams' polls)
//! shows a push at once, with no upstream ask. An answer asked after a push replaces it:
//! the provider stays the authority.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::call::{Call, CallStatus, Text};
use crate::provider::kind::Move;
use crate::provider::Calls;

/// Pushed calls kept at most per provider: the oldest go first (a push older than every
/// answer since is dropped anyway).
const MOVES_KEPT: usize = 10_000;
/// Callers whose last answers are kept (providers that forward the caller's key).
const CALLERS_KEPT: usize = 1_024;

/// When an answer was asked, which tells the pushes it replaces from those it does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    /// By this replica, after this many pushes had been taken.
    Here(u64),
    /// By another replica, whose answer was stored at this Unix time in ms (after its ask:
    /// a push taken while that ask was in flight is replaced too).
    Elsewhere(u64),
}

/// The pushes of one provider, shared by its coalescing layer and the hook route.
#[derive(Default)]
pub struct Pushes {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Pushes taken so far; each pushed call remembers the number of its latest.
    seq: u64,
    moves: HashMap<Text, Pushed>,
    /// Per caller (`None` for a provider whose answers are everyone's): the answer last
    /// served, and the overlay laid on it.
    /// Keyed by key digests, uniform already: foldhash rather than SipHash, on every answer.
    seen: HashMap<Option<[u8; 32]>, Seen, foldhash::fast::RandomState>,
}

struct Pushed {
    seq: u64,
    /// When it was taken, Unix ms, for answers another replica asked.
    at: u64,
    status: CallStatus,
    started: Option<Call>,
}

struct Seen {
    base: Calls,
    /// `base`, asked as `.1`, with the pushes laid over it as of push number `.0`: the same
    /// `Calls` while nothing new is pushed, so the snapshot built from it is reused.
    laid: Option<(u64, Asked, Calls)>,
}

impl Pushed {
    fn replaced_by(&self, asked: Asked) -> bool {
        match asked {
            Asked::Here(seq) => self.seq <= seq,
            Asked::Elsewhere(ms) => self.at <= ms,
        }
    }
}

impl Pushes {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many pushes were taken so far: an ask that starts now replaces them.
    pub fn taken(&self) -> u64 {
        self.lock().seq
    }

    /// Takes a push for `provider`'s call; `false` if it moves nothing here (a step back, a
    /// replay, a call no answer served here lists and the push does not start).
    pub fn push(&self, provider: &Arc<str>, moved: &Move) -> bool {
        let mut state = self.lock();
        let seq = state.seq + 1;
        let at = crate::call::time::now_ms();
        let started = moved.started.clone().map(|mut call| {
            call.provider = provider.clone();
            call.call_id = Text::from(moved.call_id.as_str());
            call.status = moved.status.clone();
            call
        });
        let visible = match state.moves.get_mut(moved.call_id.as_str()) {
            Some(had) => {
                if !had.status.moves_to(&moved.status) {
                    return false;
                }
                had.status = moved.status.clone();
                match &mut had.started {
                    Some(call) => call.status = moved.status.clone(),
                    None => had.started = started,
                }
                had.seq = seq;
                had.at = at;
                true
            }
            None => {
                if state.moves.len() >= MOVES_KEPT {
                    let oldest = state
                        .moves
                        .iter()
                        .min_by_key(|(_, p)| p.seq)
                        .map(|(id, _)| id.clone());
                    if let Some(id) = oldest {
                        state.moves.remove(&id);
                    }
                }
                let listed = state.seen.values().any(|seen| {
                    seen.base
                        .iter()
                        .any(|c| c.call_id == moved.call_id && c.status.moves_to(&moved.status))
                });
                let visible = listed || started.is_some();
                let pushed = Pushed {
                    seq,
                    at,
                    status: moved.status.clone(),
                    started,
                };
                state
                    .moves
                    .insert(Text::from(moved.call_id.as_str()), pushed);
                visible
            }
        };
        state.seq = seq;
        visible
    }

    /// `answer`, for `caller`, with the pushes it does not replace laid over it.
    pub fn lay(&self, caller: Option<[u8; 32]>, answer: Calls, asked: Asked) -> Calls {
        let mut state = self.lock();
        if !state.seen.contains_key(&caller) && state.seen.len() >= CALLERS_KEPT {
            state.seen.clear();
        }
        // With one list for everyone, a push its answer replaced is done with.
        if caller.is_none() && state.seen.len() <= 1 {
            state.moves.retain(|_, p| !p.replaced_by(asked));
        }
        let seq = state.seq;
        let State { moves, seen, .. } = &mut *state;
        // Every answer is noted, pushes or not: a push is visible if an answer lists its call.
        let seen = seen.entry(caller).or_insert_with(|| Seen {
            base: answer.clone(),
            laid: None,
        });
        if !Arc::ptr_eq(&seen.base, &answer) {
            *seen = Seen {
                base: answer.clone(),
                laid: None,
            };
        }
        if let Some((at, how, laid)) = &seen.laid {
            if (*at, *how) == (seq, asked) {
                return laid.clone();
            }
        }
        let mut live: Vec<(&Text, &Pushed)> = moves
            .iter()
            .filter(|(_, p)| !p.replaced_by(asked))
            .collect();
        if live.is_empty() {
            return answer;
        }
        live.sort_by_key(|(_, p)| p.seq);
        let laid = Arc::new(laid_over(&answer, &live));
        seen.laid = Some((seq, asked, laid.clone()));
        laid
    }
}

/// `answer` with `pushed` laid over it: a listed call moves forward only; a call not listed
/// is added if its push started it.
fn laid_over(answer: &[Call], pushed: &[(&Text, &Pushed)]) -> Vec<Call> {
    let mut calls = answer.to_vec();
    let at: HashMap<&str, usize> = answer
        .iter()
        .enumerate()
        .map(|(i, c)| (c.call_id.as_str(), i))
        .collect();
    for (id, push) in pushed {
        match at.get(id.as_str()) {
            Some(&i) => {
                if calls[i].status.moves_to(&push.status) {
                    calls[i].status = push.status.clone();
                }
            }
            None => {
                if let Some(call) = &push.started {
                    calls.push(call.clone());
                }
            }
        }
    }
    calls
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::CallStatus::{Completed, InProgress, Queued, Ringing};

    fn answer(calls: &[(&str, CallStatus)]) -> Calls {
        Arc::new(
            calls
                .iter()
                .map(|(id, s)| Call::new(*id, Arc::from("p"), s.clone()))
                .collect(),
        )
    }

    fn moved(id: &str, status: CallStatus) -> Move {
        Move {
            call_id: id.into(),
            status,
            started: None,
        }
    }

    fn statuses(calls: &Calls) -> Vec<(String, CallStatus)> {
        calls
            .iter()
            .map(|c| (c.call_id.to_string(), c.status.clone()))
            .collect()
    }

    #[test]
    fn a_push_holds_over_answers_asked_before_it_and_one_asked_after_replaces_it() {
        let pushes = Pushes::default();
        let p: Arc<str> = Arc::from("p");
        let first = answer(&[("c1", Ringing)]);
        let before = Asked::Here(pushes.taken());
        assert!(Arc::ptr_eq(
            &pushes.lay(None, first.clone(), before),
            &first
        ));
        assert!(pushes.push(&p, &moved("c1", InProgress)));
        let laid = pushes.lay(None, first.clone(), before);
        assert_eq!(statuses(&laid), [("c1".into(), InProgress)]);
        // The same answer again is the same laid list, so its snapshot is reused.
        assert!(Arc::ptr_eq(&pushes.lay(None, first.clone(), before), &laid));
        // Asked after the push (even with the same bytes, so the same `Calls`): the
        // provider's answer is the authority.
        let after = Asked::Here(pushes.taken());
        assert!(Arc::ptr_eq(&pushes.lay(None, first.clone(), after), &first));
        let next = answer(&[("c1", Ringing)]);
        assert!(Arc::ptr_eq(&pushes.lay(None, next.clone(), after), &next));
    }

    #[test]
    fn another_replicas_answer_replaces_the_pushes_taken_before_it_was_stored() {
        let pushes = Pushes::default();
        let p: Arc<str> = Arc::from("p");
        let a = answer(&[("c1", Ringing)]);
        pushes.lay(None, a.clone(), Asked::Here(0));
        assert!(pushes.push(&p, &moved("c1", InProgress)));
        let stored_before = Asked::Elsewhere(crate::call::time::now_ms() - 60_000);
        let laid = pushes.lay(None, a.clone(), stored_before);
        assert_eq!(statuses(&laid), [("c1".into(), InProgress)]);
        let stored_after = Asked::Elsewhere(crate::call::time::now_ms() + 1);
        assert!(Arc::ptr_eq(&pushes.lay(None, a.clone(), stored_after), &a));
    }

    #[test]
    fn statuses_move_forward_only_and_a_replay_moves_nothing() {
        let pushes = Pushes::default();
        let p: Arc<str> = Arc::from("p");
        let a = answer(&[("c1", InProgress)]);
        pushes.lay(None, a.clone(), Asked::Here(0));
        // Behind what the provider listed: nothing moves, and the listed status stays.
        assert!(!pushes.push(&p, &moved("c1", Ringing)));
        assert!(pushes.push(&p, &moved("c1", Completed)));
        assert!(!pushes.push(&p, &moved("c1", Completed)), "a replay");
        assert!(!pushes.push(&p, &moved("c1", Queued)));
        assert!(
            !pushes.push(&p, &moved("c2", Completed)),
            "a call never listed"
        );
        assert_eq!(
            statuses(&pushes.lay(None, a.clone(), Asked::Here(0))),
            [("c1".into(), Completed)]
        );
        // An unlisted call the push does not start is not added.
        assert_eq!(pushes.lay(None, a, Asked::Here(0)).len(), 1);
    }

    #[test]
    fn a_started_push_adds_its_call_with_the_fields_it_carries_and_the_providers_id() {
        let pushes = Pushes::default();
        let p: Arc<str> = Arc::from("p");
        let a = answer(&[]);
        pushes.lay(None, a.clone(), Asked::Here(0));
        let mut carried = Call::new("c2", Arc::from(""), Queued);
        carried.to = Some("+15550001111".into());
        let started = Move {
            call_id: "c2".into(),
            status: InProgress,
            started: Some(carried),
        };
        assert!(pushes.push(&p, &started));
        let laid = pushes.lay(None, a.clone(), Asked::Here(0));
        assert_eq!(laid.len(), 1);
        assert_eq!(&*laid[0].provider, "p");
        assert_eq!(laid[0].status, InProgress);
        assert_eq!(laid[0].to.as_deref(), Some("+15550001111"));
        // Its end, pushed later, ends it.
        assert!(pushes.push(&p, &moved("c2", Completed)));
        assert_eq!(
            statuses(&pushes.lay(None, a, Asked::Here(0))),
            [("c2".into(), Completed)]
        );
    }
}

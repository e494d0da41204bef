//! Asks an org's providers at once and merges their answers: active only, deduplicated, ordered.

use std::collections::hash_map::{Entry, HashMap};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;

use crate::call::Call;
use crate::provider::{Calls, Provider, ProviderError, RequestContext};

/// One provider's failure, named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderFailure {
    pub provider: Arc<str>,
    pub error: ProviderError,
}

pub type Answer = Result<Calls, ProviderError>;

/// Asks every provider concurrently and waits for all of them: each is bounded by its own
/// deadline, and one failing cancels none of the others. A backend that panics fails alone,
/// as an `INTERNAL_ERROR` for its provider. (No task per ask: most asks are answered from
/// the coalescing layer at once, and a spawn would cost more than they do; large bodies are
/// parsed off the runtime by the HTTP layer instead.) `prefetched` is an answer already in
/// hand for the provider at that index, which is then not asked again.
pub async fn gather(
    providers: &[Arc<dyn Provider>],
    ctx: &RequestContext,
    mut prefetched: Option<(usize, Answer)>,
) -> Vec<Answer> {
    let asks = providers.iter().enumerate().map(|(i, p)| {
        let ready = match prefetched.take() {
            Some((at, answer)) if at == i => Some(answer),
            other => {
                prefetched = other;
                None
            }
        };
        async move {
            match ready {
                Some(answer) => answer,
                None => AssertUnwindSafe(p.active_calls(ctx))
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|_| {
                        tracing::error!(provider = p.id(), "a provider panicked");
                        Err(ProviderError::Internal)
                    }),
            }
        }
    });
    futures::future::join_all(asks).await
}

/// Merges answers given in the order of the org's providers list; failed answers add nothing.
///
/// Ended calls are left out. A `call_id` reported more than once is listed once: as the first
/// provider in the list reported it, and if that provider reported it twice, the report that
/// sorts first — never whichever the upstream happened to put first. Order: creation time
/// ascending, calls without one last, then provider order, then `call_id`.
pub fn merge(answers: &[Answer]) -> Vec<&Call> {
    let total = answers.iter().flatten().map(|calls| calls.len()).sum();
    let mut best: HashMap<&str, Ranked<'_>, foldhash::fast::RandomState> =
        HashMap::with_capacity_and_hasher(total, Default::default());
    for (rank, calls) in answers.iter().enumerate() {
        let Ok(calls) = calls else { continue };
        for call in calls.iter().filter(|c| c.status.is_active()) {
            let candidate = Ranked::new(rank, call);
            match best.entry(call.call_id.as_str()) {
                Entry::Vacant(e) => {
                    e.insert(candidate);
                }
                Entry::Occupied(mut e) => {
                    if candidate.preferred_to(e.get()) {
                        e.insert(candidate);
                    }
                }
            }
        }
    }
    let mut winners: Vec<Ranked<'_>> = best.into_values().collect();
    // Unstable is fine: call ids are unique here, so no two entries compare equal. The
    // integer keys settle almost every comparison without touching the calls themselves.
    winners.sort_unstable_by(|a, b| {
        (a.created, a.rank, a.id_prefix)
            .cmp(&(b.created, b.rank, b.id_prefix))
            .then_with(|| a.call.call_id.cmp(&b.call.call_id))
    });
    winners.into_iter().map(|r| r.call).collect()
}

/// A call with its sort key: creation time (calls with one first, ascending), provider rank,
/// then `call_id`, whose first eight bytes are kept as an integer that orders like the text.
struct Ranked<'a> {
    created: u128,
    rank: usize,
    id_prefix: u64,
    call: &'a Call,
}

impl<'a> Ranked<'a> {
    fn new(rank: usize, call: &'a Call) -> Self {
        let mut prefix = [0u8; 8];
        let id = call.call_id.as_bytes();
        let n = id.len().min(8);
        prefix[..n].copy_from_slice(&id[..n]);
        Self {
            created: match call.created_at {
                Some(ms) => u128::from(ms),
                None => 1 << 64,
            },
            rank,
            id_prefix: u64::from_be_bytes(prefix),
            call,
        }
    }

    /// Which of two reports of one call to list: the earlier provider's, then the one that
    /// sorts first, then any fixed order over the remaining fields.
    fn preferred_to(&self, other: &Self) -> bool {
        (self.rank, self.created, self.call) < (other.rank, other.created, other.call)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::CallStatus;

    fn call(id: &str, p: &str, created: Option<u64>, status: CallStatus) -> Call {
        let mut c = Call::new(id, Arc::from(p), status);
        c.created_at = created;
        c
    }

    fn ok(calls: Vec<Call>) -> Answer {
        Ok(calls.into())
    }

    fn ids<'a>(calls: &[&'a Call]) -> Vec<&'a str> {
        calls.iter().map(|c| c.call_id.as_str()).collect()
    }

    #[test]
    fn calls_are_ordered_by_creation_then_provider_order_then_id() {
        let answers = [
            ok(vec![
                call("z", "a", None, CallStatus::Ringing),
                call("y", "a", Some(5), CallStatus::Ringing),
                call("x", "a", None, CallStatus::Ringing),
            ]),
            ok(vec![
                call("a", "b", None, CallStatus::Ringing),
                call("w", "b", Some(5), CallStatus::Ringing),
                call("v", "b", Some(1), CallStatus::Ringing),
            ]),
        ];
        assert_eq!(ids(&merge(&answers)), ["v", "y", "w", "x", "z", "a"]);
    }

    #[test]
    fn a_duplicate_is_listed_once_as_the_first_provider_reported_it() {
        let answers = [
            ok(vec![call("same", "a", Some(9), CallStatus::Ringing)]),
            ok(vec![call("same", "b", Some(1), CallStatus::InProgress)]),
        ];
        let merged = merge(&answers);
        assert_eq!(merged.len(), 1);
        assert_eq!(&*merged[0].provider, "a");
    }

    #[test]
    fn ended_calls_are_left_out_and_do_not_hide_a_live_duplicate() {
        let answers = [
            ok(vec![call("same", "a", None, CallStatus::Completed)]),
            ok(vec![call("same", "b", None, CallStatus::InProgress)]),
        ];
        let merged = merge(&answers);
        assert_eq!(ids(&merged), ["same"]);
        assert_eq!(&*merged[0].provider, "b");
    }

    #[test]
    fn one_provider_reporting_a_call_twice_gives_the_same_list_in_either_order() {
        let first = call("c0", "p", Some(1), CallStatus::Ringing);
        let second = call("c0", "p", None, CallStatus::InProgress);
        let one = [ok(vec![first.clone(), second.clone()])];
        let other = [ok(vec![second, first])];
        assert_eq!(merge(&one), merge(&other));
        assert_eq!(merge(&one)[0].status, CallStatus::Ringing);
    }

    #[test]
    fn a_failed_answer_adds_nothing_and_the_others_are_kept() {
        let answers = [
            Err(ProviderError::Status(500)),
            ok(vec![call("c", "b", None, CallStatus::Queued)]),
        ];
        assert_eq!(ids(&merge(&answers)), ["c"]);
    }
}

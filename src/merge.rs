//! Asks an org's providers at once and merges their answers: active only, deduplicated, ordered.

use std::collections::hash_map::{Entry, HashMap};
use std::sync::Arc;

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
/// deadline, and one failing cancels none of the others. Each ask runs on its own task, so
/// parsing two large answers uses two cores, and a backend that panics fails alone.
/// `prefetched` is an answer already in hand for the provider at that index, which is then
/// not asked again.
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
        let (p, ctx) = (p.clone(), ctx.clone());
        async move {
            match ready {
                Some(answer) => answer,
                None => tokio::spawn(async move { p.active_calls(&ctx).await })
                    .await
                    .unwrap_or_else(|e| {
                        tracing::error!(error = %e, "a provider task failed");
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
    // Unstable is fine: call ids are unique here, so no two entries compare equal.
    winners.sort_unstable_by(|a, b| {
        (a.created, a.rank, &a.call.call_id).cmp(&(b.created, b.rank, &b.call.call_id))
    });
    winners.into_iter().map(|r| r.call).collect()
}

/// A call with its provider's rank and its creation time as one sort key: calls with a
/// creation time (ascending) before calls without one.
struct Ranked<'a> {
    created: (bool, u64),
    rank: usize,
    call: &'a Call,
}

impl<'a> Ranked<'a> {
    fn new(rank: usize, call: &'a Call) -> Self {
        Self {
            created: (call.created_at.is_none(), call.created_at.unwrap_or(0)),
            rank,
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

//! Asks an org's providers at once and merges their answers: active only, deduplicated, ordered.

use std::collections::HashSet;
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
/// deadline, and one failing cancels none of the others. `prefetched` is an answer already
/// in hand for the provider at that index, which is then not asked again.
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
                None => p.active_calls(ctx).await,
            }
        }
    });
    futures::future::join_all(asks).await
}

/// Merges answers given in the order of the org's providers list; failed answers add nothing.
///
/// Ended calls are left out. A `call_id` reported twice is listed once, as the first provider
/// in the list reported it. Order: creation time ascending, calls without one last, then
/// provider order, then `call_id`.
pub fn merge(answers: &[Answer]) -> Vec<&Call> {
    let total = answers.iter().flatten().map(|calls| calls.len()).sum();
    let mut seen = HashSet::with_capacity(total);
    let mut ranked = Vec::with_capacity(total);
    for (rank, calls) in answers.iter().enumerate() {
        let Ok(calls) = calls else { continue };
        for call in calls.iter() {
            if call.status.is_active() && seen.insert(call.call_id.as_str()) {
                ranked.push((rank, call));
            }
        }
    }
    // `sort_unstable` is safe: no two entries compare equal, since call ids are unique.
    ranked.sort_unstable_by(|(ra, a), (rb, b)| {
        (a.created_at.is_none(), a.created_at, ra, &a.call_id).cmp(&(
            b.created_at.is_none(),
            b.created_at,
            rb,
            &b.call_id,
        ))
    });
    ranked.into_iter().map(|(_, c)| c).collect()
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
    fn a_failed_answer_adds_nothing_and_the_others_are_kept() {
        let answers = [
            Err(ProviderError::Status(500)),
            ok(vec![call("c", "b", None, CallStatus::Queued)]),
        ];
        assert_eq!(ids(&merge(&answers)), ["c"]);
    }
}

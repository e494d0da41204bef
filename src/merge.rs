//! Asks an org's providers at once and merges their answers: active only, deduplicated, ordered.

use std::collections::HashSet;
use std::sync::Arc;

use crate::call::Call;
use crate::provider::{Provider, ProviderError, RequestContext};

/// One provider's failure, named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderFailure {
    pub provider: Arc<str>,
    pub error: ProviderError,
}

/// The merged answer for one org.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    pub calls: Vec<Call>,
    /// In the order of the org's providers list.
    pub failures: Vec<ProviderFailure>,
}

pub type Answer = Result<Vec<Call>, ProviderError>;

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

/// Merges answers given in the order of the org's providers list.
///
/// Ended calls are left out. A `call_id` reported twice is listed once, as the first provider
/// in the list reported it. Order: creation time ascending, calls without one last, then
/// provider order, then `call_id`. Calls that name no owner are given `org_id`.
pub fn merge(org_id: &str, answers: Vec<(Arc<str>, Answer)>) -> Listing {
    let mut failures = Vec::new();
    let mut seen = HashSet::new();
    let mut ranked = Vec::new();
    for (rank, (provider, answer)) in answers.into_iter().enumerate() {
        match answer {
            Err(error) => failures.push(ProviderFailure { provider, error }),
            Ok(calls) => {
                for mut call in calls {
                    if !call.status.is_active() || !seen.insert(call.call_id.clone()) {
                        continue;
                    }
                    call.org.get_or_insert_with(|| org_id.to_string());
                    ranked.push((rank, call));
                }
            }
        }
    }
    ranked.sort_by(|(ra, a), (rb, b)| {
        (a.created_at.is_none(), a.created_at, ra, &a.call_id).cmp(&(
            b.created_at.is_none(),
            b.created_at,
            rb,
            &b.call_id,
        ))
    });
    Listing {
        calls: ranked.into_iter().map(|(_, c)| c).collect(),
        failures,
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

    fn ids(l: &Listing) -> Vec<&str> {
        l.calls.iter().map(|c| c.call_id.as_str()).collect()
    }

    #[test]
    fn calls_are_ordered_by_creation_then_provider_order_then_id() {
        let a: Arc<str> = Arc::from("a");
        let b: Arc<str> = Arc::from("b");
        let listing = merge(
            "org",
            vec![
                (
                    a.clone(),
                    Ok(vec![
                        call("z", "a", None, CallStatus::Ringing),
                        call("y", "a", Some(5), CallStatus::Ringing),
                        call("x", "a", None, CallStatus::Ringing),
                    ]),
                ),
                (
                    b.clone(),
                    Ok(vec![
                        call("a", "b", None, CallStatus::Ringing),
                        call("w", "b", Some(5), CallStatus::Ringing),
                        call("v", "b", Some(1), CallStatus::Ringing),
                    ]),
                ),
            ],
        );
        assert_eq!(ids(&listing), ["v", "y", "w", "x", "z", "a"]);
    }

    #[test]
    fn a_duplicate_is_listed_once_as_the_first_provider_reported_it() {
        let listing = merge(
            "org",
            vec![
                (
                    Arc::from("a"),
                    Ok(vec![call("same", "a", Some(9), CallStatus::Ringing)]),
                ),
                (
                    Arc::from("b"),
                    Ok(vec![call("same", "b", Some(1), CallStatus::InProgress)]),
                ),
            ],
        );
        assert_eq!(listing.calls.len(), 1);
        assert_eq!(&*listing.calls[0].provider, "a");
    }

    #[test]
    fn ended_calls_are_left_out_and_do_not_hide_a_live_duplicate() {
        let listing = merge(
            "org",
            vec![
                (
                    Arc::from("a"),
                    Ok(vec![call("same", "a", None, CallStatus::Completed)]),
                ),
                (
                    Arc::from("b"),
                    Ok(vec![call("same", "b", None, CallStatus::InProgress)]),
                ),
            ],
        );
        assert_eq!(ids(&listing), ["same"]);
        assert_eq!(&*listing.calls[0].provider, "b");
    }

    #[test]
    fn failures_are_named_and_the_other_answers_kept() {
        let listing = merge(
            "org",
            vec![
                (Arc::from("a"), Err(ProviderError::Status(500))),
                (
                    Arc::from("b"),
                    Ok(vec![call("c", "b", None, CallStatus::Queued)]),
                ),
            ],
        );
        assert_eq!(ids(&listing), ["c"]);
        assert_eq!(listing.calls[0].org.as_deref(), Some("org"));
        assert_eq!(&*listing.failures[0].provider, "a");
    }
}

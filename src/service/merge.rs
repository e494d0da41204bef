//! Asks an org's providers at once and merges their answers: active only, one row per phone
//! call, ordered.

use std::hash::BuildHasher;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use hashbrown::hash_table::{Entry, HashTable};

use crate::call::Call;
use crate::provider::{Calls, ListCalls, ProviderError, RequestContext};

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
    providers: &[Arc<dyn ListCalls>],
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
/// Ended calls are left out. A phone call reported more than once — the same telephony id
/// (Twilio CallSid), or without one the same `call_id` — is listed once: as the first
/// provider in the list reported it, and if that provider reported it twice, the report that
/// sorts first — never whichever the upstream happened to put first. Order: creation time
/// ascending, calls without one last, then provider order, then `call_id`.
pub fn merge(answers: &[Answer]) -> Vec<&Call> {
    positions(answers)
        .into_iter()
        .map(|p| at(answers, p))
        .collect()
}

/// Where a merged call is: (the answer's index, the call's index in it).
pub type Position = (u32, u32);

/// The call at `p`, which [`positions`] gave for these answers.
pub fn at(answers: &[Answer], (answer, call): Position) -> &Call {
    match &answers[answer as usize] {
        Ok(calls) => &calls[call as usize],
        Err(_) => unreachable!("positions only point into answers that succeeded"),
    }
}

/// [`merge`], as positions in the answers, so that the merged list can be kept with the
/// answers it points into.
pub fn positions(answers: &[Answer]) -> Vec<Position> {
    let reports: usize = answers.iter().flatten().map(|calls| calls.len()).sum();
    merge_in(answers, reports, reports >= MERGE_IN_TWO_FROM)
}

/// Answers with at least this many reports in all (ended calls and duplicates included) are
/// merged in two halves at once, on two threads. Each half reads every report, so halving
/// only pays for lists this long (measured; BENCHMARKS.md). The service builds such lists
/// on the blocking pool, where waiting for the halves holds up no runtime thread.
pub(crate) const MERGE_IN_TWO_FROM: usize = 16_384;

/// The merge of answers holding `reports` calls in all, in one pass or in two independent
/// halves at once.
///
/// Calls are split by one bit of their identity's hash (see [`identity`]), so every report
/// of one phone call lands in the same half: each half picks its own winners and sorts them, and the two sorted halves
/// interleave into the one list a single pass would give.
fn merge_in(answers: &[Answer], reports: usize, in_two: bool) -> Vec<Position> {
    let state = foldhash::fast::RandomState::default();
    if !in_two {
        let (merged, telephony) = winners(answers, &state, reports, |_| true);
        return same_id_once(merged, telephony)
            .into_iter()
            .map(|r| r.at())
            .collect();
    }
    // A bit neither hashbrown's bucket index (low bits) nor its tag (top seven) uses, so
    // each half's table is as well spread as a whole one.
    let half = |h: u64| (h >> 40) & 1;
    // A half holds close to half the calls; a few more than that rarely need a regrowth.
    let share = reports / 2 + reports / 32 + 16;
    let ((a, a_telephony), (b, b_telephony)) = rayon_core::join(
        || winners(answers, &state, share, |h| half(h) == 0),
        || winners(answers, &state, share, |h| half(h) == 1),
    );
    same_id_once(interleave(a, b), a_telephony || b_telephony)
        .into_iter()
        .map(|r| r.at())
        .collect()
}

/// Calls are told apart by telephony id where they have one, so two reports of one
/// `call_id` can still both stand when only one of them carried a telephony id. The rarer
/// case is mended here, after the merge: of the reports left with one `call_id`, the
/// preferred one stays. Lists without telephony ids (`telephony` false: the merge saw none)
/// pass through untouched, without a second walk over calls no longer in memory order.
fn same_id_once(merged: Vec<Ranked<'_>>, telephony: bool) -> Vec<Ranked<'_>> {
    if !telephony {
        return merged;
    }
    let mut best: std::collections::HashMap<&str, usize> = Default::default();
    for (i, r) in merged.iter().enumerate() {
        let id = r.call.call_id.as_str();
        match best.get(id) {
            Some(&kept) if !r.preferred_to(&merged[kept]) => {}
            _ => {
                best.insert(id, i);
            }
        }
    }
    if best.len() == merged.len() {
        return merged;
    }
    merged
        .into_iter()
        .enumerate()
        .filter(|(i, r)| best[r.call.call_id.as_str()] == *i)
        .map(|(_, r)| r)
        .collect()
}

/// The winning report of each active call whose id's hash `keep` accepts, sorted, and
/// whether any of those reports carried a telephony id. `keep` is what lets two halves each
/// do a whole merge of their own share of the ids.
fn winners<'a>(
    answers: &'a [Answer],
    state: &foldhash::fast::RandomState,
    capacity: usize,
    keep: impl Fn(u64) -> bool,
) -> (Vec<Ranked<'a>>, bool) {
    let mut telephony = false;
    // The index holds positions in `winners` rather than the entries themselves: its table
    // stays small enough to stay in cache, and `winners` is filled in the order calls came.
    let mut winners: Vec<Ranked<'_>> = Vec::with_capacity(capacity);
    let mut index: HashTable<usize> = HashTable::with_capacity(capacity);
    for (rank, calls) in answers.iter().enumerate() {
        let Ok(calls) = calls else { continue };
        for (at, call) in calls.iter().enumerate() {
            if !call.status.is_active() {
                continue;
            }
            let id = identity(call);
            let hash = state.hash_one(id);
            if !keep(hash) {
                continue;
            }
            telephony |= call.telephony_id.is_some();
            let candidate = Ranked::new(rank, at, call);
            let entry = index.entry(
                hash,
                |&w| identity(winners[w].call) == id,
                |&w| state.hash_one(identity(winners[w].call)),
            );
            match entry {
                Entry::Vacant(e) => {
                    e.insert(winners.len());
                    winners.push(candidate);
                }
                Entry::Occupied(e) => {
                    let kept = &mut winners[*e.get()];
                    if candidate.preferred_to(kept) {
                        *kept = candidate;
                    }
                }
            }
        }
    }
    // Unstable is fine: entries compare equal only when one provider reported one `call_id`
    // under two telephony ids, and `same_id_once` then keeps one of them by preference.
    winners.sort_unstable_by(Ranked::order);
    (winners, telephony)
}

/// What makes two reports one phone call: the telephony id where the platform gave one,
/// else the `call_id`.
fn identity(call: &Call) -> &str {
    call.telephony_id.as_deref().unwrap_or(&call.call_id)
}

/// Two sorted lists of winners with no call in common, as one sorted list.
fn interleave<'a>(a: Vec<Ranked<'a>>, b: Vec<Ranked<'a>>) -> Vec<Ranked<'a>> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
    while let (Some(x), Some(y)) = (a.peek(), b.peek()) {
        let next = if x.order(y).is_lt() { &mut a } else { &mut b };
        out.extend(next.next());
    }
    out.extend(a.chain(b));
    out
}

/// A call with its sort key and its position, 32 bytes so the sort moves little: creation
/// time (`u64::MAX` when unknown), then `tail` — the top bit set when the creation time is
/// unknown, so such calls follow one created at `u64::MAX`, and the provider's rank below
/// it — then `call_id`, whose first eight bytes are kept as an integer that orders like the
/// text. The call's index in its answer fits in what would otherwise be padding.
struct Ranked<'a> {
    created: u64,
    tail: u32,
    index: u32,
    id_prefix: u64,
    call: &'a Call,
}

const UNKNOWN_CREATION: u32 = 1 << 31;

impl<'a> Ranked<'a> {
    fn new(rank: usize, index: usize, call: &'a Call) -> Self {
        let mut prefix = [0u8; 8];
        let id = call.call_id.as_bytes();
        let n = id.len().min(8);
        prefix[..n].copy_from_slice(&id[..n]);
        // An org lists a handful of providers, far below 2^31.
        let rank = rank.min(UNKNOWN_CREATION as usize - 1) as u32;
        Self {
            created: call.created_at.unwrap_or(u64::MAX),
            tail: match call.created_at {
                Some(_) => rank,
                None => UNKNOWN_CREATION | rank,
            },
            index: u32::try_from(index).expect("an answer holds fewer than 2^32 calls"),
            id_prefix: u64::from_be_bytes(prefix),
            call,
        }
    }

    fn at(&self) -> Position {
        (self.rank(), self.index)
    }

    /// The list's order. The integer keys settle almost every comparison without touching
    /// the calls themselves.
    fn order(&self, other: &Self) -> std::cmp::Ordering {
        (self.created, self.tail, self.id_prefix)
            .cmp(&(other.created, other.tail, other.id_prefix))
            .then_with(|| self.call.call_id.cmp(&other.call.call_id))
    }

    fn rank(&self) -> u32 {
        self.tail & !UNKNOWN_CREATION
    }

    /// Which of two reports of one call to list: the earlier provider's, then the one that
    /// sorts first, then any fixed order over the remaining fields.
    fn preferred_to(&self, other: &Self) -> bool {
        (self.rank(), self.created, self.tail, self.call)
            < (other.rank(), other.created, other.tail, other.call)
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

    proptest::proptest! {
        /// Few ids, few creation times and some ended calls, so that duplicates within and
        /// across answers, ties and dropped reports are all common. Ids share their first
        /// eight bytes, so ties are settled by the whole `call_id`; some answers failed.
        #[test]
        fn merging_in_two_halves_gives_the_list_one_pass_gives(
            answers in proptest::collection::vec(
                proptest::option::weighted(
                    0.8,
                    proptest::collection::vec(
                        (0..40u8, proptest::option::of(0..8u64), 0..3usize),
                        0..60,
                    ),
                ),
                1..4,
            )
        ) {
            const STATUSES: [CallStatus; 3] =
                [CallStatus::Ringing, CallStatus::Queued, CallStatus::Completed];
            let answers: Vec<Answer> = answers
                .iter()
                .enumerate()
                .map(|(p, calls)| match calls {
                    None => Err(ProviderError::Status(500)),
                    Some(calls) => ok(calls
                        .iter()
                        .map(|&(id, created, status)| {
                            let id = format!("call-0000-{id}");
                            call(&id, &format!("p{p}"), created, STATUSES[status].clone())
                        })
                        .collect()),
                })
                .collect();
            let reports = answers.iter().flatten().map(|calls| calls.len()).sum();
            proptest::prop_assert_eq!(
                merge_in(&answers, reports, false),
                merge_in(&answers, reports, true)
            );
        }
    }

    fn with_sid(mut c: Call, sid: &str) -> Call {
        c.telephony_id = Some(sid.into());
        c
    }

    #[test]
    fn one_phone_call_reported_by_two_platforms_is_one_row_as_the_first_provider_reported_it() {
        let twilio = ok(vec![with_sid(
            call("CA1", "twilio", Some(5), CallStatus::InProgress),
            "CA1",
        )]);
        let vapi = ok(vec![
            with_sid(
                call("vapi-1", "vapi", Some(4), CallStatus::InProgress),
                "CA1",
            ),
            call("vapi-2", "vapi", Some(6), CallStatus::Ringing),
        ]);
        let twilio_first = [twilio.clone(), vapi.clone()];
        let merged = merge(&twilio_first);
        assert_eq!(ids(&merged), ["CA1", "vapi-2"]);
        assert_eq!(&*merged[0].provider, "twilio");
        let vapi_first = [vapi, twilio];
        let merged = merge(&vapi_first);
        assert_eq!(ids(&merged), ["vapi-1", "vapi-2"]);
        assert_eq!(&*merged[0].provider, "vapi");
    }

    #[test]
    fn the_same_call_id_with_and_without_a_telephony_id_is_still_one_row() {
        let answers = [
            ok(vec![call("c", "a", Some(1), CallStatus::Ringing)]),
            ok(vec![with_sid(
                call("c", "b", Some(1), CallStatus::Ringing),
                "CA9",
            )]),
        ];
        for in_two in [false, true] {
            let merged: Vec<&Call> = merge_in(&answers, 2, in_two)
                .into_iter()
                .map(|p| at(&answers, p))
                .collect();
            assert_eq!(ids(&merged), ["c"]);
            assert_eq!(&*merged[0].provider, "a");
        }
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

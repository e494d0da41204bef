//! One org's merged list at one moment: the canonical calls, the providers that failed, and
//! a version that names the content, so that bodies, streams and other replicas can tell
//! whether anything changed without comparing lists.

use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};

use super::merge::{self, Answer, Position, ProviderFailure};
use crate::call::Call;
use crate::provider::kind::Move;
use crate::wire::{Shape, Written};

/// A digest of a snapshot's content: the same calls (every field, in order) and the same
/// failures give the same version in every process of the same build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Version(pub u128);

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// Answers at least this long are hashed in two halves at once.
pub(crate) const DIGEST_IN_TWO_FROM: usize = 16_384;

/// An org's merged list, built from its providers' answers, which it keeps: the merged list
/// is positions in them, so a snapshot of 100,000 calls copies none.
#[derive(Debug)]
pub struct Snapshot {
    org: Arc<str>,
    answers: Vec<Answer>,
    /// A digest of each answer's calls (0 for a failed one), reused by the next snapshot for
    /// every answer that is the very same `Calls`.
    digests: Vec<u64>,
    merged: Vec<Position>,
    failures: Vec<ProviderFailure>,
    version: Version,
    /// The body of each client shape, written once (by the HTTP edge, the first time a
    /// client asks for that shape) and dropped with the snapshot: bodies are bounded by the
    /// snapshots kept, and a request finds its body with no lookup of its own.
    bodies: [tokio::sync::OnceCell<Written>; Shape::ALL.len()],
}

impl Snapshot {
    /// Merges `answers`, given in the order of the org's providers. `previous` is the org's
    /// last snapshot, whose digests of unchanged answers are reused.
    pub fn new(
        org: Arc<str>,
        answers: Vec<Answer>,
        failures: Vec<ProviderFailure>,
        previous: Option<&Snapshot>,
    ) -> Self {
        let merged = merge::positions(&answers);
        let digests: Vec<u64> = answers
            .iter()
            .enumerate()
            .map(|(i, answer)| {
                let Ok(calls) = answer else { return 0 };
                let kept = previous.and_then(|p| match p.answers.get(i) {
                    Some(Ok(had)) if Arc::ptr_eq(had, calls) => Some(p.digests[i]),
                    _ => None,
                });
                kept.unwrap_or_else(|| digest_of(calls))
            })
            .collect();
        let version = version(&org, &digests, &failures);
        // The same content as the last snapshot (an upstream that sent other bytes for the
        // same calls): its bodies are this one's too.
        let bodies = Shape::ALL.map(|shape| {
            let kept = previous
                .filter(|p| p.version == version)
                .and_then(|p| p.bodies[shape as usize].get().cloned());
            tokio::sync::OnceCell::new_with(kept)
        });
        Self {
            org,
            answers,
            digests,
            merged,
            failures,
            version,
            bodies,
        }
    }

    /// Where this snapshot's body in `shape` is kept, once written.
    pub fn body(&self, shape: Shape) -> &tokio::sync::OnceCell<Written> {
        &self.bodies[shape as usize]
    }

    pub fn org(&self) -> &Arc<str> {
        &self.org
    }

    pub fn version(&self) -> Version {
        self.version
    }

    /// The merged calls, in the list's order.
    pub fn calls(&self) -> impl ExactSizeIterator<Item = &Call> + Clone + '_ {
        self.merged.iter().map(|&p| merge::at(&self.answers, p))
    }

    pub fn len(&self) -> usize {
        self.merged.len()
    }

    pub fn is_empty(&self) -> bool {
        self.merged.is_empty()
    }

    /// How many calls the answers held in all, listed or not (ended, duplicates).
    pub fn reports(&self) -> usize {
        self.answers.iter().flatten().map(|c| c.len()).sum()
    }

    pub fn failures(&self) -> &[ProviderFailure] {
        &self.failures
    }

    /// This snapshot with `moved` laid over the answer of `provider` (the `at`th of the
    /// org's, if it is one of them), merged again from the same answers (the others shared,
    /// not copied): a listed call moves forward, and a started call not listed is added.
    /// `None` if nothing moves.
    pub fn with_move(&self, provider: &str, at: Option<usize>, moved: &Move) -> Option<Snapshot> {
        let mut answers = self.answers.clone();
        let listed = answers.iter().position(|answer| {
            answer.as_ref().is_ok_and(|calls| {
                calls
                    .iter()
                    .any(|c| c.call_id == moved.call_id && &*c.provider == provider)
            })
        });
        let (i, calls) = match (listed, at) {
            (Some(i), _) => (i, answers[i].as_ref().ok()?),
            (None, Some(i)) if moved.started.is_some() => (i, answers.get(i)?.as_ref().ok()?),
            _ => return None,
        };
        let mut next = Vec::clone(calls);
        match next
            .iter_mut()
            .find(|c| c.call_id == moved.call_id && &*c.provider == provider)
        {
            Some(call) if call.status.moves_to(&moved.status) => call.status = moved.status.clone(),
            Some(_) => return None,
            None => next.push(moved.started.clone()?),
        }
        answers[i] = Ok(Arc::new(next));
        Some(Snapshot::new(
            self.org.clone(),
            answers,
            self.failures.clone(),
            Some(self),
        ))
    }

    /// Whether this snapshot was built from exactly these answers: an unchanged upstream
    /// hands out the same `Calls`, and a failure must be the same failure.
    pub fn built_from(&self, answers: &[Answer]) -> bool {
        self.answers.len() == answers.len()
            && self.answers.iter().zip(answers).all(|pair| match pair {
                (Ok(had), Ok(now)) => Arc::ptr_eq(had, now),
                (Err(had), Err(now)) => had == now,
                _ => false,
            })
    }
}

/// The hash seed every process of a build shares, so that versions agree across replicas.
const SEED: u64 = 0x6361_6c6c_6d75_7801;

/// A fixed-seed hash of an answer's calls, in the order the upstream gave them. The merged
/// list is a function of the answers alone, so their digests name its content; hashing
/// them in memory order, rather than the merged list in its order, keeps the pass
/// sequential in memory. A long answer is hashed in two halves at once (such answers are
/// only merged on the blocking pool). A version only tells content apart; it guards nothing.
fn digest_of(calls: &[Call]) -> u64 {
    let state = foldhash::quality::FixedState::with_seed(SEED);
    let fold = |calls: &[Call]| {
        calls.iter().fold(0u64, |acc, call| {
            acc.rotate_left(5).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ state.hash_one(call)
        })
    };
    if calls.len() < DIGEST_IN_TWO_FROM {
        return fold(calls);
    }
    let (a, b) = calls.split_at(calls.len() / 2);
    let (a, b) = rayon_core::join(|| fold(a), || fold(b));
    state.hash_one((a, b))
}

pub(crate) fn version(org: &str, digests: &[u64], failures: &[ProviderFailure]) -> Version {
    let hash = |seed: u64| {
        let mut h = foldhash::quality::FixedState::with_seed(seed).build_hasher();
        org.hash(&mut h);
        digests.hash(&mut h);
        for f in failures {
            f.provider.hash(&mut h);
            f.error.code().hash(&mut h);
            f.error.to_string().hash(&mut h);
        }
        h.finish()
    };
    Version(u128::from(hash(SEED)) << 64 | u128::from(hash(SEED ^ 0x7665_7273_696f_6e02)))
}

/// `{"org", "version", "calls": [canonical calls], "failures": [{"provider", "error",
/// "message"}]}`: the form a snapshot travels in.
impl Serialize for Snapshot {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Calls<'a>(&'a Snapshot);
        impl Serialize for Calls<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut seq = s.serialize_seq(Some(self.0.len()))?;
                for call in self.0.calls() {
                    seq.serialize_element(call)?;
                }
                seq.end()
            }
        }
        #[derive(Serialize)]
        struct Failure<'a> {
            provider: &'a str,
            error: &'a str,
            message: String,
        }
        let failures: Vec<Failure<'_>> = self
            .failures
            .iter()
            .map(|f| Failure {
                provider: &f.provider,
                error: f.error.code().as_str(),
                message: f.error.to_string(),
            })
            .collect();
        let mut map = s.serialize_map(Some(4))?;
        map.serialize_entry("org", &*self.org)?;
        map.serialize_entry("version", &self.version.to_string())?;
        map.serialize_entry("calls", &Calls(self))?;
        map.serialize_entry("failures", &failures)?;
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::CallStatus;
    use crate::provider::ProviderError;

    fn answer(calls: &[(&str, CallStatus)]) -> Answer {
        Ok(Arc::new(
            calls
                .iter()
                .map(|(id, s)| Call::new(*id, Arc::from("p"), s.clone()))
                .collect(),
        ))
    }

    #[test]
    fn the_version_names_the_content_not_the_memory_it_sits_in() {
        let org: Arc<str> = Arc::from("org");
        let a = Snapshot::new(
            org.clone(),
            vec![answer(&[("c1", CallStatus::Ringing)])],
            vec![],
            None,
        );
        let b = Snapshot::new(
            org.clone(),
            vec![answer(&[("c1", CallStatus::Ringing)])],
            vec![],
            None,
        );
        assert_eq!(a.version(), b.version());
        // The answers are the content: a call that ended changes it, though it is not listed.
        let c = Snapshot::new(
            org.clone(),
            vec![answer(&[
                ("c1", CallStatus::Ringing),
                ("c2", CallStatus::Completed),
            ])],
            vec![],
            None,
        );
        assert_ne!(a.version(), c.version());
        let changed = Snapshot::new(
            org.clone(),
            vec![answer(&[("c1", CallStatus::InProgress)])],
            vec![],
            None,
        );
        assert_ne!(a.version(), changed.version());
        let failed = Snapshot::new(
            org.clone(),
            vec![answer(&[("c1", CallStatus::Ringing)])],
            vec![ProviderFailure {
                provider: Arc::from("q"),
                error: ProviderError::Status(500),
            }],
            None,
        );
        assert_ne!(a.version(), failed.version());
        let other_org = Snapshot::new(
            Arc::from("other"),
            vec![answer(&[("c1", CallStatus::Ringing)])],
            vec![],
            None,
        );
        assert_ne!(a.version(), other_org.version());
    }

    #[test]
    fn a_snapshot_built_over_its_predecessor_has_the_version_a_fresh_one_would() {
        let org: Arc<str> = Arc::from("org");
        let big: Vec<(String, CallStatus)> = (0..DIGEST_IN_TWO_FROM + 3)
            .map(|i| (format!("c{i}"), CallStatus::Ringing))
            .collect();
        let big: Vec<(&str, CallStatus)> =
            big.iter().map(|(id, s)| (id.as_str(), s.clone())).collect();
        let kept = answer(&big);
        let first = Snapshot::new(
            org.clone(),
            vec![kept.clone(), answer(&[("x", CallStatus::Queued)])],
            vec![],
            None,
        );
        let next_answers = vec![kept.clone(), answer(&[("y", CallStatus::Queued)])];
        let over = Snapshot::new(org.clone(), next_answers.clone(), vec![], Some(&first));
        let fresh = Snapshot::new(org.clone(), next_answers, vec![], None);
        assert_eq!(over.version(), fresh.version());
        assert_ne!(over.version(), first.version());
        assert_eq!(over.len(), big.len() + 1);
    }

    #[test]
    fn a_snapshot_serialises_with_its_canonical_calls_in_order() {
        let s = Snapshot::new(
            Arc::from("org"),
            vec![answer(&[
                ("b", CallStatus::Ringing),
                ("a", CallStatus::InProgress),
            ])],
            vec![],
            None,
        );
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["calls"][0]["call_id"], "a");
        assert_eq!(v["calls"][0]["status"], "in-progress");
        assert_eq!(v["calls"][1]["call_id"], "b");
        assert_eq!(v["version"], s.version().to_string());
        let back: Call = serde_json::from_value(v["calls"][0].clone()).unwrap();
        assert_eq!(&back, s.calls().next().unwrap());
    }
}

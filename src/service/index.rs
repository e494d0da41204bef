//! The call → provider index call control routes by: one per org (per caller for orgs whose
//! callers bring their own Bland keys), filled from the merged lists.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{Snapshot, Version};
use crate::call::Text;

/// Which provider listed each call, as of the last snapshot it was brought up to date from.
///
/// Brought up to date lazily, when control asks, rather than on every list: a list that
/// changes every poll would otherwise pay for an index nobody reads.
#[derive(Debug, Default)]
pub struct CallIndex {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// The snapshot the index was last brought up to date from.
    from: Option<Version>,
    owners: HashMap<Text, Arc<str>>,
    /// Calls placed through callmux, until a list shows them or [`PLACED_KEPT`] passes.
    placed: HashMap<Text, (Arc<str>, std::time::Instant)>,
}

/// How long a placed call is routed by its placement alone, with no list showing it.
pub(super) const PLACED_KEPT: std::time::Duration = std::time::Duration::from_secs(60);

impl CallIndex {
    /// The provider that listed `call_id`, as of `snapshot` (the scope's latest).
    pub fn owner(&self, snapshot: &Snapshot, call_id: &str) -> Option<Arc<str>> {
        let mut inner = self.inner.lock().expect("index lock");
        if inner.from != Some(snapshot.version()) {
            inner.update(snapshot);
        }
        if let Some(owner) = inner.owners.get(call_id) {
            return Some(owner.clone());
        }
        inner
            .placed
            .get(call_id)
            .filter(|(_, at)| at.elapsed() < PLACED_KEPT)
            .map(|(owner, _)| owner.clone())
    }

    /// A call just placed through `provider`: routed there at once, before any list shows it.
    pub fn placed(&self, call_id: &str, provider: Arc<str>) {
        let mut inner = self.inner.lock().expect("index lock");
        let now = std::time::Instant::now();
        inner
            .placed
            .retain(|_, (_, at)| now.duration_since(*at) < PLACED_KEPT);
        inner.placed.insert(Text::from(call_id), (provider, now));
    }
}

impl Inner {
    /// Every provider that answered replaces its calls with those it listed now; a provider
    /// that failed keeps the calls it listed last, so a call whose provider's list is down
    /// can still be ended through it.
    fn update(&mut self, snapshot: &Snapshot) {
        let failed: Vec<&str> = snapshot.failures().iter().map(|f| &*f.provider).collect();
        self.owners.retain(|_, p| failed.contains(&&**p));
        for call in snapshot.calls() {
            self.owners
                .insert(call.call_id.clone(), call.provider.clone());
        }
        self.from = Some(snapshot.version());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::{Call, CallStatus};
    use crate::provider::ProviderError;
    use crate::service::merge::ProviderFailure;

    fn snapshot(answers: Vec<Result<Vec<(&str, &str)>, &str>>) -> Snapshot {
        let mut failures = Vec::new();
        let answers = answers
            .into_iter()
            .map(|a| match a {
                Ok(calls) => Ok(Arc::new(
                    calls
                        .into_iter()
                        .map(|(id, p)| Call::new(id, Arc::from(p), CallStatus::InProgress))
                        .collect(),
                )),
                Err(p) => {
                    let error = ProviderError::Status(500);
                    failures.push(ProviderFailure {
                        provider: Arc::from(p),
                        error: error.clone(),
                    });
                    Err(error)
                }
            })
            .collect();
        Snapshot::new(Arc::from("org"), answers, failures, None)
    }

    #[test]
    fn a_provider_that_fails_keeps_its_calls_and_one_that_answers_replaces_them() {
        let index = CallIndex::default();
        let both = snapshot(vec![Ok(vec![("a1", "a")]), Ok(vec![("b1", "b")])]);
        assert_eq!(index.owner(&both, "a1").as_deref(), Some("a"));
        assert_eq!(index.owner(&both, "b1").as_deref(), Some("b"));

        let a_down = snapshot(vec![Err("a"), Ok(vec![("b2", "b")])]);
        assert_eq!(index.owner(&a_down, "a1").as_deref(), Some("a"));
        assert_eq!(index.owner(&a_down, "b1"), None, "b answered without it");
        assert_eq!(index.owner(&a_down, "b2").as_deref(), Some("b"));

        let a_back = snapshot(vec![Ok(vec![]), Ok(vec![("b2", "b")])]);
        assert_eq!(index.owner(&a_back, "a1"), None);
    }
}

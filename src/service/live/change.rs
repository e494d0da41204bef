//! What a live stream carries: an org's list at one moment (`State`), and the events built
//! from two of them, each told apart by call id.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use crate::call::{Call, Text};
use crate::service::merge::ProviderFailure;
use crate::service::{snapshot, Snapshot, Version};
use crate::wire::Shape;

/// An org's list as its streams last saw it.
#[derive(Debug)]
pub enum State {
    /// At least one provider answered.
    Listed(Arc<Snapshot>),
    /// Every provider failed: the list route answers 502 with these, and lists no calls.
    AllFailed {
        org: Arc<str>,
        failures: Vec<ProviderFailure>,
    },
}

impl State {
    pub fn org(&self) -> &Arc<str> {
        match self {
            State::Listed(s) => s.org(),
            State::AllFailed { org, .. } => org,
        }
    }

    pub fn failures(&self) -> &[ProviderFailure] {
        match self {
            State::Listed(s) => s.failures(),
            State::AllFailed { failures, .. } => failures,
        }
    }

    /// The listed calls, in the list's order (none when every provider failed).
    pub fn calls(&self) -> Vec<&Call> {
        match self {
            State::Listed(s) => s.calls().collect(),
            State::AllFailed { .. } => Vec::new(),
        }
    }

    /// A digest of what a client sees, the same in every replica for the same content: a
    /// snapshot's version, or one of the failures alone when every provider failed.
    pub fn version(&self) -> Version {
        match self {
            State::Listed(s) => s.version(),
            State::AllFailed { org, failures } => snapshot::version(org, &[], failures),
        }
    }

    /// Whether `other` lists the same content: for snapshots their versions name it.
    fn same_as(&self, other: &State) -> bool {
        match (self, other) {
            (State::Listed(a), State::Listed(b)) => a.version() == b.version(),
            (State::AllFailed { failures: a, .. }, State::AllFailed { failures: b, .. }) => {
                same_failures(a, b)
            }
            _ => false,
        }
    }
}

fn same_failures(a: &[ProviderFailure], b: &[ProviderFailure]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.provider == y.provider && x.error == y.error)
}

/// How one state became the next. `failures` is always every provider error of the new
/// state (a stream's `errors`), whether or not it changed.
#[derive(Debug, Default)]
pub struct Change {
    pub added: Vec<Call>,
    pub updated: Vec<Call>,
    pub ended: Vec<Text>,
    pub failures: Vec<ProviderFailure>,
}

impl Change {
    /// The change from `before` to `after`, or `None` if nothing a client sees changed.
    pub fn between(before: &State, after: &State) -> Option<Change> {
        if before.same_as(after) {
            return None;
        }
        let old = before.calls();
        let new = after.calls();
        let by_id: HashMap<&str, &Call> = old.iter().map(|c| (c.call_id.as_str(), *c)).collect();
        let mut change = Change::default();
        let mut seen = HashMap::with_capacity(new.len());
        for call in &new {
            seen.insert(call.call_id.as_str(), ());
            match by_id.get(call.call_id.as_str()) {
                None => change.added.push((*call).clone()),
                Some(had) if *had != *call => change.updated.push((*call).clone()),
                Some(_) => {}
            }
        }
        change.ended = old
            .iter()
            .filter(|c| !seen.contains_key(c.call_id.as_str()))
            .map(|c| c.call_id.clone())
            .collect();
        let failures_changed = !same_failures(before.failures(), after.failures());
        if change.added.is_empty()
            && change.updated.is_empty()
            && change.ended.is_empty()
            && !failures_changed
        {
            return None;
        }
        change.failures = after.failures().to_vec();
        Some(change)
    }
}

/// A topic's event id: the topic's epoch (random, so that ids from an earlier topic or
/// process never read as this one's) and its sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventId {
    pub epoch: u32,
    pub seq: u64,
}

impl std::fmt::Display for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:08x}-{}", self.epoch, self.seq)
    }
}

impl EventId {
    /// Reads an id as [`Display`](std::fmt::Display) writes it; anything else is `None`.
    pub fn parse(text: &str) -> Option<EventId> {
        let (epoch, seq) = text.trim().split_once('-')?;
        if epoch.len() != 8 || seq.is_empty() || seq.len() > 20 {
            return None;
        }
        if !seq.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(EventId {
            epoch: u32::from_str_radix(epoch, 16).ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

/// What one event says.
#[derive(Debug)]
pub enum Body {
    /// The whole list, as the list route of the stream's shape answers it now.
    Snapshot(Arc<State>),
    Change(Change),
    /// The org's capacity (`GET /capacity`'s body), sent when a figure changes.
    Capacity(Arc<crate::service::capacity::Capacity>),
    /// The stream ends, and why.
    End(String),
}

/// One event, shared by every subscriber it goes to; each shape's frame is written once, by
/// the first stream of that shape that sends it, and then sent by every stream of that shape
/// as the same bytes.
#[derive(Debug)]
pub struct Event {
    pub id: EventId,
    pub body: Body,
    framed: [OnceLock<bytes::Bytes>; Shape::ALL.len()],
}

impl Event {
    pub fn new(id: EventId, body: Body) -> Self {
        Self {
            id,
            body,
            framed: Default::default(),
        }
    }

    /// This event's frame in `shape`, written by `frame` the first time it is asked for.
    pub fn frame(&self, shape: Shape, frame: impl FnOnce(&Self) -> bytes::Bytes) -> bytes::Bytes {
        self.framed[shape as usize]
            .get_or_init(|| frame(self))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::snapshot;
    use super::*;
    use crate::call::CallStatus;
    use crate::provider::ProviderError;

    fn listed(calls: &[(&str, CallStatus)], failures: Vec<ProviderFailure>) -> State {
        State::Listed(snapshot(calls, failures))
    }

    #[test]
    fn calls_are_told_apart_by_id_as_added_updated_and_ended() {
        let before = listed(
            &[("a", CallStatus::Ringing), ("b", CallStatus::Ringing)],
            vec![],
        );
        let after = listed(
            &[("b", CallStatus::InProgress), ("c", CallStatus::Queued)],
            vec![],
        );
        let change = Change::between(&before, &after).unwrap();
        assert_eq!(change.added.len(), 1);
        assert_eq!(change.added[0].call_id, "c");
        assert_eq!(change.updated[0].call_id, "b");
        assert_eq!(change.updated[0].status, CallStatus::InProgress);
        assert_eq!(change.ended, vec![Text::from("a")]);
        assert!(change.failures.is_empty());
    }

    #[test]
    fn the_same_content_is_no_change_and_a_new_failure_alone_is_one() {
        let a = listed(&[("a", CallStatus::Ringing)], vec![]);
        let b = listed(&[("a", CallStatus::Ringing)], vec![]);
        assert!(Change::between(&a, &b).is_none());
        let failing = vec![ProviderFailure {
            provider: Arc::from("q"),
            error: ProviderError::RateLimited,
        }];
        let c = listed(&[("a", CallStatus::Ringing)], failing);
        let change = Change::between(&a, &c).unwrap();
        assert!(change.added.is_empty() && change.updated.is_empty() && change.ended.is_empty());
        assert_eq!(&*change.failures[0].provider, "q");
    }

    #[test]
    fn event_ids_round_trip_and_garbage_is_not_an_id() {
        let id = EventId {
            epoch: 0xdead_beef,
            seq: 42,
        };
        assert_eq!(EventId::parse(&id.to_string()), Some(id));
        for bad in [
            "",
            "garbage",
            "deadbeef-",
            "deadbeef-x",
            "zzzzzzzz-1",
            "1-1",
            "deadbeef--1",
            "deadbeef-99999999999999999999999",
        ] {
            assert_eq!(EventId::parse(bad), None, "{bad}");
        }
    }
}

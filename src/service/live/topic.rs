//! One org's (or caller's) live list shared by its subscribers: every change any of them
//! sees is made into one event by [`Topic::publish`] and sent to each by `fan_out`, and the
//! recent ones are kept so a reconnecting client resumes where it was.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use tokio::sync::{mpsc, Notify};

use super::change::{Body, Change, Event, EventId, State};
use crate::service::auth::Presented;
use crate::service::capacity::Capacity;
use crate::service::Version;

/// Events a subscriber may have queued; one that falls this far behind is disconnected
/// rather than buffered without limit.
pub const QUEUE: usize = 32;
/// Recent change events kept per topic, to resume a reconnecting stream.
const RING: usize = 64;

/// Whose list a topic follows: an org, or one caller of an org whose callers bring their
/// own Bland keys (keyed by a digest of their credentials, never the credentials).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TopicKey {
    pub org: Arc<str>,
    pub(super) caller: Option<[u8; 32]>,
    /// The name of the callmux key that follows it: each key's streams are its own, so a
    /// key removed or changed by a reload ends only its streams.
    pub(super) key: Option<Arc<str>>,
}

/// One org's (or caller's) live list, shared by its subscribers.
pub struct Topic {
    pub(super) key: TopicKey,
    epoch: u32,
    inner: Mutex<Inner>,
    /// Wakes the poller: a subscriber joined a dormant topic, or the topic ended.
    pub(super) wake: Notify,
    /// Makes the poller poll now: another replica announced a change of this topic.
    pub(super) poll_now: Notify,
    /// Sees every change this topic publishes, like a subscriber that never falls behind
    /// (the webhooks' outboxes): set by the hub when the topic starts.
    pub(super) tap: OnceLock<Arc<dyn Tap>>,
}

/// A consumer of every topic's changes that takes them without waiting (it only queues).
pub trait Tap: Send + Sync {
    /// `org`'s list went from `before` to `after`, which differ by `change`.
    fn changed(&self, org: &str, before: &State, after: &State, change: &Change);
}

pub(super) struct Inner {
    pub(super) state: Arc<State>,
    seq: u64,
    ring: VecDeque<Arc<Event>>,
    pub(super) subscribers: Vec<Subscriber>,
    next_subscriber: u64,
    /// The credentials the poller lists with: the latest subscriber's.
    pub(super) presented: Arc<Presented>,
    pub(super) ended: bool,
    /// The version another replica announced, until the poll it asked for: a poll that
    /// lands on it announces nothing, so notices never echo around the fleet.
    pub(super) noticed: Option<Version>,
    /// The capacity last sent, so that a `capacity` event goes out only when a figure
    /// changes.
    capacity: Option<Arc<Capacity>>,
}

pub(super) struct Subscriber {
    id: u64,
    queue: mpsc::Sender<Arc<Event>>,
    /// Closes the subscriber's connection when it falls behind: its queue will not drain.
    kick: Box<dyn Fn() + Send + Sync>,
}

/// A subscriber's stream: the events it gets first (a snapshot, or the events it missed),
/// then each event as it happens. Dropping it unsubscribes.
pub struct Subscription {
    pub first: Vec<Arc<Event>>,
    pub events: mpsc::Receiver<Arc<Event>>,
    _leave: Leave,
}

struct Leave {
    topic: Arc<Topic>,
    id: u64,
}

impl Drop for Leave {
    fn drop(&mut self) {
        let mut inner = self.topic.lock();
        inner.subscribers.retain(|s| s.id != self.id);
    }
}

impl Topic {
    pub(super) fn start(key: TopicKey, state: State, presented: Arc<Presented>) -> Arc<Self> {
        Arc::new(Topic {
            key,
            epoch: fastrand::u32(..),
            inner: Mutex::new(Inner {
                state: Arc::new(state),
                seq: 0,
                ring: VecDeque::with_capacity(RING),
                subscribers: Vec::new(),
                next_subscriber: 0,
                presented,
                ended: false,
                noticed: None,
                capacity: None,
            }),
            wake: Notify::new(),
            poll_now: Notify::new(),
            tap: OnceLock::new(),
        })
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a subscriber, whose poller will list with `presented` from now on. Its first
    /// events are those after `resume` if every one of them is still kept, and otherwise
    /// (or if `resume` is not an id of this topic) a snapshot. `None` if the topic ended.
    pub(super) fn join(
        self: &Arc<Self>,
        presented: Arc<Presented>,
        resume: Option<EventId>,
        kick: Box<dyn Fn() + Send + Sync>,
    ) -> Option<Subscription> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let mut inner = self.lock();
        if inner.ended {
            return None;
        }
        inner.presented = presented;
        let first = match resume.and_then(|id| inner.missed_since(self.epoch, id)) {
            Some(missed) => missed,
            None => vec![Arc::new(Event::new(
                EventId {
                    epoch: self.epoch,
                    seq: inner.seq,
                },
                Body::Snapshot(inner.state.clone()),
            ))],
        };
        let id = inner.next_subscriber;
        inner.next_subscriber += 1;
        let was_dormant = inner.subscribers.is_empty();
        inner.subscribers.push(Subscriber {
            id,
            queue: tx,
            kick,
        });
        drop(inner);
        if was_dormant {
            self.wake.notify_one();
        }
        Some(Subscription {
            first,
            events: rx,
            _leave: Leave {
                topic: self.clone(),
                id,
            },
        })
    }

    /// Makes `next` the topic's list and, if a client would see any difference, sends every
    /// subscriber the change. Returns whether there was one.
    pub fn publish(&self, next: State) -> bool {
        let mut inner = self.lock();
        if inner.ended {
            return false;
        }
        let change = Change::between(&inner.state, &next);
        let before = std::mem::replace(&mut inner.state, Arc::new(next));
        let Some(change) = change else {
            return false;
        };
        if let Some(tap) = self.tap.get() {
            tap.changed(&self.key.org, &before, &inner.state, &change);
        }
        inner.seq += 1;
        let event = Arc::new(Event::new(
            EventId {
                epoch: self.epoch,
                seq: inner.seq,
            },
            Body::Change(change),
        ));
        if inner.ring.len() == RING {
            inner.ring.pop_front();
        }
        inner.ring.push_back(event.clone());
        Self::fan_out(&mut inner, event);
        true
    }

    /// Sends every subscriber the org's capacity, if any figure differs from the last sent.
    pub fn publish_capacity(&self, capacity: Capacity) {
        let mut inner = self.lock();
        if inner.ended || inner.capacity.as_deref() == Some(&capacity) {
            return;
        }
        let capacity = Arc::new(capacity);
        inner.capacity = Some(capacity.clone());
        inner.seq += 1;
        let event = Arc::new(Event::new(
            EventId {
                epoch: self.epoch,
                seq: inner.seq,
            },
            Body::Capacity(capacity),
        ));
        if inner.ring.len() == RING {
            inner.ring.pop_front();
        }
        inner.ring.push_back(event.clone());
        Self::fan_out(&mut inner, event);
    }

    /// Sends `event` to every subscriber. One whose queue is full is dropped and its
    /// connection closed, so the others never wait for it.
    fn fan_out(inner: &mut Inner, event: Arc<Event>) {
        inner
            .subscribers
            .retain(|s| match s.queue.try_send(event.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::info!("stream subscriber too slow: disconnected");
                    (s.kick)();
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
    }

    /// Sends the final event and lets every subscriber go.
    pub(super) fn end(&self, reason: &str) {
        let mut inner = self.lock();
        if inner.ended {
            return;
        }
        inner.ended = true;
        inner.seq += 1;
        let event = Arc::new(Event::new(
            EventId {
                epoch: self.epoch,
                seq: inner.seq,
            },
            Body::End(reason.to_owned()),
        ));
        tracing::info!(org = %self.key.org, reason, "live streams ended");
        Self::fan_out(&mut inner, event);
        inner.subscribers.clear();
        drop(inner);
        self.wake.notify_one();
    }
}

impl Inner {
    /// The events after `id`, if `id` is one of this topic's and every later event is kept.
    fn missed_since(&self, epoch: u32, id: EventId) -> Option<Vec<Arc<Event>>> {
        if id.epoch != epoch || id.seq > self.seq {
            return None;
        }
        let oldest_kept = self.ring.front().map_or(self.seq + 1, |e| e.id.seq);
        if id.seq + 1 < oldest_kept {
            return None;
        }
        Some(
            self.ring
                .iter()
                .filter(|e| e.id.seq > id.seq)
                .cloned()
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::super::fixtures::{added, drain, key, listed, no_kick, presented};
    use super::*;
    use crate::call::CallStatus::{InProgress, Ringing};

    fn topic() -> Arc<Topic> {
        Topic::start(key(), listed(&[]), Arc::new(presented()))
    }

    fn join(topic: &Arc<Topic>, resume: Option<EventId>) -> Subscription {
        topic
            .join(Arc::new(presented()), resume, no_kick())
            .expect("an open topic")
    }

    fn is_snapshot(events: &[Arc<Event>]) -> bool {
        matches!(events, [e] if matches!(e.body, Body::Snapshot(_)))
    }

    #[test]
    fn a_change_reaches_every_subscriber_once_and_the_same_list_again_sends_nothing() {
        let topic = topic();
        let mut subscribers: Vec<_> = (0..3).map(|_| join(&topic, None)).collect();
        assert!(topic.publish(listed(&[("a", Ringing)])));
        assert!(!topic.publish(listed(&[("a", Ringing)])));
        for s in &mut subscribers {
            assert!(is_snapshot(&s.first));
            let events = drain(&mut s.events);
            assert_eq!(events.len(), 1);
            assert_eq!(added(&events[0]), Some(vec!["a".to_owned()]));
        }
    }

    #[test]
    fn a_subscriber_a_queue_behind_is_kicked_and_dropped_not_buffered() {
        let topic = topic();
        let kicked = Arc::new(AtomicUsize::new(0));
        let k = kicked.clone();
        let mut slow = topic
            .join(
                Arc::new(presented()),
                None,
                Box::new(move || {
                    k.fetch_add(1, Ordering::SeqCst);
                }),
            )
            .unwrap();
        let mut fast = join(&topic, None);
        let mut got = 0;
        for i in 0..=QUEUE {
            let id = format!("c{i}");
            assert!(topic.publish(listed(&[(id.as_str(), Ringing)])));
            got += drain(&mut fast.events).len();
        }
        assert_eq!(got, QUEUE + 1, "the reader got every change");
        assert_eq!(kicked.load(Ordering::SeqCst), 1);
        assert_eq!(topic.lock().subscribers.len(), 1);
        // Its queue holds what fitted and no more; nothing is sent to it after that.
        assert!(topic.publish(listed(&[])));
        assert_eq!(drain(&mut slow.events).len(), QUEUE);
        assert!(slow.events.is_closed());
        assert_eq!(kicked.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_reconnect_with_a_kept_event_id_gets_only_what_it_missed() {
        let topic = topic();
        let mut first = join(&topic, None);
        topic.publish(listed(&[("a", Ringing)]));
        let seen = drain(&mut first.events)[0].id;
        drop(first);
        topic.publish(listed(&[("a", InProgress)]));
        topic.publish(listed(&[("a", InProgress), ("b", Ringing)]));
        let again = join(&topic, Some(seen));
        let ids: Vec<u64> = again.first.iter().map(|e| e.id.seq).collect();
        assert_eq!(ids, [seen.seq + 1, seen.seq + 2]);
        // Up to date: nothing missed, and no snapshot either.
        let latest = again.first.last().unwrap().id;
        assert!(join(&topic, Some(latest)).first.is_empty());
    }

    #[test]
    fn a_reconnect_with_an_id_of_another_topic_a_future_one_or_one_too_old_gets_a_snapshot() {
        let topic = topic();
        let epoch = topic.epoch;
        for i in 0..RING as u64 + 2 {
            let id = format!("c{i}");
            topic.publish(listed(&[(id.as_str(), Ringing)]));
        }
        let seq = topic.lock().seq;
        for resume in [
            EventId {
                epoch: epoch.wrapping_add(1),
                seq: 1,
            },
            EventId {
                epoch,
                seq: seq + 1,
            },
            // The event after it is no longer kept.
            EventId { epoch, seq: 0 },
        ] {
            assert!(is_snapshot(&join(&topic, Some(resume)).first), "{resume}");
        }
        let oldest_resumable = EventId {
            epoch,
            seq: seq - RING as u64,
        };
        assert_eq!(join(&topic, Some(oldest_resumable)).first.len(), RING);
    }

    #[test]
    fn an_ended_topic_sends_its_reason_last_and_takes_no_one_more() {
        let topic = topic();
        let mut s = join(&topic, None);
        topic.end("the organisation was removed");
        topic.end("a second reason is not sent");
        assert!(!topic.publish(listed(&[("a", Ringing)])));
        let events = drain(&mut s.events);
        assert!(
            matches!(&events[..], [e] if matches!(&e.body, Body::End(r) if r == "the organisation was removed"))
        );
        assert!(s.events.is_closed());
        assert!(topic.join(Arc::new(presented()), None, no_kick()).is_none());
    }

    #[test]
    fn a_subscriber_that_leaves_is_no_longer_sent_anything() {
        let topic = topic();
        let s = join(&topic, None);
        let _other = join(&topic, None);
        drop(s);
        assert_eq!(topic.lock().subscribers.len(), 1);
    }
}

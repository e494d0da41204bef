//! One org's (or caller's) live list shared by its subscribers: every change any of them
//! sees is made into one event by [`Topic::publish`] and sent to each by `fan_out`, and the
//! recent ones are kept so a reconnecting client resumes where it was.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{mpsc, Notify};

use super::change::{Body, Change, Event, EventId, State};
use crate::service::auth::Presented;
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
}

pub struct Topic {
    pub(super) key: TopicKey,
    epoch: u32,
    inner: Mutex<Inner>,
    /// Wakes the poller: a subscriber joined a dormant topic, or the topic ended.
    pub(super) wake: Notify,
    /// Makes the poller poll now: another replica announced a change of this topic.
    pub(super) poll_now: Notify,
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
            }),
            wake: Notify::new(),
            poll_now: Notify::new(),
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
        inner.state = Arc::new(next);
        let Some(change) = change else {
            return false;
        };
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

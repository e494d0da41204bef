//! Live changes of each org's calls, free of HTTP: one poller per org (per caller for orgs
//! whose callers bring their own Bland keys), started by the first subscriber and stopped
//! after the last, whose changes are fanned out to every subscriber from one place.
//!
//! The seam for shared state: every change any subscriber sees passes through
//! [`Topic::publish`] (a new state, polled or pushed, becomes one event) and then
//! [`Topic::fan_out`] (one event goes to every subscriber). With a fleet, a status pushed to
//! one replica is sent to the others, which apply it with [`Hub::push`]; a poller's change is
//! also announced (a notice naming the topic and the new
//! version), and the pollers of that topic on other replicas poll at once ([`fleet`]).

pub mod change;
pub mod fleet;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{mpsc, Notify};

use super::auth::{self, AuthError, Identity, Presented};
use super::reload::Live;
use super::{ListError, Service, Version};
use crate::call::CallStatus;
use crate::config::{Config, OrgAuth};
use crate::telemetry::Telemetry;
pub use change::{Body, Change, Event, EventId, State};

/// Events a subscriber may have queued; one that falls this far behind is disconnected
/// rather than buffered without limit.
pub const QUEUE: usize = 32;
/// Recent change events kept per topic, to resume a reconnecting stream.
const RING: usize = 64;
/// How long a topic with no subscribers keeps its recent events (without polling), so a
/// client that reconnects at once resumes where it was.
const RESUME_WINDOW: Duration = Duration::from_secs(30);

/// Whose list a topic follows: an org, or one caller of an org whose callers bring their
/// own Bland keys (keyed by a digest of their credentials, never the credentials).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TopicKey {
    pub org: Arc<str>,
    caller: Option<[u8; 32]>,
}

/// Every topic of this process, and its open streams.
pub struct Hub {
    topics: Mutex<HashMap<TopicKey, Arc<Topic>>>,
    telemetry: Arc<Telemetry>,
    /// Set once the server shuts down: no new subscriber is taken.
    closed: Mutex<Option<String>>,
}

/// One org's (or caller's) live list, shared by its subscribers.
pub struct Topic {
    key: TopicKey,
    epoch: u32,
    inner: Mutex<Inner>,
    /// Wakes the poller: a subscriber joined a dormant topic, or the topic ended.
    wake: Notify,
    /// Makes the poller poll now: another replica announced a change of this topic.
    poll_now: Notify,
}

struct Inner {
    state: Arc<State>,
    seq: u64,
    ring: VecDeque<Arc<Event>>,
    subscribers: Vec<Subscriber>,
    next_subscriber: u64,
    /// The credentials the poller lists with: the latest subscriber's.
    presented: Arc<Presented>,
    ended: bool,
    /// The version another replica announced, until the poll it asked for: a poll that
    /// lands on it announces nothing, so notices never echo around the fleet.
    noticed: Option<Version>,
}

struct Subscriber {
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

/// Where a new subscriber starts.
pub enum Joining {
    /// The list as just fetched for this subscriber.
    Fresh(State),
    /// The topic's own list: it is being polled, so nothing is asked for this subscriber.
    Current,
}

impl Hub {
    pub fn new(telemetry: Arc<Telemetry>) -> Self {
        Self {
            topics: Mutex::new(HashMap::new()),
            telemetry,
            closed: Mutex::new(None),
        }
    }

    /// Which topic `presented` follows, and whether joining it needs a fresh list first
    /// (no one is polling it, or the org's callers must be checked by Bland each time).
    pub fn topic_for(
        &self,
        service: &Service,
        presented: &Presented,
    ) -> Result<(TopicKey, bool), AuthError> {
        let identity = auth::identify(service.config(), presented)?;
        let (org, caller) = match identity {
            Identity::Verified(org) => (org, None),
            Identity::ViaUpstream(org, _) => (org, presented.forwarded(org).map(|f| f.digest())),
        };
        let key = TopicKey {
            org: service.orgs[&org.id].id.clone(),
            caller,
        };
        let polled = self
            .topics
            .lock()
            .expect("hub lock")
            .get(&key)
            .is_some_and(|t| !t.lock().subscribers.is_empty());
        Ok((key, caller.is_some() || !polled))
    }

    /// Subscribes to `key`'s topic, starting its poller if it has none. `last_event_id` is
    /// what a reconnecting client last saw: if every event after it is still kept, those are
    /// its first events; otherwise (or if it is not an id of this topic) a snapshot is.
    /// `None` once the server is shutting down.
    pub fn subscribe(
        &self,
        live: &Arc<Live>,
        key: TopicKey,
        presented: Presented,
        joining: Joining,
        last_event_id: Option<&str>,
        kick: Box<dyn Fn() + Send + Sync>,
    ) -> Option<Subscription> {
        let presented = Arc::new(presented);
        let mut topics = self.topics.lock().expect("hub lock");
        // Checked under the topics' lock: `close` marks the hub closed before it takes that
        // lock to end every topic, so a topic inserted here is either refused or ended.
        if self.closed.lock().expect("hub lock").is_some() {
            return None;
        }
        let (topic, fresh) = match (topics.get(&key).cloned(), joining) {
            (Some(topic), Joining::Fresh(state)) => (topic, Some(state)),
            (Some(topic), Joining::Current) => (topic, None),
            (None, Joining::Fresh(state)) => {
                let topic = Topic::start(key.clone(), state, presented.clone());
                topics.insert(key.clone(), topic.clone());
                tokio::spawn(poll(topic.clone(), Arc::downgrade(live)));
                self.telemetry
                    .counter("callmux_stream_pollers_started_total", &[])
                    .increment(1);
                (topic, None)
            }
            // The topic retired since `topic_for` looked: this one needs a fresh list.
            (None, Joining::Current) => return None,
        };
        drop(topics);
        if let Some(state) = fresh {
            topic.publish(state);
        }
        let resume = last_event_id.and_then(EventId::parse);
        let (tx, rx) = mpsc::channel(QUEUE);
        let mut inner = topic.lock();
        // Retired or ended since the topic was found: its poller is gone, so joining it
        // would hear nothing more.
        if inner.ended {
            return None;
        }
        inner.presented = presented;
        let first = match resume.and_then(|id| inner.missed_since(topic.epoch, id)) {
            Some(missed) => missed,
            None => vec![Arc::new(Event::new(
                EventId {
                    epoch: topic.epoch,
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
            topic.wake.notify_one();
        }
        Some(Subscription {
            first,
            events: rx,
            _leave: Leave { topic, id },
        })
    }

    /// After a reload: ends the streams of every org that is gone, or whose key changed,
    /// with an event saying why. The others' pollers use the new configuration from their
    /// next poll on.
    pub fn reloaded(&self, before: &Config, after: &Config) {
        let topics: Vec<Arc<Topic>> = self
            .topics
            .lock()
            .expect("hub lock")
            .values()
            .cloned()
            .collect();
        for topic in topics {
            let org = &*topic.key.org;
            let reason = match (before.org(org), after.org(org)) {
                (_, None) => Some("the organisation was removed from callmux's configuration"),
                (Some(old), Some(new)) if !same_auth(&old.auth, &new.auth) => {
                    Some("the organisation's key changed; sign in again with the new key")
                }
                // The topic holds calls of providers the org may no longer see: ended, so a
                // reconnect starts from a list of the new configuration.
                (Some(old), Some(new)) if old.providers != new.providers => {
                    Some("the organisation's providers changed; reconnect for the new list")
                }
                _ => None,
            };
            if let Some(reason) = reason {
                self.end(&topic, reason);
            }
        }
    }

    /// Ends every stream (the server is shutting down) and takes no new ones.
    pub fn close(&self, reason: &str) {
        *self.closed.lock().expect("hub lock") = Some(reason.to_owned());
        let topics: Vec<Arc<Topic>> = self
            .topics
            .lock()
            .expect("hub lock")
            .values()
            .cloned()
            .collect();
        for topic in topics {
            self.end(&topic, reason);
        }
    }

    fn end(&self, topic: &Arc<Topic>, reason: &str) {
        self.topics
            .lock()
            .expect("hub lock")
            .retain(|_, t| !Arc::ptr_eq(t, topic));
        topic.end(reason);
    }

    /// Another replica's poller found `version` for a topic: every subscribed topic that
    /// `is_it` names and that is not at that version already polls at once. Returns how many.
    fn noticed(&self, is_it: impl Fn(&TopicKey) -> bool, version: Version) -> usize {
        let topics: Vec<Arc<Topic>> = self
            .topics
            .lock()
            .expect("hub lock")
            .values()
            .filter(|t| is_it(&t.key))
            .cloned()
            .collect();
        let mut woken = 0;
        for topic in topics {
            let mut inner = topic.lock();
            if inner.ended || inner.subscribers.is_empty() || inner.state.version() == version {
                continue;
            }
            inner.noticed = Some(version);
            drop(inner);
            topic.poll_now.notify_one();
            woken += 1;
        }
        woken
    }

    /// A pushed status of `call_id` on `provider`: every topic whose list has that call in a
    /// state before `status` is re-merged from its last answers with the call moved forward,
    /// and its subscribers see it at once; nothing is asked of any upstream. Returns how
    /// many topics changed.
    pub fn push(&self, provider: &str, call_id: &str, status: &CallStatus) -> usize {
        let topics: Vec<Arc<Topic>> = self
            .topics
            .lock()
            .expect("hub lock")
            .values()
            .cloned()
            .collect();
        let mut moved = 0;
        for topic in topics {
            let state = topic.lock().state.clone();
            let State::Listed(snapshot) = &*state else {
                continue;
            };
            let Some(next) = snapshot.with_status(provider, call_id, status, forward) else {
                continue;
            };
            if topic.publish(State::Listed(Arc::new(next))) {
                moved += 1;
            }
        }
        moved
    }
}

/// Whether a status may replace another: calls only move forward (queued, ringing, in
/// progress, ended), since a callback carries no time and may be replayed.
fn forward(from: &CallStatus, to: &CallStatus) -> bool {
    fn rank(s: &CallStatus) -> u8 {
        match s {
            CallStatus::Queued => 0,
            CallStatus::Ringing | CallStatus::Other(_) => 1,
            CallStatus::InProgress => 2,
            _ => 3,
        }
    }
    rank(to) > rank(from)
}

/// Whether two orgs authenticate alike: the same issued key, or the same Bland provider.
fn same_auth(a: &OrgAuth, b: &OrgAuth) -> bool {
    match (a, b) {
        (OrgAuth::Key { digest: x, .. }, OrgAuth::Key { digest: y, .. }) => x.matches(y),
        (OrgAuth::Upstream { provider: x }, OrgAuth::Upstream { provider: y }) => x == y,
        _ => false,
    }
}

impl Topic {
    fn start(key: TopicKey, state: State, presented: Arc<Presented>) -> Arc<Self> {
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

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
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
    fn end(&self, reason: &str) {
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

/// The topic's poller: while anyone is subscribed, lists the org every poll period (the
/// smallest `poll_interval_ms` of its providers, read from the configuration being served,
/// so a reload re-points it) and publishes what changed. With no subscribers it stops
/// asking, keeps the topic for a reconnect for a while, then retires it.
async fn poll(topic: Arc<Topic>, live: Weak<Live>) {
    loop {
        let (dormant, ended) = {
            let inner = topic.lock();
            (inner.subscribers.is_empty(), inner.ended)
        };
        if ended {
            return;
        }
        if dormant {
            let woken = tokio::time::timeout(RESUME_WINDOW, topic.wake.notified()).await;
            if woken.is_err() && retire(&topic, &live) {
                return;
            }
            continue;
        }
        let Some(period) = live
            .upgrade()
            .and_then(|l| poll_period(&l.current().service, &topic.key.org))
        else {
            return;
        };
        // A notice polls now instead of at the timer, which then restarts from that poll.
        tokio::select! {
            () = tokio::time::sleep(period) => {}
            () = topic.poll_now.notified() => {}
            () = topic.wake.notified() => continue,
        }
        let Some(live) = live.upgrade() else { return };
        let loaded = live.current();
        let (presented, dormant, noticed) = {
            let mut inner = topic.lock();
            let noticed = inner.noticed.take();
            (
                inner.presented.clone(),
                inner.subscribers.is_empty(),
                noticed,
            )
        };
        // The last subscriber left while this poll waited: no one would hear its answer.
        if dormant {
            continue;
        }
        let next = match loaded.service.list(&presented).await {
            Ok(listed) => State::Listed(listed.snapshot),
            Err(ListError::AllFailed { failures, .. }) => State::AllFailed {
                org: topic.key.org.clone(),
                failures,
            },
            Err(ListError::Auth(AuthError::Unavailable { .. })) => continue,
            Err(ListError::Auth(_)) => {
                live.hub()
                    .end(&topic, "the key is no longer accepted; sign in again");
                return;
            }
        };
        let version = next.version();
        // Only a change is announced, and not the one a notice already announced.
        if topic.publish(next) && noticed != Some(version) {
            if let Some(redis) = loaded.service.store().redis() {
                fleet::announce(redis, &live, &topic.key, version);
            }
        }
    }
}

/// Removes a topic no one has subscribed to for the resume window; `false` if someone
/// joined meanwhile.
fn retire(topic: &Arc<Topic>, live: &Weak<Live>) -> bool {
    let Some(live) = live.upgrade() else {
        return true;
    };
    let mut topics = live.hub().topics.lock().expect("hub lock");
    if !topic.lock().subscribers.is_empty() {
        return false;
    }
    topics.retain(|_, t| !Arc::ptr_eq(t, topic));
    topic.lock().ended = true;
    true
}

/// The org's poll period: the smallest `poll_interval_ms` of its providers; `None` if the
/// org is gone.
fn poll_period(service: &Service, org: &str) -> Option<Duration> {
    let config = service.config();
    config
        .org(org)?
        .providers
        .iter()
        .filter_map(|id| config.provider(id))
        .map(|p| p.common.poll_interval)
        .min()
}

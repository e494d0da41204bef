//! Every topic of this process: which one a subscriber joins, whose poller is started by the
//! first subscriber, and what reaches all of them at once (a pushed status, a reload, the
//! server shutting down, another replica's notice).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use super::change::{EventId, State};
use super::fleet::{self, Follower};
use super::poller::{self, Keeper, Source};
use super::topic::{Subscription, Tap, Topic, TopicKey};
use crate::config::{Config, OrgAuth};
use crate::provider::kind::Move;
use crate::scope::Scope;
use crate::service::auth::{self, AuthError, Identity, Presented};
use crate::service::{Service, Version};
use crate::state::redis::Redis;
use crate::telemetry::Telemetry;

/// Every topic of this process, and its open streams.
pub struct Hub {
    topics: Mutex<HashMap<TopicKey, Arc<Topic>>>,
    /// Where pollers list from; pollers hold the hub weakly, so dropping it ends them.
    source: Arc<dyn Source>,
    telemetry: Arc<Telemetry>,
    /// The fleet's Redis, whose replicas share pushes and pollers' changes.
    fleet: Option<Arc<Redis>>,
    /// Set once the server shuts down: no new subscriber is taken.
    closed: Mutex<Option<String>>,
    /// Given every topic's changes (the webhooks' outboxes), once set.
    tap: OnceLock<Arc<dyn Tap>>,
}

/// Where a new subscriber starts.
pub enum Joining {
    /// The list as just fetched for this subscriber.
    Fresh(State),
    /// The topic's own list: it is being polled, so nothing is asked for this subscriber.
    Current,
}

impl Hub {
    /// A hub whose pollers list from `source`; with a `fleet`, it listens to the other
    /// replicas for as long as it lives.
    pub fn new(
        source: Arc<dyn Source>,
        telemetry: Arc<Telemetry>,
        fleet: Option<Arc<Redis>>,
    ) -> Arc<Self> {
        let hub = Arc::new(Self {
            topics: Mutex::new(HashMap::new()),
            source,
            telemetry,
            fleet,
            closed: Mutex::new(None),
            tap: OnceLock::new(),
        });
        if let Some(redis) = &hub.fleet {
            let follower: Weak<dyn Follower> = Arc::downgrade(&hub) as _;
            fleet::listen(redis, &hub.telemetry, follower);
        }
        hub
    }

    /// Makes `tap` see every change of every topic started from now on.
    pub fn tap(&self, tap: Arc<dyn Tap>) {
        let _ = self.tap.set(tap);
    }

    fn topics(&self) -> MutexGuard<'_, HashMap<TopicKey, Arc<Topic>>> {
        self.topics.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn all_topics(&self) -> Vec<Arc<Topic>> {
        self.topics().values().cloned().collect()
    }

    /// Which topic `presented` follows, and whether joining it needs a fresh list first
    /// (no one is polling it, or the org's callers must be checked by Bland each time).
    pub fn topic_for(
        &self,
        service: &Service,
        presented: &Presented,
    ) -> Result<(TopicKey, bool), AuthError> {
        let identity = auth::identify(service.config(), presented)?;
        identity.may(Scope::Read)?;
        let (org, caller, name) = match identity {
            Identity::Verified(org, key) => (org, None, Some(key.name.clone())),
            Identity::ViaUpstream(org, ..) => {
                (org, presented.forwarded(org).map(|f| f.digest()), None)
            }
        };
        let key = TopicKey {
            org: service.orgs[&org.id].id.clone(),
            caller,
            key: name,
        };
        let polled = self
            .topics()
            .get(&key)
            .is_some_and(|t| !t.lock().subscribers.is_empty());
        Ok((key, caller.is_some() || !polled))
    }

    /// Subscribes to `key`'s topic, starting its poller if it has none. `last_event_id` is
    /// what a reconnecting client last saw: if every event after it is still kept, those are
    /// its first events; otherwise (or if it is not an id of this topic) a snapshot is.
    /// `None` once the server is shutting down, or if the topic ended meanwhile.
    pub fn subscribe(
        self: &Arc<Self>,
        key: TopicKey,
        presented: Presented,
        joining: Joining,
        last_event_id: Option<&str>,
        kick: Box<dyn Fn() + Send + Sync>,
    ) -> Option<Subscription> {
        let presented = Arc::new(presented);
        let mut topics = self.topics();
        // Checked under the topics' lock: `close` marks the hub closed before it takes that
        // lock to end every topic, so a topic inserted here is either refused or ended.
        if self
            .closed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
        {
            return None;
        }
        let (topic, fresh) = match (topics.get(&key).cloned(), joining) {
            (Some(topic), Joining::Fresh(state)) => (topic, Some(state)),
            (Some(topic), Joining::Current) => (topic, None),
            (None, Joining::Fresh(state)) => {
                let topic = Topic::start(key.clone(), state, presented.clone());
                if let Some(tap) = self.tap.get() {
                    let _ = topic.tap.set(tap.clone());
                }
                topics.insert(key, topic.clone());
                let keeper: Weak<dyn Keeper> = Arc::downgrade(self) as _;
                tokio::spawn(poller::poll(topic.clone(), keeper));
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
        topic.join(presented, last_event_id.and_then(EventId::parse), kick)
    }

    /// After a reload: ends the streams of every org that is gone, of every key removed or
    /// changed (its scopes or limits too), and of Bland callers whose org changed how it
    /// authenticates, with an event saying why. The others' pollers use the new
    /// configuration from their next poll on.
    pub fn reloaded(&self, before: &Config, after: &Config) {
        for topic in self.all_topics() {
            let org = &*topic.key.org;
            let reason = match (before.org(org), after.org(org)) {
                (_, None) => {
                    Some("the organisation was removed from callmux's configuration".to_owned())
                }
                (Some(old), Some(new)) => match key_change(&topic.key, &old.auth, &new.auth) {
                    Some(reason) => Some(reason),
                    // The topic holds calls of providers the org may no longer see: ended,
                    // so a reconnect starts from a list of the new configuration.
                    None if old.providers != new.providers => Some(
                        "the organisation's providers changed; reconnect for the new list"
                            .to_owned(),
                    ),
                    None => None,
                },
                (None, Some(_)) => None,
            };
            if let Some(reason) = reason {
                self.end(&topic, &reason);
            }
        }
    }

    /// Ends every stream (the server is shutting down) and takes no new ones.
    pub fn close(&self, reason: &str) {
        *self.closed.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason.to_owned());
        for topic in self.all_topics() {
            self.end(&topic, reason);
        }
    }

    fn end(&self, topic: &Arc<Topic>, reason: &str) {
        self.topics().retain(|_, t| !Arc::ptr_eq(t, topic));
        topic.end(reason);
    }

    /// A signed push for `provider`'s call: laid over the provider's answers (so every list
    /// and `/capacity` show it until the provider's next answer), and every topic whose
    /// list has that call in a state before it, or lacks the call a started event brings,
    /// is re-merged from its last answers with the move and its subscribers see it at once;
    /// nothing is asked of any upstream. Returns how many topics changed, and whether the
    /// answers' overlay did.
    pub fn push(&self, provider: &str, moved: &Move) -> (usize, bool) {
        // What moves no answer served here moves no stream either: a late started event
        // of an ended call adds nothing back.
        if !self.source.pushed(provider, moved) {
            return (0, false);
        }
        let mut changed = 0;
        for topic in self.all_topics() {
            let state = topic.lock().state.clone();
            let State::Listed(snapshot) = &*state else {
                continue;
            };
            let at = self.source.position(&topic.key.org, provider);
            let Some(next) = snapshot.with_move(provider, at, moved) else {
                continue;
            };
            if topic.publish(State::Listed(Arc::new(next))) {
                changed += 1;
            }
        }
        (changed, true)
    }
}

impl Keeper for Hub {
    fn source(&self) -> &dyn Source {
        &*self.source
    }

    fn retire(&self, topic: &Arc<Topic>) -> bool {
        let mut topics = self.topics();
        if !topic.lock().subscribers.is_empty() {
            return false;
        }
        topics.retain(|_, t| !Arc::ptr_eq(t, topic));
        topic.lock().ended = true;
        true
    }

    fn end(&self, topic: &Arc<Topic>, reason: &str) {
        Hub::end(self, topic, reason);
    }

    fn changed(&self, key: &TopicKey, version: Version) {
        if let Some(redis) = &self.fleet {
            fleet::announce(redis, &self.telemetry, key, version);
        }
    }
}

impl Follower for Hub {
    fn push(&self, provider: &str, moved: &Move) -> usize {
        Hub::push(self, provider, moved).0
    }

    fn noticed(&self, is_it: &dyn Fn(&TopicKey) -> bool, version: Version) -> usize {
        let named: Vec<Arc<Topic>> = self
            .topics()
            .values()
            .filter(|t| is_it(&t.key))
            .cloned()
            .collect();
        let mut woken = 0;
        for topic in named {
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
}

/// Why a reload ends `topic`'s streams, if it does: the key that follows it was removed or
/// changed (named, never shown), or Bland callers are now checked differently.
fn key_change(topic: &TopicKey, old: &OrgAuth, new: &OrgAuth) -> Option<String> {
    match (old, new, &topic.key) {
        (OrgAuth::Keys(old), OrgAuth::Keys(new), Some(name)) => {
            let find = |keys: &'_ [crate::config::KeySpec]| {
                keys.iter()
                    .position(|k| k.name == *name)
                    .map(|i| keys[i].clone())
            };
            match (find(old), find(new)) {
                (_, None) => Some(format!(
                    "key removed: the key `{name}` was removed from callmux's configuration; \
                     sign in again with a current key"
                )),
                (Some(o), Some(n)) if !o.same_as(&n) => Some(format!(
                    "key changed: the key `{name}` was changed (its key, scopes or limits); \
                     sign in again"
                )),
                _ => None,
            }
        }
        (
            OrgAuth::Upstream {
                provider: x,
                scopes: a,
            },
            OrgAuth::Upstream {
                provider: y,
                scopes: b,
            },
            None,
        ) if x == y && a == b => None,
        _ => Some(
            "key changed: the organisation's callers are checked differently now; sign in \
             again"
                .to_owned(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::{sleep, Instant};

    use super::super::change::Body;
    use super::super::fixtures::{
        drain, hub, key, listed, no_kick, presented, subscribe, Answer, Upstream,
    };
    use super::*;
    use crate::call::CallStatus::{self, Completed, InProgress, Queued, Ringing};

    fn moved(call_id: &str, status: CallStatus) -> Move {
        Move {
            call_id: call_id.into(),
            status,
            started: None,
        }
    }

    const PERIOD: Duration = Duration::from_secs(1);

    #[tokio::test]
    async fn a_pushed_status_moves_a_call_forward_and_never_back() {
        let up = Upstream::new(PERIOD, Answer::Calls(vec![]));
        let hub = hub(&up);
        let mut s = subscribe(&hub, Joining::Fresh(listed(&[("c1", Ringing)])));
        assert_eq!(hub.push("p", &moved("c1", InProgress)).0, 1);
        let events = drain(&mut s.events);
        assert!(
            matches!(&events[..], [e] if matches!(&e.body, Body::Change(c) if c.updated[0].status == InProgress)),
            "{events:?}"
        );
        // A replayed or late callback moves nothing back; another call or provider is not this one.
        assert_eq!(hub.push("p", &moved("c1", Queued)).0, 0);
        assert_eq!(hub.push("p", &moved("c1", InProgress)).0, 0);
        assert_eq!(hub.push("q", &moved("c1", Completed)).0, 0);
        assert_eq!(hub.push("p", &moved("c2", InProgress)).0, 0);
        assert!(drain(&mut s.events).is_empty());
    }

    #[tokio::test]
    async fn a_started_push_adds_its_call_to_the_providers_answer_once() {
        let up = Upstream::new(PERIOD, Answer::Calls(vec![]));
        let hub = hub(&up);
        let mut s = subscribe(&hub, Joining::Fresh(listed(&[("c1", Ringing)])));
        let mut started = moved("c2", InProgress);
        started.started = Some(crate::call::Call::new("c2", Arc::from("p"), InProgress));
        assert_eq!(hub.push("p", &started).0, 1);
        let events = drain(&mut s.events);
        assert!(
            matches!(&events[..], [e] if matches!(&e.body, Body::Change(c) if c.added[0].call_id == "c2")),
            "{events:?}"
        );
        assert_eq!(hub.push("p", &started).0, 0, "a replay adds nothing");
    }

    #[tokio::test]
    async fn a_subscriber_joining_with_a_fresh_list_brings_the_others_up_to_date() {
        let up = Upstream::new(PERIOD, Answer::Calls(vec![]));
        let hub = hub(&up);
        let mut first = subscribe(&hub, Joining::Fresh(listed(&[])));
        let second = subscribe(&hub, Joining::Fresh(listed(&[("c1", Ringing)])));
        assert_eq!(drain(&mut first.events).len(), 1);
        let Body::Snapshot(state) = &second.first[0].body else {
            panic!("a snapshot first");
        };
        assert_eq!(state.calls().len(), 1);
        assert!(
            up.asked().is_empty(),
            "the fresh list was the subscriber's own"
        );
    }

    #[tokio::test]
    async fn a_closed_hub_ends_every_stream_and_takes_no_new_subscriber() {
        let up = Upstream::new(PERIOD, Answer::Calls(vec![]));
        let hub = hub(&up);
        let mut s = subscribe(&hub, Joining::Fresh(listed(&[])));
        hub.close("callmux is shutting down");
        let events = drain(&mut s.events);
        assert!(
            matches!(&events[..], [e] if matches!(&e.body, Body::End(r) if r == "callmux is shutting down"))
        );
        let late = hub.subscribe(
            key(),
            presented(),
            Joining::Fresh(listed(&[])),
            None,
            no_kick(),
        );
        assert!(late.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_notice_polls_at_once_unless_the_topic_is_at_that_version_already() {
        let up = Upstream::new(PERIOD, Answer::Calls(vec![("c1", Ringing)]));
        let hub = hub(&up);
        let start = Instant::now();
        let _s = subscribe(&hub, Joining::Fresh(listed(&[])));
        let held = listed(&[]).version();
        let other = listed(&[("c1", Ringing)]).version();
        sleep(PERIOD / 2).await;
        let follower: &dyn Follower = &*hub;
        assert_eq!(follower.noticed(&|_| true, held), 0);
        assert_eq!(
            follower.noticed(&|k| k.org.as_ref() != key().org.as_ref(), other),
            0
        );
        assert_eq!(follower.noticed(&|_| true, other), 1);
        // The timer restarts from the woken poll.
        sleep(PERIOD + PERIOD / 4).await;
        let asked: Vec<u128> = up
            .asked()
            .iter()
            .map(|t| (*t - start).as_millis())
            .collect();
        assert_eq!(asked, [500, 1500]);
    }
}

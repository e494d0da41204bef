//! Live changes shared by a fleet (`[state] backend = "redis"`), over Redis pub/sub. A status
//! callback taken by one replica moves the call forward (or adds the call a started event
//! brings) in every replica's lists and streams at once.
//! A change one replica's poller finds is announced with a notice (the topic, named by an
//! HMAC, and the new version): the replicas following that topic poll at once instead of at
//! their own interval. A message is sealed like every value, so a stranger who can publish
//! cannot move a call or make a replica ask its upstreams; a push replayed or out of order
//! moves nothing back, as on the replica that took it.
//!
//! Upstream load: a woken poll takes the place of the next timed one (the timer restarts
//! from it). With `cache_ttl_ms > 0` it reads the answer the announcing replica just stored
//! for the fleet, so the upstream is asked no more than without notices; with a TTL of 0
//! there is no stored answer to read and each woken replica asks for itself, once per
//! change it is told of. A woken poll that finds the announced version announces nothing,
//! and a replica already at it does not poll, so a notice never echoes.

use std::sync::{Arc, Weak};

use serde::{Deserialize, Serialize};

use super::topic::TopicKey;
use crate::call::{Call, CallStatus};
use crate::provider::kind::Move;
use crate::service::Version;
use crate::state::redis::Redis;
use crate::state::seal::{Rejected, Sealer};
use crate::telemetry::Telemetry;

/// What the fleet's messages act on: this replica's hub, held weakly, so that listening
/// ends with it.
pub(super) trait Follower: Send + Sync {
    /// Lays `moved` over `provider`'s answers and every topic; returns how many topics moved.
    fn push(&self, provider: &str, moved: &Move) -> usize;
    /// Makes every subscribed topic that `is_it` names, and that is not at `version`
    /// already, poll at once; returns how many.
    fn noticed(&self, is_it: &dyn Fn(&TopicKey) -> bool, version: Version) -> usize;
}

#[derive(Serialize, Deserialize)]
struct Pushed {
    /// The store that published it, so a replica does not apply its own push twice.
    origin: u64,
    provider: String,
    call_id: String,
    status: CallStatus,
    /// The call a started event brings, with its fields.
    #[serde(default)]
    started: Option<Call>,
}

fn channel() -> String {
    Sealer::key("live", "pushed")
}

/// A poller's change: which topic (an HMAC of the org and the caller's digest, so neither
/// the digest nor anything checkable against a key leaves the replica) and its new version.
#[derive(Serialize, Deserialize)]
struct Polled {
    origin: u64,
    topic: String,
    version: String,
}

fn polled_channel() -> String {
    Sealer::key("live", "polled")
}

/// The fleet's name of a topic: the same on every replica holding the secret.
fn topic_name(sealer: &Sealer, key: &TopicKey) -> String {
    let caller = key.caller.as_ref().map_or(&[][..], |d| &d[..]);
    let name = key.key.as_deref().map_or(&[][..], str::as_bytes);
    sealer.secret_key("topic", &[key.org.as_bytes(), caller, name])
}

/// Tells the fleet that this replica's poller found `version` for `key`'s topic.
pub(super) fn announce(
    redis: &Arc<Redis>,
    telemetry: &Telemetry,
    key: &TopicKey,
    version: Version,
) {
    let polled = Polled {
        origin: redis.origin,
        topic: topic_name(&redis.sealer, key),
        version: version.to_string(),
    };
    let Ok(payload) = serde_json::to_vec(&polled) else {
        return;
    };
    notices(telemetry, "sent").increment(1);
    let redis = redis.clone();
    tokio::spawn(async move { redis.publish(&polled_channel(), &payload).await });
}

/// Notices sent, and topics they woke on this replica.
fn notices(telemetry: &Telemetry, what: &'static str) -> metrics::Counter {
    telemetry.counter("callmux_stream_fleet_notices_total", &[("event", what)])
}

/// Tells the fleet of a push this replica applied.
pub fn share(redis: &Arc<Redis>, provider: &str, moved: &Move) {
    let pushed = Pushed {
        origin: redis.origin,
        provider: provider.to_string(),
        call_id: moved.call_id.clone(),
        status: moved.status.clone(),
        started: moved.started.clone(),
    };
    let Ok(payload) = serde_json::to_vec(&pushed) else {
        return;
    };
    let redis = redis.clone();
    tokio::spawn(async move { redis.publish(&channel(), &payload).await });
}

/// Applies to `hub`, for as long as it lives, every push another replica shares, and wakes
/// the topics another replica's poller announces.
pub(super) fn listen(redis: &Arc<Redis>, telemetry: &Arc<Telemetry>, hub: Weak<dyn Follower>) {
    listen_on(redis, channel(), telemetry, hub.clone(), on_pushed);
    listen_on(redis, polled_channel(), telemetry, hub, on_polled);
}

/// What is done with one message, by this replica, to its hub.
type Apply = fn(&dyn Follower, Replica<'_>, &[u8]) -> Result<usize, Rejected>;

/// Hands each message of `channel` (opened: Redis drops what this fleet did not seal) to
/// `apply` until the hub or the store is gone; one that does not read is counted.
fn listen_on(
    redis: &Arc<Redis>,
    channel: String,
    telemetry: &Arc<Telemetry>,
    hub: Weak<dyn Follower>,
    apply: Apply,
) {
    let mut messages = redis.subscribe("live", channel);
    let store = Arc::downgrade(redis);
    let telemetry = telemetry.clone();
    tokio::spawn(async move {
        while let Some(payload) = messages.recv().await {
            let (Some(hub), Some(redis)) = (hub.upgrade(), store.upgrade()) else {
                return;
            };
            let me = Replica {
                origin: redis.origin,
                sealer: &redis.sealer,
                telemetry: &telemetry,
            };
            if let Err(why) = apply(&*hub, me, &payload) {
                redis.rejected("live", why);
            }
        }
    });
}

/// This replica: the origin its own messages carry, the secret topics are named under, and
/// where it counts notices.
#[derive(Clone, Copy)]
struct Replica<'a> {
    origin: u64,
    sealer: &'a Sealer,
    telemetry: &'a Telemetry,
}

/// Another replica's push: moves the call forward in this replica's topics. Returns how
/// many moved (none for this replica's own push, applied when it was taken).
fn on_pushed(hub: &dyn Follower, me: Replica<'_>, payload: &[u8]) -> Result<usize, Rejected> {
    let pushed = serde_json::from_slice::<Pushed>(payload).map_err(|_| Rejected::Decode)?;
    if pushed.origin == me.origin {
        return Ok(0);
    }
    let moved = Move {
        call_id: pushed.call_id,
        status: pushed.status,
        started: pushed.started,
    };
    Ok(hub.push(&pushed.provider, &moved))
}

/// Another replica's poller found a change: the topics it names poll at once. Returns how
/// many were woken.
fn on_polled(hub: &dyn Follower, me: Replica<'_>, payload: &[u8]) -> Result<usize, Rejected> {
    let polled = serde_json::from_slice::<Polled>(payload).map_err(|_| Rejected::Decode)?;
    let version = u128::from_str_radix(&polled.version, 16).map_err(|_| Rejected::Decode)?;
    if polled.origin == me.origin {
        return Ok(0);
    }
    let woken = hub.noticed(
        &|key| topic_name(me.sealer, key) == polled.topic,
        Version(version),
    );
    notices(me.telemetry, "woken").increment(woken as u64);
    Ok(woken)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use secrecy::SecretString;

    use super::super::fixtures::key;
    use super::*;

    const ME: u64 = 1;
    const OTHER: u64 = 2;

    /// The hub, as the fleet's messages reach it: what each was asked, and the topics it follows.
    #[derive(Default)]
    struct Hub {
        pushed: Mutex<Vec<(String, String, CallStatus)>>,
        following: Vec<TopicKey>,
        noticed: Mutex<Vec<(TopicKey, Version)>>,
    }

    impl Follower for Hub {
        fn push(&self, provider: &str, moved: &Move) -> usize {
            let push = (
                provider.to_owned(),
                moved.call_id.clone(),
                moved.status.clone(),
            );
            self.pushed.lock().unwrap().push(push);
            1
        }

        fn noticed(&self, is_it: &dyn Fn(&TopicKey) -> bool, version: Version) -> usize {
            let named: Vec<_> = self.following.iter().filter(|k| is_it(k)).collect();
            let mut noticed = self.noticed.lock().unwrap();
            noticed.extend(named.iter().map(|k| ((*k).clone(), version)));
            named.len()
        }
    }

    fn sealer(secret: &str) -> Sealer {
        Sealer::new(&SecretString::from(secret.to_owned()))
    }

    fn apply(apply: Apply, hub: &Hub, sealer: &Sealer, payload: &[u8]) -> Result<usize, Rejected> {
        let telemetry = Telemetry::default();
        let me = Replica {
            origin: ME,
            sealer,
            telemetry: &telemetry,
        };
        apply(hub, me, payload)
    }

    fn pushed(origin: u64) -> Vec<u8> {
        serde_json::to_vec(&Pushed {
            origin,
            provider: "p".into(),
            call_id: "c1".into(),
            status: CallStatus::InProgress,
            started: None,
        })
        .unwrap()
    }

    fn polled(origin: u64, topic: String, version: &str) -> Vec<u8> {
        serde_json::to_vec(&Polled {
            origin,
            topic,
            version: version.into(),
        })
        .unwrap()
    }

    #[test]
    fn another_replicas_push_is_applied_and_ones_own_is_not_applied_twice() {
        let (hub, s) = (Hub::default(), sealer("fleet secret"));
        assert_eq!(apply(on_pushed, &hub, &s, &pushed(OTHER)), Ok(1));
        assert_eq!(apply(on_pushed, &hub, &s, &pushed(ME)), Ok(0));
        let pushed = hub.pushed.lock().unwrap();
        assert_eq!(
            *pushed,
            [("p".to_owned(), "c1".to_owned(), CallStatus::InProgress)]
        );
    }

    #[test]
    fn a_notice_wakes_the_topic_it_names_under_the_fleets_secret_and_no_other() {
        let s = sealer("fleet secret");
        let mut caller = key();
        caller.caller = Some([7; 32]);
        let hub = Hub {
            following: vec![key(), caller.clone()],
            ..Hub::default()
        };
        let version = Version(0xabc);
        let notice = polled(OTHER, topic_name(&s, &caller), &version.to_string());
        assert_eq!(apply(on_polled, &hub, &s, &notice), Ok(1));
        assert_eq!(*hub.noticed.lock().unwrap(), [(caller.clone(), version)]);
        // Named by a publisher without the secret: it names nothing here.
        let forged = polled(OTHER, topic_name(&sealer("guess"), &key()), "abc");
        assert_eq!(apply(on_polled, &hub, &s, &forged), Ok(0));
        let own = polled(ME, topic_name(&s, &key()), "abc");
        assert_eq!(apply(on_polled, &hub, &s, &own), Ok(0));
        assert_eq!(hub.noticed.lock().unwrap().len(), 1);
    }

    #[test]
    fn a_message_that_does_not_read_is_refused_as_undecodable_and_applies_nothing() {
        let (hub, s) = (Hub::default(), sealer("fleet secret"));
        let bad_version = polled(OTHER, topic_name(&s, &key()), "not hex");
        for (how, payload) in [
            (on_pushed as Apply, &b"{"[..]),
            (on_pushed, &polled(OTHER, "t".into(), "1")[..]),
            (on_polled, &pushed(OTHER)[..]),
            (on_polled, &bad_version[..]),
            (on_polled, &b"\xff\xfe"[..]),
        ] {
            assert_eq!(apply(how, &hub, &s, payload), Err(Rejected::Decode));
        }
        assert!(hub.pushed.lock().unwrap().is_empty());
    }

    #[test]
    fn a_topic_name_shows_neither_its_org_nor_its_caller_and_depends_on_both() {
        let s = sealer("fleet secret");
        let mut caller = key();
        caller.caller = Some([7; 32]);
        let org = topic_name(&s, &key());
        assert!(!org.contains(&*key().org), "{org}");
        assert!(!topic_name(&s, &caller).contains(&hex::encode([7; 32])[..16]));
        assert_ne!(org, topic_name(&s, &caller));
        assert_ne!(org, topic_name(&sealer("another fleet"), &key()));
        assert_eq!(
            org,
            topic_name(&sealer("fleet secret"), &key()),
            "every replica agrees"
        );
    }

    #[test]
    fn a_message_opens_only_on_its_own_channel_and_under_the_fleets_secret() {
        let s = sealer("fleet secret");
        let payload = pushed(OTHER);
        let sealed = s.seal(&channel(), &payload);
        assert_eq!(s.open(&channel(), &sealed), Ok(&payload[..]));
        assert_eq!(s.open(&polled_channel(), &sealed), Err(Rejected::Mac));
        let forged = sealer("guess").seal(&channel(), &payload);
        assert_eq!(s.open(&channel(), &forged), Err(Rejected::Mac));
        assert_eq!(s.open(&channel(), &payload), Err(Rejected::Mac), "unsealed");
    }
}

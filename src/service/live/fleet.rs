//! Live changes shared by a fleet (`[state] backend = "redis"`), over Redis pub/sub. A status
//! callback taken by one replica moves the call forward in every replica's streams at once.
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

use super::TopicKey;
use crate::call::CallStatus;
use crate::service::reload::Live;
use crate::service::Version;
use crate::state::redis::Redis;
use crate::state::seal::{Rejected, Sealer};

#[derive(Serialize, Deserialize)]
struct Pushed {
    /// The store that published it, so a replica does not apply its own push twice.
    origin: u64,
    provider: String,
    call_id: String,
    status: CallStatus,
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
fn topic_name(redis: &Redis, key: &TopicKey) -> String {
    let caller = key.caller.as_ref().map_or(&[][..], |d| &d[..]);
    redis
        .sealer
        .secret_key("topic", &[key.org.as_bytes(), caller])
}

/// Tells the fleet that this replica's poller found `version` for `key`'s topic.
pub(super) fn announce(redis: &Arc<Redis>, live: &Live, key: &TopicKey, version: Version) {
    let polled = Polled {
        origin: redis.origin,
        topic: topic_name(redis, key),
        version: version.to_string(),
    };
    let Ok(payload) = serde_json::to_vec(&polled) else {
        return;
    };
    notices(live, "sent").increment(1);
    let redis = redis.clone();
    tokio::spawn(async move { redis.publish(&polled_channel(), &payload).await });
}

/// Notices sent, and topics they woke on this replica.
fn notices(live: &Live, what: &'static str) -> metrics::Counter {
    live.telemetry()
        .counter("callmux_stream_fleet_notices_total", &[("event", what)])
}

/// Tells the fleet of a push this replica applied.
pub fn share(redis: &Arc<Redis>, provider: &str, call_id: &str, status: &CallStatus) {
    let pushed = Pushed {
        origin: redis.origin,
        provider: provider.to_string(),
        call_id: call_id.to_string(),
        status: status.clone(),
    };
    let Ok(payload) = serde_json::to_vec(&pushed) else {
        return;
    };
    let redis = redis.clone();
    tokio::spawn(async move { redis.publish(&channel(), &payload).await });
}

/// Applies, for as long as `live` serves, every push another replica shares, and wakes the
/// topics another replica's poller announces.
pub fn listen(live: &Arc<Live>) {
    let Some(redis) = live.current().service.store().redis().cloned() else {
        return;
    };
    let live: Weak<Live> = Arc::downgrade(live);
    let mut messages = redis.subscribe("live", channel());
    let origin = redis.origin;
    let store = Arc::downgrade(&redis);
    listen_polled(&redis, live.clone());
    drop(redis);
    tokio::spawn(async move {
        while let Some(payload) = messages.recv().await {
            let Some(live) = live.upgrade() else { return };
            match serde_json::from_slice::<Pushed>(&payload) {
                Ok(p) if p.origin != origin => {
                    live.hub().push(&p.provider, &p.call_id, &p.status);
                }
                Ok(_) => {}
                Err(_) => {
                    if let Some(redis) = store.upgrade() {
                        redis.rejected("live", Rejected::Decode);
                    }
                }
            }
        }
    });
}

/// Wakes, for as long as `live` serves, the topics another replica's poller found changed.
fn listen_polled(redis: &Arc<Redis>, live: Weak<Live>) {
    let mut messages = redis.subscribe("live", polled_channel());
    let origin = redis.origin;
    let store = Arc::downgrade(redis);
    tokio::spawn(async move {
        while let Some(payload) = messages.recv().await {
            let (Some(live), Some(redis)) = (live.upgrade(), store.upgrade()) else {
                return;
            };
            let notice = serde_json::from_slice::<Polled>(&payload)
                .ok()
                .and_then(|p| Some((u128::from_str_radix(&p.version, 16).ok()?, p)));
            match notice {
                Some((version, p)) if p.origin != origin => {
                    let woken = live
                        .hub()
                        .noticed(|key| topic_name(&redis, key) == p.topic, Version(version));
                    notices(&live, "woken").increment(woken as u64);
                }
                Some(_) => {}
                None => redis.rejected("live", Rejected::Decode),
            }
        }
    });
}

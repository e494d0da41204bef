//! One endpoint's pending deliveries kept in Redis (`[state] backend = "redis"`), so a
//! replica that dies loses none: a sorted set of event ids by due time, their sealed events
//! in a hash, and each claim in another. A replica claims due events by pushing their due
//! time a lease ahead and naming itself; it settles them (delivered, retried later, given
//! up) only while its claim stands. An event whose claimer died falls due again when the
//! lease runs out and another replica takes it. Each event id is queued once per endpoint
//! (a marker kept for a day), so every replica that sees one change queues one event.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::OutEvent;
use crate::config::EVENT_TYPES;
use crate::state::redis::Redis;

/// How long an event id is remembered once queued: longer than the default schedule's
/// last retry, so a replica that sees the change late does not queue it again.
const SEEN_FOR: Duration = Duration::from_secs(2 * 24 * 60 * 60);

/// Queues an event once per id: `{1 queued | 0 seen before, dropped: 1 if the oldest
/// waiting event made room}`.
static ADD: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
        if not redis.call('SET', KEYS[4], '1', 'NX', 'PX', ARGV[4]) then return {0, 0} end
        local dropped = 0
        if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[5]) then
            local oldest = redis.call('ZPOPMIN', KEYS[1])
            if oldest[1] then
                redis.call('HDEL', KEYS[2], oldest[1])
                redis.call('HDEL', KEYS[3], oldest[1])
                dropped = 1
            end
        end
        redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
        redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
        return {1, dropped}
        ",
    )
});

/// Claims up to `ARGV[3]` due events for `ARGV[4]`: each falls due again a lease later
/// unless settled. `{id, sealed event, ...}`.
static CLAIM: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
        local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
        local out = {}
        for _, id in ipairs(ids) do
            local event = redis.call('HGET', KEYS[2], id)
            if event then
                redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2]), id)
                redis.call('HSET', KEYS[3], id, ARGV[4])
                table.insert(out, id)
                table.insert(out, event)
            else
                redis.call('ZREM', KEYS[1], id)
            end
        end
        return out
        ",
    )
});

/// Settles a claimed event if the claim is still `ARGV[2]`'s: done (delivered or given
/// up), or due again at `ARGV[4]` as `ARGV[5]`. `1` if settled, `0` if the claim lapsed.
static SETTLE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
        if redis.call('HGET', KEYS[3], ARGV[1]) ~= ARGV[2] then return 0 end
        redis.call('HDEL', KEYS[3], ARGV[1])
        if ARGV[3] == 'retry' then
            redis.call('HSET', KEYS[2], ARGV[1], ARGV[5])
            redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
        else
            redis.call('ZREM', KEYS[1], ARGV[1])
            redis.call('HDEL', KEYS[2], ARGV[1])
        end
        return 1
        ",
    )
});

/// An event as kept in Redis (sealed): what to send, and the attempts made.
#[derive(Serialize, Deserialize)]
struct Kept {
    id: String,
    kind: String,
    body: String,
    attempts: usize,
}

/// A claimed event: sent by this replica until settled.
pub struct Claimed {
    pub event: OutEvent,
    pub attempts: usize,
}

/// How a claimed event ends up.
pub enum Settle {
    /// Delivered, or given up: gone.
    Done,
    /// Due again at this Unix time in ms, after this many attempts.
    Retry { due_ms: u64, attempts: usize },
}

/// One endpoint's queue in Redis.
pub struct SharedQueue {
    redis: Arc<Redis>,
    pending: String,
    events: String,
    claims: String,
    /// Names this endpoint's id markers.
    seen: String,
    /// How long a claim holds: past the attempt's timeout, so a live claimer is never
    /// overtaken.
    lease: Duration,
    /// This replica's name in claims.
    me: String,
}

impl SharedQueue {
    /// The queue of `org`'s endpoint `name`, whose attempts take at most `timeout`. Its
    /// keys are named by an HMAC of the org and endpoint, neither shown.
    pub fn new(redis: Arc<Redis>, org: &str, name: &str, timeout: Duration) -> Self {
        let base = redis
            .sealer
            .secret_key("webhook", &[org.as_bytes(), name.as_bytes()]);
        Self {
            pending: format!("{base}:pending"),
            events: format!("{base}:events"),
            claims: format!("{base}:claims"),
            seen: format!("{base}:seen"),
            lease: timeout + Duration::from_secs(5),
            me: format!("{:016x}", redis.origin),
            redis,
        }
    }

    fn event_key(&self, id: &str) -> String {
        format!("{}:{id}", self.events)
    }

    fn seal(&self, event: &OutEvent, attempts: usize) -> Option<Vec<u8>> {
        let kept = Kept {
            id: event.id.clone(),
            kind: event.kind.to_owned(),
            body: String::from_utf8(event.body.to_vec()).ok()?,
            attempts,
        };
        let json = serde_json::to_vec(&kept).ok()?;
        Some(self.redis.sealer.seal(&self.event_key(&event.id), &json))
    }

    fn open(&self, id: &str, sealed: &[u8]) -> Option<Claimed> {
        let json = self.redis.open("webhook", &self.event_key(id), sealed)?;
        let kept: Kept = serde_json::from_slice(&json).ok()?;
        let kind = EVENT_TYPES.iter().find(|k| **k == kept.kind)?;
        (kept.id == id).then(|| Claimed {
            event: OutEvent {
                id: kept.id,
                kind,
                body: Bytes::from(kept.body),
            },
            attempts: kept.attempts,
        })
    }

    /// Queues `event` unless its id was queued before; at `max_pending`, the event due
    /// soonest makes room. `(queued, dropped)`, or `None` if Redis did not answer.
    pub async fn add(&self, event: &OutEvent, max_pending: usize) -> Option<(bool, bool)> {
        let sealed = self.seal(event, 0)?;
        let seen = format!("{}:{}", self.seen, event.id);
        let now = crate::call::time::now_ms();
        let (queued, dropped): (i64, i64) = self
            .redis
            .run("webhook", |mut c| {
                let seen = &seen;
                let sealed = &sealed;
                async move {
                    ADD.key(&self.pending)
                        .key(&self.events)
                        .key(&self.claims)
                        .key(seen)
                        .arg(&event.id)
                        .arg(&sealed[..])
                        .arg(now)
                        .arg(SEEN_FOR.as_millis() as u64)
                        .arg(max_pending)
                        .invoke_async(&mut c)
                        .await
                }
            })
            .await?;
        Some((queued == 1, dropped == 1))
    }

    /// Claims up to `n` due events for this replica.
    pub async fn claim(&self, n: usize) -> Vec<Claimed> {
        if n == 0 {
            return Vec::new();
        }
        let now = crate::call::time::now_ms();
        let found: Option<Vec<Vec<u8>>> = self
            .redis
            .run("webhook", |mut c| async move {
                CLAIM
                    .key(&self.pending)
                    .key(&self.events)
                    .key(&self.claims)
                    .arg(now)
                    .arg(self.lease.as_millis() as u64)
                    .arg(n)
                    .arg(&self.me)
                    .invoke_async(&mut c)
                    .await
            })
            .await;
        let found = found.unwrap_or_default();
        let mut claimed = Vec::with_capacity(found.len() / 2);
        for pair in found.chunks_exact(2) {
            let id = String::from_utf8_lossy(&pair[0]).into_owned();
            match self.open(&id, &pair[1]) {
                Some(c) => claimed.push(c),
                // Not this fleet's: settled away, so it is not claimed again and again.
                None => {
                    self.settle_raw(&id, Settle::Done, None).await;
                }
            }
        }
        claimed
    }

    /// Settles `event`, claimed by this replica; `false` if its claim had lapsed (another
    /// replica has it now) or Redis did not answer.
    pub async fn settle(&self, event: &OutEvent, how: Settle) -> bool {
        let sealed = match &how {
            Settle::Retry { attempts, .. } => self.seal(event, *attempts),
            Settle::Done => None,
        };
        self.settle_raw(&event.id, how, sealed).await
    }

    async fn settle_raw(&self, id: &str, how: Settle, sealed: Option<Vec<u8>>) -> bool {
        let (mode, due) = match how {
            Settle::Done => ("done", 0),
            Settle::Retry { due_ms, .. } => ("retry", due_ms),
        };
        let sealed = sealed.unwrap_or_default();
        let settled: Option<i64> = self
            .redis
            .run("webhook", |mut c| {
                let sealed = &sealed;
                async move {
                    SETTLE
                        .key(&self.pending)
                        .key(&self.events)
                        .key(&self.claims)
                        .arg(id)
                        .arg(&self.me)
                        .arg(mode)
                        .arg(due)
                        .arg(&sealed[..])
                        .invoke_async(&mut c)
                        .await
                }
            })
            .await;
        settled == Some(1)
    }

    /// Events waiting or in flight, fleet-wide, and when the soonest falls due (Unix ms).
    pub async fn pending(&self) -> Option<(usize, Option<u64>)> {
        let pending = &self.pending;
        self.redis
            .run("webhook", |mut c| async move {
                let (count, first): (usize, Vec<(String, f64)>) = redis::pipe()
                    .cmd("ZCARD")
                    .arg(pending)
                    .cmd("ZRANGE")
                    .arg(pending)
                    .arg(0)
                    .arg(0)
                    .arg("WITHSCORES")
                    .query_async(&mut c)
                    .await?;
                Ok((count, first.first().map(|(_, due)| *due as u64)))
            })
            .await
    }
}

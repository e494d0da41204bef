//! `Idempotency-Key` (DESIGN §16): the first answer for (org, key) kept 24 h — in memory,
//! bounded, oldest first; with Redis, sealed and fleet-wide — so a retried placement is
//! answered again and never placed twice.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::state::redis::Redis;

/// How long an answer is kept.
pub const KEPT: Duration = Duration::from_secs(24 * 60 * 60);

/// Answers kept in memory at most; the oldest go first.
const MEMORY_ENTRIES: u64 = 100_000;

/// How long an in-flight mark lasts at most: a replica that died mid-placement frees its
/// key after this (longer than any placement may take).
const IN_FLIGHT: Duration = Duration::from_secs(10 * 60);

/// A kept answer: its status and body as the client saw them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    pub status: u16,
    pub body: Bytes,
}

/// What a key's first use left.
#[derive(Debug, Clone)]
enum Entry {
    InFlight { body: [u8; 32] },
    Done { body: [u8; 32], kept: Kept },
}

/// What to do with a placement carrying a key.
#[derive(Debug, PartialEq, Eq)]
pub enum Begin {
    /// The key is new: place, then [`Keys::finish`] (or [`Keys::forget`]).
    Fresh,
    /// The same body was answered already: send this again.
    Replay(Kept),
    /// Another body was placed with this key.
    Reused,
    /// The first placement with this key has not been answered yet.
    InFlight,
}

/// Every org's idempotency keys, in memory and, with Redis, in the fleet's store.
pub struct Keys {
    memory: moka::sync::Cache<(Arc<str>, String), Entry>,
}

impl Default for Keys {
    fn default() -> Self {
        Self {
            memory: moka::sync::Cache::builder()
                .max_capacity(MEMORY_ENTRIES)
                .time_to_live(KEPT)
                .build(),
        }
    }
}

/// The digest a body is compared by.
pub fn digest(body: &[u8]) -> [u8; 32] {
    Sha256::digest(body).into()
}

/// The key's name in Redis: an HMAC of the org and the key, so Redis never holds a client's
/// key.
fn redis_key(redis: &Redis, org: &str, key: &str) -> String {
    redis
        .sealer
        .secret_key("idempotency", &[org.as_bytes(), key.as_bytes()])
}

/// `0` body-digest for in flight; `1` digest status body for done.
fn encode(entry: &Entry) -> Vec<u8> {
    match entry {
        Entry::InFlight { body } => [&[0u8][..], body].concat(),
        Entry::Done { body, kept } => {
            [&[1u8][..], body, &kept.status.to_be_bytes(), &kept.body].concat()
        }
    }
}

fn decode(bytes: &[u8]) -> Option<Entry> {
    let (&tag, rest) = bytes.split_first()?;
    let body: [u8; 32] = rest.get(..32)?.try_into().ok()?;
    match tag {
        0 => Some(Entry::InFlight { body }),
        1 => {
            let status = u16::from_be_bytes(rest.get(32..34)?.try_into().ok()?);
            Some(Entry::Done {
                body,
                kept: Kept {
                    status,
                    body: Bytes::copy_from_slice(rest.get(34..)?),
                },
            })
        }
        _ => None,
    }
}

fn verdict(entry: &Entry, body: &[u8; 32]) -> Begin {
    match entry {
        Entry::InFlight { body: first } if first == body => Begin::InFlight,
        Entry::Done { body: first, kept } if first == body => Begin::Replay(kept.clone()),
        _ => Begin::Reused,
    }
}

impl Keys {
    /// Marks (org, key) in flight for a body of digest `body`, or says what it holds.
    pub async fn begin(
        &self,
        org: &Arc<str>,
        key: &str,
        body: [u8; 32],
        redis: Option<&Redis>,
    ) -> Begin {
        if let Some(redis) = redis {
            let at = redis_key(redis, org, key);
            let mark = encode(&Entry::InFlight { body });
            match redis.put_sealed_new(&at, &mark, IN_FLIGHT).await {
                Some(true) => return Begin::Fresh,
                Some(false) => {
                    return match redis
                        .get_sealed("idempotency", &at)
                        .await
                        .as_deref()
                        .and_then(decode)
                    {
                        Some(entry) => verdict(&entry, &body),
                        // Gone meanwhile (its placement was forgotten), or not ours: the
                        // first placement's answer is not known, so nothing is placed.
                        None => Begin::InFlight,
                    };
                }
                // Redis is down: this replica keeps keys on its own until it is back.
                None => {}
            }
        }
        let entry = self
            .memory
            .entry((org.clone(), key.to_owned()))
            .or_insert_with(|| Entry::InFlight { body });
        if entry.is_fresh() {
            Begin::Fresh
        } else {
            verdict(entry.value(), &body)
        }
    }

    /// Keeps the answer a fresh key's placement got.
    pub async fn finish(
        &self,
        org: &Arc<str>,
        key: &str,
        body: [u8; 32],
        kept: Kept,
        redis: Option<&Redis>,
    ) {
        let entry = Entry::Done { body, kept };
        if let Some(redis) = redis {
            redis
                .put_sealed(&redis_key(redis, org, key), &encode(&entry), KEPT)
                .await;
        }
        self.memory.insert((org.clone(), key.to_owned()), entry);
    }

    /// Frees a fresh key whose placement placed nothing and may be retried (a full route):
    /// nothing is kept for it.
    pub async fn forget(&self, org: &Arc<str>, key: &str, redis: Option<&Redis>) {
        if let Some(redis) = redis {
            redis.del(&redis_key(redis, org, key)).await;
        }
        self.memory.invalidate(&(org.clone(), key.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_key_is_fresh_then_in_flight_then_replayed_and_another_body_is_refused() {
        let keys = Keys::default();
        let org: Arc<str> = Arc::from("o");
        let (a, b) = (digest(b"a"), digest(b"b"));
        assert_eq!(keys.begin(&org, "k", a, None).await, Begin::Fresh);
        assert_eq!(keys.begin(&org, "k", a, None).await, Begin::InFlight);
        assert_eq!(keys.begin(&org, "k", b, None).await, Begin::Reused);
        let kept = Kept {
            status: 201,
            body: Bytes::from_static(b"{}"),
        };
        keys.finish(&org, "k", a, kept.clone(), None).await;
        assert_eq!(keys.begin(&org, "k", a, None).await, Begin::Replay(kept));
        assert_eq!(keys.begin(&org, "k", b, None).await, Begin::Reused);
        let other: Arc<str> = Arc::from("p");
        assert_eq!(keys.begin(&other, "k", b, None).await, Begin::Fresh);
        keys.forget(&other, "k", None).await;
        assert_eq!(keys.begin(&other, "k", a, None).await, Begin::Fresh);
    }

    #[test]
    fn entries_read_back_as_written() {
        let done = Entry::Done {
            body: digest(b"x"),
            kept: Kept {
                status: 422,
                body: Bytes::from_static(b"{\"errors\":[]}"),
            },
        };
        let back = decode(&encode(&done)).unwrap();
        assert_eq!(verdict(&back, &digest(b"x")), verdict(&done, &digest(b"x")));
        assert!(decode(b"").is_none() && decode(&[1; 20]).is_none() && decode(&[7; 40]).is_none());
    }
}

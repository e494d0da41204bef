//! The fleet level of coalescing (with `[state] backend = "redis"`): one replica asks the
//! upstream for the whole fleet. A lease in Redis (`SET NX PX`) picks the replica that asks;
//! it stores the answer, sealed, and the others read it: for `cache_ttl_ms` when there is a
//! TTL, and otherwise only the replicas that were waiting on that very ask, as in memory,
//! where an ask is shared only while in flight. Whenever Redis fails, is slow or is down,
//! the replica asks for itself.

use std::future::Future;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::call::Call;
use crate::provider::{Calls, ProviderError};
use crate::state::redis::Redis;
use crate::state::seal::{Rejected, Sealer};

/// How often a replica waiting on another's ask looks for its answer: soon at first (most
/// asks take milliseconds), then less often, so a slow upstream costs Redis little.
const POLL_FIRST: Duration = Duration::from_millis(1);
const POLL_MAX: Duration = Duration::from_millis(25);
/// Without a TTL, how long an answer stays for the replicas that waited on it.
const WAITERS_KEEP: Duration = Duration::from_secs(1);
/// How long a lease holds unless renewed. Its holder renews it every third of this while it
/// asks, so a holder that dies, hangs or loses Redis holds up the others for at most this.
const LEASE: Duration = Duration::from_millis(1_000);
/// Bytes of the ask's token at the front of a stored answer.
const TOKEN: usize = 16;

/// Bytes of the time the answer was stored (Unix ms, big-endian), after the token.
const STORED_AT: usize = 8;

/// How much later than its expiry a stored answer may be read: room for clocks that differ
/// between replicas. One read later than that is an old answer written back (replayed), and
/// is refused, so a stranger who can write to Redis cannot freeze the fleet's view.
const CLOCK_SKEW_MS: u64 = 1_000;

/// With a TTL (`ARGV[1]` = 1), the stored answer and its time to live if there is one;
/// otherwise the lease taken (`SET NX PX`) if no one holds it: `{answer or "", pttl, won}`.
/// One script, so an ask that finishes between the read and the lease is never repeated.
static READ_OR_LEASE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
        if ARGV[1] == '1' then
            local answer = redis.call('GET', KEYS[1])
            if answer then
                return {answer, redis.call('PTTL', KEYS[1]), 0}
            end
        end
        local won = redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3])
        return {'', 0, won and 1 or 0}
        ",
    )
});

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// This replica asked the upstream.
    Upstream,
    /// Another replica asked and this one read its answer.
    Fleet,
}

/// An answer, how long it may still be served, and where it came from.
#[derive(Clone)]
pub struct Fresh {
    pub calls: Calls,
    pub life: Duration,
    pub source: Source,
    /// When the replica that asked stored it (Unix ms), for an answer read from the fleet.
    pub stored_at: Option<u64>,
}

/// One provider's fleet level.
pub struct Fleet {
    redis: Arc<Redis>,
    provider: Arc<str>,
    ttl: Duration,
    /// The longest a replica waits on another's ask: the provider's whole deadline and a
    /// little (it stops sooner when the lease is given up or lapses).
    wait_for: Duration,
    /// The last answer read or stored, per caller, with its version (SHA-256 of its bytes):
    /// an unchanged answer read again is the very same `Calls`, so the snapshot built from it
    /// is reused as it is when answers come from this replica's own asks.
    last: moka::sync::Cache<Option<[u8; 32]>, ([u8; 32], Calls)>,
}

impl Fleet {
    pub fn new(redis: Arc<Redis>, provider: Arc<str>, ttl: Duration, deadline: Duration) -> Self {
        Self {
            redis,
            provider,
            ttl,
            wait_for: deadline + Duration::from_millis(250),
            last: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_idle(crate::provider::CALLER_IDLE)
                .build(),
        }
    }

    fn answer_key(&self, caller: Option<&[u8; 32]>) -> String {
        match caller {
            None => Sealer::key("answer", &self.provider),
            // The caller's digest only ever appears inside an HMAC.
            Some(digest) => self
                .redis
                .sealer
                .secret_key("answer", &[self.provider.as_bytes(), digest]),
        }
    }

    fn here(&self, calls: Calls) -> Fresh {
        Fresh {
            calls,
            life: self.ttl,
            source: Source::Upstream,
            stored_at: None,
        }
    }

    /// How long a stored answer lives: the TTL, or without one long enough for the replicas
    /// that waited on its ask to read it.
    fn keep(&self) -> Duration {
        if self.ttl.is_zero() {
            WAITERS_KEEP
        } else {
            self.ttl
        }
    }

    /// The answer for `caller`: another replica's, or `fetch`'s, which is then shared.
    pub async fn ask(
        &self,
        caller: Option<[u8; 32]>,
        fetch: impl Future<Output = Result<Calls, ProviderError>>,
    ) -> Result<Fresh, ProviderError> {
        if !self.redis.is_up() {
            return fetch.await.map(|c| self.here(c));
        }
        let key = self.answer_key(caller.as_ref());
        let lease = format!("{key}:lease");
        let cached = !self.ttl.is_zero();
        // One round trip: the stored answer if there is one (with a TTL), else the lease.
        let token: [u8; TOKEN] = fastrand::u128(..).to_be_bytes();
        let read = self
            .redis
            .run("lease", |mut c| {
                let (key, lease) = (&key, &lease);
                async move {
                    READ_OR_LEASE
                        .key(key)
                        .key(lease)
                        .arg(u8::from(cached))
                        .arg(&token[..])
                        .arg(LEASE.as_millis() as u64)
                        .invoke_async::<(Vec<u8>, i64, i64)>(&mut c)
                        .await
                }
            })
            .await;
        let Some((value, pttl, won)) = read else {
            return fetch.await.map(|c| self.here(c));
        };
        if !value.is_empty() {
            if let Some(fresh) = self.stored(caller, &key, value, pttl) {
                return Ok(fresh);
            }
            // Not this fleet's (counted): as if there were none, so the lease is taken now.
            let lease_cmd = redis::cmd("SET")
                .arg(&lease)
                .arg(&token[..])
                .arg("NX")
                .arg("PX")
                .arg(LEASE.as_millis() as u64)
                .clone();
            match self.redis.cmd::<Option<String>>("lease", lease_cmd).await {
                None => return fetch.await.map(|c| self.here(c)),
                Some(Some(_)) => return self.lead(caller, &key, &lease, &token, fetch).await,
                Some(None) => {}
            }
        } else if won == 1 {
            return self.lead(caller, &key, &lease, &token, fetch).await;
        }
        match self.wait(caller, &key, &lease).await {
            Some(fresh) => Ok(fresh),
            None => fetch.await.map(|c| self.here(c)),
        }
    }

    /// The lease holder's part: ask, and share the answer.
    async fn lead(
        &self,
        caller: Option<[u8; 32]>,
        key: &str,
        lease: &str,
        token: &[u8; TOKEN],
        fetch: impl Future<Output = Result<Calls, ProviderError>>,
    ) -> Result<Fresh, ProviderError> {
        let renew = async {
            loop {
                tokio::time::sleep(LEASE / 3).await;
                let renewed = redis::cmd("PEXPIRE")
                    .arg(lease)
                    .arg(LEASE.as_millis() as u64)
                    .clone();
                let _: Option<i64> = self.redis.cmd("lease", renewed).await;
            }
        };
        let result = tokio::select! {
            result = fetch => result,
            never = renew => never,
        };
        self.share(caller, key, lease, token, result.as_ref().ok())
            .await;
        result.map(|c| self.here(c))
    }

    /// A stored answer, read with its time to live, as a fresh one if it is one of this
    /// fleet's: kept here only for the life it has left.
    fn stored(
        &self,
        caller: Option<[u8; 32]>,
        key: &str,
        value: Vec<u8>,
        pttl: i64,
    ) -> Option<Fresh> {
        let (_, stored_at, calls) = self.decode(caller, key, &value)?;
        let left = Duration::from_millis(pttl.max(0) as u64);
        Some(Fresh {
            calls,
            life: left.min(self.ttl),
            source: Source::Fleet,
            stored_at: Some(stored_at),
        })
    }

    /// The winner's part: the answer stored (never an error), then the lease given up.
    async fn share(
        &self,
        caller: Option<[u8; 32]>,
        key: &str,
        lease: &str,
        token: &[u8; TOKEN],
        calls: Option<&Calls>,
    ) {
        let sealed = calls.and_then(|calls| {
            let json = serde_json::to_vec(&**calls).ok()?;
            self.last
                .insert(caller, (Sha256::digest(&json).into(), calls.clone()));
            let mut payload = Vec::with_capacity(TOKEN + STORED_AT + json.len());
            payload.extend_from_slice(token);
            payload.extend_from_slice(&crate::call::time::now_ms().to_be_bytes());
            payload.extend_from_slice(&json);
            Some(self.redis.sealer.seal(key, &payload))
        });
        let keep = self.keep();
        let _: Option<()> = self
            .redis
            .run("set", |mut c| async move {
                let mut pipe = redis::pipe();
                if let Some(sealed) = sealed {
                    pipe.cmd("SET")
                        .arg(key)
                        .arg(sealed)
                        .arg("PX")
                        .arg(keep.as_millis() as u64)
                        .ignore();
                }
                pipe.cmd("DEL").arg(lease).ignore();
                pipe.query_async(&mut c).await
            })
            .await;
    }

    /// A loser's part: waits for the answer of the ask holding the lease. `None`: that ask
    /// failed or vanished, or Redis did, and this replica should ask itself.
    async fn wait(&self, caller: Option<[u8; 32]>, key: &str, lease: &str) -> Option<Fresh> {
        let deadline = Instant::now() + self.wait_for;
        let mut holder: Option<Vec<u8>> = None;
        let mut poll = POLL_FIRST;
        while Instant::now() < deadline {
            // The lease first: an answer read after it with the same token is that ask's.
            let (now_holding, value) = self
                .redis
                .run("wait", |mut c| async move {
                    redis::pipe()
                        .get(lease)
                        .get(key)
                        .query_async::<(Option<Vec<u8>>, Option<Vec<u8>>)>(&mut c)
                        .await
                })
                .await?;
            let awaited = holder.clone().or_else(|| now_holding.clone());
            if let Some((token, stored_at, calls)) =
                value.and_then(|v| self.decode(caller, key, &v))
            {
                // With a TTL any stored answer is fresh; without one, only that of the ask
                // this replica waited on.
                if !self.ttl.is_zero() || awaited.as_deref() == Some(&token[..]) {
                    return Some(Fresh {
                        calls,
                        life: self.ttl,
                        source: Source::Fleet,
                        stored_at: Some(stored_at),
                    });
                }
            }
            match (&holder, now_holding) {
                (_, None) => return None,
                (None, Some(h)) => holder = Some(h),
                (Some(h), Some(now)) if *h != now => return None,
                _ => {}
            }
            tokio::time::sleep(poll).await;
            poll = (poll * 2).min(POLL_MAX);
        }
        None
    }

    /// A stored answer's token and calls, if this fleet sealed it for `key` and it reads.
    fn decode(
        &self,
        caller: Option<[u8; 32]>,
        key: &str,
        value: &[u8],
    ) -> Option<([u8; TOKEN], u64, Calls)> {
        let payload = self.redis.open("answer", key, value)?;
        if payload.len() < TOKEN + STORED_AT {
            self.redis.rejected("answer", Rejected::Decode);
            return None;
        }
        let (token, rest) = payload.split_at(TOKEN);
        let (stored_at, json) = rest.split_at(STORED_AT);
        let token: [u8; TOKEN] = token.try_into().expect("split at TOKEN");
        let stored_at = u64::from_be_bytes(stored_at.try_into().expect("split at STORED_AT"));
        let oldest = stored_at + self.keep().as_millis() as u64 + CLOCK_SKEW_MS;
        if crate::call::time::now_ms() > oldest {
            self.redis.rejected("answer", Rejected::Stale);
            return None;
        }
        let version: [u8; 32] = Sha256::digest(json).into();
        if let Some((v, calls)) = self.last.get(&caller) {
            if v == version {
                return Some((token, stored_at, calls));
            }
        }
        let Ok(mut calls) = serde_json::from_slice::<Vec<Call>>(json) else {
            self.redis.rejected("answer", Rejected::Decode);
            return None;
        };
        // One shared id for every call, as a backend's own parse gives.
        for call in &mut calls {
            call.provider = self.provider.clone();
        }
        let calls = Arc::new(calls);
        self.last.insert(caller, (version, calls.clone()));
        Some((token, stored_at, calls))
    }
}

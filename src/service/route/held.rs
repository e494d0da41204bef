//! A place held on a route target before its request is sent: on this replica (`Here`), or
//! fleet-wide on Redis (`Fleet`) for a target with a limit, so that placements through
//! different replicas never take it past its limit together.
//!
//! On Redis each provider has one hash of holds, `token → "until_ms|call_id"`. A hold is
//! taken by one script that drops the lapsed ones, counts the others that the replica's list
//! does not already show, and adds the new one only under the limit; the replica names the
//! holds its list shows, read just before, so a hold added meanwhile counts as unlisted
//! (never too few). A hold ends when its target refuses, when its call is ended through
//! callmux, or when it lapses; a call that ends on its own keeps its place until then.

use std::sync::{Arc, LazyLock};

use super::super::place::{self, Reserved};
use crate::call::time::now_ms;
use crate::state::redis::Redis;
use crate::state::seal::Sealer;

/// How long a fleet hold lasts: as a replica's own (`place::HOLD`).
const HOLD_MS: u64 = place::HOLD.as_millis() as u64;

static TAKE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
        local now = tonumber(ARGV[1])
        local limit = tonumber(ARGV[4])
        local listed = tonumber(ARGV[5])
        local shown = {}
        for i = 6, #ARGV do shown[ARGV[i]] = true end
        local all = redis.call('HGETALL', KEYS[1])
        local held = 0
        for i = 1, #all, 2 do
            local until_ms = tonumber(string.match(all[i + 1], '^(%d+)'))
            if until_ms == nil or until_ms <= now then
                redis.call('HDEL', KEYS[1], all[i])
            elseif not shown[all[i]] then
                held = held + 1
            end
        end
        if listed + held >= limit then return 0 end
        redis.call('HSET', KEYS[1], ARGV[3], ARGV[2] .. '|')
        redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) - now)
        return 1
        ",
    )
});

/// Drops the holds of one call id.
static END: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
        local all = redis.call('HGETALL', KEYS[1])
        local suffix = '|' .. ARGV[1]
        for i = 1, #all, 2 do
            local v = all[i + 1]
            if string.sub(v, -#suffix) == suffix then redis.call('HDEL', KEYS[1], all[i]) end
        end
        return 1
        ",
    )
});

fn key(provider: &str) -> String {
    Sealer::key("held", provider)
}

/// A place held for one placement.
#[derive(Debug)]
pub enum Held {
    Here(place::Hold),
    Fleet {
        redis: Arc<Redis>,
        key: String,
        token: String,
    },
}

impl Held {
    /// Holds a place on `provider` if it has room: `listed` calls (as capacity counts them)
    /// plus the holds `shown` does not list are under `limit`. Fleet-wide with Redis and a
    /// limit; on this replica otherwise, or while Redis fails.
    pub async fn take(
        provider: &str,
        reserved: &Arc<Reserved>,
        redis: Option<&Arc<Redis>>,
        listed: u64,
        limit: Option<u32>,
        shown: impl Fn(&str) -> bool,
    ) -> Option<Self> {
        if let (Some(redis), Some(limit)) = (redis, limit) {
            if let Some(taken) = Self::take_fleet(provider, redis, listed, limit, &shown).await {
                return taken;
            }
        }
        reserved.hold(listed, limit, shown).map(Self::Here)
    }

    /// `None`: Redis failed, and the replica holds on its own.
    async fn take_fleet(
        provider: &str,
        redis: &Arc<Redis>,
        listed: u64,
        limit: u32,
        shown: &impl Fn(&str) -> bool,
    ) -> Option<Option<Self>> {
        let key = key(provider);
        let holds: Vec<(String, String)> = redis
            .cmd("held", redis::cmd("HGETALL").arg(&key).clone())
            .await?;
        let listed_tokens: Vec<&str> = holds
            .iter()
            .filter(|(_, v)| {
                v.split_once('|')
                    .is_some_and(|(_, id)| !id.is_empty() && shown(id))
            })
            .map(|(t, _)| t.as_str())
            .collect();
        let token = format!("{:032x}", fastrand::u128(..));
        let now = now_ms();
        let taken: i64 = redis
            .run("held", |mut c| {
                let (key, token, listed_tokens) = (&key, &token, &listed_tokens);
                async move {
                    let mut call = TAKE.key(key);
                    call.arg(now)
                        .arg(now + HOLD_MS)
                        .arg(token)
                        .arg(limit)
                        .arg(listed);
                    for t in listed_tokens {
                        call.arg(*t);
                    }
                    call.invoke_async(&mut c).await
                }
            })
            .await?;
        Some((taken == 1).then(|| Self::Fleet {
            redis: redis.clone(),
            key,
            token,
        }))
    }

    /// The target refused: nothing holds the place.
    pub async fn release(self) {
        match self {
            Self::Here(hold) => hold.release(),
            Self::Fleet { redis, key, token } => {
                let _: Option<i64> = redis
                    .cmd("held", redis::cmd("HDEL").arg(&key).arg(&token).clone())
                    .await;
            }
        }
    }

    /// The call exists (or may): the place stays held, known by `call_id` once there is one.
    pub async fn keep(self, call_id: Option<&str>) {
        match self {
            Self::Here(hold) => hold.keep(call_id),
            Self::Fleet { redis, key, token } => {
                let value = format!("{}|{}", now_ms() + HOLD_MS, call_id.unwrap_or(""));
                let _: Option<i64> = redis
                    .cmd(
                        "held",
                        redis::cmd("HSET").arg(&key).arg(&token).arg(value).clone(),
                    )
                    .await;
            }
        }
    }
}

/// A call placed through callmux was ended through callmux: its fleet hold ends at once.
pub async fn ended(redis: &Redis, provider: &str, call_id: &str) {
    let key = key(provider);
    let _: Option<i64> = redis
        .run("held", |mut c| {
            let key = &key;
            async move { END.key(key).arg(call_id).invoke_async(&mut c).await }
        })
        .await;
}

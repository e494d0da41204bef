//! Placing calls across a fleet (`[state] backend = "redis"`): a placement holds a lock in
//! Redis on every candidate server from before it lists them until the chosen one has
//! answered, so placements through different replicas take turns, and each counts the calls
//! the others placed (an agent server lists a call as soon as it is placed). Within one
//! replica, `place::Reserved` still keeps concurrent placements apart.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use tokio::time::Instant;

use crate::state::redis::Redis;
use crate::state::seal::Sealer;

/// Takes every key or none: `1` if taken.
static TAKE_ALL: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
        for i, key in ipairs(KEYS) do
            if redis.call('EXISTS', key) == 1 then return 0 end
        end
        for i, key in ipairs(KEYS) do
            redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
        end
        return 1
        ",
    )
});

/// Gives up the keys this placement still holds (a key that lapsed and was taken by
/// another placement is left alone).
static GIVE_UP: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
        for i, key in ipairs(KEYS) do
            if redis.call('GET', key) == ARGV[1] then redis.call('DEL', key) end
        end
        return 1
        ",
    )
});

/// First wait between tries for the lock, doubling up to `TRY_MAX`.
const TRY_FIRST: Duration = Duration::from_millis(2);
const TRY_MAX: Duration = Duration::from_millis(50);

/// Why no lock is held.
pub enum Refused {
    /// Other placements held the candidates for longer than this one may wait.
    Busy,
}

/// The lock on a placement's candidate servers; given up when dropped.
pub struct FleetLock {
    redis: Arc<Redis>,
    keys: Vec<String>,
    token: Vec<u8>,
}

impl FleetLock {
    /// Takes the lock on `providers` (their ids), for at most `hold`, waiting up to `wait`
    /// for placements through other replicas. `Ok(None)`: Redis is down or failed, and the
    /// placement goes on as a lone replica's would.
    pub async fn take(
        redis: &Arc<Redis>,
        providers: &[&str],
        hold: Duration,
        wait: Duration,
    ) -> Result<Option<Self>, Refused> {
        let keys: Vec<String> = providers.iter().map(|p| Sealer::key("place", p)).collect();
        let token = fastrand::u128(..).to_be_bytes().to_vec();
        let deadline = Instant::now() + wait;
        let mut pause = TRY_FIRST;
        loop {
            let taken = redis
                .run("place", |mut c| {
                    let (keys, token) = (&keys, &token);
                    async move {
                        let mut call = TAKE_ALL.prepare_invoke();
                        for key in keys {
                            call.key(key);
                        }
                        call.arg(&token[..]).arg(hold.as_millis() as u64);
                        call.invoke_async::<i64>(&mut c).await
                    }
                })
                .await;
            match taken {
                None => return Ok(None),
                Some(1) => {
                    return Ok(Some(Self {
                        redis: redis.clone(),
                        keys,
                        token,
                    }))
                }
                Some(_) if Instant::now() + pause >= deadline => return Err(Refused::Busy),
                Some(_) => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(TRY_MAX);
                }
            }
        }
    }
}

impl Drop for FleetLock {
    /// Off the request: a placement that was cancelled (its client went away) gives up its
    /// lock too, and the lock's expiry bounds what a lost replica can hold.
    fn drop(&mut self) {
        let (redis, keys, token) = (
            self.redis.clone(),
            std::mem::take(&mut self.keys),
            std::mem::take(&mut self.token),
        );
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let _: Option<i64> = redis
                .run("place", |mut c| {
                    let (keys, token) = (&keys, &token);
                    async move {
                        let mut call = GIVE_UP.prepare_invoke();
                        for key in keys {
                            call.key(key);
                        }
                        call.arg(&token[..]);
                        call.invoke_async::<i64>(&mut c).await
                    }
                })
                .await;
        });
    }
}

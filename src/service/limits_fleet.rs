//! Each key's rates shared by the fleet (`[state] backend = "redis"`): the same GCRA cells as
//! in memory, held in Redis and taken by one Lua script on Redis's own clock, so N replicas
//! together admit a key's rate, not N times it. Cell names are HMACs of the org, the key's
//! name and digest and the rate, so Redis holds nothing a key could be told from, and a key
//! whose digest or rate changed starts afresh.
//!
//! A key's `requests` cell is taken in leases ([`Lease`]): a replica takes several emissions
//! in one round trip and spends them locally, so a busy key costs one Redis round trip per
//! lease, not per request. Leases stay small (at most a hundredth of a second's rate, grown
//! from one only while a replica spends them all, cut back to what it spent when one
//! expires), so what a lease holds back from the other replicas is bounded and short-lived.

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use crate::config::KeySpec;
use crate::state::redis::Redis;

/// Takes up to `ARGV[1]` emissions from every cell, the same number from each, or none.
/// `KEYS[i]` is a cell (its theoretical arrival time, in µs of Redis's clock);
/// `ARGV[2i]` its emission interval in µs and `ARGV[2i+1]` its burst. Returns
/// `{0, taken}` when admitted, else `{i, µs to wait}` for the first cell with no emission
/// to give. Redis 5+ replicates a script's effects, so reading `TIME` before writing is
/// allowed.
static TAKE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
        local taken = tonumber(ARGV[1])
        local tats = {}
        local intervals = {}
        for i, key in ipairs(KEYS) do
            local interval = tonumber(ARGV[2 * i])
            local burst = tonumber(ARGV[2 * i + 1])
            local tat = tonumber(redis.call('GET', key) or now) or now
            if tat < now then tat = now end
            local room = math.floor((now + burst * interval - tat) / interval)
            if room < 1 then
                return {i, math.ceil(tat + interval - now - burst * interval)}
            end
            if room < taken then taken = room end
            tats[i] = tat
            intervals[i] = interval
        end
        for i, key in ipairs(KEYS) do
            local tat = tats[i] + taken * intervals[i]
            local ttl = math.ceil((tat - now) / 1000) + 1000
            redis.call('SET', key, string.format('%.0f', tat), 'PX', string.format('%d', ttl))
        end
        return {0, taken}
        ",
    )
});

/// One cell to take from: what it limits and its rate per second.
#[derive(Clone, Copy)]
pub struct Cell {
    pub what: &'static str,
    pub per_second: NonZeroU32,
}

/// What the fleet said.
pub enum Taken {
    /// This many emissions (at least one, at most the number asked for) were taken.
    Admitted(u32),
    /// `cells[index]` refused; retry after `wait`.
    Refused { index: usize, wait: Duration },
}

/// Takes up to `want` (at least one) from each of `cells` of `key` (of org `org`) on Redis.
/// `None`: Redis is down, failed or slow, and the caller limits in memory instead.
pub async fn take(
    redis: &Arc<Redis>,
    org: &str,
    key: &KeySpec,
    cells: &[Cell],
    want: u32,
) -> Option<Taken> {
    let names: Vec<String> = cells
        .iter()
        .map(|c| {
            redis.sealer.secret_key(
                "rate",
                &[
                    org.as_bytes(),
                    key.name.as_bytes(),
                    key.digest.as_bytes(),
                    c.what.as_bytes(),
                    &c.per_second.get().to_be_bytes(),
                ],
            )
        })
        .collect();
    let answer: Vec<i64> = redis
        .run("rate", |mut conn| {
            let names = &names;
            async move {
                let mut call = TAKE.prepare_invoke();
                call.arg(want.max(1));
                for (name, cell) in names.iter().zip(cells) {
                    let rate = u64::from(cell.per_second.get());
                    // A burst of one second's worth, as in memory.
                    call.key(name).arg(1_000_000 / rate).arg(rate);
                }
                call.invoke_async::<Vec<i64>>(&mut conn).await
            }
        })
        .await?;
    match answer.as_slice() {
        [0, taken] if *taken >= 1 => Some(Taken::Admitted(
            u32::try_from(*taken).unwrap_or(u32::MAX).min(want.max(1)),
        )),
        [i, wait] if *i >= 1 && (*i as usize) <= cells.len() => Some(Taken::Refused {
            index: *i as usize - 1,
            wait: Duration::from_micros((*wait).max(1) as u64),
        }),
        _ => None,
    }
}

/// How long a lease's emissions may be spent: no longer than the burst they came from.
const LEASE_LIFE: Duration = Duration::from_secs(1);
/// A lease is at most this share of a second's rate, so what replicas hold back together
/// stays a small part of what the key may do.
const LEASE_SHARE: u32 = 100;

/// A replica's emissions of one key's `requests` cell, taken from the fleet's ahead of use.
#[derive(Default)]
pub struct Lease {
    state: Mutex<Leased>,
    /// One refill at a time: the requests waiting behind it spend what it brings.
    refill: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Leased {
    left: u32,
    /// How many the last lease took, and until when they may be spent.
    size: u32,
    until: Option<Instant>,
}

impl Leased {
    fn spend(&mut self, now: Instant) -> bool {
        let live = self.until.is_some_and(|until| now < until);
        if self.left > 0 && live {
            self.left -= 1;
            return true;
        }
        false
    }

    /// The next lease: one at first; twice the last while each is spent in its life; what
    /// was spent of the last when it expired with emissions left.
    fn next(&self, now: Instant, most: u32) -> u32 {
        let wanted = match self.until {
            None => 1,
            Some(until) if now < until || self.left == 0 => self.size.saturating_mul(2),
            Some(_) => self.size - self.left,
        };
        wanted.clamp(1, most)
    }
}

impl Lease {
    /// Takes one emission of `cell` for `key`: from this replica's lease while it lasts, else
    /// by taking a new lease from Redis. `None` as [`take`].
    pub async fn take(
        &self,
        redis: &Arc<Redis>,
        org: &str,
        key: &KeySpec,
        cell: Cell,
    ) -> Option<Taken> {
        let most = (cell.per_second.get() / LEASE_SHARE).max(1);
        if self.lock().spend(Instant::now()) {
            return Some(Taken::Admitted(1));
        }
        let _refilling = self.refill.lock().await;
        let now = Instant::now();
        let want = {
            let mut leased = self.lock();
            // Another request refilled while this one waited.
            if leased.spend(now) {
                return Some(Taken::Admitted(1));
            }
            leased.next(now, most)
        };
        let taken = take(redis, org, key, std::slice::from_ref(&cell), want).await?;
        if let Taken::Admitted(count) = taken {
            *self.lock() = Leased {
                left: count - 1,
                size: count,
                until: Some(Instant::now() + LEASE_LIFE),
            };
        }
        Some(taken)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Leased> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_grows_while_spent_and_shrinks_to_what_was_spent_when_it_expires() {
        let start = Instant::now();
        let mut leased = Leased::default();
        assert_eq!(leased.next(start, 50), 1);
        leased = Leased {
            left: 0,
            size: 8,
            until: Some(start + LEASE_LIFE),
        };
        assert_eq!(leased.next(start, 50), 16);
        assert_eq!(leased.next(start, 10), 10);
        leased.left = 3;
        let later = start + LEASE_LIFE;
        assert!(!leased.spend(later), "an expired lease is not spent");
        assert_eq!(leased.next(later, 50), 5);
        assert!(leased.spend(start));
        assert_eq!(leased.left, 2);
    }
}

//! Each key's rates shared by the fleet (`[state] backend = "redis"`): the same GCRA cells as
//! in memory, held in Redis and taken by one Lua script on Redis's own clock, so N replicas
//! together admit a key's rate, not N times it. Cell names are HMACs of the org, the key's
//! name and digest and the rate, so Redis holds nothing a key could be told from, and a key
//! whose digest or rate changed starts afresh.

use std::num::NonZeroU32;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use crate::config::KeySpec;
use crate::state::redis::Redis;

/// Takes one emission from every cell or from none. `KEYS[i]` is a cell (its theoretical
/// arrival time, in µs of Redis's clock); `ARGV[2i-1]` its emission interval in µs and
/// `ARGV[2i]` its burst. Returns `{0, 0}` when admitted, else `{i, µs to wait}` for the
/// first cell that refused. Redis 5+ replicates a script's effects, so reading `TIME`
/// before writing is allowed.
static TAKE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
        local tats = {}
        for i, key in ipairs(KEYS) do
            local interval = tonumber(ARGV[2 * i - 1])
            local burst = tonumber(ARGV[2 * i])
            local tat = tonumber(redis.call('GET', key) or now) or now
            if tat < now then tat = now end
            local wait = tat + interval - now - burst * interval
            if wait > 0 then return {i, math.ceil(wait)} end
            tats[i] = tat + interval
        end
        for i, key in ipairs(KEYS) do
            local ttl = math.ceil((tats[i] - now) / 1000) + 1000
            redis.call('SET', key, string.format('%.0f', tats[i]), 'PX', string.format('%d', ttl))
        end
        return {0, 0}
        ",
    )
});

/// One cell to take from: what it limits and its rate per second.
pub struct Cell {
    pub what: &'static str,
    pub per_second: NonZeroU32,
}

/// What the fleet said.
pub enum Taken {
    Admitted,
    /// `cells[index]` refused; retry after `wait`.
    Refused {
        index: usize,
        wait: Duration,
    },
}

/// Takes one from each of `cells` of `key` (of org `org`) on Redis. `None`: Redis is down,
/// failed or slow, and the caller limits in memory instead.
pub async fn take(redis: &Arc<Redis>, org: &str, key: &KeySpec, cells: &[Cell]) -> Option<Taken> {
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
        [0, _] => Some(Taken::Admitted),
        [i, wait] if *i >= 1 && (*i as usize) <= cells.len() => Some(Taken::Refused {
            index: *i as usize - 1,
            wait: Duration::from_micros((*wait).max(1) as u64),
        }),
        _ => None,
    }
}

//! Orgs with webhooks watched while no one is subscribed (DESIGN §17): one watcher per such
//! org lists it every poll period with no caller and hands each change to the outboxes, as a
//! stream's poller would. With Redis one replica watches for the whole fleet: it holds a
//! lease (`SET NX PX`, renewed at each poll), which another replica takes once it lapses.
//! An org whose callers bring their own Bland keys cannot be listed without them, and is
//! watched only through its streams.

use std::sync::{Arc, LazyLock, Weak};
use std::time::Duration;

use super::Outboxes;
use crate::service::live::{Change, Source, State, Tap};
use crate::service::ListError;
use crate::state::redis::Redis;
use crate::telemetry::Telemetry;

/// Takes the lease, or renews it if this replica holds it: `1` if it holds it now.
static HOLD: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
        if redis.call('GET', KEYS[1]) == ARGV[1] then
            redis.call('PEXPIRE', KEYS[1], ARGV[2])
            return 1
        end
        if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
        return 0
        ",
    )
});

/// Starts a watcher for every org with webhooks; each ends when the outboxes are dropped or
/// its org is gone.
pub fn start(
    source: Arc<dyn Source>,
    outboxes: &Arc<Outboxes>,
    redis: Option<Arc<Redis>>,
    telemetry: &Arc<Telemetry>,
) {
    if tokio::runtime::Handle::try_current().is_err() {
        return;
    }
    for org in outboxes.orgs() {
        tokio::spawn(watch(
            org,
            source.clone(),
            Arc::downgrade(outboxes),
            redis.clone(),
            telemetry.clone(),
        ));
    }
}

/// Whether this replica watches `org` for the fleet now (always, without Redis; never
/// while Redis does not answer, since no event could be queued then).
async fn holds(redis: &Redis, org: &str, lease: Duration) -> bool {
    let key = redis.sealer.secret_key("watch", &[org.as_bytes()]);
    let me = format!("{:016x}", redis.origin);
    let held: Option<i64> = redis
        .run("watch", |mut c| {
            let (key, me) = (&key, &me);
            async move {
                HOLD.key(key)
                    .arg(me)
                    .arg(lease.as_millis() as u64)
                    .invoke_async(&mut c)
                    .await
            }
        })
        .await;
    held == Some(1)
}

async fn watch(
    org: String,
    source: Arc<dyn Source>,
    outboxes: Weak<Outboxes>,
    redis: Option<Arc<Redis>>,
    telemetry: Arc<Telemetry>,
) {
    let polls = telemetry.counter("callmux_webhook_watch_polls_total", &[("org", &org)]);
    // The list last seen, kept while another replica holds the lease: a change it sent is
    // sent again under the same id, which the fleet's queue takes once.
    let mut last: Option<State> = None;
    loop {
        let Some(period) = source.poll_period(&org) else {
            return;
        };
        tokio::time::sleep(period).await;
        let Some(outboxes) = outboxes.upgrade() else {
            return;
        };
        if let Some(redis) = &redis {
            // Three periods and a second: a watcher that died is replaced that soon.
            if !holds(redis, &org, period * 3 + Duration::from_secs(1)).await {
                continue;
            }
        }
        polls.increment(1);
        let state = match source.list_unattended(&org).await {
            None => return,
            Some(Ok(listed)) => State::Listed(listed.snapshot),
            Some(Err(ListError::AllFailed { failures, .. })) => State::AllFailed {
                org: Arc::from(org.as_str()),
                failures,
            },
            Some(Err(ListError::Auth(_))) => continue,
        };
        if let Some(before) = &last {
            if let Some(change) = Change::between(before, &state) {
                outboxes.changed(&org, before, &state, &change);
            }
        }
        last = Some(state);
    }
}

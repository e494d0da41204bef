//! Pushed changes shared by a fleet (`[state] backend = "redis"`): a status callback taken by
//! one replica moves the call forward in every replica's streams at once, over Redis pub/sub.
//! Polled changes need no message: every replica with subscribers polls, and with a TTL it
//! reads the answer another replica fetched. A message is sealed like every value, so a
//! stranger who can publish cannot move a call; a push replayed or out of order moves
//! nothing back, as on the replica that took it.

use std::sync::{Arc, Weak};

use serde::{Deserialize, Serialize};

use crate::call::CallStatus;
use crate::service::reload::Live;
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

/// Applies, for as long as `live` serves, every push another replica shares.
pub fn listen(live: &Arc<Live>) {
    let Some(redis) = live.current().service.store().redis().cloned() else {
        return;
    };
    let live: Weak<Live> = Arc::downgrade(live);
    let mut messages = redis.subscribe("live", channel());
    let origin = redis.origin;
    let store = Arc::downgrade(&redis);
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

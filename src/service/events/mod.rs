//! callmux's own event stream out: each change of an org's live list made into the events of
//! DESIGN §17 (`call.*`, `provider.*`), each with an id derived from the change, queued for
//! every endpoint of the org that takes its type ([`outbox`]; with Redis, the fleet's queue
//! of [`shared`]); an org with endpoints is watched while no one is subscribed ([`watch`]).

pub mod outbox;
pub mod shared;
pub mod watch;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::call::Call;
use crate::service::live::{Change, State, Tap};
use crate::service::merge::ProviderFailure;
use crate::state::redis::Redis;
use crate::telemetry::Telemetry;
use crate::Config;
pub use outbox::{Endpoint, EndpointView, Lookup};

/// One event as sent: its id (the same on every retry and every replica that sees the same
/// change), its type, and its body.
#[derive(Debug, Clone)]
pub struct OutEvent {
    pub id: String,
    pub kind: &'static str,
    pub body: Bytes,
}

/// Every org's endpoints; the hub's tap.
pub struct Outboxes {
    by_org: HashMap<String, Vec<Arc<Endpoint>>>,
}

impl Outboxes {
    /// An outbox per endpoint configured, resolving names with `lookup`; with `redis`, each
    /// endpoint's pending deliveries are the fleet's, kept there.
    pub fn new(
        config: &Config,
        telemetry: &Arc<Telemetry>,
        lookup: Arc<dyn Lookup>,
        redis: Option<Arc<Redis>>,
    ) -> Self {
        let by_org = config
            .orgs
            .iter()
            .filter(|o| !o.webhooks.is_empty())
            .map(|o| {
                let endpoints = o
                    .webhooks
                    .iter()
                    .map(|w| {
                        Endpoint::new(
                            &o.id,
                            w.clone(),
                            telemetry.clone(),
                            lookup.clone(),
                            redis.clone(),
                        )
                    })
                    .collect();
                (o.id.clone(), endpoints)
            })
            .collect();
        Self { by_org }
    }

    /// The orgs with endpoints.
    pub fn orgs(&self) -> Vec<String> {
        self.by_org.keys().cloned().collect()
    }

    /// The org's endpoints, in name order.
    pub fn of(&self, org: &str) -> &[Arc<Endpoint>] {
        self.by_org.get(org).map(Vec::as_slice).unwrap_or_default()
    }

    /// Queues `event` for each of the org's endpoints that takes its type.
    pub fn send(&self, org: &str, event: &OutEvent) {
        for endpoint in self.of(org) {
            if endpoint.spec().wants(event.kind) {
                endpoint.enqueue(event);
            }
        }
    }
}

impl Tap for Outboxes {
    fn changed(&self, org: &str, before: &State, after: &State, change: &Change) {
        if self.of(org).is_empty() {
            return;
        }
        for event in events(org, before, after, change, SystemTime::now()) {
            self.send(org, &event);
        }
    }
}

/// The events one change makes: a call first listed, changed or gone, and a provider that
/// began or stopped failing.
pub fn events(
    org: &str,
    before: &State,
    after: &State,
    change: &Change,
    now: SystemTime,
) -> Vec<OutEvent> {
    let mut out = Vec::new();
    let call = |kind: &'static str, c: &Call| {
        let mut data: Map<String, Value> =
            serde_json::from_slice(&crate::wire::own::call_object(c)).unwrap_or_default();
        data.insert("org".into(), Value::from(org));
        event(org, kind, Value::Object(data), None, now)
    };
    out.extend(change.added.iter().map(|c| call("call.started", c)));
    out.extend(change.updated.iter().map(|c| call("call.updated", c)));
    let old = before.calls();
    for id in &change.ended {
        if let Some(c) = old.iter().find(|c| c.call_id == *id) {
            out.push(call("call.ended", c));
        }
    }
    let version = after.version().to_string();
    let failing = |list: &[ProviderFailure], p: &ProviderFailure| {
        list.iter()
            .any(|f| f.provider == p.provider && f.error == p.error)
    };
    for f in after.failures() {
        if !failing(before.failures(), f) {
            let data = json!({"provider": &*f.provider, "error": f.error.code().as_str(), "message": f.error.to_string()});
            out.push(event(org, "provider.failed", data, Some(&version), now));
        }
    }
    for f in before.failures() {
        if !after.failures().iter().any(|a| a.provider == f.provider) {
            let data = json!({"provider": &*f.provider, "error": f.error.code().as_str(), "message": "answers again"});
            out.push(event(org, "provider.recovered", data, Some(&version), now));
        }
    }
    out
}

/// The body `{"type", "timestamp", "data"}`, and an id hashed from the org, the type and the
/// data (and for provider events, the list's version, so a provider failing again later is
/// a new event): every replica that sees the change names it alike.
fn event(
    org: &str,
    kind: &'static str,
    data: Value,
    version: Option<&str>,
    now: SystemTime,
) -> OutEvent {
    let data_text = data.to_string();
    let mut h = Sha256::new();
    for part in [org, kind, &data_text, version.unwrap_or("")] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let id = format!("evt_{}", &hex::encode(h.finalize())[..32]);
    let ms = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let timestamp = crate::call::time::to_iso8601(ms).unwrap_or_default();
    let body = format!(r#"{{"type":"{kind}","timestamp":"{timestamp}","data":{data_text}}}"#);
    OutEvent {
        id,
        kind,
        body: Bytes::from(body),
    }
}

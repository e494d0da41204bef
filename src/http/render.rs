//! Bodies written from snapshots, kept per (org, caller, shape) with the version they were
//! written from: a snapshot whose version has not changed is answered with the same bytes.

use std::sync::{Arc, Mutex};

use metrics::Counter;

use crate::call::Call;
use crate::provider::CALLER_IDLE;
use crate::service::{Listed, Snapshot, Version};
use crate::telemetry::Telemetry;
use crate::wire::{ErrorItem, Shape, Written};

/// Snapshots this long are written on the blocking pool, as they are merged there.
const WRITE_OFF_RUNTIME_CALLS: usize = crate::service::OFF_RUNTIME_CALLS;

// Writing in two halves waits for another thread; it must only ever start on the blocking
// pool.
const _: () = assert!(WRITE_OFF_RUNTIME_CALLS <= crate::wire::WRITE_IN_TWO_FROM);

/// The last body per (org, caller, shape). Entries unasked for a minute go, so callers who
/// bring their own keys and then leave are forgotten.
pub struct Bodies {
    slots: moka::sync::Cache<SlotKey, Arc<Slot>>,
    telemetry: Arc<Telemetry>,
}

/// The org, and the digest of the caller's own credentials where each caller gets their own.
type SlotKey = (Arc<str>, Option<[u8; 32]>);

struct Slot {
    rendered: [Mutex<Option<(Version, Written)>>; 2],
    /// Held while a body is written, per shape, so that requests that arrive meanwhile
    /// with the same snapshot wait for that body rather than each writing their own.
    building: [tokio::sync::Mutex<()>; 2],
    /// Bodies written (not reused), per shape: `callmux_bodies_built_total`, by org.
    built: [Counter; 2],
}

/// Orgs and callers whose last bodies are kept at most.
const SLOTS_KEPT: u64 = 100_000;

impl Bodies {
    pub fn new(telemetry: Arc<Telemetry>) -> Self {
        Self {
            slots: moka::sync::Cache::builder()
                .max_capacity(SLOTS_KEPT)
                .time_to_idle(CALLER_IDLE)
                .build(),
            telemetry,
        }
    }

    /// The body of `listed` in `shape`: the last one written, if written from the same
    /// version, else a new one.
    pub async fn body(&self, listed: &Listed, shape: Shape) -> Written {
        let snapshot = &listed.snapshot;
        let org = snapshot.org();
        let slot = self.slots.get_with((org.clone(), listed.caller), || {
            Arc::new(Slot {
                rendered: Default::default(),
                building: Default::default(),
                built: Shape::ALL.map(|s| {
                    self.telemetry.counter(
                        "callmux_bodies_built_total",
                        &[("org", org), ("shape", s.name())],
                    )
                }),
            })
        });
        let version = snapshot.version();
        if let Some(hit) = slot.reuse(shape, version) {
            return hit;
        }
        let _building = slot.building[shape as usize].lock().await;
        // Another request may have written it while this one waited.
        if let Some(hit) = slot.reuse(shape, version) {
            return hit;
        }
        let body = if snapshot.len() >= WRITE_OFF_RUNTIME_CALLS {
            let snapshot = snapshot.clone();
            tokio::task::spawn_blocking(move || write(&snapshot, shape))
                .await
                .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
        } else {
            write(snapshot, shape)
        };
        slot.built[shape as usize].increment(1);
        *slot.rendered[shape as usize].lock().expect("render lock") = Some((version, body.clone()));
        body
    }
}

impl Slot {
    fn reuse(&self, shape: Shape, version: Version) -> Option<Written> {
        let slot = self.rendered[shape as usize].lock().expect("render lock");
        slot.as_ref()
            .filter(|(v, _)| *v == version)
            .map(|(_, body)| body.clone())
    }
}

/// The snapshot's list in `shape`, with `errors` naming its failures.
pub fn write(snapshot: &Snapshot, shape: Shape) -> Written {
    let calls: Vec<&Call> = snapshot.calls().collect();
    with_error_items(snapshot.failures(), |errors| {
        shape.write_parts(&calls, snapshot.org(), errors)
    })
}

/// Writes a body with the `errors` entries naming `failures`, through `write`.
pub fn with_error_items<R>(
    failures: &[crate::service::merge::ProviderFailure],
    write: impl FnOnce(&[ErrorItem<'_>]) -> R,
) -> R {
    let messages: Vec<String> = failures.iter().map(|f| f.error.to_string()).collect();
    let items: Vec<ErrorItem<'_>> = failures
        .iter()
        .zip(&messages)
        .map(|(f, m)| ErrorItem {
            provider: Some(&f.provider),
            error: f.error.code(),
            message: m,
        })
        .collect();
    write(&items)
}

//! Bodies written from snapshots, once per snapshot and shape, kept with the snapshot: a
//! snapshot whose content has not changed is answered with the same bytes.

use crate::call::Call;
use crate::service::{Listed, Snapshot};
use crate::telemetry::Telemetry;
use crate::wire::{ErrorItem, Shape, Written};

/// Snapshots this long are written on the blocking pool, as they are merged there.
const WRITE_OFF_RUNTIME_CALLS: usize = crate::service::OFF_RUNTIME_CALLS;

// Writing in two halves waits for another thread; it must only ever start on the blocking
// pool.
const _: () = assert!(WRITE_OFF_RUNTIME_CALLS <= crate::wire::WRITE_IN_TWO_FROM);

/// The body of `listed` in `shape`: written the first time it is asked for, and then the
/// same bytes for every request that gets this snapshot. Requests that arrive while it is
/// written wait for it rather than each writing their own.
pub async fn body(listed: &Listed, shape: Shape, telemetry: &Telemetry) -> Written {
    snapshot_body(&listed.snapshot, shape, telemetry).await
}

/// [`body`] of a snapshot, however it was come by (a list request, or a stream's poller).
pub async fn snapshot_body(
    snapshot: &std::sync::Arc<Snapshot>,
    shape: Shape,
    telemetry: &Telemetry,
) -> Written {
    snapshot
        .body(shape)
        .get_or_init(|| async {
            let body = if snapshot.len() >= WRITE_OFF_RUNTIME_CALLS {
                let snapshot = snapshot.clone();
                tokio::task::spawn_blocking(move || write(&snapshot, shape))
                    .await
                    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
            } else {
                write(snapshot, shape)
            };
            // Registered when a body is written, which happens only when content changes.
            telemetry
                .counter(
                    "callmux_bodies_built_total",
                    &[("org", snapshot.org()), ("shape", shape.name())],
                )
                .increment(1);
            body
        })
        .await
        .clone()
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

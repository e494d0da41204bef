//! callmux: one active-calls endpoint over many voice-call platforms, in the shape each client speaks.

pub mod api;
mod app;
pub mod auth;
pub mod breaker;
pub mod call;
pub mod coalesce;
pub mod config;
pub mod connections;
pub mod live;
pub mod merge;
pub mod observe;
pub mod provider;
pub mod wire;

use std::future::Future;
use std::sync::Arc;

pub use app::{App, ListError, Listed};
pub use config::Config;
pub use live::Live;

/// Serves `app` on `listener`, within the `[server]` connection bounds, until `shutdown`
/// resolves; then stops accepting connections and lets in-flight requests finish, for at most
/// `[server] shutdown_grace_ms`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    live: Arc<Live>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    observe::prometheus();
    let config = live.current().app.config().server.clone();
    let grace = config.shutdown_grace;
    let limits = connections::ConnectionLimits {
        header_read_timeout: config.header_read_timeout,
        idle_timeout: config.idle_timeout,
        max_connections: config.max_connections,
    };
    let (signalled, on_signal) = tokio::sync::oneshot::channel();
    let server = connections::serve(listener, api::router(live), limits, async move {
        shutdown.await;
        let _ = signalled.send(());
    });
    let grace_expired = async move {
        if on_signal.await.is_ok() {
            tokio::time::sleep(grace).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        result = server => result,
        () = grace_expired => {
            tracing::warn!(grace_ms = grace.as_millis() as u64, "shutdown grace expired; exiting with requests in flight");
            Ok(())
        }
    }
}

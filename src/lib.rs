//! callmux: one active-calls endpoint over many voice-call platforms, in the shape each client speaks.

pub mod call;
pub mod config;
pub mod error_code;
pub mod http;
pub mod keys;
pub mod provider;
pub mod scope;
pub mod service;
pub mod settings;
pub mod state;
pub mod telemetry;
pub mod wire;

use std::future::Future;
use std::sync::Arc;

pub use config::Config;
pub use service::reload::Live;
pub use service::Service;

/// Serves `app` on `listener`, within the `[server]` connection bounds, until `shutdown`
/// resolves; then stops accepting connections, ends every live stream with a final event,
/// and lets in-flight requests finish, for at most `[server] shutdown_grace_ms`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    live: Arc<Live>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let config = live.current().service.config().server.clone();
    let grace = config.shutdown_grace;
    let limits = http::connections::ConnectionLimits {
        header_read_timeout: config.header_read_timeout,
        idle_timeout: config.idle_timeout,
        max_connections: config.max_connections,
    };
    let (signalled, on_signal) = tokio::sync::oneshot::channel();
    let hub_of = live.clone();
    let server = http::connections::serve(
        listener,
        http::router(live.clone()),
        limits,
        live.telemetry(),
        async move {
            shutdown.await;
            // Streams never end on their own: each gets a final event, and its connection
            // closes like any other finished answer.
            hub_of
                .hub()
                .close("callmux is shutting down; reconnect shortly");
            let _ = signalled.send(());
        },
    );
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

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
        max_header_bytes: config.max_header_bytes,
    };
    // `/metrics` on a listener of its own, when asked for: it lives as long as the API's.
    let _metrics = match config.metrics_bind {
        Some(addr) => Some(serve_metrics(addr, &live, limits).await?),
        None => None,
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

/// Binds `[server] metrics_bind` and serves `/metrics` there until the returned guard drops.
async fn serve_metrics(
    addr: std::net::SocketAddr,
    live: &Arc<Live>,
    limits: http::connections::ConnectionLimits,
) -> std::io::Result<AbortOnDrop> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!(
                "cannot listen on [server] metrics_bind {addr}: {e}; free the port or choose \
                 another"
            ),
        )
    })?;
    let bound = listener.local_addr()?;
    tracing::info!("callmux metrics on http://{bound}/metrics");
    let router = http::metrics_access::own_listener(
        &live.current().service.config().server,
        live.telemetry().clone(),
    );
    let telemetry = live.telemetry().clone();
    Ok(AbortOnDrop(tokio::spawn(async move {
        let _ =
            http::connections::serve(listener, router, limits, &telemetry, std::future::pending())
                .await;
    })))
}

/// Ends a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

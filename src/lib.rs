//! callmux: one active-calls endpoint over many voice-call platforms, in the shape each client speaks.

pub mod api;
mod app;
pub mod auth;
pub mod breaker;
pub mod call;
pub mod coalesce;
pub mod config;
pub mod merge;
pub mod provider;
pub mod wire;

use std::future::Future;
use std::sync::Arc;

pub use app::{App, ListError, Listed};
pub use config::Config;

/// Serves `app` on `listener` until `shutdown` resolves, then lets in-flight requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, api::router(app))
        .with_graceful_shutdown(shutdown)
        .await
}

//! The dashboard (DESIGN §12): one page, its script, styles and icon, built into the binary
//! and served under a policy that lets the page load nothing but these, from callmux itself.

use std::sync::LazyLock;

pub use super::paths::{ICON_ROUTE, PAGE_ROUTE, SCRIPT_ROUTE, STYLE_ROUTE};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};

/// Only this origin's own files; no inline script or style, no frames, no plugins, and forms
/// and `<base>` cannot point anywhere else.
const POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

/// One file of the dashboard, with its validator computed once.
struct Asset {
    body: &'static str,
    content_type: &'static str,
    etag: HeaderValue,
}

impl Asset {
    fn new(body: &'static str, content_type: &'static str) -> Self {
        let digest = Sha256::digest(body.as_bytes());
        let etag = format!("\"{}\"", hex::encode(&digest[..12]));
        Self {
            body,
            content_type,
            etag: HeaderValue::from_str(&etag).expect("hex in quotes"),
        }
    }

    /// The file, or 304 when the browser already holds this very version. Browsers ask again
    /// each time (`no-cache`), so a new binary's page is never mixed with an old script.
    fn serve(&self, request: &HeaderMap) -> Response {
        let fresh = request
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|tags| {
                tags.split(',')
                    .any(|t| t.trim().trim_start_matches("W/") == self.etag)
            });
        let headers = [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(self.content_type),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (header::ETAG, self.etag.clone()),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(POLICY),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ];
        if fresh {
            (StatusCode::NOT_MODIFIED, headers).into_response()
        } else {
            (StatusCode::OK, headers, self.body).into_response()
        }
    }
}

static PAGE: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        include_str!("dashboard/index.html"),
        "text/html; charset=utf-8",
    )
});
static SCRIPT: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        include_str!("dashboard/app.js"),
        "text/javascript; charset=utf-8",
    )
});
static STYLE: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        include_str!("dashboard/style.css"),
        "text/css; charset=utf-8",
    )
});
static ICON: LazyLock<Asset> =
    LazyLock::new(|| Asset::new(include_str!("dashboard/icon.svg"), "image/svg+xml"));

/// The dashboard's routes. They need nothing of the server's state.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            PAGE_ROUTE,
            get(|h: HeaderMap| async move { PAGE.serve(&h) }),
        )
        .route(
            SCRIPT_ROUTE,
            get(|h: HeaderMap| async move { SCRIPT.serve(&h) }),
        )
        .route(
            STYLE_ROUTE,
            get(|h: HeaderMap| async move { STYLE.serve(&h) }),
        )
        .route(
            ICON_ROUTE,
            get(|h: HeaderMap| async move { ICON.serve(&h) }),
        )
}

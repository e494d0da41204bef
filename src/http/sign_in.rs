//! Sign-in links for the dashboard: `POST /me/link` mints a single-use token for the key
//! the request proved, and `POST /sign-in` exchanges such a token, once, for that org and
//! key, so a link carries a token that is spent on first use rather than the key itself.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use super::gate::Caller;
pub use super::paths::{ME_LINK_ROUTE, SIGN_IN_ROUTE};
use super::{json, refusal, Edge};
use crate::error_code::ErrorCode;
use crate::service::sign_in::{SignIn, LINK_TTL};
use crate::service::ListError;
use crate::wire::{ErrorItem, Shape};

/// The header `POST /sign-in` reads the token from (never the address, so no log or
/// history keeps it).
pub const TOKEN_HEADER: &str = "x-callmux-sign-in";

/// Mints a link for the caller's own key (any key that may read may make one).
pub async fn link(State(edge): State<Arc<Edge>>, Caller(caller): Caller) -> Response {
    let loaded = edge.live.current();
    let p = match caller {
        Ok(p) => p,
        Err(e) => return refusal(Shape::Own, ListError::Auth(e)).0,
    };
    let who = match loaded.service.whoami(&p).await {
        Ok(who) => who,
        Err(e) => return refusal(Shape::Own, ListError::Auth(e)).0,
    };
    let Ok(authorization) = p.authorization().to_str() else {
        // `Presented` accepts only visible ASCII, so this is not reached.
        return refusal(
            Shape::Own,
            ListError::Auth(crate::service::auth::AuthError::UnreadableKey),
        )
        .0;
    };
    let token = edge
        .sign_in
        .mint(SignIn {
            org: who.org.to_string(),
            authorization: SecretString::from(authorization.to_owned()),
        })
        .await;
    tracing::info!(org = %who.org, key = %who.key, "sign-in link minted");
    no_store(json(
        StatusCode::CREATED,
        json!({
            "link": format!("/#token={token}"),
            "token": token,
            "expires_in_secs": LINK_TTL.as_secs(),
            "org": &*who.org,
            "key": &*who.key,
        })
        .to_string(),
    ))
}

/// Exchanges a token from `x-callmux-sign-in` for the org and the `authorization` to send.
pub async fn exchange(State(edge): State<Arc<Edge>>, headers: HeaderMap) -> Response {
    let token = headers
        .get(TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 128);
    let taken = match token {
        Some(token) => edge.sign_in.take(token).await,
        None => None,
    };
    let Some(sign_in) = taken else {
        let message = if token.is_some() {
            "this sign-in link was used already, has expired, or was never issued; ask for a \
             new one (POST /me/link with your key)"
        } else {
            "missing x-callmux-sign-in header: send the token of a sign-in link"
        };
        let mut response = json(
            StatusCode::UNAUTHORIZED,
            Shape::Own.write_error(&[ErrorItem {
                provider: None,
                error: ErrorCode::AuthFailure,
                message,
            }]),
        );
        super::challenge(&mut response);
        return response;
    };
    tracing::info!(org = %sign_in.org, "sign-in link used");
    no_store(json(
        StatusCode::OK,
        json!({
            "org": sign_in.org,
            "authorization": sign_in.authorization.expose_secret(),
        })
        .to_string(),
    ))
}

/// Neither answer is kept by any cache.
fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

//! `GET /me`: who the caller's key is and what it may do; `POST /me/link` and `POST
//! /sign-in`: the dashboard's single-use sign-in links.

#![allow(dead_code)] // described, never constructed: the handler writes this shape

use utoipa::{OpenApi, ToSchema};

use super::shared::ListHeaders;
use crate::http::me::ROUTE;
use crate::http::paths::{ME_LINK_ROUTE, SIGN_IN_ROUTE};

#[derive(OpenApi)]
#[openapi(
    paths(who_am_i, create_sign_in_link, use_sign_in_link),
    components(schemas(Me, Scope, SignInLink, SignedIn))
)]
pub(super) struct KeysDoc;

/// Who this key is
///
/// The caller's org, the name its key was issued under, the scopes it holds and the routes its
/// org may place calls on (`POST /calls`), so a client (the dashboard) offers only what the
/// key may do. Any valid key may ask; a caller's own
/// Bland key is checked by Bland first, as a list would be, and is named `bland-caller`.
#[utoipa::path(
    get,
    path = ROUTE,
    operation_id = "whoAmI",
    tag = "keys",
    security(("orgKey" = [])),
    params(ListHeaders),
    responses(
        (status = 200, body = Me, description = "The key's org, name and scopes, and the org's routes.",
            example = json!({"org": "acme", "key": "dialer", "scopes": ["read", "place"],
                "routes": ["sales"]})),
    )
)]
fn who_am_i() {}

/// Mint a single-use sign-in link
///
/// A token for the dashboard, good once and for 300 s, that signs in as the key this
/// request proved: open `link` on callmux (`/#token=...`) and the dashboard exchanges it
/// (`POST /sign-in`). The link carries no key, so no browser history keeps one. Needs the
/// `read` scope.
#[utoipa::path(
    post,
    path = ME_LINK_ROUTE,
    operation_id = "createSignInLink",
    tag = "keys",
    security(("orgKey" = [])),
    params(ListHeaders),
    responses(
        (status = 201, body = SignInLink, description = "A new single-use link.",
            example = json!({"link": "/#token=3f2a…", "token": "3f2a…", "expires_in_secs": 300,
                "org": "acme", "key": "wallboard"})),
    )
)]
fn create_sign_in_link() {}

/// Use a sign-in link
///
/// Exchanges a link's token, once, for the org and the `authorization` value to send: what
/// the dashboard does when opened at `/#token=...`. A token used, expired or never minted
/// is a 401 `AUTH_FAILURE`.
#[utoipa::path(
    post,
    path = SIGN_IN_ROUTE,
    operation_id = "useSignInLink",
    tag = "keys",
    params(
        ("x-callmux-sign-in" = String, Header, description = "The link's token."),
    ),
    responses(
        (status = 200, body = SignedIn, description = "Signed in: send these from now on.",
            example = json!({"org": "acme", "authorization": "<the key>"})),
    )
)]
fn use_sign_in_link() {}

/// A single-use sign-in link.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
struct SignInLink {
    /// The path to open on callmux: `/#token=<token>`.
    link: String,
    /// The token, for `POST /sign-in`.
    token: String,
    /// How long it is good for.
    expires_in_secs: u64,
    /// The org it signs in to.
    org: String,
    /// The name of the key it signs in as; never the key.
    key: String,
}

/// What a sign-in link signs in as.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
struct SignedIn {
    /// The org (its `x-bland-org-id`).
    org: String,
    /// The `authorization` header value to send.
    authorization: String,
}

/// The caller, as proved.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
struct Me {
    /// The org (its `x-bland-org-id`).
    org: String,
    /// The key's name (`default` for `api_key_env` / `api_key_sha256`); never the key.
    key: String,
    /// What the key may do.
    scopes: Vec<Scope>,
    /// The routes the org may place calls on (`route` in `POST /calls`), its default first;
    /// empty for an org without routes.
    routes: Vec<String>,
}

/// One power a key may hold.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
enum Scope {
    Read,
    End,
    StopAll,
    Place,
    Forward,
}

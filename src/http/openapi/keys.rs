//! `GET /me`: who the caller's key is and what it may do.

#![allow(dead_code)] // described, never constructed: the handler writes this shape

use utoipa::{OpenApi, ToSchema};

use super::shared::ListHeaders;
use crate::http::me::ROUTE;

#[derive(OpenApi)]
#[openapi(paths(who_am_i), components(schemas(Me, Scope)))]
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

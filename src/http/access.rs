//! Which route needs which scope: the one table every request is checked against, with the
//! envelope each route refuses in.

use super::paths::*;
use crate::scope::Scope::{self, *};
use crate::wire::Shape;

/// What a route asks of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// A key holding this scope.
    Key(Scope),
    /// Any valid key, whatever its scopes (the caller asking what it may do).
    AnyKey,
    /// No key: a platform's callback, proved by its signature.
    Signature,
    /// No key: the probes, the metrics, the OpenAPI document and the dashboard's files.
    Public,
}

/// The envelope a route answers a refusal in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// A list's (and its stream's) error body in this shape.
    List(Shape),
    /// `{"success": false, "error": ..., "code": ...}`, as the agent server answers.
    Agent,
    /// `{"status": "error", "message": ..., "code": ...}`, as Bland's call routes answer.
    Bland,
}

/// Every route the router serves, by the path it is routed under. A route missing here is
/// refused whatever the key (and `tests/it/keys.rs` fails).
pub const ROUTES: &[(&str, Access, Reply)] = &[
    (BLAND_ROUTE, Access::Key(Read), Reply::List(Shape::Bland)),
    (CALLS_ROUTE, Access::Key(Read), Reply::List(Shape::Calls)),
    (OWN_ROUTE, Access::Key(Read), Reply::List(Shape::Own)),
    (
        BLAND_STREAM_ROUTE,
        Access::Key(Read),
        Reply::List(Shape::Bland),
    ),
    (
        CALLS_STREAM_ROUTE,
        Access::Key(Read),
        Reply::List(Shape::Calls),
    ),
    (OWN_STREAM_ROUTE, Access::Key(Read), Reply::List(Shape::Own)),
    // Routes issues 20 and 22 add, named by path so they are covered the moment they land.
    (CAPACITY_ROUTE, Access::Key(Read), Reply::List(Shape::Own)),
    (WEBHOOKS_ROUTE, Access::Key(Read), Reply::List(Shape::Own)),
    (END_ROUTE, Access::Key(End), Reply::Agent),
    (STOP_ROUTE, Access::Key(End), Reply::Bland),
    (STOP_ALL_ROUTE, Access::Key(StopAll), Reply::Bland),
    (PLACE_ROUTE, Access::Key(Place), Reply::Agent),
    (ME_ROUTE, Access::AnyKey, Reply::List(Shape::Own)),
    (ME_LINK_ROUTE, Access::Key(Read), Reply::List(Shape::Own)),
    // Proved by the single-use token it carries, not a key.
    (SIGN_IN_ROUTE, Access::Public, Reply::List(Shape::Own)),
    (HOOK_ROUTE, Access::Signature, Reply::Bland),
    (PAGE_ROUTE, Access::Public, Reply::Bland),
    (SCRIPT_ROUTE, Access::Public, Reply::Bland),
    (STYLE_ROUTE, Access::Public, Reply::Bland),
    (ICON_ROUTE, Access::Public, Reply::Bland),
    ("/healthz", Access::Public, Reply::Bland),
    ("/readyz", Access::Public, Reply::Bland),
    ("/metrics", Access::Public, Reply::Bland),
    ("/openapi.json", Access::Public, Reply::Bland),
];

/// Routes whose path another method serves too, with what this method needs; looked up
/// before [`ROUTES`].
pub const BY_METHOD: &[(&str, &str, Access, Reply)] = &[(
    "POST",
    OWN_ROUTE,
    Access::Key(Place),
    Reply::List(Shape::Own),
)];

/// What Bland's other `/v1/` routes need, forwarded (the router's fallback, not a route).
pub const FORWARDED: Scope = Forward;

/// The access and envelope of the route routed under `path` for `method`; `None`: not in
/// the table.
pub fn of(method: &str, path: &str) -> Option<(Access, Reply)> {
    BY_METHOD
        .iter()
        .find(|(m, route, ..)| *m == method && *route == path)
        .map(|&(_, _, access, reply)| (access, reply))
        .or_else(|| {
            ROUTES
                .iter()
                .find(|(route, ..)| *route == path)
                .map(|&(_, access, reply)| (access, reply))
        })
}

//! `POST /calls`: placing a call on one of the org's routes, from the bodies callmux itself
//! serialises (`crate::service::route`) and the refusal `crate::http::place` writes.

#![allow(dead_code)] // described, never called: the handler is `crate::http::place`

use utoipa::{IntoParams, OpenApi, ToSchema};

use super::shared::ControlErrorCode;
use crate::http::paths::OWN_ROUTE;
use crate::service::route::{Attempt, RoutePlaced};

#[derive(OpenApi)]
#[openapi(
    paths(place_on_route),
    components(schemas(RoutePlaced, Attempt, PlaceRefused, PlaceError))
)]
pub(super) struct RoutesDoc;

/// Place a call on a route
///
/// The org's route (`route`, or its first) chooses a target by its strategy among those with
/// headroom, not cooling down and with a closed circuit; a place is held on it before the
/// request is sent, once. A target that refuses before the call exists (connection refused,
/// 429, 503, the platform's own "at capacity") is recorded in `attempts` and the next is
/// tried. With `Idempotency-Key`, the first answer is kept 24 h and sent again (with
/// `idempotent-replayed: true`) for the same body.
#[utoipa::path(
    post,
    path = OWN_ROUTE,
    operation_id = "placeCallOnRoute",
    tag = "control",
    security(("orgKey" = [])),
    params(PlaceHeaders),
    request_body(content = PlaceOnRoute, content_type = "application/json",
        description = "At most 65,536 bytes."),
    responses(
        (status = 201, body = RoutePlaced, description = "The call was placed.",
            headers(("idempotent-replayed" = String, description = "`true` when this is a \
                kept answer sent again, else `false`.")),
            example = json!({"call_id": "static-5f0c…", "provider": "demo-agents",
                "route": "demo", "status": "queued", "attempts": []})),
        (status = 400, body = PlaceRefused, description = "`INVALID_BODY`: a field or the \
            `idempotency-key` header is wrong; the message names it. Nothing was sent.",
            example = json!({"errors": [{"error": "INVALID_BODY", "message": "field `to` is \
                \"555\", not an E.164 number; write it as + and the country code and number, \
                e.g. \"+14155550123\""}]})),
        (status = 404, body = PlaceRefused, description = "`ROUTE_NOT_FOUND`: the route is \
            not one the org may use, or the org has none.",
            example = json!({"errors": [{"error": "ROUTE_NOT_FOUND", "message": "route \
                \"x\" is not one this organisation may use; it may use [\"demo\"]"}]})),
        (status = 409, body = PlaceRefused, description = "`IDEMPOTENCY_IN_FLIGHT`: the \
            first placement with this key is still being answered.",
            headers(("retry-after" = u32, description = "Seconds to wait."))),
        (status = 422, body = PlaceRefused, description = "`PLACE_REJECTED`: the platform \
            refused the call itself (a number it will not dial), with its message; not tried \
            elsewhere. Or `IDEMPOTENCY_KEY_REUSED`: the key was used with another body."),
        (status = 503, body = PlaceRefused, description = "`AT_CAPACITY`: no target has \
            room (after the route's queue, if it has one), or every target with room \
            refused; `attempts` lists them.",
            headers(("retry-after" = u32, description = "Seconds to wait: until the \
                soonest cooldown ends, else 5."))),
        (status = 504, body = PlaceRefused, description = "`OUTCOME_UNKNOWN`: the target \
            may have placed the call (a timeout, a broken connection, a 5xx, a 2xx without \
            a readable call id); it is sent nowhere else. List the calls to see."),
    )
)]
fn place_on_route() {}

/// The headers a placement may carry besides the org's credentials.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
struct PlaceHeaders {
    /// 1 to 255 visible ASCII characters; the same key with the same body is answered once
    /// and never placed twice.
    #[param(
        rename = "idempotency-key",
        min_length = 1,
        max_length = 255,
        pattern = "^[!-~]+$"
    )]
    idempotency_key: Option<String>,
}

/// A placement in callmux's shape.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
struct PlaceOnRoute {
    /// The number to call, E.164.
    #[schema(pattern = r"^\+[1-9][0-9]{1,14}$")]
    to: String,
    /// One of the org's routes; its first when left out.
    #[schema(min_length = 1)]
    route: Option<String>,
    /// Text the agent's prompt takes by name.
    #[schema(value_type = Option<std::collections::HashMap<String, String>>)]
    variables: Option<serde_json::Value>,
    /// Kept with the call by platforms that keep metadata.
    #[schema(value_type = Option<Object>)]
    metadata: Option<serde_json::Value>,
}

/// A placement refused, in callmux's own envelope: why, and the targets tried before. The
/// refusals every route gives (401, 403, 429, ...) come as the list's own refusal, with an
/// empty `calls` and a `count` of 0.
#[derive(ToSchema)]
struct PlaceRefused {
    #[schema(min_items = 1)]
    errors: Vec<PlaceError>,
    attempts: Option<Vec<Attempt>>,
    #[schema(value_type = Option<Vec<Object>>, max_items = 0)]
    calls: Option<Vec<serde_json::Value>>,
    #[schema(minimum = 0, maximum = 0)]
    count: Option<u64>,
}

/// Why a placement was refused.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
struct PlaceError {
    /// The provider the failure is about, when one was asked.
    provider: Option<String>,
    error: ControlErrorCode,
    message: String,
}

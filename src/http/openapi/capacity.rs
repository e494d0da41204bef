//! `GET /capacity`: how full each of the org's providers is, from the body callmux itself
//! serialises (`crate::service::capacity`).

#![allow(dead_code)] // described, never called: the handler is `crate::http::capacity`

use utoipa::OpenApi;

use crate::http::capacity::CAPACITY_ROUTE;
use crate::provider::capacity::Source;
use crate::service::capacity::{Capacity, CapacityError, ProviderCapacity, Total};

#[derive(OpenApi)]
#[openapi(
    paths(capacity),
    components(schemas(Capacity, ProviderCapacity, Total, CapacityError, Source))
)]
pub(super) struct CapacityDoc;

/// How full each provider is
///
/// Each of the org's providers' active calls (listed, or as the platform counts them, plus
/// calls being placed through callmux) against its limit (the smaller of the configured and
/// the platform's), from the same snapshot and caches as the lists: asked right after a
/// list, it costs no further upstream request. A provider whose list or capacity ask failed
/// keeps its last figures and is named in `errors`; the answer is still 200.
#[utoipa::path(
    get,
    path = CAPACITY_ROUTE,
    operation_id = "getCapacity",
    tag = "calls",
    security(("orgKey" = [])),
    responses(
        (status = 200, body = Capacity, description = "The org's capacity.",
            example = json!({
                "providers": [
                    {"provider": "retell-main", "kind": "retell", "active": 4, "limit": 20,
                        "headroom": 16, "source": "platform", "places_calls": false,
                        "cooling_until": null},
                    {"provider": "agents", "kind": "twilio-media-stream", "active": 2,
                        "limit": null, "headroom": null, "source": "none",
                        "places_calls": true, "cooling_until": null}],
                "total": {"active": 6, "limit": null, "headroom": null},
                "errors": null})),
    )
)]
fn capacity() {}

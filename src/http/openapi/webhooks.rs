//! `GET /webhooks`: the caller's org's webhook endpoints and how their deliveries stand.

#![allow(dead_code)] // described, never constructed: the route writes these shapes

use utoipa::{OpenApi, ToSchema};

use crate::http::webhooks::WEBHOOKS_ROUTE;

#[derive(OpenApi)]
#[openapi(
    paths(list_webhooks),
    components(schemas(Webhooks, Webhook, WebhookFailure)),
    tags((name = "events", description = "callmux's signed event stream to an org's own endpoints"))
)]
pub(super) struct WebhooksDoc;

/// The org's webhook endpoints
///
/// Every `[orgs.<id>.webhooks.<name>]` endpoint of the caller's org, in name order, with the
/// events it takes, how many events wait for (or are in) a delivery attempt, and when the
/// last delivery succeeded and the last attempt failed, and why. Never a secret. Refusals
/// come in callmux's own list envelope.
#[utoipa::path(
    get,
    path = WEBHOOKS_ROUTE,
    operation_id = "listWebhooks",
    tag = "events",
    responses(
        (status = 200, body = Webhooks, description = "The org's endpoints (none when it has no webhooks).",
            example = json!({"webhooks": [{"name": "ops", "url": "https://ops.example.com/callmux",
                "events": ["call.started", "call.ended"], "pending": 0,
                "last_success": "2026-01-02T03:04:05.000Z",
                "last_failure": {"at": "2026-01-02T03:00:00.000Z", "reason": "answered HTTP 500"}}],
                "count": 1})),
    )
)]
fn list_webhooks() {}

/// The org's endpoints.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
struct Webhooks {
    webhooks: Vec<Webhook>,
    /// How many endpoints are listed.
    #[schema(minimum = 0)]
    count: u64,
}

/// One endpoint and its deliveries.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
struct Webhook {
    /// The `<name>` of `[orgs.<id>.webhooks.<name>]`.
    name: String,
    /// The endpoint's URL, without user info, query or fragment.
    url: String,
    /// The event types it takes.
    events: Vec<String>,
    /// Events waiting for a delivery attempt or in one.
    #[schema(minimum = 0)]
    pending: u64,
    /// When an event was last delivered (ISO 8601), or `null`.
    #[schema(required = true)]
    last_success: Option<String>,
    /// The last failed attempt, or `null`.
    #[schema(required = true)]
    last_failure: Option<WebhookFailure>,
}

/// A failed delivery attempt.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
struct WebhookFailure {
    /// When (ISO 8601).
    at: String,
    /// Why: the endpoint's status, a timeout, or why no connection was made.
    reason: String,
}

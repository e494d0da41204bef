//! The three lists of live calls (`GET /v1/calls/active`, `GET /api/calls`, `GET /calls`):
//! their answers, and the call and envelope schemas of each shape.

#![allow(dead_code)] // described, never constructed: the wire writers produce these shapes

use utoipa::openapi::schema::ArrayBuilder;
use utoipa::{OpenApi, ToSchema};

use super::shared::{
    named, null, nullable_failures, ErrorItem, ListHeaders, ProviderFailure, RequestFailure,
};
use crate::http::{BLAND_ROUTE, CALLS_ROUTE, OWN_ROUTE};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "callmux",
        version = env!("CARGO_PKG_VERSION"),
        description = "One active-calls endpoint over every voice-AI platform an organisation \
            runs calls on. callmux asks every provider the organisation may see, merges their \
            answers into one deterministic, de-duplicated list of live calls, and serves it in \
            the shape the client already speaks: Bland's (`GET /v1/calls/active`) or the \
            Twilio media-stream agent servers' (`GET /api/calls`).\n\n\
            A provider that fails costs only its own calls: the answer is still `200`, with \
            the failed providers named in `errors`. Every error body comes in the shape of \
            the endpoint that was asked."
    ),
    paths(bland_active_calls, agent_calls, own_calls),
    components(schemas(
        BlandCalls,
        BlandRefused,
        BlandFailed,
        BlandCall,
        CallsList,
        CallsRefused,
        CallsFailed,
        CallsCall,
        Direction,
        OwnCalls,
        OwnCall,
        OwnDirection,
        OwnRefused,
        OwnFailed,
        ErrorItem,
        ProviderFailure,
        RequestFailure,
        super::shared::ProviderErrorCode,
        super::shared::RequestErrorCode,
        crate::error_code::ErrorCode,
    )),
    tags(
        (name = "calls", description = "Live calls, merged across providers"),
        (name = "live", description = "Live streams of an org's calls, and the pushes that feed them")
    )
)]
pub(super) struct ListsDoc;

/// Live calls in Bland's shape
///
/// Bland's list-active-calls, over every provider the organisation may see: a Bland client
/// switches by changing its base URL. Calls are ordered by creation time (calls without one
/// last), then by the org's provider order, then by `call_id`; a `call_id` reported by two
/// providers is listed once. Ended calls are left out.
#[utoipa::path(
    get,
    path = BLAND_ROUTE,
    operation_id = "listActiveCallsBland",
    tag = "calls",
    security(("orgKey" = [])),
    params(ListHeaders),
    responses(
        (status = 200, body = BlandCalls,
            description = "The merged list. Complete: `errors` is `null`. Partial (some \
                providers failed, at least one answered): the calls of those that answered, \
                and `errors` names each failed provider.",
            examples(
                ("complete" = (summary = "Every provider answered", value = json!({
                    "data": [{"call_id": "a1b2c3d4", "user_id": "demo", "from": "",
                        "to": "+1234567890", "objective": "", "pathway_id": "",
                        "start_time": "", "international": "", "status": "IN_PROGRESS",
                        "timestamp": ""}],
                    "errors": null}))),
                ("partial" = (summary = "One provider failed", value = json!({
                    "data": [{"call_id": "a1b2c3d4", "user_id": "demo", "from": "",
                        "to": "+1234567890", "objective": "", "pathway_id": "",
                        "start_time": "", "international": "", "status": "IN_PROGRESS",
                        "timestamp": ""}],
                    "errors": [{"provider": "bland", "error": "UPSTREAM_TIMEOUT",
                        "message": "did not answer within 300 ms"}]}))),
            )),
        (status = 502, body = BlandFailed,
            description = "Every provider the organisation may see failed: `errors` names \
                each, with `provider`.",
            example = json!({"data": null, "errors": [
                {"provider": "agents", "error": "UPSTREAM_UNREACHABLE",
                    "message": "could not be reached: Connection refused (os error 111)"}]})),
    )
)]
fn bland_active_calls() {}

/// Live calls in the agent servers' shape
///
/// The list-calls endpoint of Twilio media-stream agent servers, over every provider the
/// organisation may see: dashboards and polling scripts work unchanged. On full success the
/// body is exactly `{"calls": [...], "count": N}`; `count` is always the number of calls
/// listed, and a partial answer is told apart by its `errors`. Order and de-duplication are
/// as for `GET /v1/calls/active`; ended calls are left out.
#[utoipa::path(
    get,
    path = CALLS_ROUTE,
    operation_id = "listCalls",
    tag = "calls",
    security(("orgKey" = [])),
    params(ListHeaders),
    responses(
        (status = 200, body = CallsList,
            description = "The merged list. Complete: no `errors`. Partial (some providers \
                failed, at least one answered): the calls of those that answered, and \
                `errors` names each failed provider.",
            examples(
                ("complete" = (summary = "Every provider answered", value = json!({
                    "calls": [{"call_id": "a1b2c3d4", "to_number": "+1234567890",
                        "status": "in-progress", "direction": "outbound"}],
                    "count": 1}))),
                ("partial" = (summary = "One provider failed", value = json!({
                    "calls": [{"call_id": "g1", "to_number": "+1", "status": "in-progress",
                        "direction": "outbound"}],
                    "count": 1,
                    "errors": [{"provider": "bad", "error": "UPSTREAM_TIMEOUT",
                        "message": "did not answer within 300 ms"}]}))),
            )),
        (status = 502, body = CallsFailed,
            description = "Every provider the organisation may see failed: `errors` names \
                each, with `provider`.",
            example = json!({"calls": [], "count": 0, "errors": [
                {"provider": "agents", "error": "UPSTREAM_UNREACHABLE",
                    "message": "could not be reached: Connection refused (os error 111)"}]})),
    )
)]
fn agent_calls() {}

/// Live calls in callmux's own shape
///
/// Every canonical field of each call, over every provider the organisation may see: what
/// the dashboard reads. `errors` is always present: `null` on a complete answer, one entry
/// per failed provider on a partial one. Order and de-duplication as for the other lists.
#[utoipa::path(
    get,
    path = OWN_ROUTE,
    operation_id = "listCallsOwn",
    tag = "live",
    security(("orgKey" = [])),
    params(ListHeaders),
    responses(
        (status = 200, body = OwnCalls, description = "The merged list, complete or partial.",
            example = json!({"calls": [{"call_id": "a1b2c3d4", "provider": "agents",
                "from": null, "to": "+1234567890", "direction": "outbound",
                "status": "in-progress", "created_at": "2025-09-23T19:48:20.740Z",
                "started_at": null, "telephony_id": null, "objective": null,
                "pathway_id": null, "international": null}],
                "count": 1, "errors": null})),
        (status = 502, body = OwnFailed,
            description = "Every provider the organisation may see failed: `errors` names \
                each, with `provider`."),
    )
)]
fn own_calls() {}

// --- Bland's shape -------------------------------------------------------------------------

/// A list of live calls in Bland's shape: `errors` is `null` when every provider answered.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
struct BlandCalls {
    /// The merged live calls.
    data: Vec<BlandCall>,
    /// `null` on a complete answer; on a partial one, one entry per failed provider.
    #[schema(required = true, min_items = 1)]
    errors: Option<Vec<ProviderFailure>>,
}

/// Bland's error envelope for a refused request: nothing is listed.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
struct BlandRefused {
    #[schema(schema_with = null)]
    data: (),
    /// Why the request was refused.
    #[schema(min_items = 1)]
    errors: Vec<RequestFailure>,
}

/// Bland's error envelope when nothing could be listed: every provider failed (one entry
/// each, with `provider`), or the caller's key could not be checked (`AUTH_UNAVAILABLE`).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
struct BlandFailed {
    #[schema(schema_with = null)]
    data: (),
    #[schema(min_items = 1)]
    errors: Vec<ErrorItem>,
}

/// One live call in Bland's shape. Every field is a string, `""` where no provider gave it;
/// fields a Bland upstream sent come back exactly as sent.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
struct BlandCall {
    /// The call's id; unique within the list.
    call_id: String,
    /// The owner: the upstream's `user_id`, else the id of the organisation asking.
    user_id: String,
    /// The calling number, or `""`.
    from: String,
    /// The called number, or `""`.
    to: String,
    /// The call's objective (Bland), or `""`.
    objective: String,
    /// The call's pathway id (Bland), or `""`.
    pathway_id: String,
    /// When the call started (ISO 8601), or `""`.
    start_time: String,
    /// `"true"` or `"false"`, or `""` when unknown.
    #[schema(pattern = "^(true|false)?$")]
    international: String,
    /// `QUEUED` (queued or ringing) or `IN_PROGRESS`; any other live status an upstream
    /// reports is passed through verbatim.
    status: String,
    /// When the call was created, in epoch milliseconds as a string, or `""`.
    #[schema(pattern = "^[0-9]*$")]
    timestamp: String,
}

// --- The agent servers' shape --------------------------------------------------------------

/// A list of live calls in the agent servers' shape. `count` is always the number of calls
/// listed; `errors` is present only when some provider failed (a partial answer).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
struct CallsList {
    /// The merged live calls.
    calls: Vec<CallsCall>,
    /// The number of calls in `calls`.
    #[schema(minimum = 0)]
    count: u64,
    /// Absent on a complete answer; on a partial one, one entry per failed provider.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(min_items = 1)]
    errors: Vec<ProviderFailure>,
}

/// The agent servers' shape for a refused request: no calls, `count` 0, and why.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
struct CallsRefused {
    #[schema(max_items = 0)]
    calls: Vec<CallsCall>,
    #[schema(minimum = 0, maximum = 0)]
    count: u64,
    /// Why the request was refused.
    #[schema(min_items = 1)]
    errors: Vec<RequestFailure>,
}

/// The agent servers' shape when nothing could be listed: every provider failed (one entry
/// each, with `provider`), or the caller's key could not be checked (`AUTH_UNAVAILABLE`).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
struct CallsFailed {
    #[schema(max_items = 0)]
    calls: Vec<CallsCall>,
    #[schema(minimum = 0, maximum = 0)]
    count: u64,
    #[schema(min_items = 1)]
    errors: Vec<ErrorItem>,
}

/// One live call in the agent servers' shape: exactly these four fields.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
struct CallsCall {
    /// The call's id; unique within the list.
    call_id: String,
    /// The called number of an outbound call, the calling number of an incoming one;
    /// `null` when unknown.
    #[schema(required = true)]
    to_number: Option<String>,
    /// `initiating`, `ringing` or `in-progress`; any other live status an upstream reports
    /// is passed through verbatim.
    status: String,
    /// `null` when the provider does not say (Bland's calls never do).
    #[schema(required = true)]
    direction: Option<Direction>,
}

/// Which way the call goes.
#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
enum Direction {
    Outbound,
    Incoming,
}

// --- callmux's own shape -----------------------------------------------------------------

/// A list in callmux's own shape: every canonical field of each call.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
struct OwnCalls {
    calls: Vec<OwnCall>,
    #[schema(minimum = 0)]
    count: u64,
    /// `null` on a complete answer; one entry per failed provider on a partial one.
    #[schema(schema_with = nullable_failures, required = true)]
    errors: Option<Vec<String>>,
}

/// One call in callmux's own shape.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
struct OwnCall {
    call_id: String,
    /// The id (in `providers.toml`) of the provider that reported the call.
    provider: String,
    #[schema(required = true)]
    from: Option<String>,
    #[schema(required = true)]
    to: Option<String>,
    /// `inbound`, `outbound`, or `null` when the provider does not say.
    #[schema(required = true)]
    direction: Option<OwnDirection>,
    /// `queued`, `ringing`, `in-progress`, or the upstream's own word for any other live status.
    status: String,
    /// ISO 8601 UTC with milliseconds.
    #[schema(required = true, format = DateTime)]
    created_at: Option<String>,
    #[schema(required = true, format = DateTime)]
    started_at: Option<String>,
    /// The carrier's id of the phone call (the Twilio CallSid) where the platform gives one.
    #[schema(required = true)]
    telephony_id: Option<String>,
    #[schema(required = true)]
    objective: Option<String>,
    #[schema(required = true)]
    pathway_id: Option<String>,
    #[schema(required = true)]
    international: Option<bool>,
}

#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
enum OwnDirection {
    Inbound,
    Outbound,
}

/// The own shape for a refused request: no calls, `count` 0, and why.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
struct OwnRefused {
    #[schema(max_items = 0)]
    calls: Vec<OwnCall>,
    #[schema(minimum = 0, maximum = 0)]
    count: u64,
    #[schema(schema_with = request_failures)]
    errors: Vec<String>,
}

fn request_failures() -> utoipa::openapi::schema::Array {
    ArrayBuilder::new()
        .items(named("RequestFailure"))
        .min_items(Some(1))
        .build()
}

fn error_items() -> utoipa::openapi::schema::Array {
    ArrayBuilder::new()
        .items(named("ErrorItem"))
        .min_items(Some(1))
        .build()
}

/// The own shape when nothing could be listed.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
struct OwnFailed {
    #[schema(max_items = 0)]
    calls: Vec<OwnCall>,
    #[schema(minimum = 0, maximum = 0)]
    count: u64,
    #[schema(schema_with = error_items)]
    errors: Vec<String>,
}

//! The call-control routes: ending a call (agent servers' and Bland's route), stopping every
//! call, and placing one, with the envelopes they answer in.

#![allow(dead_code)] // described, never constructed: the control routes write these shapes

use utoipa::{IntoParams, OpenApi, ToSchema};

use super::shared::{always_false, always_true, ControlErrorCode, ListHeaders};
use crate::http::control::{END_ROUTE, PLACE_ROUTE, STOP_ALL_ROUTE, STOP_ROUTE};

#[derive(OpenApi)]
#[openapi(
    paths(end_call, stop_call, stop_all_calls, place_call),
    components(schemas(
        AgentEnded,
        AgentControlFailed,
        BlandStopped,
        BlandControlFailed,
        ControlErrorCode,
        BlandStoppedAll,
        BlandStopAllFailed,
        StopFailure,
        AgentPlaced,
        AgentPlaceFailed,
    )),
    tags((name = "control", description = "Ending calls on the provider that listed them, and placing calls"))
)]
pub(super) struct ControlDoc;

/// A call id callmux passes on, as a pattern: printable ASCII without `/`, `?`, `#` or `%`,
/// and not `.` or `..` (a stricter rule than the server's, which also takes other Unicode
/// letters, so that every id a tool makes from it is one callmux takes).
pub(super) const CALL_ID_PATTERN: &str = r#"^(?:\.{0,2}[!"$&-\-0->@-~]|\.{3})[!"$&-.0->@-~]*$"#;

/// The call id in the path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
struct CallIdParam {
    /// A call id as listed. callmux takes 1 to 256 bytes (after percent-decoding), with no
    /// `/`, `?`, `#`, `%`, whitespace or control characters, and not `.` or `..`; anything
    /// else is 400 `INVALID_CALL_ID` and reaches no upstream.
    #[param(
        pattern = r#"^(?:\.{0,2}[!"$&-\-0->@-~]|\.{3})[!"$&-.0->@-~]*$"#,
        min_length = 1,
        max_length = 256
    )]
    call_id: String,
}

/// End a call (agent servers' route)
///
/// The agent servers' end-call route, over every provider the organisation may see: the
/// call is ended on the provider that listed it for this organisation (found in the
/// organisation's last list, or by listing afresh). Sent once, never retried, never cached.
#[utoipa::path(
    post,
    path = END_ROUTE,
    operation_id = "endCall",
    tag = "control",
    security(("orgKey" = [])),
    params(CallIdParam, ListHeaders),
    responses(
        (status = 200, body = AgentEnded, description = "The owner ended the call.",
            example = json!({"success": true, "message": "Call c1 ended", "provider": "agents"})),
        (status = 400, body = AgentControlFailed,
            description = "`INVALID_CALL_ID`: the id is not one callmux passes on.",
            example = json!({"success": false, "code": "INVALID_CALL_ID", "error": "the call \
                id is not one callmux passes on: it must be 1 to 256 bytes with no `/`, `?`, \
                `#`, `%`, whitespace or control characters"})),
        (status = 404, body = AgentControlFailed,
            description = "`CALL_NOT_FOUND`: no provider the organisation may see lists the \
                call, or its owner says it does not know it. A call of a provider the \
                organisation may not see gets exactly this answer.",
            example = json!({"success": false, "code": "CALL_NOT_FOUND",
                "error": "no active call with this id is visible to this organisation"})),
        (status = 501, body = AgentControlFailed,
            description = "`NOT_SUPPORTED`: the owner's kind cannot end calls.",
            example = json!({"success": false, "code": "NOT_SUPPORTED", "provider": "p",
                "error": "provider `p` cannot end calls"})),
        (status = 502, body = AgentControlFailed,
            description = "The owner failed (a provider's code, naming it in `provider`).",
            example = json!({"success": false, "code": "UPSTREAM_REPORTED_ERROR",
                "provider": "agents",
                "error": "provider `agents` reported an error instead of calls: boom"})),
        (status = 504, body = AgentControlFailed,
            description = "`OUTCOME_UNKNOWN`: the owner did not answer within its \
                `timeout_ms`, or the connection broke after the request was sent; the call may \
                or may not have ended. Not retried.",
            example = json!({"success": false, "code": "OUTCOME_UNKNOWN", "provider": "agents",
                "error": "provider `agents` did not answer within 400 ms, so whether it took \
                    effect is unknown; list the calls to see"})),
    )
)]
fn end_call() {}

/// End a call (Bland's route)
///
/// Bland's stop-call route, over every provider the organisation may see; routed, sent and
/// answered as `POST /api/calls/{call_id}/end`, in Bland's envelope.
#[utoipa::path(
    post,
    path = STOP_ROUTE,
    operation_id = "stopCall",
    tag = "control",
    security(("orgKey" = [])),
    params(CallIdParam, ListHeaders),
    responses(
        (status = 200, body = BlandStopped, description = "The owner ended the call.",
            example = json!({"status": "success", "message": "Call ended successfully."})),
        (status = 400, body = BlandControlFailed,
            description = "`INVALID_CALL_ID`: the id is not one callmux passes on.",
            example = json!({"status": "error", "code": "INVALID_CALL_ID", "message": "the \
                call id is not one callmux passes on: it must be 1 to 256 bytes with no `/`, \
                `?`, `#`, `%`, whitespace or control characters"})),
        (status = 404, body = BlandControlFailed,
            description = "`CALL_NOT_FOUND`, as for `POST /api/calls/{call_id}/end`.",
            example = json!({"status": "error", "code": "CALL_NOT_FOUND",
                "message": "no active call with this id is visible to this organisation"})),
        (status = 501, body = BlandControlFailed,
            description = "`NOT_SUPPORTED`: the owner's kind cannot end calls.",
            example = json!({"status": "error", "code": "NOT_SUPPORTED", "provider": "p",
                "message": "provider `p` cannot end calls"})),
        (status = 502, body = BlandControlFailed,
            description = "The owner failed (a provider's code, naming it in `provider`).",
            example = json!({"status": "error", "code": "UPSTREAM_ERROR", "provider": "bland",
                "message": "provider `bland` answered HTTP 500"})),
        (status = 504, body = BlandControlFailed,
            description = "`OUTCOME_UNKNOWN`: the owner did not answer within its \
                `timeout_ms`, or the connection broke after the request was sent; the call may \
                or may not have ended. Not retried.",
            example = json!({"status": "error", "code": "OUTCOME_UNKNOWN", "provider": "bland",
                "message": "provider `bland` did not answer within 400 ms, so whether it took \
                    effect is unknown; list the calls to see"})),
    )
)]
fn stop_call() {}

/// Stop every active call (Bland's route)
///
/// Ends every active call the organisation sees, on every provider at once: a fresh list,
/// then each call's end sent once to the provider that listed it. On a provider several
/// organisations list, that includes calls the others see too. `num_calls` counts the
/// calls ended; a call that ended meanwhile is neither counted nor an error.
#[utoipa::path(
    post,
    path = STOP_ALL_ROUTE,
    operation_id = "stopAllCalls",
    tag = "control",
    security(("orgKey" = [])),
    params(ListHeaders),
    responses(
        (status = 200, body = BlandStoppedAll,
            description = "Every provider was asked. `status` is `success`, or `partial` \
                when a provider could not be listed or did not end every call (each such \
                provider named once in `errors`).",
            example = json!({"status": "success", "message": "Stopped 4 active calls.",
                "num_calls": 4, "errors": null})),
        (status = 502, body = BlandStopAllFailed,
            description = "Every provider of the organisation failed; each is named in \
                `errors`.",
            example = json!({"status": "error", "num_calls": 0, "message": "No provider of \
                this organisation could stop its calls; see errors.", "errors": [{"provider":
                "agents", "error": "UPSTREAM_ERROR", "message": "could not be listed, so its \
                calls were not ended: answered HTTP 500"}]})),
    )
)]
fn stop_all_calls() {}

/// Place a call (agent servers' route)
///
/// The agent servers' place-call route, over the organisation's `twilio-media-stream`
/// providers with `place_calls = true`: the one with the fewest active calls (listed, plus
/// being placed through callmux) under its `max_active_calls` gets the body as sent, ties
/// going to the first in the organisation's `providers`. A place is reserved before the
/// body is sent, so concurrent placements never take a server past its limit. Sent once,
/// never retried.
#[utoipa::path(
    post,
    path = PLACE_ROUTE,
    operation_id = "placeCall",
    tag = "control",
    security(("orgKey" = [])),
    params(ListHeaders),
    request_body(content = PlaceCallBody, content_type = "application/json",
        description = "As the agent server takes it; at most 65,536 bytes."),
    responses(
        (status = 200, body = AgentPlaced,
            description = "The chosen agent server's own answer, `provider` added.",
            example = json!({"success": true, "call_id": "a1b2c3d4-e5f6-7890-abcd-ef1234567890",
                "to": "+1234567890", "webhook_url": "https://your-url.ngrok.io",
                "provider": "agents"})),
        (status = 400, body = AgentPlaceFailed,
            description = "`INVALID_BODY`, naming the field that is wrong. Nothing was sent.",
            example = json!({"success": false, "code": "INVALID_BODY",
                "error": "field `to` is missing; give the number to call, e.g. \"+1...\""})),
        (status = 409, body = AgentPlaceFailed,
            description = "For an org with routes: `IDEMPOTENCY_IN_FLIGHT`, the first placement \
                with this `idempotency-key` is still being answered."),
        (status = 422, body = AgentPlaceFailed,
            description = "For an org with routes: `PLACE_REJECTED`, the platform refused the \
                call itself; or `IDEMPOTENCY_KEY_REUSED`."),
        (status = 501, body = AgentPlaceFailed,
            description = "`NOT_SUPPORTED`: no provider of the organisation places calls.",
            example = json!({"success": false, "code": "NOT_SUPPORTED", "error": "no provider \
                of this organisation places calls: set place_calls = true on one of its \
                twilio-media-stream providers"})),
        (status = 502, body = AgentPlaceFailed,
            description = "The chosen server failed before answering (`UPSTREAM_*`, naming \
                it in `provider`), or every server's list failed.",
            example = json!({"success": false, "code": "UPSTREAM_UNREACHABLE",
                "provider": "agents",
                "error": "provider `agents` could not be reached: connection refused"})),
        (status = 503, body = AgentPlaceFailed,
            description = "`AT_CAPACITY`: every server is at its `max_active_calls`.",
            headers(("retry-after" = u32, description = "Seconds to wait before retrying: \
                `5` for `AT_CAPACITY`, `1` otherwise.")),
            example = json!({"success": false, "code": "AT_CAPACITY", "error": "every agent \
                server of this organisation that places calls is at its max_active_calls; \
                try again later"})),
        (status = 504, body = AgentPlaceFailed,
            description = "`OUTCOME_UNKNOWN`: the server did not answer within its \
                `timeout_ms`; the call may or may not have been placed, and its place stays \
                reserved for 30 s. Not retried.",
            example = json!({"success": false, "code": "OUTCOME_UNKNOWN", "provider": "agents",
                "error": "provider `agents` did not answer within 300 ms, so whether it took \
                    effect is unknown; list the calls to see"})),
        (status = "default", body = AgentPlaceFailed,
            description = "The chosen server refused the call: its own status and body, \
                `provider` added. Its place is released.",
            example = json!({"success": false, "error": "Twilio error: 21211",
                "provider": "agents"})),
    )
)]
fn place_call() {}

/// The body of `POST /api/call`, as the agent server takes it.
#[derive(ToSchema)]
struct PlaceCallBody {
    /// The number to call, E.164 (e.g. `+14155550123`). For an org with routes anything
    /// else is refused (400 `INVALID_BODY`), as every platform a route reaches needs it; an
    /// org placing on its agent servers alone (part two) passes on any `to` that is not
    /// empty or only whitespace.
    #[schema(pattern = r"^\+[1-9][0-9]{1,14}$")]
    to: String,
    /// The agent's instructions for this call.
    prompt: Option<String>,
    /// Where the agent server's Twilio webhooks go.
    webhook_url: Option<String>,
    /// Kept with the call by the agent server.
    #[schema(value_type = Option<Object>)]
    metadata: Option<serde_json::Value>,
}

/// A call placed: the agent server's own answer (any further fields it sends are kept),
/// with the provider that placed it.
#[derive(ToSchema)]
struct AgentPlaced {
    #[schema(schema_with = always_true)]
    success: bool,
    /// The agent server's id for the call, to end it with.
    call_id: Option<String>,
    /// The id of the provider that placed it.
    provider: String,
}

/// A call not placed: callmux's own answer (with `code`), or the chosen agent server's
/// refusal as it sent it (any further fields it sends are kept), with the provider.
#[derive(ToSchema)]
struct AgentPlaceFailed {
    #[schema(schema_with = always_false)]
    success: bool,
    /// What went wrong, for people. callmux's own names no URL, header or key.
    error: Option<String>,
    /// Set on callmux's own answers; an agent server's refusal has none.
    code: Option<ControlErrorCode>,
    /// The provider the failure is about, when one was asked.
    provider: Option<String>,
}

/// Every active call stopped, or some, in Bland's envelope.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
struct BlandStoppedAll {
    #[schema(pattern = "^(success|partial)$")]
    status: String,
    /// `Stopped N active calls.`, and on a partial stop what to look at.
    message: String,
    /// Calls ended.
    num_calls: u64,
    /// `null` when every provider ended every call; else one entry per provider that
    /// could not be listed or did not end every call.
    #[schema(required = true, min_items = 1)]
    errors: Option<Vec<StopFailure>>,
}

/// No provider could stop its calls, in Bland's envelope.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
struct BlandStopAllFailed {
    #[schema(pattern = "^error$")]
    status: String,
    message: String,
    #[schema(maximum = 0)]
    num_calls: u64,
    #[schema(min_items = 1)]
    errors: Vec<StopFailure>,
}

/// One provider's part of a stop-all that failed.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
struct StopFailure {
    provider: String,
    error: ControlErrorCode,
    /// What went wrong, for people: how many of its calls were not ended and the first
    /// reason, or why it could not be listed. Names no URL, header or key.
    message: String,
}

// --- Call control ------------------------------------------------------------------------

/// A call ended, in the agent servers' envelope.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
struct AgentEnded {
    #[schema(schema_with = always_true)]
    success: bool,
    /// `Call {call_id} ended`.
    #[schema(pattern = "^Call .+ ended$")]
    message: String,
    /// The id of the provider that ended it.
    provider: String,
}

/// A call not ended, in the agent servers' envelope.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
struct AgentControlFailed {
    #[schema(schema_with = always_false)]
    success: bool,
    /// What went wrong, for people. Names no URL, header or key.
    error: String,
    code: ControlErrorCode,
    /// The provider the failure is about, when one was asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    provider: Option<String>,
}

/// A call ended, in Bland's envelope.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
struct BlandStopped {
    #[schema(pattern = "^success$")]
    status: String,
    #[schema(pattern = "^Call ended successfully\\.$")]
    message: String,
}

/// A call not ended, in Bland's envelope.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
struct BlandControlFailed {
    #[schema(pattern = "^error$")]
    status: String,
    /// What went wrong, for people. Names no URL, header or key.
    message: String,
    code: ControlErrorCode,
    /// The provider the failure is about, when one was asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    provider: Option<String>,
}

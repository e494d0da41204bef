//! The Twilio status callback (`POST /hooks/twilio/{provider_id}`) and its refusals.

#![allow(dead_code)] // described, never constructed: the hook writes these shapes

use utoipa::{IntoParams, OpenApi, ToSchema};

use super::shared::{always_false, HookErrorCode};
use crate::http::hooks::TWILIO_HOOK_ROUTE;

#[derive(OpenApi)]
#[openapi(paths(twilio_hook), components(schemas(HookRefused, HookErrorCode)))]
pub(super) struct HooksDoc;

/// The provider id in the hook's path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
struct ProviderIdParam {
    /// The id of a `twilio` provider that sets `public_url` and `auth_token_env`.
    provider_id: String,
}

/// Take a Twilio status callback
///
/// Twilio's call status callback (a form: `AccountSid`, `CallSid`, `CallStatus`, ...) for
/// the `twilio` provider named in the path, signed by Twilio in `X-Twilio-Signature` with the
/// account's auth token over the provider's `public_url` (plus the query it was called with)
/// and the form's parameters. A valid callback moves a listed call forward (queued, ringing,
/// in progress, ended; never back) in every live stream at once; the next poll stays the
/// authority. Bodies are at most 64 KiB.
#[utoipa::path(
    post,
    path = TWILIO_HOOK_ROUTE,
    operation_id = "twilioStatusCallback",
    tag = "live",
    params(ProviderIdParam,
        ("x-twilio-signature" = String, Header, description = "Twilio's signature of the request.")),
    request_body(content_type = "application/x-www-form-urlencoded", content = String,
        description = "Twilio's status callback parameters."),
    responses(
        (status = 204, description = "Signed and taken: it moved a call forward, or was a replay, a step back or an unknown call, which change nothing."),
        (status = 400, body = HookRefused, description = "`INVALID_BODY`: no `CallSid` or `CallStatus`."),
        (status = 403, body = HookRefused, description = "`MISSING_SIGNATURE`, `INVALID_SIGNATURE`, or `WRONG_ACCOUNT` (an `AccountSid` other than the provider's). Nothing changes.",
            example = json!({"success": false, "code": "INVALID_SIGNATURE", "error": "X-Twilio-Signature does not match: check that the provider's public_url is exactly the URL Twilio calls, and auth_token_env the account's auth token"})),
        (status = 404, body = HookRefused, description = "`UNKNOWN_HOOK`: no `twilio` provider with this id takes callbacks (none by that id, another kind, or no `public_url`)."),
        (status = 413, body = HookRefused, description = "`BODY_TOO_LARGE`: over 64 KiB."),
    )
)]
fn twilio_hook() {}

/// A refused status callback, in the agent servers' control envelope.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
struct HookRefused {
    #[schema(schema_with = always_false)]
    success: bool,
    /// What was wrong, for people.
    error: String,
    code: HookErrorCode,
}

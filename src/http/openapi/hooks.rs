//! The platforms' webhooks (`POST /hooks/{kind}/{provider_id}`) and their refusals.

#![allow(dead_code)] // described, never constructed: the hook writes these shapes

use utoipa::{IntoParams, OpenApi, ToSchema};

use super::shared::{always_false, HookErrorCode};
use crate::http::hooks::HOOK_ROUTE;

#[derive(OpenApi)]
#[openapi(paths(platform_hook), components(schemas(HookRefused, HookErrorCode)))]
pub(super) struct HooksDoc;

/// The kind and provider id in the hook's path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
struct HookPath {
    /// `twilio`, `retell`, `vapi` or `bland`: the provider's kind.
    kind: String,
    /// The id of a provider of that kind that sets its webhook secret (`twilio`:
    /// `public_url` and `auth_token_env`; `retell`: `webhook_key_env`; `vapi`:
    /// `server_secret_env`; `bland`: `webhook_secret_env`).
    provider_id: String,
}

/// Take a platform's webhook
///
/// Each platform's own webhook for the provider named in the path, checked as the platform
/// signs it: `twilio`, a status callback form signed in `X-Twilio-Signature` over the
/// provider's `public_url` (plus the query) and the form; `retell`, `x-retell-signature:
/// v=<unix ms>,d=<hex>` (HMAC-SHA256 of the body followed by the timestamp's digits, keyed by
/// `webhook_key_env`, within 5 minutes); `vapi`, `x-vapi-secret` or `authorization: Bearer`
/// equal to `server_secret_env`; `bland`, `X-Webhook-Signature`, the hex HMAC-SHA256 of the
/// body keyed by `webhook_secret_env`. A valid event moves a listed call forward (never back)
/// in every live stream at once, on every replica; the next poll stays the authority. Bodies
/// are at most 1 MiB (Twilio's forms 64 KiB) and must arrive within 10 s.
#[utoipa::path(
    post,
    path = HOOK_ROUTE,
    operation_id = "platformWebhook",
    tag = "live",
    params(HookPath,
        ("x-twilio-signature" = Option<String>, Header, description = "Twilio's signature (kind `twilio`)."),
        ("x-retell-signature" = Option<String>, Header, description = "Retell's `v=<unix ms>,d=<hex>` (kind `retell`)."),
        ("x-vapi-secret" = Option<String>, Header, description = "Vapi's server secret (kind `vapi`; or `authorization: Bearer <secret>`)."),
        ("x-webhook-signature" = Option<String>, Header, description = "Bland's hex HMAC-SHA256 of the body (kind `bland`).")),
    request_body(content = String,
        description = "The platform's own webhook body: Twilio's status callback form, or Retell's, Vapi's or Bland's JSON."),
    responses(
        (status = 204, description = "Signed and taken: it moved a call forward, or was a replay, a step back, an unknown call or an event type not used, which change nothing."),
        (status = 400, body = HookRefused, description = "`INVALID_BODY`: not a body the platform sends (no call id, not JSON, no `CallSid` or `CallStatus`), or one that did not arrive within 10 s. Nothing changes."),
        (status = 403, body = HookRefused, description = "`MISSING_SIGNATURE`, `INVALID_SIGNATURE` (including a Retell timestamp more than 5 minutes from now), or `WRONG_ACCOUNT` (a Twilio `AccountSid` other than the provider's). Nothing changes.",
            example = json!({"success": false, "code": "INVALID_SIGNATURE", "error": "X-Webhook-Signature does not match the hex HMAC-SHA256 of the body: check that webhook_secret_env holds the signing secret set in Bland"})),
        (status = 404, body = HookRefused, description = "`UNKNOWN_HOOK`: no provider of this kind with this id takes webhooks (none by that id, another kind, or no webhook secret set)."),
        (status = 413, body = HookRefused, description = "`BODY_TOO_LARGE`: over 1 MiB (Twilio: 64 KiB)."),
    )
)]
fn platform_hook() {}

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

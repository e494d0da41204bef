//! The OpenAPI entries of the live routes — callmux's own list, its three streams and the
//! Twilio status callback — merged into `GET /openapi.json` beside the others.

use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem,
};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::SecurityRequirement;
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Required, Schema};
use utoipa::{Modify, OpenApi, ToSchema};

use super::hooks::TWILIO_HOOK_ROUTE;
use super::streams::{BLAND_STREAM_ROUTE, CALLS_STREAM_ROUTE, OWN_STREAM_ROUTE};
use super::OWN_ROUTE;

#[derive(OpenApi)]
#[openapi(
    paths(own_calls, twilio_hook),
    components(schemas(OwnCalls, OwnCall, OwnRefused, OwnFailed, StreamChange, StreamEnd, HookRefused)),
    modifiers(&Streams),
    tags(
        (name = "live", description = "Live streams of an org's calls, and the pushes that feed them")
    )
)]
pub(super) struct LiveDoc;

fn named(schema: &str) -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(schema))
}

fn request_failure() -> RefOr<Schema> {
    named("RequestFailure")
}

fn error_item() -> RefOr<Schema> {
    named("ErrorItem")
}

fn provider_failure() -> RefOr<Schema> {
    named("ProviderFailure")
}

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
    params(super::openapi::doc::ListHeaders),
    responses(
        (status = 200, body = OwnCalls, description = "The merged list, complete or partial.",
            example = json!({"calls": [{"call_id": "a1b2c3d4", "provider": "agents",
                "from": null, "to": "+1234567890", "direction": "outbound",
                "status": "in-progress", "created_at": "2025-09-23T19:48:20.740Z",
                "started_at": null, "telephony_id": null, "objective": null,
                "pathway_id": null, "international": null}],
                "count": 1, "errors": null})),
        (status = 400, body = OwnRefused, description = "`MISSING_ORG_ID`, as for the other lists."),
        (status = 401, body = OwnRefused, description = "`AUTH_FAILURE`, as for the other lists.",
            headers(("www-authenticate" = String, description = "Always `Bearer`.")),
            example = json!({"calls": [], "count": 0, "errors": [{"error": "AUTH_FAILURE",
                "message": "invalid API key for this organisation"}]})),
        (status = 431, body = OwnRefused, description = "`HEADERS_TOO_LARGE`."),
        (status = 502, body = OwnFailed, description = "Every provider failed, or `AUTH_UNAVAILABLE`."),
        (status = 503, body = OwnRefused, description = "`OVERLOADED` or `REQUEST_TIMEOUT`.",
            headers(("retry-after" = u32, description = "Seconds to wait before retrying: `1`."))),
    )
)]
#[allow(dead_code)]
fn own_calls() {}

/// The provider id in the hook's path.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
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
#[allow(dead_code)]
fn twilio_hook() {}

/// The three stream routes, built here: each is the list route of its shape as Server-Sent
/// Events, refused exactly as that list refuses.
struct Streams;

impl Modify for Streams {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, shape, refused, failed, operation_id) in [
            (
                OWN_STREAM_ROUTE,
                "GET /calls",
                "OwnRefused",
                "OwnFailed",
                "streamCallsOwn",
            ),
            (
                CALLS_STREAM_ROUTE,
                "GET /api/calls",
                "CallsRefused",
                "CallsFailed",
                "streamCalls",
            ),
            (
                BLAND_STREAM_ROUTE,
                "GET /v1/calls/active",
                "BlandRefused",
                "BlandFailed",
                "streamActiveCallsBland",
            ),
        ] {
            let json = |schema: &str, description: &str| {
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/json",
                        ContentBuilder::new().schema(Some(named(schema))).build(),
                    )
                    .build()
            };
            let events = ResponseBuilder::new()
                .description(format!(
                    "Server-Sent Events, each with an `id:`. First `event: snapshot`, whose \
                     `data` is byte for byte the body {shape} answers now (on a 502 of it, that \
                     error body). Then `event: change` whenever the list changes, `data` a \
                     `StreamChange` with items in the shape of {shape}. `event: end` \
                     (`StreamEnd`) is the last: the org was removed or its key changed by a \
                     reload, the key is no longer accepted, or callmux is shutting down. A \
                     `: keepalive` comment comes every `[server] stream_keepalive_ms` (15 s \
                     by default). A reader that falls 32 events \
                     behind is disconnected."
                ))
                .content(
                    "text/event-stream",
                    ContentBuilder::new()
                        .schema(Some(RefOr::T(Schema::Object(
                            ObjectBuilder::new().schema_type(Type::String).build(),
                        ))))
                        .build(),
                )
                .build();
            let last_event_id = ParameterBuilder::new()
                .name("last-event-id")
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(
                    "The last event id a reconnecting client saw: if every later event is still \
                     kept, they come first and no snapshot; otherwise (or for anything that is \
                     not one of this stream's ids) a fresh snapshot.",
                ))
                .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                .build();
            let mut operation = OperationBuilder::new()
                .operation_id(Some(operation_id))
                .tag("live")
                .summary(Some(format!("Live stream of {shape}")))
                .security(SecurityRequirement::new("orgKey", Vec::<String>::new()))
                .parameter(last_event_id)
                .response("200", events)
                .response("400", json(refused, "`MISSING_ORG_ID`, as the list answers it."))
                .response("401", json(refused, "`AUTH_FAILURE`, as the list answers it: no stream."))
                .response("502", json(failed, "`AUTH_UNAVAILABLE`, as the list answers it."))
                .response(
                    "503",
                    json(refused, "`OVERLOADED`: `[server] max_streams` streams are open, or callmux is shutting down."),
                );
            for header in ["authorization", "x-bland-org-id"] {
                operation = operation.parameter(
                    ParameterBuilder::new()
                        .name(header)
                        .parameter_in(ParameterIn::Header)
                        .required(if header == "authorization" {
                            Required::True
                        } else {
                            Required::False
                        })
                        .description(Some("As for the list."))
                        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                        .build(),
                );
            }
            openapi.paths.paths.insert(
                path.to_string(),
                PathItem::new(HttpMethod::Get, operation.build()),
            );
        }
    }
}

/// A list in callmux's own shape: every canonical field of each call.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct OwnCalls {
    calls: Vec<OwnCall>,
    #[schema(minimum = 0)]
    count: u64,
    /// `null` on a complete answer; one entry per failed provider on a partial one.
    #[schema(schema_with = nullable_failures, required = true)]
    errors: Option<Vec<String>>,
}

fn nullable_failures() -> Schema {
    Schema::OneOf(
        utoipa::openapi::schema::OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::Null))
            .item(
                utoipa::openapi::schema::ArrayBuilder::new()
                    .items(provider_failure())
                    .min_items(Some(1)),
            )
            .build(),
    )
}

/// One call in callmux's own shape.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
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
#[allow(dead_code)]
enum OwnDirection {
    Inbound,
    Outbound,
}

/// The own shape for a refused request: no calls, `count` 0, and why.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct OwnRefused {
    #[schema(max_items = 0)]
    calls: Vec<OwnCall>,
    #[schema(minimum = 0, maximum = 0)]
    count: u64,
    #[schema(schema_with = request_failures)]
    errors: Vec<String>,
}

fn request_failures() -> utoipa::openapi::schema::Array {
    utoipa::openapi::schema::ArrayBuilder::new()
        .items(request_failure())
        .min_items(Some(1))
        .build()
}

fn error_items() -> utoipa::openapi::schema::Array {
    utoipa::openapi::schema::ArrayBuilder::new()
        .items(error_item())
        .min_items(Some(1))
        .build()
}

/// The own shape when nothing could be listed.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct OwnFailed {
    #[schema(max_items = 0)]
    calls: Vec<OwnCall>,
    #[schema(minimum = 0, maximum = 0)]
    count: u64,
    #[schema(schema_with = error_items)]
    errors: Vec<String>,
}

/// A stream's `change` event: calls told apart by `call_id`, items in the stream's shape.
/// `errors` is every provider error now (`null` when none), whether or not it changed.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct StreamChange {
    /// Calls now listed that were not.
    added: Vec<serde_json::Value>,
    /// Calls listed before and now, with any field changed.
    updated: Vec<serde_json::Value>,
    /// The ids of calls no longer listed (ended, or their provider failed).
    ended: Vec<String>,
    #[schema(schema_with = nullable_failures, required = true)]
    errors: Option<Vec<String>>,
}

/// A stream's last event.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct StreamEnd {
    /// Why the stream ends, for people.
    reason: String,
}

/// A refused status callback, in the agent servers' control envelope.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct HookRefused {
    /// Always `false`.
    success: bool,
    /// `INVALID_BODY`, `MISSING_SIGNATURE`, `INVALID_SIGNATURE`, `WRONG_ACCOUNT`, `UNKNOWN_HOOK` or `BODY_TOO_LARGE`.
    code: String,
    /// What was wrong, for people.
    error: String,
}

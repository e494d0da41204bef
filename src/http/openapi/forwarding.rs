//! Bland's other routes, forwarded to Bland for organisations that forward them: callmux's
//! own refusals, and Bland's own answers, which callmux hands back as they came.

#![allow(dead_code)] // described, never constructed: the forwarding code writes these shapes

use utoipa::openapi::schema::{AnyOfBuilder, ObjectBuilder, Schema, SchemaType};
use utoipa::openapi::RefOr;
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};

use super::shared::{named, null, ForwardErrorCode, ListHeaders, NotFoundCode};

#[derive(OpenApi)]
#[openapi(
    paths(forward_to_bland, forward_get_to_bland),
    components(schemas(
        BlandForwardRefused,
        ForwardErrorCode,
        BlandNotForwarded,
        NotForwardedItem,
        NotFoundCode,
        BlandAnswer,
    )),
    tags((name = "forwarded", description = "Bland's other routes, forwarded to Bland for \
        organisations that forward them"))
)]
pub(super) struct ForwardDoc;

/// The rest of a forwarded path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
struct ForwardPathParam {
    /// Everything after `/v1/`, sent to Bland as written (the query too). callmux forwards
    /// any number of segments; a segment that percent-decodes to `.` or `..`, or holds an
    /// encoded `/` (`%2F`) or a `\` in any form, is 400 `INVALID_PATH` and goes nowhere.
    /// Described here as one segment of printable ASCII without `/`, `\`, `?`, `#` or `%`,
    /// and not `.` or `..`, so that every path a tool makes from it is one callmux takes.
    #[param(
        pattern = r#"^(?:\.{0,2}[!"$&-\-0->@-\[\]-~]|\.{3})[!"$&-.0->@-\[\]-~]*$"#,
        min_length = 1,
        max_length = 256
    )]
    path: String,
}

/// Any other Bland route, forwarded to Bland
///
/// For an organisation that forwards (`bland_passthrough = "<bland provider>"`, or
/// `auth = "<bland provider>"`), a `/v1/...` request callmux does not serve itself goes to
/// that provider's `base_url` with its method, path, query and body unchanged, and its
/// headers less hop-by-hop ones and less `authorization` and `x-bland-org-id`, which are
/// replaced by the provider's own Bland key or, for an organisation that authenticates
/// through Bland, the caller's own. A key callmux issued never leaves callmux. Bland's
/// answer comes back as it was (status, headers less hop-by-hop ones, body), streamed,
/// under the provider's `timeout_ms` and `max_body_bytes`. The caller is authenticated
/// exactly as for the lists first. Every method is forwarded (`GET` and `POST` are listed
/// here); the routes callmux serves itself (`/v1/calls/active`,
/// `/v1/calls/{call_id}/stop`) are never forwarded. Any status may be Bland's own answer,
/// with Bland's own body.
#[utoipa::path(
    post,
    path = "/v1/{path}",
    operation_id = "forwardToBland",
    tag = "forwarded",
    security(("orgKey" = [])),
    params(ForwardPathParam, ListHeaders),
    request_body(content = Object, content_type = "application/json",
        description = "Sent to Bland as it came; any body Bland's route takes."),
    responses(
        (status = "default", body = BlandAnswer,
            description = "Bland's own answer to the route, whatever its status, as Bland \
                sent it, e.g. `{\"status\": \"success\", \"call_id\": \"...\"}` for \
                `POST /v1/calls`."),
        (status = 400, body = BlandForwardRefused,
            description = "`INVALID_PATH`: nothing is sent anywhere.",
            example = json!({"status": "error", "code": "INVALID_PATH",
                "message": "callmux forwards no such path: a segment of the path holds an \
                    encoded `/` (%2F); write each segment as it is, with `/` only between \
                    segments"})),
        (status = 404, body = BlandNotForwarded,
            description = "The organisation forwards no Bland routes: callmux's own 404, \
                in Bland's list envelope, and nothing is sent.",
            example = json!({"data": null, "errors": [{"error": "NOT_FOUND",
                "message": "no route GET /v1/pathway: callmux serves GET /v1/calls/active, \
                    GET /api/calls, POST /api/calls/{call_id}/end and POST \
                    /v1/calls/{call_id}/stop; Bland's other /v1/ routes are forwarded only \
                    for orgs that forward them (bland_passthrough, or auth = a bland \
                    provider)"}]})),
        (status = 413, body = BlandForwardRefused,
            description = "`BODY_TOO_LARGE`: the request's body is over \
                `[server] forward_max_request_bytes`; nothing is sent.",
            example = json!({"status": "error", "code": "BODY_TOO_LARGE",
                "message": "the request's body is over the 1048576-byte limit on forwarded \
                    bodies ([server] forward_max_request_bytes); send a smaller body"})),
        (status = 502, body = BlandForwardRefused,
            description = "Bland could not be reached, broke off, or declared an answer \
                over `max_body_bytes` (a provider's code, naming the provider). An answer that \
                runs past `max_body_bytes` while it streams is cut off instead: the connection \
                ends before the body does.",
            example = json!({"status": "error", "code": "UPSTREAM_UNREACHABLE",
                "provider": "bland", "message": "provider `bland` could not be reached: \
                    Connection refused (os error 111)"})),
        (status = 504, body = BlandForwardRefused,
            description = "`UPSTREAM_TIMEOUT`: Bland did not answer within the provider's \
                `timeout_ms`. Not retried: the request may have had its effect.",
            example = json!({"status": "error", "code": "UPSTREAM_TIMEOUT",
                "provider": "bland", "message": "provider `bland` did not answer within \
                    400 ms"})),
    )
)]
fn forward_to_bland() {}

/// Any other Bland route, forwarded to Bland (`GET`)
///
/// As the `POST` of the same path, without a body: `GET /v1/pathway`, `GET /v1/calls/{id}`
/// and Bland's other reads.
#[utoipa::path(
    get,
    path = "/v1/{path}",
    operation_id = "forwardGetToBland",
    tag = "forwarded",
    security(("orgKey" = [])),
    params(ForwardPathParam, ListHeaders),
    responses(
        (status = "default", body = BlandAnswer,
            description = "Bland's own answer to the route, whatever its status, as Bland \
                sent it."),
        (status = 400, body = BlandForwardRefused,
            description = "`INVALID_PATH`: nothing is sent anywhere."),
        (status = 404, body = BlandNotForwarded,
            description = "The organisation forwards no Bland routes: callmux's own 404, \
                in Bland's list envelope, and nothing is sent."),
        (status = 502, body = BlandForwardRefused,
            description = "Bland could not be reached, broke off, or declared an answer \
                over `max_body_bytes` (a provider's code, naming the provider)."),
        (status = 504, body = BlandForwardRefused,
            description = "`UPSTREAM_TIMEOUT`: Bland did not answer within the provider's \
                `timeout_ms`."),
    )
)]
fn forward_get_to_bland() {}

/// Bland's own answer, as Bland sent it: any JSON (or none).
struct BlandAnswer;

impl utoipa::PartialSchema for BlandAnswer {
    fn schema() -> RefOr<Schema> {
        RefOr::T(Schema::Object(
            ObjectBuilder::new()
                .schema_type(SchemaType::AnyValue)
                .description(Some("Bland's own answer, as Bland sent it."))
                .build(),
        ))
    }
}

impl ToSchema for BlandAnswer {}

/// Every status of a forwarded route may be Bland's own answer rather than callmux's: each
/// documented body becomes "callmux's refusal, or Bland's answer". Run after the shared
/// refusals are added.
pub(super) struct BlandsOwnAnswers;

impl Modify for BlandsOwnAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for operation in [&mut item.get, &mut item.post].into_iter().flatten() {
                if operation.tags.as_deref() != Some(&["forwarded".to_owned()]) {
                    continue;
                }
                for (status, response) in operation.responses.responses.iter_mut() {
                    let RefOr::T(response) = response else {
                        continue;
                    };
                    if status == "default" {
                        continue;
                    }
                    for content in response.content.values_mut() {
                        if let Some(own) = content.schema.take() {
                            content.schema = Some(RefOr::T(Schema::AnyOf(
                                AnyOfBuilder::new()
                                    .item(own)
                                    .item(named("BlandAnswer"))
                                    .build(),
                            )));
                        }
                    }
                }
            }
        }
    }
}

/// A request callmux refused to forward, or could not, in the envelope of Bland's own
/// call routes.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
struct BlandForwardRefused {
    #[schema(pattern = "^error$")]
    status: String,
    /// What went wrong, for people. Names no URL, header or key.
    message: String,
    code: ForwardErrorCode,
    /// The provider the failure is about, when one was asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    provider: Option<String>,
}

/// callmux's 404 for a route it neither serves nor forwards, in Bland's list envelope.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
struct BlandNotForwarded {
    #[schema(schema_with = null)]
    data: (),
    #[schema(min_items = 1, max_items = 1)]
    errors: Vec<NotForwardedItem>,
}

/// The one entry of a 404.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
struct NotForwardedItem {
    error: NotFoundCode,
    /// The route asked, the routes callmux serves, and when it forwards.
    message: String,
}

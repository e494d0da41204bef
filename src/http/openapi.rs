//! `GET /openapi.json`: an OpenAPI 3.1 description of the two list endpoints and the call
//! control endpoints, and of every answer they give, built once from the types below.
//!
//! The wire writers are hand-written for speed (`crate::wire`), so nothing here is ever
//! serialised: these types exist only to describe that output. `tests/it/openapi.rs` checks real
//! answers of every documented status against this document.

use std::sync::LazyLock;

use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use utoipa::OpenApi;

/// The document, serialised once.
static DOCUMENT: LazyLock<Bytes> = LazyLock::new(|| {
    let mut document = doc::ApiDoc::openapi();
    document.merge(super::openapi_live::LiveDoc::openapi());
    let json = document.to_json().expect("the OpenAPI document serialises");
    Bytes::from(json)
});

/// `GET /openapi.json`: served without authentication.
pub async fn document() -> Response {
    super::json(StatusCode::OK, DOCUMENT.clone())
}

#[allow(dead_code)] // described, never constructed: the wire writers produce these shapes
pub(super) mod doc {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
    use utoipa::{IntoParams, Modify, OpenApi, ToSchema};

    use super::super::control::{END_ROUTE, PLACE_ROUTE, STOP_ALL_ROUTE, STOP_ROUTE};
    use super::super::{BLAND_ROUTE, CALLS_ROUTE};

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
        paths(
            bland_active_calls,
            agent_calls,
            end_call,
            stop_call,
            stop_all_calls,
            place_call,
            forward_to_bland
        ),
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
            ErrorItem,
            ProviderFailure,
            ProviderErrorCode,
            RequestFailure,
            RequestErrorCode,
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
            BlandForwardRefused,
            ForwardErrorCode,
            BlandNotForwarded,
            NotForwardedItem,
        )),
        modifiers(&OrgKey),
        tags(
            (name = "calls", description = "Live calls, merged across providers"),
            (name = "control", description = "Ending calls on the provider that listed them, and placing calls"),
            (name = "forwarded", description = "Bland's other routes, forwarded to Bland for \
                organisations that forward them")
        )
    )]
    pub(super) struct ApiDoc;

    /// The `authorization` header as a security scheme, so that tools send it (OpenAPI ignores
    /// a header *parameter* named `Authorization`; it is listed there too, for readers).
    struct OrgKey;

    impl Modify for OrgKey {
        fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
            let components = openapi.components.get_or_insert_with(Default::default);
            components.add_security_scheme(
                "orgKey",
                SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                    "authorization",
                    "The organisation's key, raw (`authorization: <key>`) or as \
                     `authorization: Bearer <key>`. For an org that authenticates through Bland \
                     (`auth = \"<bland provider>\"`), the caller's own Bland API key.",
                ))),
            );
        }
    }

    /// The two request headers, the same for both endpoints.
    #[derive(IntoParams)]
    #[into_params(parameter_in = Header)]
    pub(in crate::http) struct ListHeaders {
        /// The organisation's key, raw (`<key>`) or as `Bearer <key>`. Required: without it,
        /// or with an empty one, the answer is 401 `AUTH_FAILURE`. (Also described as the
        /// `orgKey` security scheme, which is what OpenAPI tools act on.)
        authorization: String,
        /// The organisation's id (its table name in `providers.toml`). Optional when the key
        /// alone identifies exactly one organisation; otherwise its absence is 400
        /// `MISSING_ORG_ID`. An unknown id is 401 `AUTH_FAILURE`, like a wrong key.
        #[param(rename = "x-bland-org-id", required = false)]
        x_bland_org_id: String,
    }

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
            (status = 400, body = BlandRefused,
                description = "`MISSING_ORG_ID`: no `x-bland-org-id`, and the key alone does not \
                    identify exactly one organisation.",
                example = json!({"data": null, "errors": [{"error": "MISSING_ORG_ID",
                    "message": "missing x-bland-org-id header: this key does not identify a \
                        single organisation, so send your organisation id in x-bland-org-id"}]})),
            (status = 401, body = BlandRefused,
                description = "`AUTH_FAILURE`: no or empty `authorization`, a key that is not \
                    visible ASCII, an unknown key, a key that is not the named org's, an unknown \
                    org id; or, for an org that authenticates through Bland, Bland refused the \
                    caller's key.",
                headers(("www-authenticate" = String, description = "Always `Bearer`.")),
                example = json!({"data": null, "errors": [{"error": "AUTH_FAILURE",
                    "message": "invalid API key for this organisation"}]})),
            (status = 431, body = BlandRefused,
                description = "`HEADERS_TOO_LARGE`: the request's headers are over \
                    `[server] max_header_bytes`.",
                example = json!({"data": null, "errors": [{"error": "HEADERS_TOO_LARGE",
                    "message": "the request's headers are 9000 bytes, over the 8192-byte limit \
                        (max_header_bytes)"}]})),
            (status = 502, body = BlandFailed,
                description = "Every provider the organisation may see failed: `errors` names \
                    each, with `provider`. Or `AUTH_UNAVAILABLE`: for an org that authenticates \
                    through Bland, Bland could not be asked about the key (nothing is listed).",
                examples(
                    ("all providers failed" = (value = json!({"data": null, "errors": [
                        {"provider": "agents", "error": "UPSTREAM_UNREACHABLE",
                            "message": "could not be reached: Connection refused (os error 111)"}]}))),
                    ("key could not be checked" = (value = json!({"data": null, "errors": [
                        {"error": "AUTH_UNAVAILABLE", "message": "could not check the key with \
                            provider `bland`, which did not answer within 3000 ms; try again \
                            shortly"}]}))),
                )),
            (status = 503, body = BlandRefused,
                description = "`OVERLOADED`: `[server] max_concurrent_requests` requests are \
                    already in flight (refused at once, not queued). Or `REQUEST_TIMEOUT`: the \
                    answer took longer than `[server] request_timeout_ms`.",
                headers(("retry-after" = u32, description = "Seconds to wait before retrying: `1`.")),
                examples(
                    ("overloaded" = (value = json!({"data": null, "errors": [
                        {"error": "OVERLOADED", "message": "callmux is answering 1024 requests \
                            already (max_concurrent_requests); retry shortly"}]}))),
                    ("request timeout" = (value = json!({"data": null, "errors": [
                        {"error": "REQUEST_TIMEOUT", "message": "the request took longer than \
                            10000 ms (request_timeout_ms); retry shortly"}]}))),
                )),
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
            (status = 400, body = CallsRefused,
                description = "`MISSING_ORG_ID`: no `x-bland-org-id`, and the key alone does not \
                    identify exactly one organisation.",
                example = json!({"calls": [], "count": 0, "errors": [{"error": "MISSING_ORG_ID",
                    "message": "missing x-bland-org-id header: this key does not identify a \
                        single organisation, so send your organisation id in x-bland-org-id"}]})),
            (status = 401, body = CallsRefused,
                description = "`AUTH_FAILURE`: no or empty `authorization`, a key that is not \
                    visible ASCII, an unknown key, a key that is not the named org's, an unknown \
                    org id; or, for an org that authenticates through Bland, Bland refused the \
                    caller's key.",
                headers(("www-authenticate" = String, description = "Always `Bearer`.")),
                example = json!({"calls": [], "count": 0, "errors": [{"error": "AUTH_FAILURE",
                    "message": "invalid API key for this organisation"}]})),
            (status = 431, body = CallsRefused,
                description = "`HEADERS_TOO_LARGE`: the request's headers are over \
                    `[server] max_header_bytes`.",
                example = json!({"calls": [], "count": 0, "errors": [{"error": "HEADERS_TOO_LARGE",
                    "message": "the request's headers are 9000 bytes, over the 8192-byte limit \
                        (max_header_bytes)"}]})),
            (status = 502, body = CallsFailed,
                description = "Every provider the organisation may see failed: `errors` names \
                    each, with `provider`. Or `AUTH_UNAVAILABLE`: for an org that authenticates \
                    through Bland, Bland could not be asked about the key (nothing is listed).",
                examples(
                    ("all providers failed" = (value = json!({"calls": [], "count": 0, "errors": [
                        {"provider": "agents", "error": "UPSTREAM_UNREACHABLE",
                            "message": "could not be reached: Connection refused (os error 111)"}]}))),
                    ("key could not be checked" = (value = json!({"calls": [], "count": 0,
                        "errors": [{"error": "AUTH_UNAVAILABLE", "message": "could not check the \
                            key with provider `bland`, which did not answer within 3000 ms; try \
                            again shortly"}]}))),
                )),
            (status = 503, body = CallsRefused,
                description = "`OVERLOADED`: `[server] max_concurrent_requests` requests are \
                    already in flight (refused at once, not queued). Or `REQUEST_TIMEOUT`: the \
                    answer took longer than `[server] request_timeout_ms`.",
                headers(("retry-after" = u32, description = "Seconds to wait before retrying: `1`.")),
                examples(
                    ("overloaded" = (value = json!({"calls": [], "count": 0, "errors": [
                        {"error": "OVERLOADED", "message": "callmux is answering 1024 requests \
                            already (max_concurrent_requests); retry shortly"}]}))),
                    ("request timeout" = (value = json!({"calls": [], "count": 0, "errors": [
                        {"error": "REQUEST_TIMEOUT", "message": "the request took longer than \
                            10000 ms (request_timeout_ms); retry shortly"}]}))),
                )),
        )
    )]
    fn agent_calls() {}

    /// The call id in the path.
    #[derive(IntoParams)]
    #[into_params(parameter_in = Path)]
    struct CallIdParam {
        /// A call id as listed. 1 to 256 bytes (after percent-decoding), with no `/`, `?`,
        /// `#`, `%`, whitespace or control characters, and not `.` or `..`; anything else is
        /// 400 `INVALID_CALL_ID` and reaches no upstream.
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
                description = "`INVALID_CALL_ID`, or `MISSING_ORG_ID` as for the lists.",
                example = json!({"success": false, "code": "INVALID_CALL_ID", "error": "the call \
                    id is not one callmux passes on: it must be 1 to 256 bytes with no `/`, `?`, \
                    `#`, `%`, whitespace or control characters"})),
            (status = 401, body = AgentControlFailed,
                description = "`AUTH_FAILURE`, as for the lists.",
                headers(("www-authenticate" = String, description = "Always `Bearer`.")),
                example = json!({"success": false, "code": "AUTH_FAILURE",
                    "error": "invalid API key for this organisation"})),
            (status = 404, body = AgentControlFailed,
                description = "`CALL_NOT_FOUND`: no provider the organisation may see lists the \
                    call, or its owner says it does not know it. A call of a provider the \
                    organisation may not see gets exactly this answer.",
                example = json!({"success": false, "code": "CALL_NOT_FOUND",
                    "error": "no active call with this id is visible to this organisation"})),
            (status = 431, body = AgentControlFailed,
                description = "`HEADERS_TOO_LARGE`: the request's headers are over \
                    `[server] max_header_bytes`.",
                example = json!({"success": false, "code": "HEADERS_TOO_LARGE",
                    "error": "the request's headers are 9000 bytes, over the 8192-byte limit \
                        (max_header_bytes)"})),
            (status = 501, body = AgentControlFailed,
                description = "`NOT_SUPPORTED`: the owner's kind cannot end calls.",
                example = json!({"success": false, "code": "NOT_SUPPORTED", "provider": "p",
                    "error": "provider `p` cannot end calls"})),
            (status = 502, body = AgentControlFailed,
                description = "The owner failed (`UPSTREAM_*`, naming it in `provider`), or \
                    `AUTH_UNAVAILABLE`.",
                example = json!({"success": false, "code": "UPSTREAM_REPORTED_ERROR",
                    "provider": "agents",
                    "error": "provider `agents` reported an error instead of calls: boom"})),
            (status = 503, body = AgentControlFailed,
                description = "`OVERLOADED` or `REQUEST_TIMEOUT`, as for the lists. A \
                    `REQUEST_TIMEOUT` after the end was sent leaves its outcome unknown.",
                headers(("retry-after" = u32, description = "Seconds to wait before retrying: `1`.")),
                example = json!({"success": false, "code": "OVERLOADED",
                    "error": "callmux is answering 1024 requests already \
                        (max_concurrent_requests); retry shortly"})),
            (status = 504, body = AgentControlFailed,
                description = "`OUTCOME_UNKNOWN`: the owner did not answer within its \
                    `timeout_ms`, or the connection broke after the request was sent; the call may or may not have ended. Not retried.",
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
                description = "`INVALID_CALL_ID`, or `MISSING_ORG_ID` as for the lists.",
                example = json!({"status": "error", "code": "INVALID_CALL_ID", "message": "the \
                    call id is not one callmux passes on: it must be 1 to 256 bytes with no `/`, \
                    `?`, `#`, `%`, whitespace or control characters"})),
            (status = 401, body = BlandControlFailed,
                description = "`AUTH_FAILURE`, as for the lists.",
                headers(("www-authenticate" = String, description = "Always `Bearer`.")),
                example = json!({"status": "error", "code": "AUTH_FAILURE",
                    "message": "invalid API key for this organisation"})),
            (status = 404, body = BlandControlFailed,
                description = "`CALL_NOT_FOUND`, as for `POST /api/calls/{call_id}/end`.",
                example = json!({"status": "error", "code": "CALL_NOT_FOUND",
                    "message": "no active call with this id is visible to this organisation"})),
            (status = 431, body = BlandControlFailed,
                description = "`HEADERS_TOO_LARGE`: the request's headers are over \
                    `[server] max_header_bytes`.",
                example = json!({"status": "error", "code": "HEADERS_TOO_LARGE",
                    "message": "the request's headers are 9000 bytes, over the 8192-byte limit \
                        (max_header_bytes)"})),
            (status = 501, body = BlandControlFailed,
                description = "`NOT_SUPPORTED`: the owner's kind cannot end calls.",
                example = json!({"status": "error", "code": "NOT_SUPPORTED", "provider": "p",
                    "message": "provider `p` cannot end calls"})),
            (status = 502, body = BlandControlFailed,
                description = "The owner failed (`UPSTREAM_*`, naming it in `provider`), or \
                    `AUTH_UNAVAILABLE`.",
                example = json!({"status": "error", "code": "UPSTREAM_ERROR", "provider": "bland",
                    "message": "provider `bland` answered HTTP 500"})),
            (status = 503, body = BlandControlFailed,
                description = "`OVERLOADED` or `REQUEST_TIMEOUT`, as for the lists. A \
                    `REQUEST_TIMEOUT` after the end was sent leaves its outcome unknown.",
                headers(("retry-after" = u32, description = "Seconds to wait before retrying: `1`.")),
                example = json!({"status": "error", "code": "OVERLOADED",
                    "message": "callmux is answering 1024 requests already \
                        (max_concurrent_requests); retry shortly"})),
            (status = 504, body = BlandControlFailed,
                description = "`OUTCOME_UNKNOWN`: the owner did not answer within its \
                    `timeout_ms`, or the connection broke after the request was sent; the call may or may not have ended. Not retried.",
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
            (status = 400, body = BlandControlFailed,
                description = "`MISSING_ORG_ID`, as for the lists.",
                example = json!({"status": "error", "code": "MISSING_ORG_ID", "message": "this \
                    key belongs to more than one organisation; send x-bland-org-id"})),
            (status = 401, body = BlandControlFailed,
                description = "`AUTH_FAILURE`, as for the lists.",
                headers(("www-authenticate" = String, description = "Always `Bearer`.")),
                example = json!({"status": "error", "code": "AUTH_FAILURE",
                    "message": "invalid API key for this organisation"})),
            (status = 431, body = BlandControlFailed,
                description = "`HEADERS_TOO_LARGE`: the request's headers are over \
                    `[server] max_header_bytes`.",
                example = json!({"status": "error", "code": "HEADERS_TOO_LARGE",
                    "message": "the request's headers are 9000 bytes, over the 8192-byte limit \
                        (max_header_bytes)"})),
            (status = 502, body = BlandStopAllFailed,
                description = "Every provider of the organisation failed; each is named in \
                    `errors`.",
                example = json!({"status": "error", "num_calls": 0, "message": "No provider of \
                    this organisation could stop its calls; see errors.", "errors": [{"provider":
                    "agents", "error": "UPSTREAM_ERROR", "message": "could not be listed, so its \
                    calls were not ended: answered HTTP 500"}]})),
            (status = 503, body = BlandControlFailed,
                description = "`OVERLOADED` or `REQUEST_TIMEOUT`, as for the lists.",
                headers(("retry-after" = u32, description = "Seconds to wait before retrying: `1`.")),
                example = json!({"status": "error", "code": "OVERLOADED",
                    "message": "callmux is answering 1024 requests already \
                        (max_concurrent_requests); retry shortly"})),
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
                description = "`INVALID_BODY`, naming the field that is wrong, or \
                    `MISSING_ORG_ID`. Nothing was sent.",
                example = json!({"success": false, "code": "INVALID_BODY",
                    "error": "field `to` is missing; give the number to call, e.g. \"+1...\""})),
            (status = 401, body = AgentPlaceFailed,
                description = "`AUTH_FAILURE`, as for the lists.",
                headers(("www-authenticate" = String, description = "Always `Bearer`.")),
                example = json!({"success": false, "code": "AUTH_FAILURE",
                    "error": "invalid API key for this organisation"})),
            (status = 431, body = AgentPlaceFailed,
                description = "`HEADERS_TOO_LARGE`: the request's headers are over \
                    `[server] max_header_bytes`.",
                example = json!({"success": false, "code": "HEADERS_TOO_LARGE",
                    "error": "the request's headers are 9000 bytes, over the 8192-byte limit \
                        (max_header_bytes)"})),
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
                description = "`AT_CAPACITY`: every server is at its `max_active_calls`; or \
                    `OVERLOADED` / `REQUEST_TIMEOUT`, as for the lists.",
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
        /// The number to call, e.g. `+1234567890`.
        #[schema(min_length = 1)]
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

    /// Why a call was not ended or placed: `INVALID_CALL_ID` (400), `INVALID_BODY` (400),
    /// `CALL_NOT_FOUND` (404), `AT_CAPACITY` (503),
    /// `NOT_SUPPORTED` (501), `OUTCOME_UNKNOWN` (504), the owner's failure (502, the codes of
    /// a provider's failure in a list), or the request's own (`AUTH_FAILURE`, `MISSING_ORG_ID`,
    /// `AUTH_UNAVAILABLE`, `HEADERS_TOO_LARGE`, `OVERLOADED`, `REQUEST_TIMEOUT`).
    #[derive(ToSchema)]
    #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
    enum ControlErrorCode {
        InvalidCallId,
        InvalidBody,
        AtCapacity,
        CallNotFound,
        NotSupported,
        OutcomeUnknown,
        AuthFailure,
        MissingOrgId,
        AuthUnavailable,
        HeadersTooLarge,
        Overloaded,
        RequestTimeout,
        UpstreamTimeout,
        UpstreamUnreachable,
        UpstreamError,
        UpstreamAuthRejected,
        UpstreamBadResponse,
        UpstreamReportedError,
        UpstreamTooLarge,
        UpstreamBrokenResponse,
        UpstreamNoCredentials,
        UpstreamControlRefused,
        InternalError,
    }

    fn always_true() -> utoipa::openapi::schema::Object {
        ObjectBuilder::new()
            .schema_type(Type::Boolean)
            .enum_values(Some([true]))
            .build()
    }

    fn always_false() -> utoipa::openapi::schema::Object {
        ObjectBuilder::new()
            .schema_type(Type::Boolean)
            .enum_values(Some([false]))
            .build()
    }

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

    // --- Errors, the same in both shapes -------------------------------------------------------

    /// One entry of `errors`: a provider's failure (has `provider`) or the request's own
    /// (has none).
    #[derive(ToSchema)]
    #[serde(untagged)]
    enum ErrorItem {
        Provider(ProviderFailure),
        Request(RequestFailure),
    }

    /// A provider that failed: its calls are missing from the answer, the others' are not.
    #[derive(ToSchema)]
    #[serde(deny_unknown_fields)]
    struct ProviderFailure {
        /// The provider's id in `providers.toml`.
        provider: String,
        error: ProviderErrorCode,
        /// What went wrong, for people. Names no URL, header or key.
        message: String,
    }

    /// Why a provider failed:
    ///
    /// - `UPSTREAM_TIMEOUT`: no complete answer within the provider's `timeout_ms`
    /// - `UPSTREAM_UNREACHABLE`: connection refused or failed
    /// - `UPSTREAM_ERROR`: answered a non-2xx status (other than 401/403)
    /// - `UPSTREAM_AUTH_REJECTED`: answered 401/403 to the provider's own credentials
    /// - `UPSTREAM_BAD_RESPONSE`: body not JSON, or JSON of the wrong shape
    /// - `UPSTREAM_REPORTED_ERROR`: a Bland upstream answered its own error envelope
    /// - `UPSTREAM_TOO_LARGE`: body over the provider's `max_body_bytes`
    /// - `UPSTREAM_BROKEN_RESPONSE`: the connection broke off mid-answer
    /// - `UPSTREAM_NO_CREDENTIALS`: a forwarding Bland provider had no caller credentials to send
    /// - `CIRCUIT_OPEN`: the provider failed repeatedly and is not being asked for a while
    /// - `INTERNAL_ERROR`: callmux failed while asking this provider
    #[derive(ToSchema)]
    #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
    enum ProviderErrorCode {
        UpstreamTimeout,
        UpstreamUnreachable,
        UpstreamError,
        UpstreamAuthRejected,
        UpstreamBadResponse,
        UpstreamReportedError,
        UpstreamTooLarge,
        UpstreamBrokenResponse,
        UpstreamNoCredentials,
        CircuitOpen,
        InternalError,
    }

    /// An error of the request itself; no provider is named.
    #[derive(ToSchema)]
    #[serde(deny_unknown_fields)]
    struct RequestFailure {
        error: RequestErrorCode,
        /// What went wrong and how to fix it, for people. Never echoes the key sent.
        message: String,
    }

    /// Why the request itself was refused:
    ///
    /// - `AUTH_FAILURE` (401): missing, unreadable or wrong key, or unknown org id
    /// - `MISSING_ORG_ID` (400): no `x-bland-org-id` and the key alone names no single org
    /// - `AUTH_UNAVAILABLE` (502): Bland could not be asked about the caller's key
    /// - `HEADERS_TOO_LARGE` (431): headers over `[server] max_header_bytes`
    /// - `OVERLOADED` (503): `[server] max_concurrent_requests` already in flight
    /// - `REQUEST_TIMEOUT` (503): no answer within `[server] request_timeout_ms`
    #[derive(ToSchema)]
    #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
    enum RequestErrorCode {
        AuthFailure,
        MissingOrgId,
        AuthUnavailable,
        HeadersTooLarge,
        Overloaded,
        RequestTimeout,
    }

    /// `data` of an answer that lists nothing: always `null`.
    fn null() -> utoipa::openapi::schema::Object {
        ObjectBuilder::new()
            .schema_type(Type::Null)
            .description(Some("Always `null`: nothing is listed."))
            .build()
    }

    // --- Bland's other routes, forwarded ---------------------------------------------------

    /// The rest of a forwarded path.
    #[derive(IntoParams)]
    #[into_params(parameter_in = Path)]
    struct ForwardPathParam {
        /// Everything after `/v1/`, any number of segments, sent to Bland as written (the
        /// query too). A segment that percent-decodes to `.` or `..`, or holds an encoded `/`
        /// (`%2F`) or a `\` in any form, is 400 `INVALID_PATH` and goes nowhere.
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
    /// `/v1/calls/{call_id}/stop`) are never forwarded.
    #[utoipa::path(
        post,
        path = "/v1/{path}",
        operation_id = "forwardToBland",
        tag = "forwarded",
        security(("orgKey" = [])),
        params(ForwardPathParam, ListHeaders),
        responses(
            (status = "default",
                description = "Bland's own answer to the route, whatever its status, as Bland \
                    sent it, e.g. `{\"status\": \"success\", \"call_id\": \"...\"}` for \
                    `POST /v1/calls`."),
            (status = 400, body = BlandForwardRefused,
                description = "`INVALID_PATH` (nothing is sent anywhere), or `MISSING_ORG_ID` \
                    as for the lists.",
                example = json!({"status": "error", "code": "INVALID_PATH",
                    "message": "callmux forwards no such path: a segment of the path holds an \
                        encoded `/` (%2F); write each segment as it is, with `/` only between \
                        segments"})),
            (status = 401, body = BlandForwardRefused,
                description = "`AUTH_FAILURE`, as for the lists: nothing is forwarded.",
                headers(("www-authenticate" = String, description = "Always `Bearer`.")),
                example = json!({"status": "error", "code": "AUTH_FAILURE",
                    "message": "invalid API key for this organisation"})),
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
                description = "`BODY_TOO_LARGE`: the request's body is over the provider's \
                    `max_body_bytes`; nothing is sent.",
                example = json!({"status": "error", "code": "BODY_TOO_LARGE",
                    "message": "the request's body is over the 16777216-byte limit of the \
                        provider it would be forwarded to (max_body_bytes); send a smaller body"})),
            (status = 431, body = BlandRefused,
                description = "`HEADERS_TOO_LARGE`, as for the lists and in their envelope."),
            (status = 502, body = BlandForwardRefused,
                description = "Bland could not be reached, broke off, or declared an answer \
                    over `max_body_bytes` (`UPSTREAM_*`, naming the provider), or \
                    `AUTH_UNAVAILABLE`. An answer that runs past `max_body_bytes` while it \
                    streams is cut off instead: the connection ends before the body does.",
                example = json!({"status": "error", "code": "UPSTREAM_UNREACHABLE",
                    "provider": "bland", "message": "provider `bland` could not be reached: \
                        Connection refused (os error 111)"})),
            (status = 503, body = BlandRefused,
                description = "`OVERLOADED` or `REQUEST_TIMEOUT`, as for the lists and in \
                    their envelope: a forwarded request is an ordinary one, and holds its \
                    place among `max_concurrent_requests` until its answer's body is done.",
                headers(("retry-after" = u32, description = "Seconds to wait before retrying: `1`."))),
            (status = 504, body = BlandForwardRefused,
                description = "`UPSTREAM_TIMEOUT`: Bland did not answer within the provider's \
                    `timeout_ms`. Not retried: the request may have had its effect.",
                example = json!({"status": "error", "code": "UPSTREAM_TIMEOUT",
                    "provider": "bland", "message": "provider `bland` did not answer within \
                        400 ms"})),
        )
    )]
    fn forward_to_bland() {}

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

    /// Why a request was not forwarded: `INVALID_PATH` (400), `BODY_TOO_LARGE` (413),
    /// `UPSTREAM_TIMEOUT` (504), Bland's failure (502, the codes of a provider's failure in
    /// a list), or the request's own (`AUTH_FAILURE`, `MISSING_ORG_ID`, `AUTH_UNAVAILABLE`).
    #[derive(ToSchema)]
    #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
    enum ForwardErrorCode {
        InvalidPath,
        BodyTooLarge,
        InvalidBody,
        AuthFailure,
        MissingOrgId,
        AuthUnavailable,
        UpstreamTimeout,
        UpstreamUnreachable,
        UpstreamTooLarge,
        UpstreamBrokenResponse,
        UpstreamNoCredentials,
        UpstreamControlRefused,
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
        #[schema(pattern = "^NOT_FOUND$")]
        error: String,
        /// The route asked, the routes callmux serves, and when it forwards.
        message: String,
    }
}

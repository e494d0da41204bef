//! What every documented route shares: the org key, the request headers, the error codes
//! (each family an `enum` built from [`ErrorCode`]), the error items, and the refusals every
//! route gives (400, 401, 403, 429, 431, 502, 503), each built once here for every envelope.

use serde_json::Value;
use strum::EnumMessage;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr};
use utoipa::{IntoParams, Modify, ToSchema};

use crate::error_code::{ErrorCode, Family};
use crate::http::envelope::Envelope as ControlEnvelope;
use crate::wire::{ErrorItem as Item, Shape};

/// A `$ref` to the component schema `name`.
pub(super) fn named(name: &str) -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(name))
}

/// The `authorization` header as a security scheme, so that tools send it (OpenAPI ignores
/// a header *parameter* named `Authorization`; it is listed there too, for readers).
pub(super) struct OrgKey;

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

/// The two request headers, the same for every authenticated route.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // described, never constructed
pub(super) struct ListHeaders {
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

/// The codes of `family`, as a string `enum` with a line of meaning per code.
fn codes(family: Family, what: &str) -> RefOr<Schema> {
    let mut description = format!("{what}:\n");
    for code in ErrorCode::of(family) {
        let meaning = code.get_documentation().unwrap_or_default();
        description.push_str(&format!("\n- `{code}`: {}", meaning.trim()));
    }
    let values: Vec<&str> = ErrorCode::of(family).map(ErrorCode::as_str).collect();
    RefOr::T(Schema::Object(
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(values))
            .description(Some(description))
            .build(),
    ))
}

/// A schema component for one family of codes.
macro_rules! code_schema {
    ($name:ident, $family:expr, $what:literal) => {
        pub(super) struct $name;
        impl utoipa::PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                codes($family, $what)
            }
        }
        impl ToSchema for $name {}
    };
}

code_schema!(ProviderErrorCode, Family::Provider, "Why a provider failed");
code_schema!(
    RequestErrorCode,
    Family::Request,
    "Why the request itself was refused"
);
code_schema!(
    ControlErrorCode,
    Family::Control,
    "Why a call was not ended or placed: the route's own reasons, the owner's failure (a \
     provider's codes), or the request's own"
);
code_schema!(
    ForwardErrorCode,
    Family::Forward,
    "Why a request was not forwarded: the route's own reasons, Bland's failure (a provider's \
     codes), or the request's own"
);
code_schema!(
    HookErrorCode,
    Family::Hook,
    "Why a status callback was refused"
);
code_schema!(NotFoundCode, Family::Unrouted, "No such route");

/// One entry of `errors`: a provider's failure (has `provider`) or the request's own
/// (has none).
#[derive(ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub(super) enum ErrorItem {
    Provider(ProviderFailure),
    Request(RequestFailure),
}

/// A provider that failed: its calls are missing from the answer, the others' are not.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub(super) struct ProviderFailure {
    /// The provider's id in `providers.toml`.
    provider: String,
    error: ProviderErrorCode,
    /// What went wrong, for people. Names no URL, header or key.
    message: String,
}

/// An error of the request itself; no provider is named.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub(super) struct RequestFailure {
    error: RequestErrorCode,
    /// What went wrong and how to fix it, for people. Never echoes the key sent.
    message: String,
}

/// `null`, or at least one provider's failure.
pub(super) fn nullable_failures() -> Schema {
    Schema::OneOf(
        OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::Null))
            .item(
                ArrayBuilder::new()
                    .items(named("ProviderFailure"))
                    .min_items(Some(1)),
            )
            .build(),
    )
}

/// `data` of an answer that lists nothing: always `null`.
pub(super) fn null() -> utoipa::openapi::schema::Object {
    ObjectBuilder::new()
        .schema_type(Type::Null)
        .description(Some("Always `null`: nothing is listed."))
        .build()
}

pub(super) fn always_true() -> utoipa::openapi::schema::Object {
    ObjectBuilder::new()
        .schema_type(Type::Boolean)
        .enum_values(Some([true]))
        .build()
}

pub(super) fn always_false() -> utoipa::openapi::schema::Object {
    ObjectBuilder::new()
        .schema_type(Type::Boolean)
        .enum_values(Some([false]))
        .build()
}

/// The envelope a route refuses in: which schemas its refusals have, and how the server
/// writes them (the examples are written by the server's own writers).
#[derive(Debug, Clone, Copy)]
pub(super) enum Envelope {
    /// A list (or its stream) in one of the three shapes.
    List(Shape),
    /// A control route in the agent servers' envelope; `place` for `POST /api/call`.
    Agent { place: bool },
    /// A control route in Bland's envelope.
    BlandControl,
    /// A forwarded Bland route: its own refusals in Bland's control envelope, the request
    /// bounds' in Bland's list envelope.
    Forward,
    /// The Twilio callback: no key, and the request bounds' refusals in Bland's list envelope.
    Hook,
    /// `POST /calls`: callmux's own envelope; the shared refusals as the own list writes them.
    Place,
}

/// Whether `code` is the request bounds' (`bounds::Enforce`), which answer in the list
/// envelope on every route that is not a control route.
fn of_the_bounds(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::HeadersTooLarge | ErrorCode::Overloaded | ErrorCode::RequestTimeout
    )
}

impl Envelope {
    /// The schema of a refusal with `code`, no provider named.
    fn schema(self, code: ErrorCode) -> &'static str {
        let unavailable = code == ErrorCode::AuthUnavailable;
        match self {
            Self::List(shape) => match (shape, unavailable) {
                (Shape::Bland, false) => "BlandRefused",
                (Shape::Bland, true) => "BlandFailed",
                (Shape::Calls, false) => "CallsRefused",
                (Shape::Calls, true) => "CallsFailed",
                (Shape::Own, false) => "OwnRefused",
                (Shape::Own, true) => "OwnFailed",
            },
            Self::Agent { place: false } => "AgentControlFailed",
            Self::Agent { place: true } => "AgentPlaceFailed",
            Self::BlandControl => "BlandControlFailed",
            // The callback's shared refusals are all in Bland's list envelope (it has no key).
            Self::Hook => "BlandRefused",
            Self::Forward if of_the_bounds(code) => "BlandRefused",
            Self::Forward => "BlandForwardRefused",
            Self::Place => "PlaceRefused",
        }
    }

    /// The body the server writes for a refusal with `code` and `message`, written by the
    /// server's own writers.
    fn example(self, code: ErrorCode, message: &str) -> Value {
        let item = Item {
            provider: None,
            error: code,
            message,
        };
        let bytes = match self {
            Self::Agent { .. } => ControlEnvelope::Agent
                .error(code, message, None)
                .into_bytes(),
            Self::BlandControl => ControlEnvelope::Bland
                .error(code, message, None)
                .into_bytes(),
            Self::Forward if !of_the_bounds(code) => ControlEnvelope::Bland
                .error(code, message, None)
                .into_bytes(),
            Self::List(shape) => shape.write_error(&[item]),
            Self::Place => Shape::Own.write_error(&[item]),
            Self::Forward | Self::Hook => Shape::Bland.write_error(&[item]),
        };
        serde_json::from_slice(&bytes).expect("the writers write JSON")
    }
}

/// A refusal every route of some kind gives: its status, the codes, what they mean, and an
/// example message for each code.
struct Refusal {
    status: u16,
    /// Whether the route must authenticate to give it (the Twilio callback does not).
    auth: bool,
    /// Whether every route gives it, streams included, whatever `auth`.
    everywhere: bool,
    codes: &'static [(ErrorCode, &'static str)],
    description: &'static str,
}

const MISSING_ORG_ID: &str = "missing x-bland-org-id header: this key does not identify a \
     single organisation, so send your organisation id in x-bland-org-id";

/// The refusals every route shares, written once.
const REFUSALS: &[Refusal] = &[
    Refusal {
        status: 405,
        auth: false,
        everywhere: true,
        codes: &[(
            ErrorCode::MethodNotAllowed,
            "/api/call does not answer GET: send POST",
        )],
        description: "`METHOD_NOT_ALLOWED`: the route does not answer this method (`allow` \
            names the one it does); forwarding sends only `GET`, `POST`, `PUT`, `PATCH` and \
            `DELETE`. Nothing is checked or sent.",
    },
    Refusal {
        status: 400,
        auth: true,
        everywhere: false,
        codes: &[(ErrorCode::MissingOrgId, MISSING_ORG_ID)],
        description: "`MISSING_ORG_ID`: no `x-bland-org-id`, and the key alone does not \
            identify exactly one organisation.",
    },
    Refusal {
        status: 401,
        auth: true,
        everywhere: false,
        codes: &[(
            ErrorCode::AuthFailure,
            "invalid API key for this organisation",
        )],
        description: "`AUTH_FAILURE`: no or empty `authorization`, a key that is not visible \
            ASCII, an unknown key, a key that is not the named org's, an unknown org id; or, \
            for an org that authenticates through Bland, Bland refused the caller's key. \
            Nothing is listed, ended or forwarded.",
    },
    Refusal {
        status: 403,
        auth: true,
        everywhere: false,
        codes: &[(
            ErrorCode::Forbidden,
            "the key `wallboard` may not do this: the route needs the `end` scope; ask the \
             operator for a key with `end`, or add it to the key's scopes",
        )],
        description: "`FORBIDDEN`: the key is valid but lacks the scope this route needs \
            (`read`, `end`, `stop_all`, `place` or `forward`); the message names the scope and \
            the key's name. Checked before anything is asked upstream.",
    },
    Refusal {
        status: 429,
        auth: true,
        everywhere: false,
        codes: &[(
            ErrorCode::RateLimited,
            "the key `dialer` is over its limit of 5 requests per second; retry after 1 s",
        )],
        description: "`RATE_LIMITED`: the key is over its `requests_per_second` (or, placing \
            a call, its `calls_per_second`); `retry-after` says when to try again. Nothing was \
            asked upstream.",
    },
    Refusal {
        status: 431,
        auth: false,
        everywhere: false,
        codes: &[(
            ErrorCode::HeadersTooLarge,
            "the request's headers are 9000 bytes, over the 8192-byte limit (max_header_bytes)",
        )],
        description: "`HEADERS_TOO_LARGE`: the request's headers are over \
            `[server] max_header_bytes`.",
    },
    Refusal {
        status: 502,
        auth: true,
        everywhere: false,
        codes: &[(
            ErrorCode::AuthUnavailable,
            "could not check the key with provider `bland`, which did not answer within \
             3000 ms; try again shortly",
        )],
        description: "`AUTH_UNAVAILABLE`: for an org that authenticates through Bland, Bland \
            could not be asked about the caller's key (nothing is done).",
    },
    Refusal {
        status: 503,
        auth: false,
        everywhere: false,
        codes: &[
            (
                ErrorCode::Overloaded,
                "callmux is answering 1024 requests already (max_concurrent_requests); retry \
                 shortly",
            ),
            (
                ErrorCode::RequestTimeout,
                "the request took longer than 10000 ms (request_timeout_ms); retry shortly",
            ),
        ],
        description: "`OVERLOADED`: `[server] max_concurrent_requests` requests are already in \
            flight (refused at once, not queued). Or `REQUEST_TIMEOUT`: the answer took longer \
            than `[server] request_timeout_ms`; after a control route's request was sent, its \
            outcome is then unknown.",
    },
];

/// Which refusals a route gives, by its operation id: the lists and the control routes all
/// of them; the streams (outside the request bounds) the authentication ones; the Twilio
/// callback (no key) only the request bounds'.
pub(super) const ROUTES: &[(&str, Envelope, bool, bool)] = &[
    // (operation id, envelope, authenticates, within the request bounds)
    (
        "listActiveCallsBland",
        Envelope::List(Shape::Bland),
        true,
        true,
    ),
    ("listCalls", Envelope::List(Shape::Calls), true, true),
    ("listCallsOwn", Envelope::List(Shape::Own), true, true),
    ("getCapacity", Envelope::List(Shape::Own), true, true),
    (
        "streamActiveCallsBland",
        Envelope::List(Shape::Bland),
        true,
        false,
    ),
    ("streamCalls", Envelope::List(Shape::Calls), true, false),
    ("streamCallsOwn", Envelope::List(Shape::Own), true, false),
    ("endCall", Envelope::Agent { place: false }, true, true),
    ("placeCall", Envelope::Agent { place: true }, true, true),
    ("placeCallOnRoute", Envelope::Place, true, true),
    ("stopCall", Envelope::BlandControl, true, true),
    ("stopAllCalls", Envelope::BlandControl, true, true),
    ("forwardToBland", Envelope::Forward, true, true),
    ("forwardGetToBland", Envelope::Forward, true, true),
    ("platformWebhook", Envelope::Hook, false, true),
    ("listWebhooks", Envelope::List(Shape::Own), true, true),
    ("whoAmI", Envelope::List(Shape::Own), true, true),
    ("createSignInLink", Envelope::List(Shape::Own), true, true),
    // Its token is its credential: refused as a wrong key is.
    ("useSignInLink", Envelope::List(Shape::Own), true, true),
];

/// Adds the shared refusals to every operation in [`ROUTES`]: a status the route does not
/// document itself gets the shared answer whole; one it does gets the shared meaning added.
pub(super) struct SharedRefusals;

impl Modify for SharedRefusals {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for operation in [&mut item.get, &mut item.post].into_iter().flatten() {
                let id = operation.operation_id.as_deref().unwrap_or_default();
                let Some(&(_, envelope, auth, bounded)) =
                    ROUTES.iter().find(|(route, ..)| *route == id)
                else {
                    continue;
                };
                for refusal in REFUSALS {
                    if !refusal.everywhere
                        && ((refusal.auth && !auth) || (!refusal.auth && !bounded))
                    {
                        continue;
                    }
                    let status = refusal.status.to_string();
                    let responses = &mut operation.responses.responses;
                    match responses.get_mut(&status) {
                        Some(RefOr::T(own)) => {
                            own.description =
                                format!("{} Or {}", own.description, refusal.description);
                            add_headers(own, refusal.status);
                            let theirs = envelope.schema(refusal.codes[0].0);
                            if let Some(content) = own.content.get_mut("application/json") {
                                either(&mut content.schema, theirs);
                            }
                        }
                        Some(RefOr::Ref(_)) => {}
                        None => {
                            responses.insert(status, RefOr::T(shared(envelope, refusal)));
                        }
                    }
                }
            }
        }
    }
}

/// `schema`, or also `theirs` when that is another envelope (a stop-all that failed has its
/// own body, but its key is refused in the control envelope).
fn either(schema: &mut Option<RefOr<Schema>>, theirs: &str) {
    let shared = named(theirs);
    match schema.take() {
        Some(own) if own != shared => {
            *schema = Some(RefOr::T(Schema::OneOf(
                OneOfBuilder::new().item(own).item(shared).build(),
            )));
        }
        own => *schema = own.or(Some(shared)),
    }
}

/// The shared refusal as a response of a route that answers in `envelope`.
fn shared(envelope: Envelope, refusal: &Refusal) -> Response {
    let (first, _) = refusal.codes[0];
    let mut content = ContentBuilder::new().schema(Some(named(envelope.schema(first))));
    if let [(code, message)] = refusal.codes {
        content = content.example(Some(envelope.example(*code, message)));
    } else {
        for (code, message) in refusal.codes {
            content = content.examples_from_iter([(
                code.as_str(),
                utoipa::openapi::example::ExampleBuilder::new()
                    .value(Some(envelope.example(*code, message)))
                    .build(),
            )]);
        }
    }
    let mut response = ResponseBuilder::new()
        .description(refusal.description)
        .content("application/json", content.build())
        .build();
    add_headers(&mut response, refusal.status);
    response
}

/// The headers a refusal of `status` always carries.
fn add_headers(response: &mut Response, status: u16) {
    let (name, schema, description) = match status {
        401 => ("www-authenticate", Type::String, "Always `Bearer`."),
        405 => (
            "allow",
            Type::String,
            "The methods the route answers, e.g. `POST`.",
        ),
        429 => (
            "retry-after",
            Type::Integer,
            "Seconds until the key's rate admits a request again.",
        ),
        503 => (
            "retry-after",
            Type::Integer,
            "Seconds to wait before retrying: `1` (`5` for `AT_CAPACITY`).",
        ),
        _ => return,
    };
    response.headers.entry(name.to_owned()).or_insert_with(|| {
        HeaderBuilder::new()
            .schema(ObjectBuilder::new().schema_type(schema))
            .description(Some(description))
            .build()
    });
}

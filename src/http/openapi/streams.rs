//! The three live streams (Server-Sent Events of each list shape): each event's schema, and
//! the `change` and `end` events' bodies.

#![allow(dead_code)] // described, never constructed: the streams write these shapes

use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem,
};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::security::SecurityRequirement;
use utoipa::openapi::{ContentBuilder, RefOr, Required};
use utoipa::{Modify, OpenApi, ToSchema};

use super::shared::{named, nullable_failures};
use crate::http::streams::{BLAND_STREAM_ROUTE, CALLS_STREAM_ROUTE, OWN_STREAM_ROUTE};

#[derive(OpenApi)]
#[openapi(components(schemas(StreamChange, StreamEnd)), modifiers(&Streams))]
pub(super) struct StreamsDoc;

/// One event of a stream whose snapshot is `snapshot` (the list's 200 body, or on a 502 of
/// it, that error body): what an OpenAPI 3.1 reader validates each event against.
fn event(shape: &str, snapshot: &str, failed: &str) -> Schema {
    let string = || ObjectBuilder::new().schema_type(Type::String);
    let one = |name: &str, data: String| {
        ObjectBuilder::new()
            .property(
                "event",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some([name])),
            )
            .required("event")
            .property(
                "data",
                string()
                    .content_media_type("application/json")
                    .description(Some(data)),
            )
            .required("data")
            .property(
                "id",
                string().description(Some("The event's id, for `last-event-id`.")),
            )
            .build()
    };
    Schema::OneOf(
        OneOfBuilder::new()
            .description(Some(format!(
                "One event of the stream of {shape}. `snapshot` is first: its `data` is byte \
                 for byte the body {shape} answers now. Then `change` whenever the list \
                 changes, and `capacity` whenever a figure of the org's capacity changes. \
                 `end` is the last."
            )))
            .item(one(
                "snapshot",
                format!("JSON: a `{snapshot}`, or when every provider failed a `{failed}`."),
            ))
            .item(one(
                "change",
                format!("JSON: a `StreamChange`, items in the shape of {shape}."),
            ))
            .item(one(
                "capacity",
                "JSON: a `Capacity`, as `GET /capacity` answers; sent when a figure changes."
                    .to_owned(),
            ))
            .item(one("end", "JSON: a `StreamEnd`.".to_owned()))
            .build(),
    )
}

/// The three stream routes, built here: each is the list route of its shape as Server-Sent
/// Events, refused exactly as that list refuses (the shared refusals are added with the
/// others'), and `OVERLOADED` past `max_streams`.
struct Streams;

impl Modify for Streams {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, shape, snapshot, refused, failed, operation_id) in [
            (
                OWN_STREAM_ROUTE,
                "GET /calls",
                "OwnCalls",
                "OwnRefused",
                "OwnFailed",
                "streamCallsOwn",
            ),
            (
                CALLS_STREAM_ROUTE,
                "GET /api/calls",
                "CallsList",
                "CallsRefused",
                "CallsFailed",
                "streamCalls",
            ),
            (
                BLAND_STREAM_ROUTE,
                "GET /v1/calls/active",
                "BlandCalls",
                "BlandRefused",
                "BlandFailed",
                "streamActiveCallsBland",
            ),
        ] {
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
                     behind is disconnected. The schema is that of one event."
                ))
                .content(
                    "text/event-stream",
                    ContentBuilder::new()
                        .schema(Some(RefOr::T(event(shape, snapshot, failed))))
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
            let overloaded = ResponseBuilder::new()
                .description(
                    "`OVERLOADED`: `[server] max_streams` streams are open, or callmux is \
                     shutting down.",
                )
                .content(
                    "application/json",
                    ContentBuilder::new().schema(Some(named(refused))).build(),
                )
                .build();
            let mut operation = OperationBuilder::new()
                .operation_id(Some(operation_id))
                .tag("live")
                .summary(Some(format!("Live stream of {shape}")))
                .security(SecurityRequirement::new("orgKey", Vec::<String>::new()))
                .parameter(last_event_id)
                .response("200", events)
                .response("503", overloaded);
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

/// A stream's `change` event: calls told apart by `call_id`, items in the stream's shape.
/// `errors` is every provider error now (`null` when none), whether or not it changed.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
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
struct StreamEnd {
    /// Why the stream ends, for people.
    reason: String,
}

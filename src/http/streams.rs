//! The live streams, `GET /api/calls/stream`, `/v1/calls/active/stream` and `/calls/stream`:
//! Server-Sent Events of an org's list in each shape, authenticated as the list is, outside
//! the request bounds (a stream is long by nature) and within `max_streams`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use super::stream_slots::{Place, Slots};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event as Sse, KeepAlive};
use axum::response::{IntoResponse, Response};
use axum::Extension;

use super::connections::Disconnect;
pub use super::paths::{BLAND_STREAM_ROUTE, CALLS_STREAM_ROUTE, OWN_STREAM_ROUTE};
use super::{json, presented, refusal, render, with_error_items, Edge};
use crate::error_code::ErrorCode;
use crate::service::live::{Body, Event, Joining, State as Listing, Subscription};
use crate::service::ListError;
use crate::telemetry::Telemetry;
use crate::wire::{ErrorItem, Shape};

/// The open streams, at most `max_streams` (and `max_streams_per_org` per org).
pub struct Streams {
    slots: Slots,
    /// A comment this often keeps idle connections (and the proxies between) open.
    keepalive: Duration,
}

impl Streams {
    pub fn new(max: usize, per_org: usize, keepalive: Duration) -> Self {
        Self {
            slots: Slots::new(max, per_org),
            keepalive,
        }
    }
}

pub async fn stream(
    shape: Shape,
    State(edge): State<Arc<Edge>>,
    disconnect: Option<Extension<Disconnect>>,
    headers: HeaderMap,
) -> Response {
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let loaded = edge.live.current();
    let hub = edge.live.hub();
    // A topic may retire between looking and joining; the second try lists afresh.
    for _ in 0..2 {
        let presented = match presented(&headers) {
            Ok(p) => p,
            Err(e) => return refusal(shape, ListError::Auth(e)).0,
        };
        let (key, needs_list) = match hub.topic_for(&loaded.service, &presented) {
            Ok(found) => found,
            Err(e) => return refusal(shape, ListError::Auth(e)).0,
        };
        let joining = if needs_list {
            match loaded.service.list(&presented).await {
                Ok(listed) => Joining::Fresh(Listing::Listed(listed.snapshot)),
                Err(ListError::AllFailed { failures, .. }) => Joining::Fresh(Listing::AllFailed {
                    org: key.org.clone(),
                    failures,
                }),
                Err(e) => return refusal(shape, e).0,
            }
        } else {
            Joining::Current
        };
        let kick = disconnect.clone().map(|Extension(d)| d);
        let kick: Box<dyn Fn() + Send + Sync> = Box::new(move || {
            if let Some(d) = &kick {
                d.now();
            }
        });
        let org = key.org.clone();
        // Only now, the caller authenticated (by Bland too, for a Bland-key org), is a
        // place taken.
        let place = match edge.streams.slots.take(&org) {
            Ok(place) => place,
            Err(message) => return unavailable(shape, &message),
        };
        match hub.subscribe(key, presented, joining, last_event_id.as_deref(), kick) {
            Some(subscription) => {
                tracing::info!(org = %org, shape = shape.name(), "stream opened");
                return sse(
                    shape,
                    org,
                    subscription,
                    place,
                    edge.live.telemetry().clone(),
                    edge.streams.keepalive,
                );
            }
            None if needs_list => break,
            None => continue,
        }
    }
    unavailable(shape, "callmux is shutting down; reconnect shortly")
}

/// What a stream's body keeps: its subscription, its place among `max_streams`, and the
/// events still to send.
struct Open {
    shape: Shape,
    org: Arc<str>,
    first: VecDeque<Arc<Event>>,
    subscription: Subscription,
    telemetry: Arc<Telemetry>,
    _place: Place,
    done: bool,
}

/// `callmux_streams_open`, down again when the stream's body is dropped.
impl Drop for Open {
    fn drop(&mut self) {
        self.telemetry
            .gauge("callmux_streams_open", &[("shape", self.shape.name())])
            .decrement(1.0);
    }
}

fn sse(
    shape: Shape,
    org: Arc<str>,
    mut subscription: Subscription,
    place: Place,
    telemetry: Arc<Telemetry>,
    keepalive: Duration,
) -> Response {
    telemetry
        .gauge("callmux_streams_open", &[("shape", shape.name())])
        .increment(1.0);
    let open = Open {
        shape,
        org,
        first: std::mem::take(&mut subscription.first).into(),
        subscription,
        telemetry,
        _place: place,
        done: false,
    };
    let events = futures::stream::unfold(open, |mut open| async move {
        if open.done {
            return None;
        }
        // Capacity figures are callmux's own (DESIGN §15): the Bland and agent-server shapes
        // carry only the events their clients know.
        let event = loop {
            let event = match open.first.pop_front() {
                Some(event) => event,
                None => open.subscription.events.recv().await?,
            };
            if open.shape == Shape::Own || !matches!(event.body, Body::Capacity(_)) {
                break event;
            }
        };
        open.done = matches!(event.body, Body::End(_));
        let sent = write(&event, open.shape, &open.org, &open.telemetry).await;
        Some((Ok::<_, Infallible>(sent), open))
    });
    let mut response = axum::response::Sse::new(events)
        .keep_alive(KeepAlive::new().interval(keepalive).text("keepalive"))
        .into_response();
    // Proxies that buffer (nginx) would hold events back.
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// One event on the wire: `event:` its kind, `id:`, and `data:` in the stream's shape.
async fn write(event: &Event, shape: Shape, org: &str, telemetry: &Telemetry) -> Sse {
    let (name, data) = match &event.body {
        // Each subscriber's snapshot is its own event, but its text is the list's body,
        // written once per snapshot and shape.
        Body::Snapshot(state) => ("snapshot", snapshot_text(state, shape, telemetry).await),
        Body::Change(change) => (
            "change",
            event
                .data(shape, |_| {
                    let body = with_error_items(&change.failures, |errors| {
                        shape.write_change(
                            &change.added,
                            &change.updated,
                            &change.ended,
                            org,
                            errors,
                        )
                    });
                    text(body)
                })
                .to_owned(),
        ),
        Body::Capacity(capacity) => (
            "capacity",
            serde_json::to_string(&**capacity).unwrap_or_default(),
        ),
        Body::End(reason) => ("end", serde_json::json!({ "reason": reason }).to_string()),
    };
    Sse::default()
        .event(name)
        .id(event.id.to_string())
        .data(data)
}

/// The body the list route of `shape` answers for `state`: the list, or (every provider
/// failed) the 502's error envelope.
async fn snapshot_text(state: &Listing, shape: Shape, telemetry: &Telemetry) -> String {
    match state {
        Listing::Listed(snapshot) => {
            let body = render::snapshot_body(snapshot, shape, telemetry).await;
            text([&body.head[..], &body.tail[..]].concat())
        }
        Listing::AllFailed { failures, .. } => text(with_error_items(failures, |errors| {
            shape.write_error(errors)
        })),
    }
}

/// The writers write UTF-8 JSON on one line; SSE data is text.
fn text(body: Vec<u8>) -> String {
    String::from_utf8(body).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn unavailable(shape: Shape, message: &str) -> Response {
    let item = ErrorItem {
        provider: None,
        error: ErrorCode::Overloaded,
        message,
    };
    let mut response = json(StatusCode::SERVICE_UNAVAILABLE, shape.write_error(&[item]));
    response.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        HeaderValue::from_static("1"),
    );
    response
}

//! The live streams, `GET /api/calls/stream`, `/v1/calls/active/stream` and `/calls/stream`:
//! Server-Sent Events of an org's list in each shape, authenticated as the list is, outside
//! the request bounds (a stream is long by nature) and within `max_streams`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use super::stream_slots::{Place, Slots};
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Extension;
use bytes::Bytes;
use futures::StreamExt;

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
    keepalive: Duration,
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

/// What is sent when nothing was for `keepalive`: a comment, which clients ignore.
const KEEPALIVE: &[u8] = b": keepalive\n\n";

/// One event on the wire in up to four pieces, each shared: a snapshot's list is the list
/// route's own body (head and tail), sent between this subscriber's `event:` and `id:`
/// lines and the blank line that ends the event, and never copied per subscriber.
type Pieces = [Bytes; 4];

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
        keepalive,
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
                None => {
                    match tokio::time::timeout(open.keepalive, open.subscription.events.recv())
                        .await
                    {
                        Ok(event) => event?,
                        Err(_) => return Some((keepalive_pieces(), open)),
                    }
                }
            };
            if open.shape == Shape::Own || !matches!(event.body, Body::Capacity(_)) {
                break event;
            }
        };
        open.done = matches!(event.body, Body::End(_));
        let pieces = write(&event, open.shape, &open.org, &open.telemetry).await;
        Some((pieces, open))
    })
    .flat_map(|pieces| {
        futures::stream::iter(
            pieces
                .into_iter()
                .filter(|piece| !piece.is_empty())
                .map(Ok::<_, Infallible>),
        )
    });
    let mut response = Response::new(axum::body::Body::from_stream(events));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Proxies that buffer (nginx) would hold events back.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

fn keepalive_pieces() -> Pieces {
    [
        Bytes::from_static(KEEPALIVE),
        Bytes::new(),
        Bytes::new(),
        Bytes::new(),
    ]
}

/// One event on the wire: `event:` its kind, `id:`, and `data:` in the stream's shape.
async fn write(event: &Event, shape: Shape, org: &str, telemetry: &Telemetry) -> Pieces {
    let whole = |frame: Bytes| [frame, Bytes::new(), Bytes::new(), Bytes::new()];
    match &event.body {
        // Each subscriber's snapshot is its own event, but its data is the list's body,
        // written once per snapshot and shape and shared.
        Body::Snapshot(state) => match &**state {
            Listing::Listed(snapshot) => {
                let body = render::snapshot_body(snapshot, shape, telemetry).await;
                if one_line(&body.head) && one_line(&body.tail) {
                    let head = format!("event: snapshot\nid: {}\ndata: ", event.id);
                    [
                        Bytes::from(head),
                        body.head,
                        body.tail,
                        Bytes::from_static(b"\n\n"),
                    ]
                } else {
                    whole(frame("snapshot", event, &[&body.head, &body.tail]))
                }
            }
            Listing::AllFailed { failures, .. } => {
                let data = with_error_items(failures, |errors| shape.write_error(errors));
                whole(frame("snapshot", event, &[&data]))
            }
        },
        Body::Change(change) => whole(event.frame(shape, |event| {
            let data = with_error_items(&change.failures, |errors| {
                shape.write_change(&change.added, &change.updated, &change.ended, org, errors)
            });
            frame("change", event, &[&data])
        })),
        Body::Capacity(capacity) => whole(event.frame(shape, |event| {
            let data = serde_json::to_vec(&**capacity).unwrap_or_default();
            frame("capacity", event, &[&data])
        })),
        Body::End(reason) => whole(event.frame(shape, |event| {
            let data = serde_json::json!({ "reason": reason }).to_string();
            frame("end", event, &[data.as_bytes()])
        })),
    }
}

/// Whether `data` can follow one `data:` field as it is. The writers write JSON on one line,
/// so it always can; anything else is split into lines as SSE requires.
fn one_line(data: &[u8]) -> bool {
    !data.contains(&b'\n') && !data.contains(&b'\r')
}

/// An event's whole frame: `event: {name}`, `id:`, a `data:` field for each line of `data`
/// (given in parts, read as one), and the blank line that ends it.
fn frame(name: &str, event: &Event, data: &[&[u8]]) -> Bytes {
    let length: usize = data.iter().map(|part| part.len()).sum();
    let mut frame = Vec::with_capacity(length + name.len() + 48);
    frame.extend_from_slice(b"event: ");
    frame.extend_from_slice(name.as_bytes());
    frame.extend_from_slice(b"\nid: ");
    frame.extend_from_slice(event.id.to_string().as_bytes());
    frame.extend_from_slice(b"\ndata: ");
    for part in data {
        // Each line its own field, as SSE requires (a lone `\r` ends a line too).
        for line in part.split_inclusive(|&byte| byte == b'\n' || byte == b'\r') {
            frame.extend_from_slice(line);
            if matches!(line.last(), Some(b'\n' | b'\r')) {
                frame.extend_from_slice(b"data: ");
            }
        }
    }
    frame.extend_from_slice(b"\n\n");
    Bytes::from(frame)
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

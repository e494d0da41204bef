//! Live streams from the test side: a reader of Server-Sent Events over a real connection,
//! and an agent-server fake whose list can be changed while callmux polls it, counting the
//! requests it gets.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use super::TestApp;

/// One event as sent: its `event:`, `id:` and `data:` lines (or the comment it was).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: String,
    pub id: String,
    pub data: String,
    pub comment: String,
}

impl SseEvent {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {}", self.data))
    }
}

/// An open stream, read as it arrives.
pub struct SseStream {
    pub headers: reqwest::header::HeaderMap,
    response: reqwest::Response,
    buffer: Vec<u8>,
}

impl TestApp {
    /// Opens `path` with the org's key, and `last_event_id` if given. Answers that are not
    /// a stream come back as `Err` with their status and body.
    pub async fn stream(
        &self,
        path: &str,
        key: &str,
        org: &str,
        last_event_id: Option<&str>,
    ) -> Result<SseStream, (u16, Value)> {
        let mut request = self
            .http
            .get(self.url(path))
            .header("authorization", key)
            .header("x-bland-org-id", org);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = tokio::time::timeout(Duration::from_secs(30), request.send())
            .await
            .expect("callmux answers within 30 s")
            .expect("callmux is reachable");
        let status = response.status().as_u16();
        if status != 200 {
            let body = response.bytes().await.unwrap();
            return Err((
                status,
                serde_json::from_slice(&body).expect("a JSON refusal"),
            ));
        }
        Ok(SseStream {
            headers: response.headers().clone(),
            response,
            buffer: Vec::new(),
        })
    }
}

impl SseStream {
    /// The next event or comment, within `within`; `None` if the stream ended.
    pub async fn next_within(&mut self, within: Duration) -> Option<SseEvent> {
        tokio::time::timeout(within, self.read())
            .await
            .expect("an event arrives in time")
    }

    /// The next event (comments skipped), within 10 s; panics if the stream ended.
    pub async fn next(&mut self) -> SseEvent {
        loop {
            let event = self
                .next_within(Duration::from_secs(10))
                .await
                .expect("the stream goes on");
            if !event.event.is_empty() {
                return event;
            }
        }
    }

    /// The next event about the list itself, skipping `capacity` figures (which follow a
    /// change of count whenever they move), within 10 s each.
    pub async fn next_about_the_list(&mut self) -> SseEvent {
        loop {
            let event = self.next().await;
            if event.event != "capacity" {
                return event;
            }
        }
    }

    /// The next event whose kind is `kind`, skipping others, within 10 s each.
    pub async fn next_of(&mut self, kind: &str) -> SseEvent {
        loop {
            let event = self.next().await;
            if event.event == kind {
                return event;
            }
        }
    }

    async fn read(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
                return Some(parse(&String::from_utf8(block).expect("events are UTF-8")));
            }
            let chunk = self.response.chunk().await.ok()??;
            self.buffer.extend_from_slice(&chunk);
        }
    }
}

fn parse(block: &str) -> SseEvent {
    let mut event = SseEvent {
        event: String::new(),
        id: String::new(),
        data: String::new(),
        comment: String::new(),
    };
    for line in block.lines() {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "" => event.comment.push_str(value),
            "event" => event.event = value.to_string(),
            "id" => event.id = value.to_string(),
            "data" => {
                if !event.data.is_empty() {
                    event.data.push('\n');
                }
                event.data.push_str(value);
            }
            _ => {}
        }
    }
    event
}

/// An agent server (`GET /api/calls`) whose calls the test sets, counting every request.
#[derive(Clone)]
pub struct LiveAgent {
    pub url: String,
    calls: Arc<Mutex<Value>>,
    requests: Arc<AtomicUsize>,
}

impl LiveAgent {
    pub async fn start(calls: Value) -> Self {
        let state = (Arc::new(Mutex::new(calls)), Arc::new(AtomicUsize::new(0)));
        let app = axum::Router::new()
            .route(
                "/api/calls",
                axum::routing::get(
                    |axum::extract::State((calls, requests)): axum::extract::State<(
                        Arc<Mutex<Value>>,
                        Arc<AtomicUsize>,
                    )>| async move {
                        requests.fetch_add(1, Ordering::SeqCst);
                        let calls = calls.lock().unwrap().clone();
                        let count = calls.as_array().map_or(0, Vec::len);
                        (
                            [("content-type", "application/json")],
                            json!({"calls": calls, "count": count}).to_string(),
                        )
                    },
                ),
            )
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url,
            calls: state.0,
            requests: state.1,
        }
    }

    pub fn set(&self, calls: Value) {
        *self.calls.lock().unwrap() = calls;
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// A running callmux whose configuration comes from a file the test may rewrite and reload,
/// and whose shutdown the test triggers.
pub struct FileApp {
    pub app: TestApp,
    pub live: Arc<callmux::Live>,
    pub file: tempfile::NamedTempFile,
    pub shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    pub served: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl FileApp {
    pub async fn start(toml: &str) -> Self {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), toml).unwrap();
        let live = callmux::Live::from_file(file.path().to_owned()).expect("config loads");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (shutdown, on_shutdown) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(callmux::serve(listener, live.clone(), async move {
            let _ = on_shutdown.await;
        }));
        Self {
            app: TestApp {
                addr,
                http: reqwest::Client::new(),
            },
            live,
            file,
            shutdown: Some(shutdown),
            served,
        }
    }

    /// Writes `toml` over the file and reloads it.
    pub fn reload(&self, toml: &str) {
        std::fs::write(self.file.path(), toml).unwrap();
        self.live.reload().expect("the new config is valid");
    }
}

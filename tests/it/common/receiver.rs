//! A team's webhook endpoint on loopback: every delivery is verified with the
//! `standardwebhooks` crate's own verifier and kept, and the first few may be refused.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::Value;
use tokio::net::TcpListener;

/// A signing key as an org would generate it: `whsec_` and the base64 of 32 bytes.
pub const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// One delivery as the endpoint saw it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: String,
    pub body: Value,
    pub at: Instant,
    /// Whether the verifier accepted the signature.
    pub verified: bool,
    /// Whether the endpoint answered 2xx.
    pub accepted: bool,
}

struct Inner {
    verifier: standardwebhooks::Webhook,
    refuse_first: Mutex<usize>,
    seen: Mutex<Vec<Delivery>>,
    /// While set, deliveries are noted in `held` and never answered.
    holding: std::sync::atomic::AtomicBool,
    held: Mutex<Vec<String>>,
}

/// A receiving endpoint; `url` is where callmux sends.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    inner: Arc<Inner>,
}

impl Receiver {
    /// An endpoint that answers 500 to its first `refuse_first` deliveries, then 204.
    pub async fn start(refuse_first: usize) -> Self {
        Self::serve(refuse_first, false).await
    }

    /// An endpoint that holds every delivery unanswered (noting its id) until
    /// [`Receiver::release`], then answers 204.
    #[allow(dead_code, reason = "the integration tests', not the benchmarks'")]
    pub async fn holding() -> Self {
        Self::serve(0, true).await
    }

    async fn serve(refuse_first: usize, holding: bool) -> Self {
        let inner = Arc::new(Inner {
            verifier: standardwebhooks::Webhook::new(WEBHOOK_SECRET).unwrap(),
            refuse_first: Mutex::new(refuse_first),
            seen: Mutex::new(Vec::new()),
            holding: holding.into(),
            held: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new()
            .route("/hook", post(take))
            .with_state(inner.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url: format!("http://{addr}/hook"),
            inner,
        }
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.inner.seen.lock().unwrap().clone()
    }

    /// The ids of the deliveries held unanswered so far.
    #[allow(dead_code, reason = "the integration tests', not the benchmarks'")]
    pub fn held(&self) -> Vec<String> {
        self.inner.held.lock().unwrap().clone()
    }

    /// From now on, answers deliveries (those held stay unanswered).
    #[allow(dead_code, reason = "the integration tests', not the benchmarks'")]
    pub fn release(&self) {
        self.inner
            .holding
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

async fn take(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    if inner.holding.load(std::sync::atomic::Ordering::SeqCst) {
        let id = headers.get("webhook-id").and_then(|v| v.to_str().ok());
        inner
            .held
            .lock()
            .unwrap()
            .push(id.unwrap_or_default().to_owned());
        return std::future::pending().await;
    }
    let verified = inner.verifier.verify(&body, &headers).is_ok();
    let accepted = {
        let mut left = inner.refuse_first.lock().unwrap();
        if *left > 0 {
            *left -= 1;
            false
        } else {
            true
        }
    };
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    inner.seen.lock().unwrap().push(Delivery {
        id,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        at: Instant::now(),
        verified,
        accepted,
    });
    if accepted {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    }
}

/// `[orgs.<org>.webhooks.<name>]` for a loopback endpoint, with `extra` lines.
pub fn webhook_table(org: &str, name: &str, url: &str, extra: &str) -> String {
    format!(
        "\n[orgs.\"{org}\".webhooks.{name}]\nurl = \"{url}\"\nsecret_env = \"HOOK_SECRET\"\nallow_private = true\n{extra}\n"
    )
}

//! Push from the platforms: `POST /hooks/{kind}/{provider_id}`, each kind's own webhooks
//! (its `Hook`, reached through the kind registry) for a provider that sets what checks
//! them. The signature header is looked for before any of the body is read; the body is
//! capped by the kind and must arrive within `BODY_DEADLINE`. A signed event moves a call
//! forward (or adds the call a started event brings) in every view at once, on every
//! replica: laid over the provider's answers until its next one, which stays the authority.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::envelope::Envelope;
pub use super::paths::HOOK_ROUTE;
use super::{json, Edge};
use crate::error_code::ErrorCode;
use crate::provider::kind::{Hook, Move, Pushed, Refusal};

/// A webhook body is small and sent at once: a sender that trickles it is not let hold the
/// connection up to the request deadline.
pub const BODY_DEADLINE: Duration = Duration::from_secs(10);

/// Why a push changed nothing, or what it did: the `outcome` label of
/// `callmux_callbacks_total`, and the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Applied,
    /// Signed and well-formed, but moved nothing: an unknown call, a replay, a step back, an
    /// event type not used.
    Ignored,
    UnknownProvider,
    TooLarge(usize),
    SlowBody,
    Refused(Refusal),
}

impl Outcome {
    fn name(&self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Ignored => "ignored",
            Self::UnknownProvider => "unknown_provider",
            Self::TooLarge(_) => "too_large",
            Self::SlowBody => "slow_body",
            Self::Refused(Refusal::MissingSignature(_)) => "missing_signature",
            Self::Refused(Refusal::BadSignature(_)) => "bad_signature",
            Self::Refused(Refusal::WrongAccount(_)) => "wrong_account",
            Self::Refused(Refusal::BadBody(_)) => "bad_form",
        }
    }

    fn answer(self, kind: &str) -> Response {
        let (status, code, message) = match self {
            Self::Applied | Self::Ignored => return StatusCode::NO_CONTENT.into_response(),
            Self::UnknownProvider => (
                StatusCode::NOT_FOUND,
                ErrorCode::UnknownHook,
                unknown_provider(kind),
            ),
            Self::TooLarge(max) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::BodyTooLarge,
                format!("a {kind} webhook's body is at most {}", size(max)),
            ),
            Self::SlowBody => (
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidBody,
                format!(
                    "the body did not arrive within {} s of the headers",
                    BODY_DEADLINE.as_secs()
                ),
            ),
            Self::Refused(Refusal::MissingSignature(m)) => {
                (StatusCode::FORBIDDEN, ErrorCode::MissingSignature, m.into())
            }
            Self::Refused(Refusal::BadSignature(m)) => {
                (StatusCode::FORBIDDEN, ErrorCode::InvalidSignature, m.into())
            }
            Self::Refused(Refusal::WrongAccount(m)) => {
                (StatusCode::FORBIDDEN, ErrorCode::WrongAccount, m.into())
            }
            Self::Refused(Refusal::BadBody(m)) => {
                (StatusCode::BAD_REQUEST, ErrorCode::InvalidBody, m)
            }
        };
        json(status, Envelope::Agent.error(code, &message, None))
    }
}

fn size(bytes: usize) -> String {
    if bytes >= 1024 * 1024 {
        format!("{} MiB", bytes / (1024 * 1024))
    } else {
        format!("{} KiB", bytes / 1024)
    }
}

/// What to fix when no provider answers at this URL.
fn unknown_provider(kind: &str) -> String {
    let setting = match kind {
        "twilio" => "public_url and auth_token_env",
        "retell" => "webhook_key_env",
        "vapi" => "server_secret_env",
        "bland" => "webhook_secret_env",
        _ => {
            return "no provider takes webhooks here: the URL is /hooks/<kind>/<provider id>, for a twilio, retell, vapi or bland provider that sets its webhook secret".into()
        }
    };
    format!("no {kind} provider with this id takes webhooks: the URL's last segment must be the id of a {kind} provider that sets {setting}")
}

pub async fn hook(
    State(edge): State<Arc<Edge>>,
    path: Result<Path<(String, String)>, axum::extract::rejection::PathRejection>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let loaded = edge.live.current();
    let config = loaded.service.config();
    let (kind, id) = path.map(|Path(p)| p).unwrap_or_default();
    let found = config
        .provider(&id)
        .filter(|spec| spec.kind.kind() == kind)
        .and_then(|spec| Some((spec.id.as_str(), spec.kind.hook()?)));
    // Only configured ids and kinds become labels: a caller cannot grow the metrics with
    // made-up ones.
    let (outcome, provider, kind) = match found {
        None => (Outcome::UnknownProvider, "unknown", known_kind(&kind)),
        Some((id, hook)) => {
            let kind = known_kind(&kind);
            (
                take(&edge, id, hook, uri.query(), &headers, body).await,
                id,
                kind,
            )
        }
    };
    edge.live
        .telemetry()
        .counter(
            "callmux_callbacks_total",
            &[("provider", provider), ("outcome", outcome.name())],
        )
        .increment(1);
    tracing::info!(provider, kind, outcome = outcome.name(), "webhook");
    outcome.answer(kind)
}

/// `kind` as a static name, if it is a kind's (for the message and the log).
fn known_kind(kind: &str) -> &'static str {
    crate::provider::registry::kind(kind).map_or("unknown", |k| k.name())
}

async fn take(
    edge: &Edge,
    provider: &str,
    hook: &dyn Hook,
    query: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Outcome {
    if let Err(refusal) = hook.signed(headers) {
        return Outcome::Refused(refusal);
    }
    let max = hook.max_body();
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Outcome::TooLarge(max);
    }
    let body = match tokio::time::timeout(BODY_DEADLINE, axum::body::to_bytes(body, max)).await {
        Err(_) => return Outcome::SlowBody,
        Ok(Err(_)) => return Outcome::TooLarge(max),
        Ok(Ok(body)) => body,
    };
    let pushed = Pushed {
        query,
        headers,
        body: &body,
        now: SystemTime::now(),
    };
    match hook.read(&pushed) {
        Err(refusal) => Outcome::Refused(refusal),
        Ok(None) => Outcome::Ignored,
        Ok(Some(mut moved)) => {
            if let Some(call) = &mut moved.started {
                call.provider = Arc::from(provider);
                call.call_id = moved.call_id.as_str().into();
                call.status = moved.status.clone();
            }
            if apply(edge, provider, &moved) {
                Outcome::Applied
            } else {
                Outcome::Ignored
            }
        }
    }
}

/// Lays the move over the provider's answers and this replica's streams, and tells the
/// fleet; returns whether anything moved here. An end frees a place for queued placements.
fn apply(edge: &Edge, provider: &str, moved: &Move) -> bool {
    let (streams, laid) = edge.live.hub().push(provider, moved);
    let loaded = edge.live.current();
    if let Some(redis) = loaded.service.store().redis() {
        crate::service::live::fleet::share(redis, provider, moved);
    }
    if !moved.status.is_active() {
        loaded.service.place_freed();
    }
    tracing::info!(
        provider,
        call_id = moved.call_id,
        status = crate::wire::own::status(&moved.status),
        started = moved.started.is_some(),
        streams,
        "status pushed"
    );
    laid || streams > 0
}

//! Push from platforms that push: `POST /hooks/twilio/{provider_id}`, Twilio's status
//! callbacks for a `twilio` provider that sets `public_url` and `auth_token_env`. A signed
//! callback moves a known call forward in every live stream at once; the next poll stays the
//! authority.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::control::Envelope;
use super::{json, Edge};
use crate::call::CallStatus;
use crate::error_code::ErrorCode;
use crate::provider::twilio::{signature, Settings};

pub const TWILIO_HOOK_ROUTE: &str = "/hooks/twilio/{provider_id}";

/// Status callbacks are small forms; anything larger is not one.
pub const MAX_CALLBACK_BYTES: usize = 64 * 1024;

/// Why a callback changed nothing, or what it did: the `outcome` label of
/// `callmux_callbacks_total`, and the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Applied,
    /// Signed and well-formed, but moved nothing: an unknown call, a replay, a step back.
    Ignored,
    UnknownProvider,
    TooLarge,
    MissingSignature,
    BadSignature,
    WrongAccount,
    BadForm,
}

impl Outcome {
    fn name(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Ignored => "ignored",
            Self::UnknownProvider => "unknown_provider",
            Self::TooLarge => "too_large",
            Self::MissingSignature => "missing_signature",
            Self::BadSignature => "bad_signature",
            Self::WrongAccount => "wrong_account",
            Self::BadForm => "bad_form",
        }
    }

    fn answer(self) -> Response {
        let (status, code, message) = match self {
            Self::Applied | Self::Ignored => return StatusCode::NO_CONTENT.into_response(),
            Self::UnknownProvider => (
                StatusCode::NOT_FOUND,
                ErrorCode::UnknownHook,
                "no twilio provider with this id takes status callbacks: the URL's last segment must be the id of a twilio provider that sets public_url and auth_token_env",
            ),
            Self::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::BodyTooLarge,
                "a status callback's body is at most 64 KiB",
            ),
            Self::MissingSignature => (
                StatusCode::FORBIDDEN,
                ErrorCode::MissingSignature,
                "no X-Twilio-Signature header: only callbacks Twilio signed are taken",
            ),
            Self::BadSignature => (
                StatusCode::FORBIDDEN,
                ErrorCode::InvalidSignature,
                "X-Twilio-Signature does not match: check that the provider's public_url is exactly the URL Twilio calls, auth_token_env the account's auth token, and signing_key_env (for webhooks signed with a SharedKey, which say so in X-Twilio-Webhooks-Signature-Settings) that key's secret",
            ),
            Self::WrongAccount => (
                StatusCode::FORBIDDEN,
                ErrorCode::WrongAccount,
                "the callback's AccountSid is not this provider's account",
            ),
            Self::BadForm => (
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidBody,
                "a status callback is a form with CallSid and CallStatus",
            ),
        };
        json(status, Envelope::Agent.error(code, message, None))
    }
}

pub async fn twilio(
    State(edge): State<Arc<Edge>>,
    provider_id: Result<Path<String>, axum::extract::rejection::PathRejection>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let loaded = edge.live.current();
    let config = loaded.service.config();
    let found = provider_id.ok().and_then(|Path(id)| {
        let spec = config.provider(&id)?;
        let settings = spec.kind.as_any().downcast_ref::<Settings>()?;
        let url = settings.public_url.as_ref()?;
        let token = settings.auth_token.as_ref()?;
        Some((spec.id.as_str(), settings, url, token))
    });
    // Only configured ids become labels: a caller cannot grow the metrics with made-up ones.
    let (outcome, provider) = match found {
        None => (Outcome::UnknownProvider, "unknown"),
        Some((id, settings, url, token)) => (
            callback(&edge, id, settings, url, token, uri.query(), &headers, body).await,
            id,
        ),
    };
    edge.live
        .telemetry()
        .counter(
            "callmux_callbacks_total",
            &[("provider", provider), ("outcome", outcome.name())],
        )
        .increment(1);
    tracing::info!(provider, outcome = outcome.name(), "twilio status callback");
    outcome.answer()
}

#[allow(clippy::too_many_arguments)]
async fn callback(
    edge: &Edge,
    provider: &str,
    settings: &Settings,
    public_url: &url::Url,
    token: &axum::http::HeaderValue,
    query: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Outcome {
    let Ok(body) = axum::body::to_bytes(body, MAX_CALLBACK_BYTES).await else {
        return Outcome::TooLarge;
    };
    let Some(given) = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
    else {
        return Outcome::MissingSignature;
    };
    // A webhook signed with a SharedKey says so, and which HMAC; its secret is the
    // SharedKey's (`signing_key_env`), else the auth token, as a validator given it would.
    let announced = match headers.get(signature::SETTINGS_HEADER).map(|v| v.to_str()) {
        None => None,
        Some(Ok(text)) => Some(text),
        Some(Err(_)) => return Outcome::BadSignature,
    };
    let Some(algorithm) = signature::Algorithm::announced(announced) else {
        return Outcome::BadSignature;
    };
    let secret = match (announced, &settings.signing_key) {
        (Some(_), Some((_, key))) => key,
        _ => token,
    };
    let params: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    // Twilio signs the URL it called: the configured one, with the query it was called with.
    let mut signed = public_url.clone();
    signed.set_query(query);
    if !signature::valid(algorithm, secret.as_bytes(), &signed, &params, given) {
        return Outcome::BadSignature;
    }
    let field = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if field("AccountSid") != Some(settings.account_sid.as_str()) {
        return Outcome::WrongAccount;
    }
    let (Some(call_sid), Some(status)) = (field("CallSid"), field("CallStatus")) else {
        return Outcome::BadForm;
    };
    let Some(status) = status_of(status) else {
        return Outcome::Ignored;
    };
    let moved = edge.live.hub().push(provider, call_sid, &status);
    if let Some(redis) = edge.live.current().service.store().redis() {
        crate::service::live::fleet::share(redis, provider, call_sid, &status);
    }
    tracing::info!(
        provider,
        call_sid,
        status = crate::wire::own::status(&status),
        streams = moved,
        "status pushed"
    );
    if moved > 0 {
        Outcome::Applied
    } else {
        Outcome::Ignored
    }
}

/// A callback's `CallStatus` (Twilio's call statuses; `initiated` is the event some
/// callbacks name before `ringing`).
fn status_of(text: &str) -> Option<CallStatus> {
    Some(match text {
        "queued" | "initiated" => CallStatus::Queued,
        "ringing" => CallStatus::Ringing,
        "in-progress" | "answered" => CallStatus::InProgress,
        "completed" => CallStatus::Completed,
        "busy" => CallStatus::Busy,
        "failed" => CallStatus::Failed,
        "no-answer" => CallStatus::NoAnswer,
        "canceled" => CallStatus::Canceled,
        _ => return None,
    })
}

//! Twilio's status callbacks (`POST /hooks/twilio/{provider_id}`) for a provider that sets
//! `public_url` and `auth_token_env`: `X-Twilio-Signature` checked as `signature.rs` does,
//! the callback's `AccountSid` the provider's, its `CallStatus` moving `CallSid`.

use axum::http::HeaderMap;

use super::{signature, Settings};
use crate::call::CallStatus;
use crate::provider::kind::{header, Hook, Move, Pushed, Refusal};

/// Status callbacks are small forms; anything larger is not one.
pub const MAX_CALLBACK_BYTES: usize = 64 * 1024;

const BAD_SIGNATURE: &str = "X-Twilio-Signature does not match: check that the provider's public_url is exactly the URL Twilio calls, auth_token_env the account's auth token, and signing_key_env (for webhooks signed with a SharedKey, which say so in X-Twilio-Webhooks-Signature-Settings) that key's secret";

impl Hook for Settings {
    fn max_body(&self) -> usize {
        MAX_CALLBACK_BYTES
    }

    fn signed(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        match header(headers, "x-twilio-signature") {
            Some(_) => Ok(()),
            None => Err(Refusal::MissingSignature(
                "no X-Twilio-Signature header: only callbacks Twilio signed are taken",
            )),
        }
    }

    fn read(&self, pushed: &Pushed<'_>) -> Result<Option<Move>, Refusal> {
        let (Some(public_url), Some(token)) = (&self.public_url, &self.auth_token) else {
            return Err(Refusal::BadSignature(BAD_SIGNATURE));
        };
        let given = header(pushed.headers, "x-twilio-signature").unwrap_or("");
        // A webhook signed with a SharedKey says so, and which HMAC; its secret is the
        // SharedKey's (`signing_key_env`), else the auth token, as a validator given it would.
        let announced = match pushed.headers.get(signature::SETTINGS_HEADER) {
            None => None,
            Some(v) => Some(
                v.to_str()
                    .map_err(|_| Refusal::BadSignature(BAD_SIGNATURE))?,
            ),
        };
        let algorithm = signature::Algorithm::announced(announced)
            .ok_or(Refusal::BadSignature(BAD_SIGNATURE))?;
        let secret = match (announced, &self.signing_key) {
            (Some(_), Some((_, key))) => key,
            _ => token,
        };
        let params: Vec<(String, String)> = url::form_urlencoded::parse(pushed.body)
            .into_owned()
            .collect();
        // Twilio signs the URL it called: the configured one, with the query it was called with.
        let mut signed = public_url.clone();
        signed.set_query(pushed.query);
        if !signature::valid(algorithm, secret.as_bytes(), &signed, &params, given) {
            return Err(Refusal::BadSignature(BAD_SIGNATURE));
        }
        let field = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        if field("AccountSid") != Some(self.account_sid.as_str()) {
            return Err(Refusal::WrongAccount(
                "the callback's AccountSid is not this provider's account",
            ));
        }
        let (Some(call_sid), Some(status)) = (field("CallSid"), field("CallStatus")) else {
            return Err(Refusal::BadBody(
                "a status callback is a form with CallSid and CallStatus".into(),
            ));
        };
        Ok(status_of(status).map(|status| Move {
            call_id: call_sid.to_string(),
            status,
            started: None,
        }))
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

//! Retell's webhooks (`POST /hooks/retell/{provider_id}`): `x-retell-signature:
//! v=<unix ms>,d=<hex>`, an HMAC-SHA256 over the raw body followed by the timestamp's digits,
//! keyed by the API key with the webhook badge, as Retell's SDKs verify it, within five
//! minutes of now; `call_started` moves the call to in progress (adding it, with the fields
//! its `call` object carries, if it is not listed), `call_ended` and
//! `call_analyzed` end it.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderValue};
use serde::Deserialize;

use super::wire::{call_of, status_from_wire};
use crate::call::{Call, CallStatus};
use crate::provider::kind::{header, hex_hmac_sha256_matches, Hook, Move, Pushed, Refusal};

pub const SIGNATURE_HEADER: &str = "x-retell-signature";

/// Retell's SDKs refuse a signature older or newer than this.
pub const WINDOW: Duration = Duration::from_secs(5 * 60);

/// A `retell` provider's webhook key (`webhook_key_env`), marked sensitive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetellHook {
    pub key_env: String,
    pub key: HeaderValue,
}

#[derive(Deserialize)]
struct Event {
    event: String,
    call: Option<serde_json::Value>,
}

/// A text field of the event's call object.
fn field<'a>(call: Option<&'a serde_json::Value>, name: &str) -> Option<&'a str> {
    call?.get(name)?.as_str()
}

/// `v=<digits>,d=<hex>`, as the SDKs' `/v=(\d+),d=(.*)/` reads it.
fn parse(signature: &str) -> Option<(&str, u64, &str)> {
    let rest = signature.trim().strip_prefix("v=")?;
    let (stamp, digest) = rest.split_once(",d=")?;
    if stamp.is_empty() || !stamp.bytes().all(|b| b.is_ascii_digit()) || digest.is_empty() {
        return None;
    }
    Some((stamp, stamp.parse().ok()?, digest))
}

impl Hook for RetellHook {
    fn signed(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        match header(headers, SIGNATURE_HEADER) {
            Some(_) => Ok(()),
            None => Err(Refusal::MissingSignature(
                "no x-retell-signature header: only webhooks Retell signed are taken",
            )),
        }
    }

    fn read(&self, pushed: &Pushed<'_>) -> Result<Option<Move>, Refusal> {
        let given = header(pushed.headers, SIGNATURE_HEADER).unwrap_or("");
        let Some((digits, millis, digest)) = parse(given) else {
            return Err(Refusal::BadSignature(
                "x-retell-signature is not of the form v=<unix ms>,d=<hex HMAC-SHA256>",
            ));
        };
        let now = pushed
            .now
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        if now.abs_diff(u128::from(millis)) > WINDOW.as_millis() {
            return Err(Refusal::BadSignature(
                "x-retell-signature's timestamp is more than 5 minutes from now: a replayed webhook, or this host's clock is off (check NTP)",
            ));
        }
        if !hex_hmac_sha256_matches(
            self.key.as_bytes(),
            &[pushed.body, digits.as_bytes()],
            digest,
        ) {
            return Err(Refusal::BadSignature(
                "x-retell-signature does not match: check that webhook_key_env holds the Retell API key with the webhook badge (Settings → API Keys)",
            ));
        }
        let event: Event = serde_json::from_slice(pushed.body).map_err(|e| {
            Refusal::BadBody(format!(
                "a Retell webhook is a JSON object with event and call: {e}"
            ))
        })?;
        let call = event.call.as_ref();
        let status = match event.event.as_str() {
            "call_started" => CallStatus::InProgress,
            "call_ended" | "call_analyzed" => ended(call),
            _ => return Ok(None),
        };
        let call_id = field(call, "call_id")
            .filter(|id| !id.is_empty())
            .ok_or_else(|| {
                Refusal::BadBody(format!(
                    "a Retell {} webhook names its call in call.call_id",
                    event.event
                ))
            })?
            .to_owned();
        // The provider is set by the route, which knows which provider took the event.
        let started = (event.event == "call_started").then(|| {
            let mut started = call
                .and_then(|c| call_of(c, &Arc::from("")))
                .unwrap_or_else(|| Call::new(call_id.as_str(), Arc::from(""), status.clone()));
            started.status = status.clone();
            started
        });
        Ok(Some(Move {
            call_id,
            status,
            started,
        }))
    }
}

/// An ended call's status: the one its object gives when that is an end, else completed.
fn ended(call: Option<&serde_json::Value>) -> CallStatus {
    field(call, "call_status")
        .map(status_from_wire)
        .filter(|s| !s.is_active())
        .unwrap_or(CallStatus::Completed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_sdks_form_of_the_signature_is_read() {
        assert_eq!(
            parse("v=1700000000000,d=ab"),
            Some(("1700000000000", 1_700_000_000_000, "ab"))
        );
        for odd in [
            "",
            "v=,d=ab",
            "v=12",
            "v=12,d=",
            "d=ab,v=12",
            "v=-1,d=ab",
            "v=1a,d=ab",
            "v=99999999999999999999999,d=ab",
        ] {
            assert_eq!(parse(odd), None, "{odd}");
        }
    }

    /// Signatures made by retell-sdk's own code, and its own verdicts
    /// (`tests/retell/vectors.json`, with the command that made it): callmux takes exactly
    /// what the SDK's `verify` takes.
    #[test]
    fn signatures_are_taken_exactly_when_retell_sdks_own_verify_takes_them() {
        let file: serde_json::Value =
            serde_json::from_str(include_str!("../../../tests/retell/vectors.json")).unwrap();
        let vectors = file["vectors"].as_array().unwrap();
        assert!(vectors.len() >= 20);
        for v in vectors {
            let text = |f: &str| v[f].as_str().unwrap().to_owned();
            let hook = RetellHook {
                key_env: "RETELL_WEBHOOK_KEY".into(),
                key: HeaderValue::from_str(&text("key")).unwrap(),
            };
            let mut headers = HeaderMap::new();
            headers.insert(
                SIGNATURE_HEADER,
                HeaderValue::from_str(&text("signature")).unwrap(),
            );
            let body = text("body");
            let pushed = Pushed {
                query: None,
                headers: &headers,
                body: body.as_bytes(),
                now: UNIX_EPOCH + Duration::from_millis(v["now_ms"].as_u64().unwrap()),
            };
            let read = hook.read(&pushed);
            // A signature taken may still carry a body that moves nothing, or none at all.
            let taken = !matches!(read, Err(Refusal::BadSignature(_)));
            assert_eq!(
                taken,
                v["sdk_verifies"].as_bool().unwrap(),
                "{}: {read:?}",
                text("name")
            );
        }
    }

    fn read_signed(body: &str) -> Result<Option<Move>, Refusal> {
        let key = "key_webhook";
        let hook = RetellHook {
            key_env: "RETELL_WEBHOOK_KEY".into(),
            key: HeaderValue::from_static(key),
        };
        let now = std::time::SystemTime::now();
        let ms = now
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis()
            .to_string();
        let mac = {
            use hmac::digest::KeyInit;
            use hmac::Mac;
            let mut mac =
                <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key.as_bytes()).unwrap();
            mac.update(body.as_bytes());
            mac.update(ms.as_bytes());
            hex::encode(mac.finalize().into_bytes())
        };
        let mut headers = HeaderMap::new();
        let signature = format!("v={ms},d={mac}");
        headers.insert(SIGNATURE_HEADER, HeaderValue::from_str(&signature).unwrap());
        hook.read(&Pushed {
            query: None,
            headers: &headers,
            body: body.as_bytes(),
            now,
        })
    }

    #[test]
    fn call_started_carries_its_call_and_an_odd_call_object_starts_it_by_id_alone() {
        let body = serde_json::json!({"event": "call_started", "call": {"call_id": "c2",
            "call_status": "ongoing", "to_number": "+14155550123", "direction": "outbound",
            "start_timestamp": 1_703_302_407_333_u64}});
        let started = read_signed(&body.to_string())
            .unwrap()
            .unwrap()
            .started
            .unwrap();
        assert_eq!(started.to.as_deref(), Some("+14155550123"));
        assert_eq!(started.started_at, Some(1_703_302_407_333));
        for call in [
            serde_json::json!({"call_id": "c2"}),
            serde_json::json!({"call_id": "c2", "call_status": [], "start_timestamp": "x"}),
            serde_json::json!({"call_id": "c2", "telephony_identifier": 5, "to_number": {}}),
        ] {
            let body = serde_json::json!({"event": "call_started", "call": call}).to_string();
            let moved = read_signed(&body).unwrap().unwrap();
            let started = moved.started.unwrap();
            assert_eq!(started.call_id, "c2");
            assert_eq!(started.status, CallStatus::InProgress);
        }
        let ended = serde_json::json!({"event": "call_ended", "call": {"call_id": "c2"}});
        let moved = read_signed(&ended.to_string()).unwrap().unwrap();
        assert!(moved.started.is_none());
    }
}

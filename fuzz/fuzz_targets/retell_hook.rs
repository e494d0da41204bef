//! Fuzzes Retell's webhook check and reader, `RetellHook::read`, on an arbitrary
//! `x-retell-signature` and body, and checks that the signature Retell's SDK makes for the
//! body (now, and a minute ago) is always accepted, while one a byte off, or six minutes
//! old, never is.
//!
//! Input: split at the first `\n` into the signature header and the body.
#![no_main]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderValue};
use callmux::provider::kind::{Hook, Pushed, Refusal};
use callmux::provider::retell::hook::{RetellHook, SIGNATURE_HEADER};
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;

fn hook() -> RetellHook {
    RetellHook {
        key_env: "K".into(),
        key: HeaderValue::from_static("key_fuzz"),
    }
}

fn read(signature: &[u8], body: &[u8], now: SystemTime) -> Option<Result<bool, Refusal>> {
    let mut headers = HeaderMap::new();
    headers.insert(SIGNATURE_HEADER, HeaderValue::from_bytes(signature).ok()?);
    let pushed = Pushed { query: None, headers: &headers, body, now };
    Some(hook().read(&pushed).map(|m| m.is_some()))
}

fn sign(body: &[u8], millis: u128) -> String {
    let digits = millis.to_string();
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(b"key_fuzz").unwrap();
    mac.update(body);
    mac.update(digits.as_bytes());
    format!("v={digits},d={}", hex::encode(mac.finalize().into_bytes()))
}

fn signature_ok(answer: &Option<Result<bool, Refusal>>) -> bool {
    !matches!(answer, Some(Err(Refusal::BadSignature(_) | Refusal::MissingSignature(_))))
}

fuzz_target!(|data: &[u8]| {
    let (signature, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let now = SystemTime::now();
    // Whatever arrives, the check answers without panicking.
    let _ = read(signature, body, now);

    let millis = now.duration_since(UNIX_EPOCH).unwrap().as_millis();
    for at in [millis, millis - 60_000] {
        let good = sign(body, at);
        assert!(signature_ok(&read(good.as_bytes(), body, now)), "own signature refused");
        let mut off = good.clone().into_bytes();
        let last = off.len() - 1;
        off[last] = if off[last] == b'0' { b'1' } else { b'0' };
        assert!(!signature_ok(&read(&off, body, now)), "a signature a byte off taken");
    }
    let stale = sign(body, millis - 6 * 60_000);
    assert!(!signature_ok(&read(stale.as_bytes(), body, now)), "stale signature taken");
    let late = now + Duration::from_secs(6 * 60);
    assert!(!signature_ok(&read(sign(body, millis).as_bytes(), body, late)), "replay taken");
});

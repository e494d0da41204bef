//! Fuzzes Bland's webhook check and reader, `BlandHook::read`, on an arbitrary
//! `X-Webhook-Signature` and body, and checks that the hex HMAC-SHA256 of the body (either
//! case of hex digits) is always accepted, and one a byte off, or of another body, never is.
//!
//! Input: split at the first `\n` into the signature header and the body.
#![no_main]

use std::time::SystemTime;

use axum::http::{HeaderMap, HeaderValue};
use callmux::provider::bland::hook::{BlandHook, SIGNATURE_HEADER};
use callmux::provider::kind::{Hook, Pushed, Refusal};
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;

fn read(signature: &[u8], body: &[u8]) -> Option<Result<bool, Refusal>> {
    let hook = BlandHook {
        secret_env: "S".into(),
        secret: HeaderValue::from_static("bland-fuzz-secret"),
    };
    let mut headers = HeaderMap::new();
    headers.insert(SIGNATURE_HEADER, HeaderValue::from_bytes(signature).ok()?);
    let pushed = Pushed { query: None, headers: &headers, body, now: SystemTime::now() };
    Some(hook.read(&pushed).map(|m| m.is_some()))
}

fn sign(body: &[u8]) -> String {
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(b"bland-fuzz-secret").unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn signature_ok(answer: &Option<Result<bool, Refusal>>) -> bool {
    !matches!(answer, Some(Err(Refusal::BadSignature(_) | Refusal::MissingSignature(_))))
}

fuzz_target!(|data: &[u8]| {
    let (signature, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let _ = read(signature, body);
    let good = sign(body);
    assert!(signature_ok(&read(good.as_bytes(), body)), "own signature refused");
    assert!(signature_ok(&read(good.to_ascii_uppercase().as_bytes(), body)), "upper-case hex refused");
    let mut off = good.clone().into_bytes();
    off[0] = if off[0] == b'0' { b'1' } else { b'0' };
    assert!(!signature_ok(&read(&off, body)), "a signature a byte off taken");
    let mut other = body.to_vec();
    other.push(b' ');
    assert!(!signature_ok(&read(good.as_bytes(), &other)), "another body's signature taken");
});

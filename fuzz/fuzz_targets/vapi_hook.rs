//! Fuzzes Vapi's server-message check and reader, `VapiHook::read`, on an arbitrary
//! `x-vapi-secret` or `authorization` and body, and checks that the secret, in either form,
//! is always accepted, and anything else never is.
//!
//! Input: byte 0 picks the header (even: `x-vapi-secret`, odd: `authorization`); the rest is
//! split at the first `\n` into its value and the body.
#![no_main]

use std::time::SystemTime;

use axum::http::{HeaderMap, HeaderValue};
use callmux::provider::kind::{Hook, Pushed, Refusal};
use callmux::provider::vapi::hook::VapiHook;
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "vapi-fuzz-secret";

fn read(name: &'static str, value: &[u8], body: &[u8]) -> Option<Result<bool, Refusal>> {
    let hook = VapiHook {
        secret_env: "S".into(),
        secret: HeaderValue::from_static(SECRET),
    };
    let mut headers = HeaderMap::new();
    headers.insert(name, HeaderValue::from_bytes(value).ok()?);
    let pushed = Pushed { query: None, headers: &headers, body, now: SystemTime::now() };
    Some(hook.read(&pushed).map(|m| m.is_some()))
}

fn secret_ok(answer: &Option<Result<bool, Refusal>>) -> bool {
    !matches!(answer, Some(Err(Refusal::BadSignature(_) | Refusal::MissingSignature(_))))
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let (value, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let name = if which % 2 == 0 { "x-vapi-secret" } else { "authorization" };
    let answer = read(name, value, body);
    let right = if which % 2 == 0 { SECRET.as_bytes().to_vec() } else { format!("Bearer {SECRET}").into_bytes() };
    // A value that is not a header value never reaches callmux.
    if answer.is_some() && value.trim_ascii() != right.as_slice() && value != right.as_slice() {
        // Anything but the secret is refused (a Bearer scheme in any case is the same secret).
        let bearer = which % 2 == 1
            && value.len() > 7
            && value[..7].eq_ignore_ascii_case(b"bearer ")
            && value[7..].trim_ascii() == SECRET.as_bytes();
        assert!(bearer || !secret_ok(&answer), "a wrong secret taken");
    }
    assert!(secret_ok(&read("x-vapi-secret", SECRET.as_bytes(), body)), "the secret refused");
    assert!(secret_ok(&read("authorization", format!("Bearer {SECRET}").as_bytes(), body)), "the Bearer secret refused");
});

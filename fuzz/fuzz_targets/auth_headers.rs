//! Fuzzes `callmux::service::auth::Presented::new` on arbitrary `authorization` and
//! `x-bland-org-id` values, and checks that `Debug` of what it keeps never shows the key, and
//! that what it forwards is what was sent (or the org's id, when no org id was).
//!
//! Input: byte 0 is flags (bit 0: send `authorization`, bit 1: send `x-bland-org-id`); the
//! rest is split at the first `\n` into the authorization value and the org id value.
#![no_main]

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let (auth, org) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let mut headers = HeaderMap::new();
    if flags & 1 != 0 {
        let Ok(v) = HeaderValue::from_bytes(auth) else {
            return;
        };
        headers.insert(axum::http::header::AUTHORIZATION, v);
    }
    if flags & 2 != 0 {
        let Ok(v) = HeaderValue::from_bytes(org) else {
            return;
        };
        headers.insert(HeaderName::from_static("x-bland-org-id"), v);
    }

    let Ok(creds) = presented(&headers) else {
        return;
    };
    let shown = debug_text(&creds);

    // The same request with another key must look the same in `Debug`: what is shown does not
    // depend on the key at all.
    let mut other = headers.clone();
    other.insert(
        axum::http::header::AUTHORIZATION,
        HeaderValue::from_static("Bearer k"),
    );
    let reference = presented(&other).expect("key `k` is readable");
    let reference = debug_text(&reference);
    assert_eq!(shown, reference, "Debug output depends on the key");

    // The key as callmux reads it: trimmed, without a leading `Bearer` scheme.
    let text = std::str::from_utf8(auth)
        .expect("an accepted authorization value is visible ASCII")
        .trim();
    let key = match text.get(..6) {
        Some(scheme)
            if scheme.eq_ignore_ascii_case("bearer")
                && text[6..].chars().next().is_none_or(char::is_whitespace) =>
        {
            text[6..].trim()
        }
        _ => text,
    };
    // A key that is a piece of the fixed redacted text (say `REDACTED`) "appears" without
    // having leaked; the check above covers it.
    if key.len() >= 8 && !reference.contains(key) {
        assert!(!shown.contains(key), "Debug output shows the key: {shown}");
    }
    if let Some(f) = &creds.forwarded(&bland_keys_org()) {
        // Forwarded exactly as sent, and marked sensitive so `http`'s own Debug redacts it;
        // without an org id (or a blank one), the org's own (a Bland key alone, taken for
        // the default org).
        assert_eq!(f.authorization.as_bytes(), auth);
        assert!(f.authorization.is_sensitive() && f.org_id.is_sensitive());
        let sent = headers
            .get("x-bland-org-id")
            .map(|v| v.as_bytes())
            .filter(|v| !v.trim_ascii().is_empty())
            .unwrap_or(ORG.as_bytes());
        assert_eq!(f.org_id.as_bytes(), sent);
    }
});

const ORG: &str = "bland-keys-org";

/// An org whose callers bring their Bland keys, which they are forwarded for.
fn bland_keys_org() -> callmux::config::OrgSpec {
    callmux::config::OrgSpec {
        id: ORG.to_owned(),
        auth: callmux::config::OrgAuth::Upstream {
            provider: "bland".to_owned(),
            scopes: callmux::scope::Scopes::all(),
        },
        providers: vec!["bland".to_owned()],
        passthrough: None,
        webhooks: vec![],
        routes: vec![],
    }
}

/// The credentials as the HTTP edge reads them from the two headers.
fn presented(
    headers: &axum::http::HeaderMap,
) -> Result<callmux::service::auth::Presented, callmux::service::auth::AuthError> {
    callmux::service::auth::Presented::new(
        headers.get(axum::http::header::AUTHORIZATION),
        headers.get("x-bland-org-id"),
    )
}

/// `Debug` of the credentials and of what would be forwarded upstream.
fn debug_text(p: &callmux::service::auth::Presented) -> String {
    format!("{p:?} {:?}", p.forwarded(&bland_keys_org()))
}

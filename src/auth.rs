//! Who is asking: reads `authorization` + `x-bland-org-id`, identifies the org, compares keys
//! in constant time, and remembers Bland's recent verdicts on forwarded keys.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderValue};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{Config, OrgAuth, OrgSpec};
use crate::provider::bland::ORG_ID_HEADER;
use crate::provider::{ForwardedCredentials, ProviderError};

/// SHA-256 of a key. Keys are only ever held and compared in this form.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct KeyDigest([u8; 32]);

impl KeyDigest {
    /// Digest of a configured key. Surrounding whitespace is dropped, as it is from a
    /// presented key.
    pub fn of(key: &secrecy::SecretString) -> Self {
        use secrecy::ExposeSecret;
        Self::of_bytes(key.expose_secret().trim().as_bytes())
    }

    fn of_bytes(key: &[u8]) -> Self {
        Self(Sha256::digest(key).into())
    }

    /// Parses the 64 hex digits of `api_key_sha256`; the error says what is wrong with them.
    pub fn from_hex(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let mut out = [0u8; 32];
        match hex::decode_to_slice(text, &mut out) {
            Ok(()) => Ok(Self(out)),
            Err(_) if text.len() != 64 => Err(format!(
                "is {} characters long; a SHA-256 digest is 64 hex digits",
                text.len()
            )),
            Err(_) => Err("holds characters that are not hex digits (0-9, a-f)".into()),
        }
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Compares in constant time, so response timing says nothing about how close a guess was.
    pub fn matches(&self, other: &KeyDigest) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyDigest([REDACTED])")
    }
}

/// Why a request was not let in. Messages never echo the key that was presented.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error(
        "missing API key: send it in the authorization header, as `authorization: <key>` \
         or `authorization: Bearer <key>`"
    )]
    MissingKey,
    #[error("the authorization header is not plain text (visible ASCII); send the key as issued")]
    UnreadableKey,
    #[error("the x-bland-org-id header is not plain text (visible ASCII)")]
    UnreadableOrgId,
    #[error("invalid API key for this organisation")]
    Rejected,
    #[error(
        "missing x-bland-org-id header: this key does not identify a single organisation, \
         so send your organisation id in x-bland-org-id"
    )]
    MissingOrgId,
    #[error(
        "could not check the key with provider `{provider}`, which {error}; try again shortly"
    )]
    Unavailable {
        provider: String,
        error: ProviderError,
    },
}

impl AuthError {
    pub fn status(&self) -> u16 {
        match self {
            Self::MissingOrgId => 400,
            Self::Unavailable { .. } => 502,
            _ => 401,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingOrgId => "MISSING_ORG_ID",
            Self::Unavailable { .. } => "AUTH_UNAVAILABLE",
            _ => "AUTH_FAILURE",
        }
    }
}

/// The credentials a request presented. `Debug` shows none of them.
pub struct Presented {
    digest: KeyDigest,
    authorization: HeaderValue,
    org_id: Option<HeaderValue>,
}

impl fmt::Debug for Presented {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Presented([REDACTED])")
    }
}

impl Presented {
    /// Reads the two headers. The key may be sent raw or as `Bearer <key>`.
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, AuthError> {
        let raw = headers
            .get(header::AUTHORIZATION)
            .ok_or(AuthError::MissingKey)?;
        let text = raw.to_str().map_err(|_| AuthError::UnreadableKey)?.trim();
        let key = match text.get(..6) {
            Some(scheme)
                if scheme.eq_ignore_ascii_case("bearer")
                    && text[6..].chars().next().is_none_or(char::is_whitespace) =>
            {
                text[6..].trim()
            }
            _ => text,
        };
        if key.is_empty() {
            return Err(AuthError::MissingKey);
        }
        let org_id = match headers.get(ORG_ID_HEADER) {
            None => None,
            Some(v) => {
                let text = v.to_str().map_err(|_| AuthError::UnreadableOrgId)?;
                (!text.trim().is_empty()).then(|| v.clone())
            }
        };
        let mut authorization = raw.clone();
        authorization.set_sensitive(true);
        Ok(Self {
            digest: KeyDigest::of_bytes(key.as_bytes()),
            authorization,
            org_id,
        })
    }

    fn org_id(&self) -> Option<&str> {
        self.org_id
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    }

    /// The client's own headers, to forward to the Bland provider that vouches for its org.
    pub fn forwarded(&self) -> Option<ForwardedCredentials> {
        self.org_id
            .as_ref()
            .map(|org_id| ForwardedCredentials::new(self.authorization.clone(), org_id.clone()))
    }
}

/// What the headers alone establish about the caller.
#[derive(Debug)]
pub enum Identity<'c> {
    /// A callmux key matched the org's digest.
    Verified(&'c OrgSpec),
    /// The org takes its callers' Bland keys: the named provider must accept the key first.
    ViaUpstream(&'c OrgSpec, &'c str),
}

impl<'c> Identity<'c> {
    pub fn org(&self) -> &'c OrgSpec {
        match self {
            Self::Verified(org) | Self::ViaUpstream(org, _) => org,
        }
    }
}

/// Identifies the org from the presented credentials.
///
/// An unknown org id and a wrong key get the same answer, so the answer does not reveal which
/// org ids exist. Without an org id, the key must match exactly one org's key.
pub fn identify<'c>(config: &'c Config, p: &Presented) -> Result<Identity<'c>, AuthError> {
    match p.org_id() {
        Some(org_id) => {
            let org = config.org(org_id).ok_or(AuthError::Rejected)?;
            match &org.auth {
                OrgAuth::Key { digest, .. } if digest.matches(&p.digest) => {
                    Ok(Identity::Verified(org))
                }
                OrgAuth::Key { .. } => Err(AuthError::Rejected),
                // A key callmux issued is never forwarded, whichever org it is sent to.
                OrgAuth::Upstream { .. } if issued_key_matches(config, p).is_some() => {
                    Err(AuthError::Rejected)
                }
                OrgAuth::Upstream { provider } => Ok(Identity::ViaUpstream(org, provider)),
            }
        }
        None => match issued_key_matches(config, p) {
            Some((1, org)) => Ok(Identity::Verified(org)),
            _ => Err(AuthError::MissingOrgId),
        },
    }
}

/// How many orgs' callmux keys match the presented key, and the last that did. Every org's
/// digest is compared, whatever matched first, so timing does not reveal where in the list
/// a key sits.
fn issued_key_matches<'c>(config: &'c Config, p: &Presented) -> Option<(usize, &'c OrgSpec)> {
    let mut found = None;
    let mut matches = 0;
    for org in &config.orgs {
        if let OrgAuth::Key { digest, .. } = &org.auth {
            if digest.matches(&p.digest) {
                matches += 1;
                found = Some(org);
            }
        }
    }
    found.map(|org| (matches, org))
}

/// Bland keys the upstream accepted lately, by (org, key digest). Only acceptances are kept:
/// a rejected key is asked about again every time.
pub struct Verdicts {
    accepted: moka::sync::Cache<(Arc<str>, KeyDigest), ()>,
}

impl Verdicts {
    pub fn new(ttl: Duration) -> Self {
        Self {
            accepted: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ttl)
                .build(),
        }
    }

    pub fn is_accepted(&self, org: &str, p: &Presented) -> bool {
        self.accepted
            .contains_key(&(Arc::from(org), p.digest.clone()))
    }

    pub fn accept(&self, org: &str, p: &Presented) {
        self.accepted.insert((Arc::from(org), p.digest.clone()), ());
    }

    pub fn forget(&self, org: &str, p: &Presented) {
        self.accepted
            .invalidate(&(Arc::from(org), p.digest.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn bearer_and_raw_keys_have_the_same_digest() {
        let raw = Presented::from_headers(&headers(&[("authorization", "k-123")])).unwrap();
        let bearer =
            Presented::from_headers(&headers(&[("authorization", "Bearer  k-123 ")])).unwrap();
        assert!(raw.digest.matches(&bearer.digest));
    }

    #[test]
    fn a_missing_or_blank_key_is_missing() {
        for h in [
            headers(&[]),
            headers(&[("authorization", "")]),
            headers(&[("authorization", "Bearer ")]),
            headers(&[("authorization", "   ")]),
        ] {
            assert_eq!(
                Presented::from_headers(&h).unwrap_err(),
                AuthError::MissingKey
            );
        }
    }

    #[test]
    fn a_digest_must_be_64_hex_digits() {
        assert!(KeyDigest::from_hex(&"ab".repeat(32)).is_ok());
        assert!(KeyDigest::from_hex("abc")
            .unwrap_err()
            .contains("64 hex digits"));
        assert!(KeyDigest::from_hex(&"zz".repeat(32))
            .unwrap_err()
            .contains("not hex"));
    }

    #[test]
    fn debug_output_never_shows_a_key() {
        let p = Presented::from_headers(&headers(&[
            ("authorization", "Bearer super-secret-key"),
            ("x-bland-org-id", "org"),
        ]))
        .unwrap();
        let shown = format!("{p:?} {:?} {:?}", p.digest, p.forwarded());
        assert!(!shown.contains("super-secret-key"), "{shown}");
        assert!(!shown.contains(&p.digest.to_hex()), "{shown}");
    }
}

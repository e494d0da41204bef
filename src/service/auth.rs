//! Who is asking: from the credentials a request presented (a key, and maybe an org id),
//! identifies the org, compares keys in constant time, and remembers Bland's recent verdicts
//! on forwarded keys.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderValue;

use crate::config::{Config, KeySpec, OrgAuth, OrgSpec, BLAND_CALLER};
use crate::error_code::ErrorCode;
pub use crate::keys::KeyDigest;
use crate::provider::{ForwardedCredentials, ProviderError};
use crate::scope::{Scope, Scopes};
use crate::state::redis::Redis;
use crate::state::seal::Rejected;

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
    #[error(
        "the key `{key}` may not do this: the route needs the `{scope}` scope; ask the \
         operator for a key with `{scope}`, or add it to the key's scopes"
    )]
    Forbidden { scope: Scope, key: Arc<str> },
    #[error(
        "the key `{key}` is over its limit of {per_second} {what} per second; retry after \
         {retry_after_secs} s"
    )]
    RateLimited {
        key: Arc<str>,
        what: &'static str,
        per_second: u32,
        retry_after_secs: u64,
    },
    #[error(
        "this client address has sent more than {per_second} keys a second that Bland has \
         yet to check; retry after {retry_after_secs} s"
    )]
    TooManyUnverified {
        per_second: u32,
        retry_after_secs: u64,
    },
}

impl AuthError {
    /// When to try again, for a refusal that has one.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::RateLimited {
                retry_after_secs, ..
            }
            | Self::TooManyUnverified {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            _ => None,
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            Self::MissingOrgId => 400,
            Self::Unavailable { .. } => 502,
            Self::Forbidden { .. } => 403,
            Self::RateLimited { .. } | Self::TooManyUnverified { .. } => 429,
            _ => 401,
        }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            Self::MissingOrgId => ErrorCode::MissingOrgId,
            Self::Unavailable { .. } => ErrorCode::AuthUnavailable,
            Self::Forbidden { .. } => ErrorCode::Forbidden,
            Self::RateLimited { .. } | Self::TooManyUnverified { .. } => ErrorCode::RateLimited,
            _ => ErrorCode::AuthFailure,
        }
    }
}

/// The credentials a request presented. `Debug` shows none of them.
#[derive(Clone)]
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
    /// Reads the credentials as sent in `authorization` and `x-bland-org-id` (or anything
    /// else that carries the same two values). The key may be sent raw or as `Bearer <key>`.
    pub fn new(
        authorization: Option<&HeaderValue>,
        org_id: Option<&HeaderValue>,
    ) -> Result<Self, AuthError> {
        let raw = authorization.ok_or(AuthError::MissingKey)?;
        // A header value's text is visible ASCII, spaces and tabs (`to_str`), so ASCII
        // trimming is `trim`'s, without its Unicode tables on every request.
        let text = raw
            .to_str()
            .map_err(|_| AuthError::UnreadableKey)?
            .trim_ascii();
        let key = match text.get(..6) {
            Some(scheme)
                if scheme.eq_ignore_ascii_case("bearer")
                    && text[6..].chars().next().is_none_or(char::is_whitespace) =>
            {
                text[6..].trim_ascii()
            }
            _ => text,
        };
        if key.is_empty() {
            return Err(AuthError::MissingKey);
        }
        let org_id = match org_id {
            None => None,
            Some(v) => {
                let text = v.to_str().map_err(|_| AuthError::UnreadableOrgId)?;
                (!text.trim_ascii().is_empty()).then(|| v.clone())
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

    /// The client's own headers, to forward to the Bland provider that vouches for `org`:
    /// its `x-bland-org-id` as sent, or else (a Bland key alone, taken for the server's
    /// `bland_default_org`) that org's id, so Bland still checks the key is that org's.
    /// The `authorization` header as sent, for a sign-in link to hand back once to the
    /// dashboard that holds the link (never logged, never stored outside memory in clear).
    pub(crate) fn authorization(&self) -> &HeaderValue {
        &self.authorization
    }

    pub fn forwarded(&self, org: &OrgSpec) -> Option<ForwardedCredentials> {
        self.org_id
            .clone()
            .or_else(|| HeaderValue::from_str(&org.id).ok())
            .map(|org_id| ForwardedCredentials::new(self.authorization.clone(), org_id))
    }
}

/// What the headers alone establish about the caller.
#[derive(Debug)]
pub enum Identity<'c> {
    /// A callmux key matched this key of the org.
    Verified(&'c OrgSpec, &'c KeySpec),
    /// The org takes its callers' Bland keys: the named provider must accept the key first.
    ViaUpstream(&'c OrgSpec, &'c str, Scopes),
}

impl<'c> Identity<'c> {
    pub fn org(&self) -> &'c OrgSpec {
        match self {
            Self::Verified(org, _) | Self::ViaUpstream(org, ..) => org,
        }
    }

    /// The callmux key that matched; `None` for a caller's own Bland key.
    pub fn key(&self) -> Option<&'c KeySpec> {
        match self {
            Self::Verified(_, key) => Some(key),
            Self::ViaUpstream(..) => None,
        }
    }

    /// The name the caller is known by in logs, metrics and refusals: the key's name, or
    /// `bland-caller` for a caller's own Bland key.
    pub fn key_name(&self) -> &'c str {
        match self {
            Self::Verified(_, key) => &key.name,
            Self::ViaUpstream(..) => BLAND_CALLER,
        }
    }

    pub fn scopes(&self) -> Scopes {
        match self {
            Self::Verified(_, key) => key.scopes,
            Self::ViaUpstream(_, _, scopes) => *scopes,
        }
    }

    /// `Forbidden`, naming the scope and the key, unless the caller holds `scope`.
    pub fn may(&self, scope: Scope) -> Result<(), AuthError> {
        if self.scopes().contains(scope) {
            return Ok(());
        }
        Err(AuthError::Forbidden {
            scope,
            key: match self {
                Self::Verified(_, key) => key.name.clone(),
                Self::ViaUpstream(..) => Arc::from(BLAND_CALLER),
            },
        })
    }
}

/// Identifies the org from the presented credentials.
///
/// An unknown org id and a wrong key get the same answer, so the answer does not reveal which
/// org ids exist. Without an org id, the key must match exactly one org's key; a key that
/// matches none is a Bland key for the server's `bland_default_org`, where one is named.
pub fn identify<'c>(config: &'c Config, p: &Presented) -> Result<Identity<'c>, AuthError> {
    match p.org_id() {
        Some(org_id) => {
            let org = config.org(org_id).ok_or(AuthError::Rejected)?;
            match &org.auth {
                OrgAuth::Keys(keys) => match matching_key(keys, p) {
                    Some(key) => Ok(Identity::Verified(org, key)),
                    None => Err(AuthError::Rejected),
                },
                // A key callmux issued is never forwarded, whichever org it is sent to, nor
                // one wrapped in another form.
                OrgAuth::Upstream { .. }
                    if issued_key_matches(config, p).is_some() || wraps_issued_key(config, p) =>
                {
                    Err(AuthError::Rejected)
                }
                OrgAuth::Upstream { provider, scopes } => {
                    Ok(Identity::ViaUpstream(org, provider, *scopes))
                }
            }
        }
        None => match issued_key_matches(config, p) {
            Some((1, org, key)) => Ok(Identity::Verified(org, key)),
            Some(_) => Err(AuthError::MissingOrgId),
            // Bland's own SDKs send the key alone.
            None => match config.bland_default_org() {
                // A key callmux issued, wrapped in another form, is never taken for a Bland
                // key (looked for only here, where a key alone could go to Bland).
                Some(OrgSpec {
                    auth: OrgAuth::Upstream { .. },
                    ..
                }) if wraps_issued_key(config, p) => Err(AuthError::Rejected),
                Some(
                    org @ OrgSpec {
                        auth: OrgAuth::Upstream { provider, scopes },
                        ..
                    },
                ) => Ok(Identity::ViaUpstream(org, provider, *scopes)),
                _ => Err(AuthError::MissingOrgId),
            },
        },
    }
}

/// The org key the presented key is. Every key's digest is compared, whatever matched
/// first, so timing does not reveal which key it was, nor how close (digests of one org
/// never repeat: the configuration refuses two keys with one digest).
fn matching_key<'c>(keys: &'c [KeySpec], p: &Presented) -> Option<&'c KeySpec> {
    keys.iter()
        .fold(None, |found, key| match key.digest.matches(&p.digest) {
            true => Some(key),
            false => found,
        })
}

/// How many orgs' callmux keys match the presented key, and the last org and key that did.
/// Every org's digests are compared, whatever matched first, so timing does not reveal
/// where in the list a key sits.
fn issued_key_matches<'c>(
    config: &'c Config,
    p: &Presented,
) -> Option<(usize, &'c OrgSpec, &'c KeySpec)> {
    let mut found = None;
    let mut matches = 0;
    for org in &config.orgs {
        if let OrgAuth::Keys(keys) = &org.auth {
            if let Some(key) = matching_key(keys, p) {
                matches += 1;
                found = Some((org, key));
            }
        }
    }
    found.map(|(org, key)| (matches, org, key))
}

/// Whether the `authorization` holds a callmux key in another form than callmux reads
/// (`Basic` with the key as user or password, `Token <key>`, `Bearer:<key>`, the key twice
/// with a comma, ...): any token of it, or of its decoded `Basic` credential, that is an
/// issued key. Such a header would otherwise go to Bland as a Bland key. Every candidate is
/// compared with every org's digest in constant time.
fn wraps_issued_key(config: &Config, p: &Presented) -> bool {
    let Ok(text) = p.authorization.to_str() else {
        return false;
    };
    let mut candidates = tokens(text);
    let mut words = text.split_whitespace();
    if let (Some(scheme), Some(credential)) = (words.next(), words.next()) {
        if scheme.eq_ignore_ascii_case("basic") {
            use base64::Engine;
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(credential.trim_end_matches(','))
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok());
            if let Some(decoded) = decoded {
                if let Some((user, password)) = decoded.split_once(':') {
                    candidates.extend([user.to_owned(), password.to_owned()]);
                }
                candidates.extend(tokens(&decoded));
            }
        }
    }
    let mut found = false;
    for candidate in &candidates {
        let digest = KeyDigest::of_bytes(candidate.as_bytes());
        for org in &config.orgs {
            if let OrgAuth::Keys(keys) = &org.auth {
                for key in keys {
                    found |= key.digest.matches(&digest);
                }
            }
        }
    }
    found
}

/// `text` whole, and every piece of it between separators a scheme might put around a key.
fn tokens(text: &str) -> Vec<String> {
    let mut found = vec![text.trim().to_owned()];
    for piece in text.split(|c: char| c.is_whitespace() || c == ',') {
        found.push(piece.to_owned());
        found.extend(
            piece
                .split([':', '=', '"', '\'', ';'])
                .filter(|t| !t.is_empty() && t.len() != piece.len())
                .map(str::to_owned),
        );
    }
    found.retain(|t| !t.is_empty());
    found
}

/// Bland keys the upstream accepted or rejected lately, by (org, key digest). An acceptance
/// is kept `auth_cache_ttl_ms`, a rejection `auth_rejection_ttl_ms`, so a made-up key sent
/// again and again costs Bland one ask. With a fleet, each is shared under a key that is an
/// HMAC of (what, org, digest), its value sealed and holding when it expires, so a value
/// planted in Redis is never taken for an acceptance.
pub struct Verdicts {
    accepted: moka::sync::Cache<(Arc<str>, KeyDigest), ()>,
    rejected: moka::sync::Cache<(Arc<str>, KeyDigest), ()>,
    ttl: Duration,
    rejection_ttl: Duration,
    fleet: Option<Arc<Redis>>,
}

/// What a shared verdict holds: the Unix time in milliseconds it expires at.
const VERDICT_UNTIL: usize = 8;

/// What callmux knows of a Bland key lately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Accepted,
    Rejected,
    /// Bland has to be asked.
    Unknown,
}

impl Verdicts {
    pub fn new(ttl: Duration, rejection_ttl: Duration, fleet: Option<Arc<Redis>>) -> Self {
        let cache = |ttl: Duration| {
            moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ttl.max(Duration::from_millis(1)))
                .build()
        };
        Self {
            accepted: cache(ttl),
            rejected: cache(rejection_ttl),
            ttl,
            rejection_ttl,
            fleet,
        }
    }

    fn fleet_key(redis: &Redis, kind: &str, org: &str, p: &Presented) -> String {
        redis
            .sealer
            .secret_key(kind, &[org.as_bytes(), p.digest.as_bytes()])
    }

    fn id(org: &str, p: &Presented) -> (Arc<str>, KeyDigest) {
        (Arc::from(org), p.digest.clone())
    }

    pub async fn is_accepted(&self, org: &str, p: &Presented) -> bool {
        if self.accepted.contains_key(&Self::id(org, p)) {
            return true;
        }
        !self.ttl.is_zero() && self.shared("verdict", org, p).await
    }

    /// Whether the key was accepted or rejected lately, here or (with a fleet) anywhere.
    pub async fn standing(&self, org: &str, p: &Presented) -> Standing {
        if self.is_accepted(org, p).await {
            Standing::Accepted
        } else if self.is_rejected(org, p).await {
            Standing::Rejected
        } else {
            Standing::Unknown
        }
    }

    pub async fn is_rejected(&self, org: &str, p: &Presented) -> bool {
        if self.rejection_ttl.is_zero() {
            return false;
        }
        self.rejected.contains_key(&Self::id(org, p)) || self.shared("rejected", org, p).await
    }

    /// Whether the fleet holds an unexpired verdict of `kind` on the key.
    async fn shared(&self, kind: &'static str, org: &str, p: &Presented) -> bool {
        let Some(redis) = &self.fleet else {
            return false;
        };
        let key = Self::fleet_key(redis, kind, org, p);
        let Some(payload) = redis.get_sealed(kind, &key).await else {
            return false;
        };
        match <[u8; VERDICT_UNTIL]>::try_from(payload.as_slice()) {
            Ok(until) => crate::call::time::now_ms() < u64::from_be_bytes(until),
            Err(_) => {
                redis.rejected(kind, Rejected::Decode);
                false
            }
        }
    }

    async fn share(&self, kind: &'static str, org: &str, p: &Presented, ttl: Duration) {
        if let (Some(redis), false) = (&self.fleet, ttl.is_zero()) {
            let until = crate::call::time::now_ms() + ttl.as_millis() as u64;
            let key = Self::fleet_key(redis, kind, org, p);
            redis.put_sealed(&key, &until.to_be_bytes(), ttl).await;
        }
    }

    async fn unshare(&self, kind: &'static str, org: &str, p: &Presented) {
        if let Some(redis) = &self.fleet {
            redis.del(&Self::fleet_key(redis, kind, org, p)).await;
        }
    }

    pub async fn accept(&self, org: &str, p: &Presented) {
        if !self.ttl.is_zero() {
            self.accepted.insert(Self::id(org, p), ());
        }
        self.share("verdict", org, p, self.ttl).await;
        // A key Bland has just accepted is no longer refused anywhere.
        if !self.rejection_ttl.is_zero() && self.rejected.remove(&Self::id(org, p)).is_some() {
            self.unshare("rejected", org, p).await;
        }
    }

    /// Bland rejected the key: it is no longer trusted, and refused for a while unasked.
    pub async fn reject(&self, org: &str, p: &Presented) {
        self.accepted.invalidate(&Self::id(org, p));
        self.unshare("verdict", org, p).await;
        if !self.rejection_ttl.is_zero() {
            self.rejected.insert(Self::id(org, p), ());
            self.share("rejected", org, p, self.rejection_ttl).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn presented(pairs: &[(&str, &str)]) -> Result<Presented, AuthError> {
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| HeaderValue::from_str(v).unwrap())
        };
        Presented::new(
            get("authorization").as_ref(),
            get("x-bland-org-id").as_ref(),
        )
    }

    #[test]
    fn bearer_and_raw_keys_have_the_same_digest() {
        let raw = presented(&[("authorization", "k-123")]).unwrap();
        let bearer = presented(&[("authorization", "Bearer  k-123 ")]).unwrap();
        assert!(raw.digest.matches(&bearer.digest));
    }

    #[test]
    fn a_missing_or_blank_key_is_missing() {
        for h in [
            &[][..],
            &[("authorization", "")],
            &[("authorization", "Bearer ")],
            &[("authorization", "   ")],
        ] {
            assert_eq!(presented(h).unwrap_err(), AuthError::MissingKey);
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
    fn a_wrong_key_of_the_right_length_and_of_another_length_compare_every_digest_as_the_right_one_does(
    ) {
        let toml = format!(
            "[orgs.acme]\nproviders = [\"s\"]\n\
             [[orgs.acme.keys]]\nname = \"a\"\nsha256 = \"{}\"\nscopes = [\"read\"]\n\
             [[orgs.acme.keys]]\nname = \"b\"\nsha256 = \"{}\"\nscopes = [\"end\"]\n\
             [orgs.other]\nproviders = [\"s\"]\napi_key_sha256 = \"{}\"\n\
             [providers.s]\nkind = \"twilio-media-stream\"\nbase_url = \"http://127.0.0.1:9\"\n",
            KeyDigest::of_bytes(b"key-aaaa").to_hex(),
            KeyDigest::of_bytes(b"key-bbbb").to_hex(),
            KeyDigest::of_bytes(b"key-cccc").to_hex(),
        );
        let config = Config::from_figment(
            &figment::Figment::from(
                <figment::providers::Toml as figment::providers::Format>::string(&toml),
            ),
            &|_| None,
        )
        .unwrap();
        let compared = |key: &str, org: Option<&str>| {
            let mut pairs = vec![("authorization", key)];
            pairs.extend(org.map(|o| ("x-bland-org-id", o)));
            let p = presented(&pairs).unwrap();
            crate::keys::COMPARED.with(|c| c.set(0));
            let outcome = identify(&config, &p).map(|i| i.key_name().to_owned());
            (outcome, crate::keys::COMPARED.with(|c| c.get()))
        };
        let right = compared("key-bbbb", Some("acme"));
        assert_eq!(right, (Ok("b".to_owned()), 2));
        for wrong in ["key-bbbc", "k", &"x".repeat(4096)] {
            assert_eq!(
                compared(wrong, Some("acme")),
                (Err(AuthError::Rejected), 2),
                "{wrong}"
            );
        }
        // Without an org id, every key of every org is compared, found or not.
        assert_eq!(compared("key-aaaa", None).1, 3);
        assert_eq!(compared("key-zzzz", None).1, 3);
    }

    #[test]
    fn debug_output_never_shows_a_key() {
        let p = presented(&[
            ("authorization", "Bearer super-secret-key"),
            ("x-bland-org-id", "org"),
        ])
        .unwrap();
        let org = OrgSpec {
            id: "org".into(),
            auth: OrgAuth::Upstream {
                provider: "bland".into(),
                scopes: Scopes::all(),
            },
            providers: vec![],
            passthrough: None,
            webhooks: vec![],
            routes: vec![],
        };
        let shown = format!("{p:?} {:?} {:?}", p.digest, p.forwarded(&org));
        assert!(!shown.contains("super-secret-key"), "{shown}");
        assert!(!shown.contains(&p.digest.to_hex()), "{shown}");
    }
}

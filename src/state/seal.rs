//! What makes a value in Redis trustworthy: every value callmux writes is sealed with an
//! HMAC-SHA256 under the fleet's shared secret, over the format version, the key's name and
//! the payload, and checked before it is used; key names that stand for a secret (a caller's
//! key) are HMACs too, never the key or a plain digest of it.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The layout of sealed values and of what they hold. Bump it when either changes: replicas
/// of another format ignore each other's values rather than misread them.
pub const FORMAT: u8 = 1;
/// Every key callmux writes starts with this (and the format).
pub const PREFIX: &str = "callmux";

/// `c` `m` then the format byte: tells a value of another format from a forged one.
const TAG: [u8; 2] = *b"cm";
const MAC_LEN: usize = 32;
const HEADER: usize = TAG.len() + 1 + MAC_LEN;

type HmacSha256 = Hmac<Sha256>;

/// Why a value read back was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// Sealed by a callmux of another format.
    Version,
    /// Not sealed by a replica holding the secret: forged, altered, moved to another key, or
    /// written by something else.
    Mac,
    /// Sealed correctly but not readable as what the key holds.
    Decode,
    /// Sealed correctly, but older than it could be: written back after its time (replayed).
    Stale,
}

impl Rejected {
    pub fn reason(self) -> &'static str {
        match self {
            Self::Version => "version",
            Self::Mac => "mac",
            Self::Decode => "decode",
            Self::Stale => "stale",
        }
    }
}

/// Seals and opens values under the shared secret. Holds no plain secret: only the HMAC key
/// state, which `Debug` does not show.
#[derive(Clone)]
pub struct Sealer {
    mac: HmacSha256,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer([REDACTED])")
    }
}

impl Sealer {
    pub fn new(secret: &SecretString) -> Self {
        Self {
            mac: HmacSha256::new_from_slice(secret.expose_secret().as_bytes())
                .expect("HMAC takes a key of any length"),
        }
    }

    fn tag(&self, parts: &[&[u8]]) -> [u8; MAC_LEN] {
        let mut mac = self.mac.clone();
        for part in parts {
            // Length-prefixed, so no two lists of parts feed the same bytes.
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    /// `callmux:<format>:<kind>:<name>`: a key whose name is readable (a provider id).
    pub fn key(kind: &str, name: &str) -> String {
        format!("{PREFIX}:{FORMAT}:{kind}:{name}")
    }

    /// A key for something secret (a caller's credentials, an org's caller): its name is an
    /// HMAC of `parts`, so Redis holds nothing that a key could be guessed or checked from.
    pub fn secret_key(&self, kind: &str, parts: &[&[u8]]) -> String {
        let mut all: Vec<&[u8]> = vec![b"key", kind.as_bytes()];
        all.extend_from_slice(parts);
        Self::key(kind, &hex::encode(&self.tag(&all)[..20]))
    }

    /// `payload` sealed for `key`.
    pub fn seal(&self, key: &str, payload: &[u8]) -> Vec<u8> {
        let mac = self.tag(&[b"value", &[FORMAT], key.as_bytes(), payload]);
        let mut out = Vec::with_capacity(HEADER + payload.len());
        out.extend_from_slice(&TAG);
        out.push(FORMAT);
        out.extend_from_slice(&mac);
        out.extend_from_slice(payload);
        out
    }

    /// The payload of a value read back from `key`, if this fleet sealed it for that key.
    pub fn open<'v>(&self, key: &str, value: &'v [u8]) -> Result<&'v [u8], Rejected> {
        if value.len() < HEADER || value[..TAG.len()] != TAG {
            return Err(Rejected::Mac);
        }
        if value[TAG.len()] != FORMAT {
            return Err(Rejected::Version);
        }
        let (mac, payload) = value[TAG.len() + 1..].split_at(MAC_LEN);
        let expected = self.tag(&[b"value", &[FORMAT], key.as_bytes(), payload]);
        if bool::from(expected.ct_eq(mac)) {
            Ok(payload)
        } else {
            Err(Rejected::Mac)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer(secret: &str) -> Sealer {
        Sealer::new(&SecretString::from(secret.to_string()))
    }

    #[test]
    fn a_sealed_value_opens_only_under_its_key_and_the_same_secret() {
        let s = sealer("one secret of the fleet");
        let sealed = s.seal("callmux:1:x:a", b"payload");
        assert_eq!(s.open("callmux:1:x:a", &sealed), Ok(&b"payload"[..]));
        assert_eq!(s.open("callmux:1:x:b", &sealed), Err(Rejected::Mac));
        assert_eq!(
            sealer("another secret entirely").open("callmux:1:x:a", &sealed),
            Err(Rejected::Mac)
        );
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert_eq!(s.open("callmux:1:x:a", &altered), Err(Rejected::Mac));
        let mut other_format = sealed;
        other_format[2] = FORMAT + 1;
        assert_eq!(
            s.open("callmux:1:x:a", &other_format),
            Err(Rejected::Version)
        );
        assert_eq!(s.open("callmux:1:x:a", b"accepted"), Err(Rejected::Mac));
    }

    #[test]
    fn a_secret_key_name_shows_neither_its_parts_nor_their_plain_digest() {
        use sha2::Digest;
        let s = sealer("one secret of the fleet");
        let digest = sha2::Sha256::digest(b"caller-key");
        let name = s.secret_key("verdict", &[b"org", &digest]);
        assert!(name.starts_with("callmux:1:verdict:"), "{name}");
        assert!(!name.contains(&hex::encode(digest)[..16]), "{name}");
        assert_ne!(
            name,
            sealer("another secret entirely").secret_key("verdict", &[b"org", &digest])
        );
    }
}

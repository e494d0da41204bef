//! Keys as callmux holds them: SHA-256 digests only, compared in constant time, never shown.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

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

    pub fn of_bytes(key: &[u8]) -> Self {
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

    /// The digest's bytes, for keying an HMAC (never to be stored or shown as they are).
    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Compares in constant time, so response timing says nothing about how close a guess was.
    pub fn matches(&self, other: &KeyDigest) -> bool {
        #[cfg(test)]
        COMPARED.with(|c| c.set(c.get() + 1));
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyDigest([REDACTED])")
    }
}

#[cfg(test)]
thread_local! {
    /// How many digests this thread compared: the lookup's tests count them, to show every
    /// key takes the same path whatever it is.
    pub(crate) static COMPARED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

//! Single-use sign-in links: a token minted by a caller who proved a key, good once and for
//! a few minutes, that the dashboard exchanges for that org and key, so a link carries no
//! key into a browser's history. Held in memory and, with a fleet, in Redis so any replica
//! can take it: there under an HMAC of the token, the credentials encrypted with a keystream
//! only the token derives (HMAC-SHA256 in counter mode, one token per encryption) and sealed,
//! taken with `GETDEL`, so Redis holds nothing usable without the link and a link works once.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::state::redis::Redis;

/// How long a link is good for.
pub const LINK_TTL: Duration = Duration::from_secs(300);

/// What a link signs in as: the org and the `authorization` header the minting caller sent.
#[derive(Clone)]
pub struct SignIn {
    pub org: String,
    pub authorization: SecretString,
}

impl std::fmt::Debug for SignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignIn")
            .field("org", &self.org)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
struct Wire {
    org: String,
    authorization: String,
}

pub struct Links {
    /// By SHA-256 of the token, with whether Redis holds it too.
    pending: moka::sync::Cache<[u8; 32], Arc<(SignIn, bool)>>,
    fleet: Option<Arc<Redis>>,
}

impl Links {
    pub fn new(fleet: Option<Arc<Redis>>) -> Self {
        Self {
            pending: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(LINK_TTL)
                .build(),
            fleet,
        }
    }

    /// A new token for `sign_in`: 244 random bits from the operating system, as hex.
    pub async fn mint(&self, sign_in: SignIn) -> String {
        let token = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let mut shared = false;
        if let Some(redis) = &self.fleet {
            let mut payload = serde_json::to_vec(&Wire {
                org: sign_in.org.clone(),
                authorization: sign_in.authorization.expose_secret().to_owned(),
            })
            .expect("strings serialise");
            keystream(&token, &mut payload);
            shared = redis
                .put_sealed(&fleet_key(redis, &token), &payload, LINK_TTL)
                .await;
        }
        self.pending
            .insert(digest(&token), Arc::new((sign_in, shared)));
        token
    }

    /// What `token` signs in as, once: a token used, expired or never minted is `None`.
    /// A token Redis holds is Redis's to give (any replica may have taken it already);
    /// one minted here while Redis was down, this replica's memory gives.
    pub async fn take(&self, token: &str) -> Option<SignIn> {
        let here = self.pending.remove(&digest(token));
        if let Some((sign_in, false)) = here.as_deref() {
            return Some(sign_in.clone());
        }
        if let Some(redis) = &self.fleet {
            let key = fleet_key(redis, token);
            let taken: Option<Vec<u8>> = redis
                .cmd("signin", redis::cmd("GETDEL").arg(&key).clone())
                .await?;
            let mut payload = redis.open("signin", &key, &taken?)?;
            keystream(token, &mut payload);
            let wire: Wire = serde_json::from_slice(&payload).ok()?;
            return Some(SignIn {
                org: wire.org,
                authorization: SecretString::from(wire.authorization),
            });
        }
        None
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn fleet_key(redis: &Redis, token: &str) -> String {
    redis.sealer.secret_key("signin", &[&digest(token)])
}

/// XORs `data` with HMAC-SHA256(token, label ‖ block number), block by block: encrypts and
/// decrypts alike. Each token encrypts one payload only, so no keystream is used twice.
fn keystream(token: &str, data: &mut [u8]) {
    for (n, chunk) in data.chunks_mut(32).enumerate() {
        let mut mac = Hmac::<Sha256>::new_from_slice(token.as_bytes())
            .expect("HMAC takes a key of any length");
        mac.update(b"callmux sign-in link");
        mac.update(&(n as u64).to_be_bytes());
        for (byte, k) in chunk.iter_mut().zip(mac.finalize().into_bytes()) {
            *byte ^= k;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_token_signs_in_once_and_a_made_up_one_never() {
        let links = Links::new(None);
        let token = links
            .mint(SignIn {
                org: "acme".into(),
                authorization: SecretString::from("k".to_string()),
            })
            .await;
        assert_eq!(token.len(), 64);
        let taken = links.take(&token).await.expect("the first use signs in");
        assert_eq!(taken.org, "acme");
        assert_eq!(taken.authorization.expose_secret(), "k");
        assert!(links.take(&token).await.is_none());
        assert!(links.take("made-up").await.is_none());
        assert!(!format!("{taken:?}").contains("\"k\""), "{taken:?}");
    }

    #[test]
    fn the_keystream_round_trips_and_depends_on_the_token() {
        let mut data = b"{\"org\":\"acme\",\"authorization\":\"secret\"}".to_vec();
        keystream("one", &mut data);
        assert!(!data.windows(6).any(|w| w == b"secret"));
        let mut other = data.clone();
        keystream("two", &mut other);
        assert!(!other.windows(6).any(|w| w == b"secret"));
        keystream("one", &mut data);
        assert!(data.windows(6).any(|w| w == b"secret"));
    }
}

//! `[state]`: where replicas keep what they share (memory, or Redis), read and validated
//! into [`StateConfig`]. The Redis URL and the MAC secret come from the environment only.

use std::fmt;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::settings::{redacted_url, Check};

/// `[state]` as written, after the built-in defaults.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    pub backend: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_url_env: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
    pub timeout_ms: u64,
}

/// The validated `[state]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateConfig {
    /// One process, nothing shared, nothing to run.
    Memory,
    Redis(RedisConfig),
}

/// A Redis every replica shares. `Debug` shows the URL redacted and no secret.
#[derive(Clone)]
pub struct RedisConfig {
    pub url: SecretString,
    pub url_env: String,
    pub secret: SecretString,
    pub secret_env: String,
    /// Every Redis operation's bound.
    pub timeout: Duration,
}

impl RedisConfig {
    /// The URL without its password, query or fragment: for logs and `check-config`.
    pub fn shown_url(&self) -> String {
        redacted_url(self.url.expose_secret())
    }
}

impl PartialEq for RedisConfig {
    fn eq(&self, other: &Self) -> bool {
        self.url.expose_secret() == other.url.expose_secret()
            && self.secret.expose_secret() == other.secret.expose_secret()
            && self.url_env == other.url_env
            && self.secret_env == other.secret_env
            && self.timeout == other.timeout
    }
}

impl Eq for RedisConfig {}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.shown_url())
            .field("url_env", &self.url_env)
            .field("secret_env", &self.secret_env)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// A shared secret shorter than this is refused: it keys every MAC the fleet trusts.
const MIN_SECRET_BYTES: usize = 16;

impl RawState {
    pub fn validate(&self, defaults: &RawState, check: &mut Check<'_>) -> StateConfig {
        let timeout = Duration::from_millis(check.ranged(
            "state.timeout_ms",
            self.timeout_ms,
            defaults.timeout_ms,
            1..=60_000,
        ));
        match self.backend.as_str() {
            "memory" => StateConfig::Memory,
            "redis" => {
                let url = self.redis_url(check);
                let secret = self.secret(check);
                match (url, secret) {
                    (Some((url, url_env)), Some((secret, secret_env))) => {
                        StateConfig::Redis(RedisConfig {
                            url,
                            url_env,
                            secret,
                            secret_env,
                            timeout,
                        })
                    }
                    _ => StateConfig::Memory,
                }
            }
            other => {
                check.push(
                    "state.backend",
                    format!("unknown backend `{other}`"),
                    "use \"memory\" (the default: one process) or \"redis\" (replicas share state)",
                );
                StateConfig::Memory
            }
        }
    }

    fn redis_url(&self, check: &mut Check<'_>) -> Option<(SecretString, String)> {
        let Some(var) = &self.redis_url_env else {
            check.push(
                "state.redis_url_env",
                "is not set, and backend = \"redis\" needs a Redis to connect to",
                "set redis_url_env = \"REDIS_URL\" and export that variable (a name not starting CALLMUX_, which are read as settings) as redis://[:password@]host:port[/db]",
            );
            return None;
        };
        let url = check.secret_from_env("state.redis_url_env", var)?;
        let text = url.expose_secret().trim();
        // The crate's own message may repeat the URL, password and all: it is not shown.
        let parses = redis::Client::open(text).is_ok()
            && (text.starts_with("redis://") || text.starts_with("rediss://"));
        if !parses {
            check.push(
                "state.redis_url_env",
                format!(
                    "environment variable {var} holds `{}`, which is not a Redis URL",
                    redacted_url(text)
                ),
                format!(
                    "export {var} as redis://[:password@]host:port[/db], e.g. redis://127.0.0.1:6379/0"
                ),
            );
            return None;
        }
        Some((SecretString::from(text.to_string()), var.clone()))
    }

    fn secret(&self, check: &mut Check<'_>) -> Option<(SecretString, String)> {
        let Some(var) = &self.secret_env else {
            check.push(
                "state.secret_env",
                "is not set, and backend = \"redis\" needs the secret every replica shares for its MACs",
                "set secret_env = \"STATE_SECRET\" and export the same random value (e.g. `openssl rand -hex 32`) on every replica",
            );
            return None;
        };
        let secret = check.secret_from_env("state.secret_env", var)?;
        if secret.expose_secret().len() < MIN_SECRET_BYTES {
            check.push(
                "state.secret_env",
                format!("environment variable {var} holds fewer than {MIN_SECRET_BYTES} bytes"),
                "export a long random value, e.g. `openssl rand -hex 32`, the same on every replica",
            );
            return None;
        }
        Some((secret, var.clone()))
    }
}

impl StateConfig {
    /// One line for `check-config`: the backend, and for Redis the URL redacted.
    pub fn summary(&self) -> String {
        match self {
            Self::Memory => "state: memory (this process only; nothing shared)".to_string(),
            Self::Redis(r) => format!(
                "state: redis at {} (from ${}; MAC secret from ${}, value hidden); timeout {} ms",
                r.shown_url(),
                r.url_env,
                r.secret_env,
                r.timeout.as_millis()
            ),
        }
    }
}

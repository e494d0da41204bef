//! `[orgs.<id>.webhooks.<name>]`: an org's endpoints for callmux's signed event stream, read
//! and checked (URL safety, the secret's form, event names, the retry schedule).

use std::time::Duration;

use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::provider::vapi::is_public;
use crate::settings::{redacted_url, Check};

/// Every event type callmux sends, as the `events` list names them.
pub const EVENT_TYPES: &[&str] = &[
    "call.started",
    "call.updated",
    "call.ended",
    "provider.failed",
    "provider.recovered",
    "capacity.full",
];

const DEFAULT_TIMEOUT_MS: u64 = 10_000;
const DEFAULT_RETRY_DELAYS_MS: &[u64] = &[
    5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000,
];
const DEFAULT_MAX_PENDING: u64 = 10_000;

/// One endpoint, checked. `Debug` never shows the secret.
#[derive(Clone)]
pub struct WebhookSpec {
    /// The endpoint's name, the table's key.
    pub name: String,
    pub url: url::Url,
    /// The signing key: `whsec_` + base64 as the environment holds it.
    pub secret: SecretString,
    pub secret_env: String,
    /// The event types sent; every type when the list is not given.
    pub events: Vec<String>,
    pub allow_private: bool,
    pub timeout: Duration,
    pub retry_delays: Vec<Duration>,
    pub max_pending: usize,
}

impl std::fmt::Debug for WebhookSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSpec")
            .field("name", &self.name)
            .field("url", &redacted_url(self.url.as_str()))
            .field("secret_env", &self.secret_env)
            .field("events", &self.events)
            .field("allow_private", &self.allow_private)
            .finish_non_exhaustive()
    }
}

impl WebhookSpec {
    /// Whether this endpoint takes events of type `kind`.
    pub fn wants(&self, kind: &str) -> bool {
        self.events.iter().any(|e| e == kind)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWebhook {
    url: String,
    secret_env: String,
    events: Option<Vec<String>>,
    #[serde(default)]
    allow_private: bool,
    timeout_ms: Option<u64>,
    retry_delays_ms: Option<Vec<u64>>,
    max_pending: Option<u64>,
}

impl RawWebhook {
    pub(super) fn validate(
        self,
        org: &str,
        name: String,
        check: &mut Check<'_>,
    ) -> Option<WebhookSpec> {
        let at = |field: &str| format!("orgs.{org}.webhooks.{name}.{field}");
        let before = check.count();
        let url = endpoint_url(&at("url"), &self.url, self.allow_private, check);
        let secret = check
            .secret_from_env(&at("secret_env"), &self.secret_env)
            .filter(|s| signing_key(&at("secret_env"), s, check));
        let events = match self.events {
            None => EVENT_TYPES.iter().map(|e| e.to_string()).collect(),
            Some(list) => {
                if list.is_empty() {
                    check.push(
                        at("events"),
                        "is empty, so the endpoint would get nothing",
                        format!(
                            "list some of: {}, or remove it for all",
                            EVENT_TYPES.join(", ")
                        ),
                    );
                }
                for e in list.iter().filter(|e| !EVENT_TYPES.contains(&e.as_str())) {
                    check.push(
                        at("events"),
                        format!("names `{e}`, which is not an event type"),
                        format!("use some of: {}", EVENT_TYPES.join(", ")),
                    );
                }
                list
            }
        };
        let timeout = check.ranged(
            &at("timeout_ms"),
            self.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS),
            DEFAULT_TIMEOUT_MS,
            1..=60_000,
        );
        let retry_delays: Vec<Duration> = match self.retry_delays_ms {
            None => DEFAULT_RETRY_DELAYS_MS.to_vec(),
            Some(list) if list.len() > 20 => {
                check.push(
                    at("retry_delays_ms"),
                    format!("has {} delays, more than 20", list.len()),
                    "give at most 20 delays, or remove it for the default schedule",
                );
                list
            }
            Some(list) => list,
        }
        .into_iter()
        .map(|ms| {
            Duration::from_millis(check.ranged(&at("retry_delays_ms"), ms, 5_000, 1..=86_400_000))
        })
        .collect();
        let max_pending = check.ranged(
            &at("max_pending"),
            self.max_pending.unwrap_or(DEFAULT_MAX_PENDING),
            DEFAULT_MAX_PENDING,
            1..=1_000_000,
        ) as usize;
        if check.count() > before {
            return None;
        }
        Some(WebhookSpec {
            name,
            url: url?,
            secret: secret?,
            secret_env: self.secret_env,
            events,
            allow_private: self.allow_private,
            timeout: Duration::from_millis(timeout),
            retry_delays,
            max_pending,
        })
    }
}

/// The URL, checked as §8 checks Vapi's control URL: https without credentials, and a host
/// that is not a private, loopback or link-local address unless `allow_private` (which also
/// allows http). Names are resolved again at every connect, where the same rule applies.
fn endpoint_url(
    field: &str,
    text: &str,
    allow_private: bool,
    check: &mut Check<'_>,
) -> Option<url::Url> {
    let shown = redacted_url(text);
    let problem = match url::Url::parse(text) {
        Err(e) => format!("`{shown}` is not a URL ({e})"),
        Ok(u) if !u.username().is_empty() || u.password().is_some() => {
            format!("`{shown}` holds a user name or password, which would leak into logs")
        }
        Ok(u) if u.host().is_none() => format!("`{shown}` has no host"),
        Ok(u) if allow_private && !matches!(u.scheme(), "http" | "https") => {
            format!("`{shown}` is neither http nor https")
        }
        Ok(u) if !allow_private && u.scheme() != "https" => {
            format!("`{shown}` is not https")
        }
        Ok(u) if !allow_private && host_is_private(&u) => {
            format!("`{shown}` is a private, loopback or link-local address")
        }
        Ok(u) => return Some(u),
    };
    check.push(
        field,
        problem,
        "give an https URL on a public host, or set allow_private = true for an internal service",
    );
    None
}

/// Whether the URL's host is an address (or `localhost`) that is not public; names are
/// judged by what they resolve to at connect time.
pub fn host_is_private(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => !is_public(ip.into()),
        Some(url::Host::Ipv6(ip)) => !is_public(ip.into()),
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
        None => true,
    }
}

/// Whether the secret is a Standard Webhooks signing key: `whsec_` and the base64 of 24 to
/// 64 bytes. The problem never repeats the value.
fn signing_key(field: &str, secret: &SecretString, check: &mut Check<'_>) -> bool {
    let text = secret.expose_secret().trim();
    let bytes = text
        .strip_prefix("whsec_")
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok());
    match bytes {
        Some(b) if (24..=64).contains(&b.len()) => true,
        _ => {
            check.push(
                field,
                "names a variable that does not hold a signing key (`whsec_` and the base64 of 24 to 64 random bytes); the value is not shown",
                "generate one, e.g. `echo whsec_$(openssl rand -base64 32)`, and export it",
            );
            false
        }
    }
}

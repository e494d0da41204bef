//! Configuration: `providers.toml` under `CALLMUX_*` environment overrides (figment), validated
//! as a whole into typed specs, every problem reported at once with its field and its fix.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::http::HeaderValue;
use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::Deserialize;

use crate::auth::KeyDigest;
use crate::breaker::BreakerSettings;
use crate::provider::{bland, twilio, HttpSettings};

pub const DEFAULT_BIND: &str = "127.0.0.1:8080";
pub const DEFAULT_AUTH_CACHE_TTL_MS: u64 = 10_000;
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: u64 = 4_096;
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 30_000;
pub const DEFAULT_MAX_HEADER_BYTES: u64 = 16 * 1024;
pub const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 10_000;
pub const DEFAULT_HEADER_READ_TIMEOUT_MS: u64 = 10_000;
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 60_000;
pub const DEFAULT_MAX_CONNECTIONS: u64 = 20_000;

/// A loaded, validated configuration. Holds no plain-text keys: org keys are kept as digests
/// and upstream keys as sensitive header values.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    /// Sorted by id.
    pub orgs: Vec<OrgSpec>,
    /// Sorted by id.
    pub providers: Vec<ProviderSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    pub bind: SocketAddr,
    /// How long a Bland key accepted by its upstream is trusted without asking again.
    pub auth_cache_ttl: Duration,
    pub max_concurrent_requests: usize,
    pub request_timeout: Duration,
    pub max_header_bytes: usize,
    /// After SIGTERM, how long in-flight requests may take before the process exits anyway.
    pub shutdown_grace: Duration,
    /// From a connection opening, or its next request's first byte, to a complete head.
    pub header_read_timeout: Duration,
    /// How long a kept-alive connection may sit between requests.
    pub idle_timeout: Duration,
    /// Connections open at once; beyond this, new ones wait to be accepted.
    pub max_connections: usize,
}

#[derive(Debug, Clone)]
pub struct OrgSpec {
    /// The `x-bland-org-id` value that names the org.
    pub id: String,
    pub auth: OrgAuth,
    /// The providers the org may see, in the order that breaks ties in its merged list.
    pub providers: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum OrgAuth {
    /// A key issued by callmux, compared by SHA-256 digest.
    Key {
        digest: KeyDigest,
        source: KeySource,
    },
    /// The caller's own Bland key, checked by forwarding it to this `bland` provider.
    Upstream { provider: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Env(String),
    Sha256,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderSpec {
    pub id: String,
    pub http: HttpSettings,
    /// How long an answer is served to later requests; zero shares it only while in flight.
    pub cache_ttl: Duration,
    pub breaker: BreakerSettings,
    pub kind: KindSpec,
}

/// One arm per backend kind; adding a kind is a file in `provider/` plus an arm here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KindSpec {
    TwilioMediaStream(twilio::Spec),
    Bland(bland::Spec),
}

impl KindSpec {
    pub const NAMES: &'static [&'static str] = &["twilio-media-stream", "bland"];

    pub fn name(&self) -> &'static str {
        match self {
            Self::TwilioMediaStream(_) => "twilio-media-stream",
            Self::Bland(_) => "bland",
        }
    }
}

impl Config {
    pub fn org(&self, id: &str) -> Option<&OrgSpec> {
        self.orgs
            .binary_search_by(|o| o.id.as_str().cmp(id))
            .ok()
            .map(|i| &self.orgs[i])
    }

    pub fn provider(&self, id: &str) -> Option<&ProviderSpec> {
        self.providers
            .binary_search_by(|p| p.id.as_str().cmp(id))
            .ok()
            .map(|i| &self.providers[i])
    }

    /// Loads `path` under the process's `CALLMUX_*` variables, reading key variables from the
    /// process environment.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        if !path.is_file() {
            return Err(ConfigError::NotFound(path.to_owned()));
        }
        let figment = Figment::new().merge(Toml::file(path)).merge(
            Env::prefixed("CALLMUX_")
                .ignore(&["CONFIG", "LOG_FORMAT"])
                .split("__"),
        );
        Self::from_figment(&figment, &|name| std::env::var(name).ok())
    }

    /// Validates whatever `figment` holds, reading the variables named by `api_key_env` through
    /// `env` (tests pass a map rather than touching the process environment).
    pub fn from_figment(
        figment: &Figment,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let raw: RawConfig = figment
            .extract()
            .map_err(|e| ConfigError::Invalid(e.into_iter().map(issue_from_figment).collect()))?;
        raw.validate(env).map_err(ConfigError::Invalid)
    }

    /// What `check-config` prints: every org and provider, with secrets masked.
    pub fn summary(&self) -> String {
        use fmt::Write;
        let mut s = String::new();
        let _ = writeln!(s, "server: bind {}", self.server.bind);
        let _ = writeln!(s, "orgs ({}):", self.orgs.len());
        for org in &self.orgs {
            let auth = match &org.auth {
                OrgAuth::Key {
                    source: KeySource::Env(var),
                    ..
                } => format!("callmux key from ${var} (set, value hidden)"),
                OrgAuth::Key {
                    source: KeySource::Sha256,
                    ..
                } => "callmux key by sha256 digest (hidden)".to_string(),
                OrgAuth::Upstream { provider } => {
                    format!("the caller's own Bland key, checked by provider `{provider}`")
                }
            };
            let _ = writeln!(s, "  {}: {auth}; sees {}", org.id, org.providers.join(", "));
        }
        let _ = writeln!(s, "providers ({}):", self.providers.len());
        for p in &self.providers {
            let (url, extra) = match &p.kind {
                KindSpec::TwilioMediaStream(t) => (&t.base_url, String::new()),
                KindSpec::Bland(b) => (
                    &b.base_url,
                    match &b.credentials {
                        Some(_) => "; own api key (hidden) and org id (hidden)".to_string(),
                        None => "; forwards the caller's Bland key".to_string(),
                    },
                ),
            };
            let _ = writeln!(
                s,
                "  {}: {} at {url}; timeout {} ms (connect {} ms, {} retries); max body {} bytes; \
                 cache {} ms; circuit opens after {} failures for {} ms{extra}",
                p.id,
                p.kind.name(),
                p.http.timeout.as_millis(),
                p.http.connect_timeout.as_millis(),
                p.http.retries,
                p.http.max_body_bytes,
                p.cache_ttl.as_millis(),
                p.breaker.failures,
                p.breaker.cooldown.as_millis(),
            );
        }
        s
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "config file {} not found: pass --config PATH, set CALLMUX_CONFIG, \
         or run from the directory holding providers.toml", .0.display()
    )]
    NotFound(PathBuf),
    #[error("{}", Issues(.0))]
    Invalid(Vec<ConfigIssue>),
}

/// One problem with one field, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Dotted path, e.g. `providers.agents.base_url`.
    pub field: String,
    pub problem: String,
    pub fix: String,
}

impl ConfigIssue {
    fn new(field: impl Into<String>, problem: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}\n    fix: {}", self.field, self.problem, self.fix)
    }
}

struct Issues<'a>(&'a [ConfigIssue]);

impl fmt::Display for Issues<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(
            f,
            "invalid configuration ({n} problem{}):",
            if n == 1 { "" } else { "s" }
        )?;
        for issue in self.0 {
            write!(f, "\n  - {issue}")?;
        }
        Ok(())
    }
}

fn issue_from_figment(e: figment::Error) -> ConfigIssue {
    use figment::error::Kind;
    let source = match &e.metadata {
        Some(m) if m.name.contains("environment") => {
            let profile = e.profile.clone().unwrap_or_default();
            format!(" (set by {})", m.interpolate(&profile, &e.path))
        }
        Some(m) => m
            .source
            .as_ref()
            .map(|s| format!(" (in {s})"))
            .unwrap_or_default(),
        None => String::new(),
    };
    let field = if e.path.is_empty() {
        "config".to_string()
    } else {
        e.path.join(".")
    };
    let fix = match &e.kind {
        Kind::UnknownField(_, expected) => {
            format!("remove it, or use one of: {}", expected.join(", "))
        }
        Kind::MissingField(name) => format!("add `{name}`"),
        Kind::InvalidType(_, expected) => format!("give {expected}"),
        Kind::Message(_) => "correct the TOML syntax at the place named".to_string(),
        _ => "see the configuration reference in README.md".to_string(),
    };
    let problem = match &e.kind {
        Kind::UnknownField(name, _) => format!("unknown field `{name}`"),
        kind => kind.to_string(),
    };
    ConfigIssue::new(field, format!("{problem}{source}"), fix)
}

// ---- the file's shape, before validation ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    orgs: BTreeMap<String, RawOrg>,
    #[serde(default)]
    providers: BTreeMap<String, RawProvider>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    bind: Option<String>,
    auth_cache_ttl_ms: Option<u64>,
    max_concurrent_requests: Option<u64>,
    request_timeout_ms: Option<u64>,
    max_header_bytes: Option<u64>,
    shutdown_grace_ms: Option<u64>,
    header_read_timeout_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    max_connections: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOrg {
    api_key_env: Option<String>,
    api_key_sha256: Option<String>,
    auth: Option<String>,
    #[serde(default)]
    providers: Vec<String>,
}

/// Every field any kind takes; each kind says which of them apply to it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    kind: String,
    base_url: Option<String>,
    timeout_ms: Option<u64>,
    connect_timeout_ms: Option<u64>,
    max_body_bytes: Option<u64>,
    retries: Option<u64>,
    cache_ttl_ms: Option<u64>,
    circuit_failures: Option<u64>,
    circuit_cooldown_ms: Option<u64>,
    api_key_env: Option<String>,
    org_id: Option<String>,
}

type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

impl RawConfig {
    fn validate(self, env: EnvLookup<'_>) -> Result<Config, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        // A provider that fails validation is still defined: orgs naming it are not also
        // reported as naming an unknown provider.
        let defined: HashSet<String> = self.providers.keys().cloned().collect();
        let server = self.server.validate(&mut issues);
        let providers: Vec<ProviderSpec> = self
            .providers
            .into_iter()
            .filter_map(|(id, raw)| raw.validate(id, env, &mut issues))
            .collect();
        let known: BTreeMap<&str, &ProviderSpec> =
            providers.iter().map(|p| (p.id.as_str(), p)).collect();
        let mut orgs = Vec::new();
        if self.orgs.is_empty() {
            issues.push(ConfigIssue::new(
                "orgs",
                "no organisation is defined, so every request would be refused",
                "add an [orgs.<x-bland-org-id>] table with a key and its providers",
            ));
        }
        for (id, raw) in self.orgs {
            if let Some(org) = raw.validate(id, &known, &defined, env, &mut issues) {
                orgs.push(org);
            }
        }
        if issues.is_empty() {
            Ok(Config {
                server,
                orgs,
                providers,
            })
        } else {
            Err(issues)
        }
    }
}

impl RawServer {
    fn validate(self, issues: &mut Vec<ConfigIssue>) -> ServerConfig {
        let bind_text = self.bind.unwrap_or_else(|| DEFAULT_BIND.to_string());
        let bind = bind_text.parse().unwrap_or_else(|_| {
            issues.push(ConfigIssue::new(
                "server.bind",
                format!("`{bind_text}` is not an IP:port address"),
                "use an address such as 127.0.0.1:8080 (or 0.0.0.0:8080 to listen on every interface)",
            ));
            DEFAULT_BIND.parse().expect("default bind address parses")
        });
        let mut server = |field: &str, value: Option<u64>, default: u64, range| {
            ranged(&format!("server.{field}"), value, default, range, issues)
        };
        let max_concurrent_requests = server(
            "max_concurrent_requests",
            self.max_concurrent_requests,
            DEFAULT_MAX_CONCURRENT_REQUESTS,
            1..=1_000_000,
        ) as usize;
        let request_timeout = Duration::from_millis(server(
            "request_timeout_ms",
            self.request_timeout_ms,
            DEFAULT_REQUEST_TIMEOUT_MS,
            1..=ONE_DAY_MS,
        ));
        let max_header_bytes = server(
            "max_header_bytes",
            self.max_header_bytes,
            DEFAULT_MAX_HEADER_BYTES,
            1..=1024 * 1024,
        ) as usize;
        let auth_cache_ttl = Duration::from_millis(server(
            "auth_cache_ttl_ms",
            self.auth_cache_ttl_ms,
            DEFAULT_AUTH_CACHE_TTL_MS,
            0..=ONE_DAY_MS,
        ));
        let shutdown_grace = Duration::from_millis(server(
            "shutdown_grace_ms",
            self.shutdown_grace_ms,
            DEFAULT_SHUTDOWN_GRACE_MS,
            0..=ONE_DAY_MS,
        ));
        let header_read_timeout = Duration::from_millis(server(
            "header_read_timeout_ms",
            self.header_read_timeout_ms,
            DEFAULT_HEADER_READ_TIMEOUT_MS,
            1..=ONE_DAY_MS,
        ));
        let idle_timeout = Duration::from_millis(server(
            "idle_timeout_ms",
            self.idle_timeout_ms,
            DEFAULT_IDLE_TIMEOUT_MS,
            1..=ONE_DAY_MS,
        ));
        let max_connections = server(
            "max_connections",
            self.max_connections,
            DEFAULT_MAX_CONNECTIONS,
            1..=1_000_000,
        ) as usize;
        ServerConfig {
            bind,
            auth_cache_ttl,
            max_concurrent_requests,
            request_timeout,
            max_header_bytes,
            shutdown_grace,
            header_read_timeout,
            idle_timeout,
            max_connections,
        }
    }
}

impl RawProvider {
    fn validate(
        self,
        id: String,
        env: EnvLookup<'_>,
        issues: &mut Vec<ConfigIssue>,
    ) -> Option<ProviderSpec> {
        let at = |field: &str| format!("providers.{id}.{field}");
        let before = issues.len();
        let mut number = |field: &str, value: Option<u64>, default: u64, range| {
            ranged(&at(field), value, default, range, issues)
        };
        let timeout = number(
            "timeout_ms",
            self.timeout_ms,
            HttpSettings::DEFAULT_TIMEOUT_MS,
            1..=ONE_DAY_MS,
        );
        let http = HttpSettings {
            timeout: Duration::from_millis(timeout),
            connect_timeout: Duration::from_millis(number(
                "connect_timeout_ms",
                self.connect_timeout_ms,
                HttpSettings::DEFAULT_CONNECT_TIMEOUT_MS.min(timeout),
                1..=ONE_DAY_MS,
            )),
            max_body_bytes: number(
                "max_body_bytes",
                self.max_body_bytes,
                HttpSettings::DEFAULT_MAX_BODY_BYTES as u64,
                1..=1024 * 1024 * 1024,
            ) as usize,
            retries: number(
                "retries",
                self.retries,
                HttpSettings::DEFAULT_RETRIES.into(),
                0..=10,
            ) as u32,
        };
        let breaker = BreakerSettings {
            failures: number(
                "circuit_failures",
                self.circuit_failures,
                BreakerSettings::DEFAULT_FAILURES.into(),
                0..=1_000_000,
            ) as u32,
            cooldown: Duration::from_millis(number(
                "circuit_cooldown_ms",
                self.circuit_cooldown_ms,
                BreakerSettings::DEFAULT_COOLDOWN_MS,
                1..=ONE_DAY_MS,
            )),
        };
        let cache_ttl =
            Duration::from_millis(number("cache_ttl_ms", self.cache_ttl_ms, 0, 0..=ONE_DAY_MS));
        let kind = match self.kind.as_str() {
            "twilio-media-stream" => {
                for (field, set) in [
                    ("api_key_env", self.api_key_env.is_some()),
                    ("org_id", self.org_id.is_some()),
                ] {
                    if set {
                        issues.push(ConfigIssue::new(
                            at(field),
                            "does not apply to kind twilio-media-stream (agent servers take no credentials)",
                            "remove it",
                        ));
                    }
                }
                let base_url = match &self.base_url {
                    Some(u) => base_url(&at("base_url"), u, issues),
                    None => {
                        issues.push(ConfigIssue::new(
                            at("base_url"),
                            "is required for kind twilio-media-stream",
                            "set it to the agent server's address, e.g. \"http://127.0.0.1:9000\"",
                        ));
                        None
                    }
                };
                base_url.map(|base_url| KindSpec::TwilioMediaStream(twilio::Spec { base_url }))
            }
            "bland" => {
                let url_text = self.base_url.as_deref().unwrap_or(bland::DEFAULT_BASE_URL);
                let base_url = base_url(&at("base_url"), url_text, issues);
                let credentials = match (self.api_key_env, self.org_id) {
                    (None, None) => None,
                    (Some(var), Some(org_id)) => {
                        let field = at("api_key_env");
                        let key = secret_from_env(&field, &var, env, issues)
                            .and_then(|k| sensitive_header(&field, &var, &k, issues));
                        let org_id = header_value(&at("org_id"), &org_id, issues);
                        key.zip(org_id)
                            .map(|(api_key, org_id)| bland::Credentials { api_key, org_id })
                    }
                    (Some(_), None) => {
                        issues.push(ConfigIssue::new(
                            at("org_id"),
                            "is required when api_key_env is set (Bland needs both headers)",
                            "set org_id to the Bland org id the key belongs to",
                        ));
                        None
                    }
                    (None, Some(_)) => {
                        issues.push(ConfigIssue::new(
                            at("api_key_env"),
                            "is required when org_id is set",
                            "set api_key_env to the variable holding the Bland key, or remove org_id to forward callers' keys",
                        ));
                        None
                    }
                };
                base_url.map(|base_url| {
                    KindSpec::Bland(bland::Spec {
                        base_url,
                        credentials,
                    })
                })
            }
            other => {
                issues.push(ConfigIssue::new(
                    at("kind"),
                    format!("unknown kind `{other}`"),
                    format!("use one of: {}", KindSpec::NAMES.join(", ")),
                ));
                None
            }
        };
        if issues.len() > before {
            return None;
        }
        kind.map(|kind| ProviderSpec {
            id,
            http,
            cache_ttl,
            breaker,
            kind,
        })
    }
}

impl RawOrg {
    fn validate(
        self,
        id: String,
        known: &BTreeMap<&str, &ProviderSpec>,
        defined: &HashSet<String>,
        env: EnvLookup<'_>,
        issues: &mut Vec<ConfigIssue>,
    ) -> Option<OrgSpec> {
        let at = |field: &str| format!("orgs.{id}.{field}");
        let before = issues.len();
        let auth = match (self.api_key_env, self.api_key_sha256, self.auth) {
            (Some(var), None, None) => {
                secret_from_env(&at("api_key_env"), &var, env, issues).map(|key| OrgAuth::Key {
                    digest: KeyDigest::of(&key),
                    source: KeySource::Env(var),
                })
            }
            (None, Some(hex), None) => match KeyDigest::from_hex(&hex) {
                Ok(digest) => Some(OrgAuth::Key {
                    digest,
                    source: KeySource::Sha256,
                }),
                Err(problem) => {
                    issues.push(ConfigIssue::new(
                        at("api_key_sha256"),
                        problem,
                        "give the 64 hex digits printed by `callmux hash-key` (the key on its stdin)",
                    ));
                    None
                }
            },
            (None, None, Some(provider)) => Some(OrgAuth::Upstream { provider }),
            (None, None, None) => {
                issues.push(ConfigIssue::new(
                    format!("orgs.{id}"),
                    "has no way to authenticate",
                    "set one of api_key_env, api_key_sha256, or auth = \"<bland provider id>\"",
                ));
                None
            }
            _ => {
                issues.push(ConfigIssue::new(
                    format!("orgs.{id}"),
                    "sets more than one of api_key_env, api_key_sha256 and auth",
                    "keep exactly one",
                ));
                None
            }
        };

        if self.providers.is_empty() {
            issues.push(ConfigIssue::new(
                at("providers"),
                "is empty, so the org would always see an empty list",
                "list the ids of the providers the org may see, e.g. [\"agents\"]",
            ));
        }
        let mut seen = HashSet::new();
        for p in &self.providers {
            if !seen.insert(p.as_str()) {
                issues.push(ConfigIssue::new(
                    at("providers"),
                    format!("names `{p}` twice"),
                    "list each provider once",
                ));
            } else if !known.contains_key(p.as_str()) && !defined.contains(p) {
                issues.push(ConfigIssue::new(
                    at("providers"),
                    format!("names `{p}`, but no provider `{p}` is defined"),
                    format!(
                        "define [providers.{p}], or use one of: {}",
                        known.keys().copied().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
        }

        let forwards = |p: &str| {
            matches!(known.get(p).map(|s| &s.kind),
                Some(KindSpec::Bland(b)) if b.credentials.is_none())
        };
        match &auth {
            Some(OrgAuth::Upstream { provider }) => match known.get(provider.as_str()) {
                _ if !self.providers.contains(provider) => issues.push(ConfigIssue::new(
                    at("auth"),
                    format!("names `{provider}`, which is not in the org's providers"),
                    format!("add \"{provider}\" to orgs.{id}.providers"),
                )),
                Some(_) if forwards(provider) => {}
                Some(_) => issues.push(ConfigIssue::new(
                    at("auth"),
                    format!(
                        "names `{provider}`, which is not a bland provider that forwards the caller's key"
                    ),
                    "name a kind = \"bland\" provider without api_key_env, or authenticate with api_key_env / api_key_sha256",
                )),
                None => {} // reported above as an unknown provider
            },
            Some(OrgAuth::Key { .. }) => {
                for p in self.providers.iter().filter(|p| forwards(p)) {
                    issues.push(ConfigIssue::new(
                        at("providers"),
                        format!(
                            "names `{p}`, a bland provider that forwards the caller's key, but this org's callers \
                             hold callmux keys, which must never be sent upstream"
                        ),
                        format!(
                            "give providers.{p} its own api_key_env and org_id, or set orgs.{id}.auth = \"{p}\" \
                             so callers use their Bland keys"
                        ),
                    ));
                }
            }
            None => {}
        }
        if issues.len() > before {
            return None;
        }
        auth.map(|auth| OrgSpec {
            id,
            auth,
            providers: self.providers,
        })
    }
}

/// Durations are capped at a day: beyond that they are mistakes, and some (cache lifetimes,
/// deadlines added to the current time) would overflow.
const ONE_DAY_MS: u64 = 86_400_000;

/// A number from the file, or `default`, checked against `range`.
fn ranged(
    field: &str,
    value: Option<u64>,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
    issues: &mut Vec<ConfigIssue>,
) -> u64 {
    match value {
        Some(v) if !range.contains(&v) => {
            issues.push(ConfigIssue::new(
                field,
                format!("is {v}, outside {}..={}", range.start(), range.end()),
                format!("remove it for the default ({default}) or give a number in that range"),
            ));
            default
        }
        Some(v) => v,
        None => default,
    }
}

fn base_url(field: &str, text: &str, issues: &mut Vec<ConfigIssue>) -> Option<url::Url> {
    // Messages show the URL without user info, query or fragment: any of them may hold a
    // credential, and a malformed URL is no less secret than a valid one.
    let shown = redacted_url(text);
    let problem = match url::Url::parse(text) {
        Err(e) => format!("`{shown}` is not a URL ({e})"),
        Ok(u) if !u.username().is_empty() || u.password().is_some() => {
            format!("`{shown}` holds a user name or password, which would leak into logs")
        }
        Ok(u) if !matches!(u.scheme(), "http" | "https") => {
            format!("`{shown}` is not an http or https URL")
        }
        Ok(u) if u.query().is_some() || u.fragment().is_some() => {
            format!("`{shown}` has a query or fragment")
        }
        Ok(u) if u.host_str().is_none_or(str::is_empty) => format!("`{shown}` has no host"),
        Ok(u) => return Some(u),
    };
    issues.push(ConfigIssue::new(
        field,
        problem,
        "give the server's address, such as \"http://127.0.0.1:9000\" or \"https://api.bland.ai\"",
    ));
    None
}

/// `text` with anything before an `@` in the authority replaced, and any query or fragment
/// cut, done on the text itself so that it works on URLs that do not parse.
fn redacted_url(text: &str) -> String {
    let text = text.split(['?', '#']).next().unwrap_or_default();
    let (scheme, rest) = match text.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), text),
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}***@{}", &rest[at + 1..]),
        None => format!("{scheme}{rest}"),
    }
}

fn secret_from_env(
    field: &str,
    var: &str,
    env: EnvLookup<'_>,
    issues: &mut Vec<ConfigIssue>,
) -> Option<secrecy::SecretString> {
    if var.is_empty() || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        // Likely the key itself pasted where its variable's name belongs: don't show it.
        issues.push(ConfigIssue::new(
            field,
            "is not an environment variable name (letters, digits and _ only); the value is not shown in case it is a key",
            "give the name of the variable that holds the key, e.g. \"ACME_API_KEY\", never the key itself",
        ));
        return None;
    }
    match env(var) {
        Some(v) if !v.trim().is_empty() => Some(secrecy::SecretString::from(v)),
        Some(_) => {
            issues.push(ConfigIssue::new(
                field,
                format!("environment variable {var} is empty"),
                format!("export {var} with the key"),
            ));
            None
        }
        None => {
            issues.push(ConfigIssue::new(
                field,
                format!("environment variable {var} is not set"),
                format!("export {var} with the key before starting callmux"),
            ));
            None
        }
    }
}

fn header_value(field: &str, text: &str, issues: &mut Vec<ConfigIssue>) -> Option<HeaderValue> {
    match HeaderValue::from_str(text) {
        Ok(v) if !text.is_empty() => Some(v),
        _ => {
            issues.push(ConfigIssue::new(
                field,
                "is empty or holds characters not allowed in an HTTP header",
                "use the id exactly as your Bland dashboard shows it",
            ));
            None
        }
    }
}

/// The upstream key as a header value marked sensitive, so `Debug` redacts it.
fn sensitive_header(
    field: &str,
    var: &str,
    key: &secrecy::SecretString,
    issues: &mut Vec<ConfigIssue>,
) -> Option<HeaderValue> {
    use secrecy::ExposeSecret;
    match HeaderValue::from_str(key.expose_secret()) {
        Ok(mut v) => {
            v.set_sensitive(true);
            Some(v)
        }
        Err(_) => {
            issues.push(ConfigIssue::new(
                field,
                format!(
                    "environment variable {var} holds characters not allowed in an HTTP header"
                ),
                format!("export {var} with the key exactly as Bland issued it, without newlines"),
            ));
            None
        }
    }
}

//! Configuration: built-in defaults (`defaults.toml`), then `providers.toml`, then `CALLMUX_*`
//! environment overrides (figment), validated as a whole into typed settings, every problem
//! reported at once with its field and its fix. Each provider kind validates its own part.

mod passthrough;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::Value;
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::keys::KeyDigest;
use crate::provider::{registry, Common, KindSettings, RawCommon};
pub use crate::settings::ConfigIssue;
use crate::settings::{issue_from_figment, Check, ONE_DAY_MS};
use crate::state::settings::RawState;
pub use crate::state::settings::StateConfig;

/// The built-in defaults, the bottom layer.
pub const DEFAULTS: &str = include_str!("defaults.toml");

#[derive(Deserialize)]
struct Defaults {
    server: RawServer,
    provider: RawCommon,
    state: RawState,
}

static BUILT_IN: LazyLock<Defaults> = LazyLock::new(|| {
    Figment::from(Toml::string(DEFAULTS))
        .extract()
        .expect("the built-in defaults are valid")
});

/// A loaded, validated configuration. Holds no plain-text keys: org keys are kept as digests
/// and upstream keys as sensitive header values.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    /// Sorted by id.
    pub orgs: Vec<OrgSpec>,
    /// Sorted by id.
    pub providers: Vec<ProviderSpec>,
    /// `[state]`: what replicas share, and where.
    pub state: StateConfig,
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
    /// Live streams open at once; beyond this, a new one is refused with 503.
    pub max_streams: usize,
    /// The org a request with a key and no `x-bland-org-id` is taken for when the key is no
    /// callmux key: an org whose callers bring their Bland keys, as Bland's SDKs send them.
    pub bland_default_org: Option<String>,
}

#[derive(Debug, Clone)]
pub struct OrgSpec {
    /// The `x-bland-org-id` value that names the org.
    pub id: String,
    pub auth: OrgAuth,
    /// The providers the org may see, in the order that breaks ties in its merged list.
    pub providers: Vec<String>,
    /// The `bland` provider the org's other Bland routes are forwarded to: its
    /// `bland_passthrough`, else the provider it authenticates through; `None`: not forwarded.
    pub passthrough: Option<String>,
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

/// One provider: the settings every kind shares, and its kind's own.
#[derive(Debug, Clone)]
pub struct ProviderSpec {
    pub id: String,
    pub common: Common,
    pub kind: Arc<dyn KindSettings>,
}

impl PartialEq for ProviderSpec {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id && self.common == other.common && *self.kind == *other.kind
    }
}

impl Config {
    pub fn org(&self, id: &str) -> Option<&OrgSpec> {
        self.orgs
            .binary_search_by(|o| o.id.as_str().cmp(id))
            .ok()
            .map(|i| &self.orgs[i])
    }

    /// The org a Bland key alone is taken for (`server.bland_default_org`).
    pub fn bland_default_org(&self) -> Option<&OrgSpec> {
        self.org(self.server.bland_default_org.as_deref()?)
    }

    pub fn provider(&self, id: &str) -> Option<&ProviderSpec> {
        self.providers
            .binary_search_by(|p| p.id.as_str().cmp(id))
            .ok()
            .map(|i| &self.providers[i])
    }

    /// Loads `path` under the process's `CALLMUX_*` variables, reading key variables from the
    /// process environment. Relative paths in the file start at the file's folder.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        if !path.is_file() {
            return Err(ConfigError::NotFound(path.to_owned()));
        }
        let figment = Figment::new().merge(Toml::file(path)).merge(
            Env::prefixed("CALLMUX_")
                .ignore(&["CONFIG", "LOG_FORMAT"])
                .split("__"),
        );
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_owned);
        Self::validate(&figment, &|name| std::env::var(name).ok(), dir)
    }

    /// Validates whatever `figment` holds over the built-in defaults, reading the variables
    /// named by `api_key_env` through `env` (tests pass a map rather than touching the
    /// process environment). Relative paths start at the working directory.
    pub fn from_figment(
        figment: &Figment,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        Self::validate(figment, env, PathBuf::from("."))
    }

    fn validate(
        figment: &Figment,
        env: &dyn Fn(&str) -> Option<String>,
        dir: PathBuf,
    ) -> Result<Self, ConfigError> {
        #[derive(Serialize)]
        struct ServerLayer<'a> {
            server: &'a RawServer,
            state: &'a RawState,
        }
        let layered = Figment::from(Serialized::defaults(ServerLayer {
            server: &BUILT_IN.server,
            state: &BUILT_IN.state,
        }))
        .merge(figment.clone());
        let raw: RawConfig = layered
            .extract()
            .map_err(|e| ConfigError::Invalid(e.into_iter().map(issue_from_figment).collect()))?;
        let mut check = Check::new(env, dir);
        let config = raw.validate(&mut check);
        if check.issues.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid(check.issues))
        }
    }

    /// What `check-config` prints: every org and provider, with secrets masked.
    pub fn summary(&self) -> String {
        use fmt::Write;
        let mut s = String::new();
        let _ = writeln!(s, "server: bind {}", self.server.bind);
        if let Some(org) = &self.server.bland_default_org {
            let _ = writeln!(s, "a Bland key without x-bland-org-id is org `{org}`'s");
        }
        let _ = writeln!(s, "{}", self.state.summary());
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
            let forwards = match &org.passthrough {
                Some(p) => format!("; forwards other Bland routes to `{p}`"),
                None => String::new(),
            };
            let _ = writeln!(
                s,
                "  {}: {auth}; sees {}{forwards}",
                org.id,
                org.providers.join(", ")
            );
        }
        let _ = writeln!(s, "providers ({}):", self.providers.len());
        for p in &self.providers {
            let c = &p.common;
            let _ = writeln!(
                s,
                "  {}: {} {}; timeout {} ms (connect {} ms, retries {}, at most {} pages); \
                 max body {} bytes; cache {} ms; circuit opens after {} failures for {} ms",
                p.id,
                p.kind.kind(),
                p.kind.summary(),
                c.http.timeout.as_millis(),
                c.http.connect_timeout.as_millis(),
                c.http.retries,
                c.http.max_pages,
                c.http.max_body_bytes,
                c.cache_ttl.as_millis(),
                c.breaker.failures,
                c.breaker.cooldown.as_millis(),
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

// ---- the file's shape, before validation ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    server: RawServer,
    state: RawState,
    #[serde(default)]
    orgs: BTreeMap<String, RawOrg>,
    /// Each provider's table as written: its kind decides which fields it takes.
    #[serde(default)]
    providers: BTreeMap<String, Value>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    bind: String,
    auth_cache_ttl_ms: u64,
    max_concurrent_requests: u64,
    request_timeout_ms: u64,
    max_header_bytes: u64,
    shutdown_grace_ms: u64,
    header_read_timeout_ms: u64,
    idle_timeout_ms: u64,
    max_connections: u64,
    max_streams: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bland_default_org: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOrg {
    api_key_env: Option<String>,
    api_key_sha256: Option<String>,
    auth: Option<String>,
    #[serde(default)]
    providers: Vec<String>,
    bland_passthrough: Option<String>,
}

impl RawConfig {
    fn validate(self, check: &mut Check<'_>) -> Config {
        // A provider that fails validation is still defined: orgs naming it are not also
        // reported as naming an unknown provider.
        let defined: HashSet<String> = self.providers.keys().cloned().collect();
        let server = self.server.validate(check);
        let state = self.state.validate(&BUILT_IN.state, check);
        let providers: Vec<ProviderSpec> = self
            .providers
            .into_iter()
            .filter_map(|(id, table)| provider(id, table, check))
            .collect();
        let known: BTreeMap<&str, &ProviderSpec> =
            providers.iter().map(|p| (p.id.as_str(), p)).collect();
        let mut orgs = Vec::new();
        if self.orgs.is_empty() {
            check.push(
                "orgs",
                "no organisation is defined, so every request would be refused",
                "add an [orgs.<x-bland-org-id>] table with a key and its providers",
            );
        }
        if let Some(id) = &server.bland_default_org {
            default_org(id, &self.orgs, check);
        }
        let listing = passthrough::Listing::of(&self.orgs);
        for (id, raw) in self.orgs {
            if let Some(org) = raw.validate(id, &known, &defined, &listing, check) {
                orgs.push(org);
            }
        }
        Config {
            server,
            orgs,
            providers,
            state,
        }
    }
}

/// `server.bland_default_org` must name an org whose callers bring their Bland keys: a key
/// alone is then checked by that org's Bland provider. An org that holds callmux keys is
/// never the default, so a key no org issued is never taken as one of its callers.
fn default_org(id: &str, orgs: &BTreeMap<String, RawOrg>, check: &mut Check<'_>) {
    let field = "server.bland_default_org";
    match orgs.get(id) {
        None => check.push(
            field,
            format!("names `{id}`, which is not an org"),
            "set it to the id of an [orgs.<id>] table with auth = \"<bland provider>\", or remove it",
        ),
        Some(org) if org.auth.is_none() => check.push(
            field,
            format!(
                "names `{id}`, whose callers hold callmux keys; only an org whose callers bring \
                 their own Bland keys (auth = \"<bland provider>\") can be found by a Bland key alone"
            ),
            format!("set orgs.{id}.auth to a bland provider, or name another org, or remove it"),
        ),
        Some(_) if axum::http::HeaderValue::from_str(id).is_err() => check.push(
            field,
            format!("names `{id}`, which cannot be sent to Bland as x-bland-org-id"),
            "name an org whose id is the Bland org id, in plain text",
        ),
        Some(_) => {}
    }
}

impl RawServer {
    fn validate(self, check: &mut Check<'_>) -> ServerConfig {
        let defaults = &BUILT_IN.server;
        let bind = self.bind.parse().unwrap_or_else(|_| {
            check.push(
                "server.bind",
                format!("`{}` is not an IP:port address", self.bind),
                "use an address such as 127.0.0.1:8080 (or 0.0.0.0:8080 to listen on every interface)",
            );
            defaults.bind.parse().expect("default bind address parses")
        });
        let mut n = |field: &str, value: u64, default: u64, range| {
            check.ranged(&format!("server.{field}"), value, default, range)
        };
        let ms = Duration::from_millis;
        ServerConfig {
            bind,
            max_concurrent_requests: n(
                "max_concurrent_requests",
                self.max_concurrent_requests,
                defaults.max_concurrent_requests,
                1..=1_000_000,
            ) as usize,
            request_timeout: ms(n(
                "request_timeout_ms",
                self.request_timeout_ms,
                defaults.request_timeout_ms,
                1..=ONE_DAY_MS,
            )),
            max_header_bytes: n(
                "max_header_bytes",
                self.max_header_bytes,
                defaults.max_header_bytes,
                1..=1024 * 1024,
            ) as usize,
            auth_cache_ttl: ms(n(
                "auth_cache_ttl_ms",
                self.auth_cache_ttl_ms,
                defaults.auth_cache_ttl_ms,
                0..=ONE_DAY_MS,
            )),
            shutdown_grace: ms(n(
                "shutdown_grace_ms",
                self.shutdown_grace_ms,
                defaults.shutdown_grace_ms,
                0..=ONE_DAY_MS,
            )),
            header_read_timeout: ms(n(
                "header_read_timeout_ms",
                self.header_read_timeout_ms,
                defaults.header_read_timeout_ms,
                1..=ONE_DAY_MS,
            )),
            idle_timeout: ms(n(
                "idle_timeout_ms",
                self.idle_timeout_ms,
                defaults.idle_timeout_ms,
                1..=ONE_DAY_MS,
            )),
            max_connections: n(
                "max_connections",
                self.max_connections,
                defaults.max_connections,
                1..=1_000_000,
            ) as usize,
            max_streams: n(
                "max_streams",
                self.max_streams,
                defaults.max_streams,
                1..=1_000_000,
            ) as usize,
            bland_default_org: self.bland_default_org,
        }
    }
}

/// One provider's table: `kind` picks the kind, the common fields are read over the built-in
/// defaults, and the kind reads the rest.
fn provider(id: String, table: Value, check: &mut Check<'_>) -> Option<ProviderSpec> {
    let at = format!("providers.{id}");
    let Value::Dict(tag, mut fields) = table else {
        check.push(
            &at,
            "is not a table",
            format!("write it as [providers.{id}] with kind = \"...\" and its settings"),
        );
        return None;
    };
    let kinds = registry::names().join(", ");
    let kind = match fields.remove("kind") {
        None => {
            check.push(
                &at,
                "missing field `kind`",
                format!("add kind = \"...\", one of: {kinds}"),
            );
            None
        }
        Some(Value::String(_, name)) => match registry::kind(&name) {
            Some(kind) => Some(kind),
            None => {
                check.push(
                    format!("{at}.kind"),
                    format!("unknown kind `{name}`"),
                    format!("use one of: {kinds}"),
                );
                None
            }
        },
        Some(_) => {
            check.push(
                format!("{at}.kind"),
                "is not a string",
                format!("use one of: {kinds}"),
            );
            None
        }
    };
    let mut common = match Value::serialize(&BUILT_IN.provider) {
        Ok(Value::Dict(_, d)) => d,
        _ => unreachable!("the built-in provider defaults serialise to a table"),
    };
    let mut own = figment::value::Dict::new();
    for (name, value) in fields {
        if RawCommon::FIELDS.contains(&name.as_str()) {
            common.insert(name, value);
        } else {
            own.insert(name, value);
        }
    }
    let before = check.count();
    let common: Option<RawCommon> = check.read(&at, &Value::Dict(tag, common), &[]);
    let common = common.map(|c| c.validate(&at, &BUILT_IN.provider, check));
    let settings = kind.and_then(|k| k.settings(&at, &Value::Dict(tag, own), check));
    if check.count() > before {
        return None;
    }
    Some(ProviderSpec {
        id,
        common: common?,
        kind: settings?,
    })
}

impl RawOrg {
    fn validate(
        self,
        id: String,
        known: &BTreeMap<&str, &ProviderSpec>,
        defined: &HashSet<String>,
        listing: &passthrough::Listing,
        check: &mut Check<'_>,
    ) -> Option<OrgSpec> {
        let at = |field: &str| format!("orgs.{id}.{field}");
        let before = check.count();
        let auth = match (self.api_key_env, self.api_key_sha256, self.auth) {
            (Some(var), None, None) => {
                check
                    .secret_from_env(&at("api_key_env"), &var)
                    .map(|key| OrgAuth::Key {
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
                    check.push(
                        at("api_key_sha256"),
                        problem,
                        "give the 64 hex digits printed by `callmux hash-key` (the key on its stdin)",
                    );
                    None
                }
            },
            (None, None, Some(provider)) => Some(OrgAuth::Upstream { provider }),
            (None, None, None) => {
                check.push(
                    format!("orgs.{id}"),
                    "has no way to authenticate",
                    "set one of api_key_env, api_key_sha256, or auth = \"<bland provider id>\"",
                );
                None
            }
            _ => {
                check.push(
                    format!("orgs.{id}"),
                    "sets more than one of api_key_env, api_key_sha256 and auth",
                    "keep exactly one",
                );
                None
            }
        };

        if self.providers.is_empty() {
            check.push(
                at("providers"),
                "is empty, so the org would always see an empty list",
                "list the ids of the providers the org may see, e.g. [\"agents\"]",
            );
        }
        let mut seen = HashSet::new();
        for p in &self.providers {
            if !seen.insert(p.as_str()) {
                check.push(
                    at("providers"),
                    format!("names `{p}` twice"),
                    "list each provider once",
                );
            } else if !known.contains_key(p.as_str()) && !defined.contains(p) {
                check.push(
                    at("providers"),
                    format!("names `{p}`, but no provider `{p}` is defined"),
                    format!(
                        "define [providers.{p}], or use one of: {}",
                        known.keys().copied().collect::<Vec<_>>().join(", ")
                    ),
                );
            }
        }

        let forwards = |p: &str| {
            known
                .get(p)
                .is_some_and(|s| s.kind.forwards_caller_credentials())
        };
        match &auth {
            Some(OrgAuth::Upstream { provider }) => match known.get(provider.as_str()) {
                _ if !self.providers.contains(provider) => check.push(
                    at("auth"),
                    format!("names `{provider}`, which is not in the org's providers"),
                    format!("add \"{provider}\" to orgs.{id}.providers"),
                ),
                Some(_) if forwards(provider) => {}
                Some(_) => check.push(
                    at("auth"),
                    format!(
                        "names `{provider}`, which is not a bland provider that forwards the caller's key"
                    ),
                    "name a kind = \"bland\" provider without api_key_env, or authenticate with api_key_env / api_key_sha256",
                ),
                None => {} // reported above as an unknown provider
            },
            Some(OrgAuth::Key { .. }) => {
                for p in self.providers.iter().filter(|p| forwards(p)) {
                    check.push(
                        at("providers"),
                        format!(
                            "names `{p}`, a bland provider that forwards the caller's key, but this org's callers \
                             hold callmux keys, which must never be sent upstream"
                        ),
                        format!(
                            "give providers.{p} its own api_key_env and org_id, or set orgs.{id}.auth = \"{p}\" \
                             so callers use their Bland keys"
                        ),
                    );
                }
            }
            None => {}
        }
        let passthrough = match (&self.bland_passthrough, &auth) {
            (Some(named), _) => {
                passthrough::checked(&id, named, &self.providers, known, defined, listing, check)
            }
            (None, Some(OrgAuth::Upstream { provider })) => Some(provider.clone()),
            (None, _) => None,
        };
        if check.count() > before {
            return None;
        }
        auth.map(|auth| OrgSpec {
            id,
            auth,
            providers: self.providers,
            passthrough,
        })
    }
}

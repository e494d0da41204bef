//! A configuration loaded from its layers (defaults, file, `CALLMUX_*` variables) and
//! validated as a whole, or every reason it was refused.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::Value;
use figment::Figment;
use serde::{Deserialize, Serialize};

use super::defaults::BUILT_IN;
use super::org::{default_org, OrgSpec, RawOrg};
use super::passthrough;
use super::provider::{provider, ProviderSpec};
use super::route::{self, RouteSpec};
use super::server::{RawServer, ServerConfig};
use super::{ConfigIssue, StateConfig};
use crate::settings::{issue_from_figment, Check};
use crate::state::settings::RawState;

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
    /// `[routes.<id>]`, sorted by id.
    pub routes: Vec<RouteSpec>,
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

    pub fn route(&self, id: &str) -> Option<&RouteSpec> {
        self.routes.iter().find(|r| r.id == id)
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
    /// Each route's table as written: each target's provider's kind reads its settings.
    #[serde(default)]
    routes: BTreeMap<String, Value>,
}

impl RawConfig {
    fn validate(self, check: &mut Check<'_>) -> Config {
        // A provider that fails validation is still defined: orgs naming it are not also
        // reported as naming an unknown provider.
        let defined: HashSet<String> = self.providers.keys().cloned().collect();
        let server = self.server.validate(&BUILT_IN.server, check);
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
        let listing = passthrough::Listing::of(
            self.orgs
                .iter()
                .map(|(id, raw)| (id, raw.providers.as_slice())),
        );
        for (id, raw) in self.orgs {
            if let Some(org) = raw.validate(id, &known, &defined, &listing, check) {
                orgs.push(org);
            }
        }
        let route_ids: HashSet<String> = self.routes.keys().cloned().collect();
        let routes = route::routes(self.routes, &known, &defined, check);
        route::check_orgs(&orgs, &routes, &route_ids, check);
        Config {
            server,
            orgs,
            providers,
            state,
            routes,
        }
    }
}

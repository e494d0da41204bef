//! `[[orgs.<id>.keys]]`: the keys an org's callers hold, each with a name, its scopes and
//! its limits, read and checked; and `caller_scopes` for callers that bring Bland keys.

use std::collections::HashSet;
use std::num::NonZeroU32;
use std::sync::Arc;

use serde::Deserialize;

use crate::keys::KeyDigest;
use crate::scope::{Scope, Scopes};
use crate::settings::Check;

/// The name part two's single key (`api_key_env` / `api_key_sha256`) is known by.
pub const DEFAULT_KEY: &str = "default";

/// The name callers who bring their own Bland keys are known by in logs and metrics.
pub const BLAND_CALLER: &str = "bland-caller";

/// One key issued to a client of the org.
#[derive(Debug, Clone)]
pub struct KeySpec {
    /// How the key is named in logs, metrics, stream close reasons and refusals.
    pub name: Arc<str>,
    pub digest: KeyDigest,
    pub source: KeySource,
    pub scopes: Scopes,
    pub limits: KeyLimits,
}

impl KeySpec {
    /// Whether `other` is the same key with the same powers: a reload keeps its streams.
    pub fn same_as(&self, other: &KeySpec) -> bool {
        self.name == other.name
            && self.digest.matches(&other.digest)
            && self.scopes == other.scopes
            && self.limits == other.limits
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Env(String),
    Sha256,
}

/// A key's own limits; `None`: unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeyLimits {
    /// Requests per second on every route but the dashboard's files and the probes.
    pub requests_per_second: Option<NonZeroU32>,
    /// Calls placed per second.
    pub calls_per_second: Option<NonZeroU32>,
    /// Calls this key placed that may be active at once.
    pub max_active_placed: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKey {
    name: String,
    sha256: Option<String>,
    env: Option<String>,
    scopes: Vec<String>,
    requests_per_second: Option<u32>,
    calls_per_second: Option<u32>,
    max_active_placed: Option<u32>,
}

/// Reads `scopes` (at `field`), naming any scope that is unknown or given twice, and an
/// empty list.
pub(super) fn scopes(field: &str, names: &[String], check: &mut Check<'_>) -> Option<Scopes> {
    let before = check.count();
    let known = || Scopes::all().names().join(", ");
    if names.is_empty() {
        check.push(
            field,
            "is empty, so the key could do nothing",
            format!("list what it may do, from: {}", known()),
        );
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for name in names {
        match Scope::parse(name) {
            Some(s) if seen.insert(s) => out.push(s),
            Some(_) => check.push(
                field,
                format!("names `{name}` twice"),
                "list each scope once",
            ),
            None => check.push(
                field,
                format!("names `{name}`, which is not a scope"),
                format!("use scopes from: {}", known()),
            ),
        }
    }
    (check.count() == before).then(|| out.into_iter().collect())
}

/// Checks the org's keys (`default`, from part two's fields, first if given) and returns
/// them, or `None` with every problem pushed.
pub(super) fn validate(
    org: &str,
    default: Option<(KeyDigest, KeySource)>,
    raw: Vec<RawKey>,
    check: &mut Check<'_>,
) -> Option<Vec<KeySpec>> {
    let before = check.count();
    let mut keys = Vec::new();
    if let Some((digest, source)) = default {
        keys.push(KeySpec {
            name: Arc::from(DEFAULT_KEY),
            digest,
            source,
            scopes: Scopes::all(),
            limits: KeyLimits::default(),
        });
    }
    for (i, key) in raw.into_iter().enumerate() {
        let at = |field: &str| format!("orgs.{org}.keys[{i}].{field}");
        let name = key.name.trim();
        if name.is_empty() {
            check.push(
                at("name"),
                "is empty",
                "name the key after who holds it, e.g. \"wallboard\" or \"dialer\"",
            );
        } else if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            check.push(
                at("name"),
                "holds characters other than letters, digits, '-', '_' and '.'; the value is \
                 not shown in case it is a key",
                "name the key after who holds it, e.g. \"wallboard\", never the key itself",
            );
        } else if keys.iter().any(|k: &KeySpec| &*k.name == name) {
            let why = if name == DEFAULT_KEY {
                " (the key given by api_key_env / api_key_sha256 is named `default`)"
            } else {
                ""
            };
            check.push(
                at("name"),
                format!("is `{name}`, which another key of the org already has{why}"),
                "give each key of the org its own name",
            );
        }
        let given_as = if key.sha256.is_some() {
            "sha256"
        } else {
            "env"
        };
        let digest = match (key.env, key.sha256) {
            (Some(var), None) => check
                .secret_from_env(&at("env"), &var)
                .map(|k| (KeyDigest::of(&k), KeySource::Env(var))),
            (None, Some(hex)) => match KeyDigest::from_hex(&hex) {
                Ok(d) => Some((d, KeySource::Sha256)),
                Err(problem) => {
                    check.push(
                        at("sha256"),
                        problem,
                        "give the 64 hex digits printed by `callmux hash-key` (the key on its stdin)",
                    );
                    None
                }
            },
            (Some(_), Some(_)) => {
                check.push(
                    format!("orgs.{org}.keys[{i}]"),
                    "gives the key both ways, env and sha256",
                    "keep exactly one of env and sha256",
                );
                None
            }
            (None, None) => {
                check.push(
                    format!("orgs.{org}.keys[{i}]"),
                    "gives no key",
                    "set env = \"<variable holding the key>\" or sha256 = \"<its digest>\"",
                );
                None
            }
        };
        if let Some((d, _)) = &digest {
            if let Some(twin) = keys.iter().find(|k| k.digest.matches(d)) {
                check.push(
                    at(given_as),
                    format!("is the same key as `{}`", twin.name),
                    "issue each client a key of its own",
                );
            }
        }
        let scopes = scopes(&at("scopes"), &key.scopes, check);
        let rate = |field: &str, v: Option<u32>, check: &mut Check<'_>| match v {
            Some(0) => {
                check.push(
                    at(field),
                    "is 0, which would refuse every request",
                    "give at least 1, or remove it for no limit",
                );
                None
            }
            v => v.and_then(NonZeroU32::new),
        };
        if key.max_active_placed == Some(0) {
            check.push(
                at("max_active_placed"),
                "is 0, which would refuse every placement",
                "give at least 1, or remove it for no limit",
            );
        }
        let limits = KeyLimits {
            requests_per_second: rate("requests_per_second", key.requests_per_second, check),
            calls_per_second: rate("calls_per_second", key.calls_per_second, check),
            max_active_placed: key.max_active_placed,
        };
        if let (Some((digest, source)), Some(scopes)) = (digest, scopes) {
            keys.push(KeySpec {
                name: Arc::from(name),
                digest,
                source,
                scopes,
                limits,
            });
        }
    }
    (check.count() == before).then_some(keys)
}

impl super::Config {
    /// Whether org `org` still has a key just like `key` (a reload keeps its rates).
    pub fn has_key(&self, org: &str, key: &KeySpec) -> bool {
        match self.org(org).map(|o| &o.auth) {
            Some(super::OrgAuth::Keys(keys)) => keys.iter().any(|k| k.same_as(key)),
            _ => false,
        }
    }
}

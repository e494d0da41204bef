//! `[orgs.<id>]`: how an org's callers authenticate, the providers it sees, and where its
//! other Bland routes go, read and checked against the providers defined.

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;

use super::keys::{self, KeySource, KeySpec, RawKey};
use super::passthrough;
use super::provider::ProviderSpec;
use super::webhook::{RawWebhook, WebhookSpec};
use crate::keys::KeyDigest;
use crate::scope::Scopes;
use crate::settings::Check;

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
    /// `[orgs.<id>.webhooks.<name>]`, sorted by name.
    pub webhooks: Vec<WebhookSpec>,
    /// The routes the org may place calls on; the first is its default.
    pub routes: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum OrgAuth {
    /// Keys issued by callmux, each compared by SHA-256 digest (never empty).
    Keys(Vec<KeySpec>),
    /// The caller's own Bland key, checked by forwarding it to this `bland` provider; such
    /// callers hold `scopes` (`caller_scopes`, every scope unless narrowed).
    Upstream { provider: String, scopes: Scopes },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOrg {
    api_key_env: Option<String>,
    api_key_sha256: Option<String>,
    auth: Option<String>,
    #[serde(default)]
    pub(super) providers: Vec<String>,
    bland_passthrough: Option<String>,
    #[serde(default)]
    webhooks: BTreeMap<String, RawWebhook>,
    #[serde(default)]
    keys: Vec<RawKey>,
    caller_scopes: Option<Vec<String>>,
    #[serde(default)]
    routes: Vec<String>,
}

impl RawOrg {
    pub(super) fn validate(
        self,
        id: String,
        known: &BTreeMap<&str, &ProviderSpec>,
        defined: &HashSet<String>,
        listing: &passthrough::Listing,
        check: &mut Check<'_>,
    ) -> Option<OrgSpec> {
        let at = |field: &str| format!("orgs.{id}.{field}");
        let before = check.count();
        let has_keys = !self.keys.is_empty();
        enum Way {
            Keys(Option<(KeyDigest, KeySource)>),
            Upstream(String, Scopes),
        }
        let way = match (self.api_key_env, self.api_key_sha256, self.auth) {
            (Some(var), None, None) => check
                .secret_from_env(&at("api_key_env"), &var)
                .map(|key| Way::Keys(Some((KeyDigest::of(&key), KeySource::Env(var))))),
            (None, Some(hex), None) => match KeyDigest::from_hex(&hex) {
                Ok(digest) => Some(Way::Keys(Some((digest, KeySource::Sha256)))),
                Err(problem) => {
                    check.push(
                        at("api_key_sha256"),
                        problem,
                        "give the 64 hex digits printed by `callmux hash-key` (the key on its stdin)",
                    );
                    None
                }
            },
            (None, None, Some(provider)) => {
                if has_keys {
                    check.push(
                        at("keys"),
                        "is set, but this org's callers bring their own Bland keys (auth)",
                        format!(
                            "remove orgs.{id}.keys and narrow what Bland-key callers may do \
                             with caller_scopes, or remove auth to issue callmux keys"
                        ),
                    );
                }
                let scopes = match &self.caller_scopes {
                    Some(names) => keys::scopes(&at("caller_scopes"), names, check),
                    None => Some(Scopes::all()),
                };
                scopes.map(|scopes| Way::Upstream(provider, scopes))
            }
            (None, None, None) if has_keys => Some(Way::Keys(None)),
            (None, None, None) => {
                check.push(
                    format!("orgs.{id}"),
                    "has no way to authenticate",
                    "set one of api_key_env, api_key_sha256, [[orgs.<id>.keys]], or auth = \"<bland provider id>\"",
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
        let auth = match way {
            Some(Way::Keys(default)) => {
                if self.caller_scopes.is_some() {
                    check.push(
                        at("caller_scopes"),
                        "is set, but this org's callers hold callmux keys",
                        "give each key its own scopes in [[orgs.<id>.keys]], or remove caller_scopes",
                    );
                }
                keys::validate(&id, default, self.keys, check).map(OrgAuth::Keys)
            }
            Some(Way::Upstream(provider, scopes)) => Some(OrgAuth::Upstream { provider, scopes }),
            None => None,
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
            Some(OrgAuth::Upstream { provider, .. }) => match known.get(provider.as_str()) {
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
            Some(OrgAuth::Keys(_)) => {
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
            (None, Some(OrgAuth::Upstream { provider, .. })) => Some(provider.clone()),
            (None, _) => None,
        };
        let webhooks: Vec<WebhookSpec> = self
            .webhooks
            .into_iter()
            .filter_map(|(name, raw)| raw.validate(&id, name, check))
            .collect();
        if check.count() > before {
            return None;
        }
        auth.map(|auth| OrgSpec {
            id,
            auth,
            providers: self.providers,
            passthrough,
            webhooks,
            routes: self.routes,
        })
    }
}

/// `server.bland_default_org` must name an org whose callers bring their Bland keys: a key
/// alone is then checked by that org's Bland provider. An org that holds callmux keys is
/// never the default, so a key no org issued is never taken as one of its callers.
pub(super) fn default_org(id: &str, orgs: &BTreeMap<String, RawOrg>, check: &mut Check<'_>) {
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

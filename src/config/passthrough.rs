//! `[orgs.<id>] bland_passthrough`: which Bland provider an org's other Bland routes are
//! forwarded to, and the rule that keeps one org from using a Bland account others share.

use std::collections::{BTreeMap, HashSet};

use super::ProviderSpec;
use crate::provider::{bland, Kind};
use crate::settings::Check;

/// For each provider, the orgs that list it.
pub(super) struct Listing(BTreeMap<String, Vec<String>>);

impl Listing {
    /// From each org's id and the providers it lists.
    pub(super) fn of<'a>(orgs: impl IntoIterator<Item = (&'a String, &'a [String])>) -> Self {
        let mut listing: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (org, providers) in orgs {
            for provider in providers {
                listing
                    .entry(provider.clone())
                    .or_default()
                    .push(org.clone());
            }
        }
        Self(listing)
    }

    fn others(&self, provider: &str, org: &str) -> Vec<&str> {
        self.0
            .get(provider)
            .into_iter()
            .flatten()
            .map(String::as_str)
            .filter(|o| *o != org)
            .collect()
    }
}

/// The provider `named` by org `id`'s `bland_passthrough`, if it may be forwarded to: a
/// `bland` provider the org lists, and one that holds a key of its own only if no other org
/// lists it. Problems go into `check`.
pub(super) fn checked(
    id: &str,
    provider: &String,
    providers: &[String],
    known: &BTreeMap<&str, &ProviderSpec>,
    defined: &HashSet<String>,
    listing: &Listing,
    check: &mut Check<'_>,
) -> Option<String> {
    let at = format!("orgs.{id}.bland_passthrough");
    if !defined.contains(provider) {
        check.push(
            &at,
            format!("names `{provider}`, but no provider `{provider}` is defined"),
            format!(
                "define [providers.{provider}] with kind = \"bland\", or name a bland provider the org lists"
            ),
        );
        return None;
    }
    if !providers.contains(provider) {
        check.push(
            &at,
            format!("names `{provider}`, which is not in the org's providers"),
            format!("add \"{provider}\" to orgs.{id}.providers"),
        );
        return None;
    }
    // A provider that failed validation is reported where it is defined.
    let spec = known.get(provider.as_str())?;
    let kind = spec.kind.kind();
    if kind != bland::KIND.name() {
        check.push(
            &at,
            format!("names `{provider}`, a `{kind}` provider; only Bland's routes are forwarded"),
            "name a kind = \"bland\" provider the org lists, or remove bland_passthrough",
        );
        return None;
    }
    // With a key of its own, the provider hands whoever forwards through it the whole Bland
    // account behind that key, other orgs' calls included.
    let others = listing.others(provider, id);
    if !spec.kind.forwards_caller_credentials() && !others.is_empty() {
        check.push(
            &at,
            format!(
                "names `{provider}`, a bland provider with a key of its own (api_key_env), which \
                 org(s) {} list too: forwarding through that key would let this org read and \
                 change everything in their Bland account",
                others
                    .iter()
                    .map(|o| format!("`{o}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            format!(
                "give this org a bland provider of its own (a [providers.<id>] with its own \
                 api_key_env and org_id) and name that, or remove \"{provider}\" from the other \
                 orgs' providers"
            ),
        );
        return None;
    }
    Some(provider.clone())
}

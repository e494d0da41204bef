//! `[routes.<id>]`: the targets a placed call may go to, each a provider and its kind's own
//! target settings (read and checked by the kind), the strategy that chooses among them, and
//! the queue; and which orgs may use each route.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use figment::value::{Dict, Value};
use serde::Deserialize;

use super::org::OrgSpec;
use super::provider::ProviderSpec;
use crate::provider::TargetSettings;
use crate::settings::{Check, ONE_DAY_MS};

/// How a route chooses among the targets with room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// The first in order.
    Priority,
    /// The most free places, ties by order.
    Headroom,
    /// At random, by `weight`.
    Weighted,
}

/// One route, validated.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    pub id: String,
    pub strategy: Strategy,
    /// How long a placement waits for room when every target is full; zero answers at once.
    pub queue_timeout: Duration,
    /// Placements waiting at most, per route and replica.
    pub max_queued: u32,
    pub targets: Vec<TargetSpec>,
}

/// One target of a route: a provider, its weight, and its kind's settings for placing.
#[derive(Debug, Clone)]
pub struct TargetSpec {
    pub provider: String,
    pub weight: u32,
    pub settings: Arc<dyn TargetSettings>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    #[serde(default = "priority")]
    strategy: Strategy,
    #[serde(default)]
    queue_timeout_ms: u64,
    #[serde(default = "max_queued")]
    max_queued: u64,
    #[serde(default)]
    targets: Vec<Value>,
}

fn priority() -> Strategy {
    Strategy::Priority
}

/// Placements waiting per route per replica, unless set.
pub const DEFAULT_MAX_QUEUED: u64 = 100;

fn max_queued() -> u64 {
    DEFAULT_MAX_QUEUED
}

/// The most `weight` can be.
const MAX_WEIGHT: u64 = 1_000_000;

/// Every route, validated against the providers defined (`known`, the valid ones;
/// `defined`, every id written).
pub(super) fn routes(
    raw: BTreeMap<String, Value>,
    known: &BTreeMap<&str, &ProviderSpec>,
    defined: &HashSet<String>,
    check: &mut Check<'_>,
) -> Vec<RouteSpec> {
    raw.into_iter()
        .filter_map(|(id, table)| route(id, &table, known, defined, check))
        .collect()
}

fn route(
    id: String,
    table: &Value,
    known: &BTreeMap<&str, &ProviderSpec>,
    defined: &HashSet<String>,
    check: &mut Check<'_>,
) -> Option<RouteSpec> {
    let at = format!("routes.{id}");
    let raw: RawRoute = check.read(&at, table, &[])?;
    let before = check.count();
    let queue_timeout_ms = check.ranged(
        &format!("{at}.queue_timeout_ms"),
        raw.queue_timeout_ms,
        0,
        0..=ONE_DAY_MS,
    );
    let max_queued = check.ranged(
        &format!("{at}.max_queued"),
        raw.max_queued,
        DEFAULT_MAX_QUEUED,
        0..=1_000_000,
    ) as u32;
    if raw.targets.is_empty() {
        check.push(
            format!("{at}.targets"),
            "is empty, so the route could never place a call",
            "list at least one target, e.g. targets = [{ provider = \"agents\" }]",
        );
    }
    let targets: Vec<TargetSpec> = raw
        .targets
        .iter()
        .enumerate()
        .filter_map(|(i, t)| target(&format!("{at}.targets[{i}]"), t, known, defined, check))
        .collect();
    (check.count() == before).then_some(RouteSpec {
        id,
        strategy: raw.strategy,
        queue_timeout: Duration::from_millis(queue_timeout_ms),
        max_queued,
        targets,
    })
}

/// One target: `provider` and `weight` read here, the rest by the provider's kind.
fn target(
    at: &str,
    table: &Value,
    known: &BTreeMap<&str, &ProviderSpec>,
    defined: &HashSet<String>,
    check: &mut Check<'_>,
) -> Option<TargetSpec> {
    let Value::Dict(tag, fields) = table else {
        check.push(
            at,
            "is not a table",
            "write each target as { provider = \"<id>\", ... } with its kind's settings",
        );
        return None;
    };
    let mut own: Dict = fields.clone();
    let provider = match own.remove("provider") {
        Some(Value::String(_, p)) => p,
        Some(_) => {
            check.push(
                format!("{at}.provider"),
                "is not a string",
                "give the id of a [providers.<id>] table",
            );
            return None;
        }
        None => {
            check.push(
                format!("{at}.provider"),
                "is required",
                "give the id of the [providers.<id>] table the target places calls through",
            );
            return None;
        }
    };
    let weight = match own.remove("weight") {
        None => 1,
        Some(v) => match v.to_i128().and_then(|n| u64::try_from(n).ok()) {
            Some(n) => check.ranged(&format!("{at}.weight"), n, 1, 1..=MAX_WEIGHT) as u32,
            None => {
                check.push(
                    format!("{at}.weight"),
                    "is not a whole number",
                    format!("give a whole number from 1 to {MAX_WEIGHT}, or remove it for 1"),
                );
                1
            }
        },
    };
    let Some(spec) = known.get(provider.as_str()) else {
        // A provider that failed its own validation is reported there already.
        if !defined.contains(&provider) {
            let ids: Vec<&str> = known.keys().copied().collect();
            check.push(
                format!("{at}.provider"),
                format!("names `{provider}`, which is not a defined provider"),
                format!(
                    "define [providers.{provider}], or use one of: {}",
                    ids.join(", ")
                ),
            );
        }
        return None;
    };
    let settings = spec.kind.target(at, &Value::Dict(*tag, own), check)?;
    Some(TargetSpec {
        provider,
        weight,
        settings,
    })
}

/// Checks each org's `routes`: every one defined, and every target of each on a provider
/// the org lists.
pub(super) fn check_orgs(
    orgs: &[OrgSpec],
    routes: &[RouteSpec],
    defined: &HashSet<String>,
    check: &mut Check<'_>,
) {
    for org in orgs {
        for name in &org.routes {
            let field = format!("orgs.{}.routes", org.id);
            let Some(route) = routes.iter().find(|r| &r.id == name) else {
                if !defined.contains(name) {
                    let ids: Vec<&str> = routes.iter().map(|r| r.id.as_str()).collect();
                    check.push(
                        field,
                        format!("names `{name}`, which is not a defined route"),
                        format!("define [routes.{name}], or use one of: {}", ids.join(", ")),
                    );
                }
                continue;
            };
            for (i, t) in route.targets.iter().enumerate() {
                if !org.providers.contains(&t.provider) {
                    check.push(
                        format!("routes.{name}.targets[{i}].provider"),
                        format!(
                            "names `{}`, which org `{}` (it lists this route) does not list",
                            t.provider, org.id
                        ),
                        format!(
                            "add \"{}\" to orgs.{}.providers, or remove \"{name}\" from orgs.{}.routes",
                            t.provider, org.id, org.id
                        ),
                    );
                }
            }
        }
    }
}

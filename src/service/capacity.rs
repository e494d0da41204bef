//! An org's capacity (DESIGN §15): each of its providers' active calls and limit, from the
//! very snapshot the lists answer with (so no extra upstream ask) and each kind's own
//! figures. A change that updates the snapshot — a poll, a pushed event — moves it too.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use super::auth::{self, AuthError, Presented};
use super::merge::ProviderFailure;
use super::{ListError, Service, Snapshot};
use crate::error_code::ErrorCode;
use crate::provider::capacity::{Figures, Source};

/// `GET /capacity`'s body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Capacity {
    /// The org's providers, in its list's order.
    pub providers: Vec<ProviderCapacity>,
    pub total: Total,
    /// The providers whose list or capacity ask failed this time (their last figures are
    /// kept above); `null` when none did.
    pub errors: Option<Vec<CapacityError>>,
}

/// One provider's figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ProviderCapacity {
    pub provider: String,
    pub kind: &'static str,
    /// Active calls: listed (or as the platform counts them, for Retell), plus calls being
    /// placed through callmux that no list shows yet.
    pub active: u64,
    /// Active calls at which the provider is full; `null`: no limit known.
    pub limit: Option<u64>,
    /// `limit - active`, never below 0; `null` without a limit.
    pub headroom: Option<u64>,
    pub source: Source,
    /// Whether callmux places calls through this provider: an agent server with
    /// `place_calls`, or the target of a route.
    pub places_calls: bool,
    /// When a provider cooling down after failed placements takes them again (ISO 8601);
    /// `null` while it is not cooling down.
    pub cooling_until: Option<String>,
}

/// The org's providers together. `limit` and `headroom` are `null` when any provider's are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Total {
    pub active: u64,
    pub limit: Option<u64>,
    pub headroom: Option<u64>,
}

/// A provider whose figures could not be had this time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CapacityError {
    pub provider: String,
    pub error: ErrorCode,
    pub message: String,
}

/// A provider's last listed count, kept through its failures; shared by every org that
/// lists the provider. `u64::MAX`: never listed yet.
#[derive(Debug)]
pub(super) struct LastListed(AtomicU64);

impl LastListed {
    /// The last count listed; 0 if never listed.
    pub(super) fn get(&self) -> u64 {
        match self.0.load(Ordering::Relaxed) {
            u64::MAX => 0,
            n => n,
        }
    }
}

impl Default for LastListed {
    fn default() -> Self {
        Self(AtomicU64::new(u64::MAX))
    }
}

/// One provider's active calls as capacity counts them (DESIGN §15).
pub(super) struct Count<'s> {
    /// Those its list shows, or as the platform counts them.
    pub listed: u64,
    /// Places held for calls being placed that no list shows yet.
    pub held: u64,
    /// The ids its list shows now (empty without one): what holds are matched against.
    pub shown: HashSet<&'s str>,
}

impl super::Built {
    /// The provider's active calls in `snapshot` (unless its list `failed` there, when its
    /// last listed count stands), with the `figures` its kind reports: the one count that
    /// `/capacity` shows and routes choose by. Keeps the listed count for when it fails.
    pub(super) fn count<'s>(
        &self,
        snapshot: Option<&'s Snapshot>,
        failed: bool,
        figures: &Figures,
    ) -> Count<'s> {
        let id = self.spec.id.as_str();
        let Some(s) = snapshot.filter(|_| !failed) else {
            return Count {
                listed: figures
                    .reported_active
                    .map_or(self.last_listed.get(), u64::from),
                held: self.reserved.being_placed() as u64,
                shown: HashSet::new(),
            };
        };
        let shown: HashSet<&str> = s
            .calls()
            .filter(|c| &*c.provider == id)
            .map(|c| &*c.call_id)
            .collect();
        self.last_listed
            .0
            .store(shown.len() as u64, Ordering::Relaxed);
        Count {
            listed: figures
                .reported_active
                .map_or(shown.len() as u64, u64::from),
            held: self.reserved.unlisted(|call| shown.contains(call)) as u64,
            shown,
        }
    }
}

impl Service {
    /// The capacity of `presented`'s org, from the snapshot its lists answer with.
    pub async fn capacity(&self, presented: &Presented) -> Result<Capacity, AuthError> {
        let org = auth::identify(&self.config, presented)?.org();
        match self.list(presented).await {
            Ok(listed) => Ok(self
                .capacity_of(&org.id, Some(&listed.snapshot), listed.snapshot.failures())
                .await),
            Err(ListError::AllFailed { failures, .. }) => {
                Ok(self.capacity_of(&org.id, None, &failures).await)
            }
            Err(ListError::Auth(e)) => Err(e),
        }
    }

    /// The capacity of org `org` from its list: `snapshot` (`None` when every provider
    /// failed) and the providers that failed. What a pushed change or a poll puts in the
    /// snapshot is counted here, so it moves capacity too.
    pub async fn capacity_of(
        &self,
        org: &str,
        snapshot: Option<&Snapshot>,
        failures: &[ProviderFailure],
    ) -> Capacity {
        let Some(org) = self.config.org(org) else {
            return Capacity {
                providers: Vec::new(),
                total: Total {
                    active: 0,
                    limit: Some(0),
                    headroom: Some(0),
                },
                errors: None,
            };
        };
        let built: Vec<_> = org
            .providers
            .iter()
            .filter_map(|id| self.providers.iter().find(|b| b.spec.id == *id))
            .collect();
        let figures =
            futures::future::join_all(built.iter().map(|b| b.backend.capacity.figures())).await;

        let mut errors = Vec::new();
        let mut providers = Vec::with_capacity(built.len());
        for (b, figures) in built.iter().zip(figures) {
            let id = b.spec.id.as_str();
            let failed = failures.iter().find(|f| &*f.provider == id);
            let count = b.count(snapshot, failed.is_some(), &figures);
            for error in failed.map(|f| &f.error).into_iter().chain(&figures.error) {
                errors.push(CapacityError {
                    provider: id.to_owned(),
                    error: error.code(),
                    message: error.to_string(),
                });
            }
            let active = count.listed + count.held;
            let limit = figures.limit.map(u64::from);
            providers.push(ProviderCapacity {
                provider: id.to_owned(),
                kind: b.spec.kind.kind(),
                active,
                limit,
                headroom: limit.map(|l| l.saturating_sub(active)),
                source: figures.source,
                places_calls: b.backend.place.is_some()
                    || self
                        .config
                        .routes
                        .iter()
                        .any(|r| r.targets.iter().any(|t| t.provider == id)),
                cooling_until: b
                    .cooldown
                    .until_ms()
                    .and_then(crate::call::time::to_iso8601),
            });
        }
        let total = Total {
            active: providers.iter().map(|p| p.active).sum(),
            limit: providers.iter().map(|p| p.limit).sum(),
            headroom: providers.iter().map(|p| p.headroom).sum(),
        };
        self.record(&org.id, &providers, &total);
        Capacity {
            providers,
            total,
            errors: (!errors.is_empty()).then_some(errors),
        }
    }

    /// The capacity gauges, as of this answer.
    fn record(&self, org: &str, providers: &[ProviderCapacity], total: &Total) {
        let telemetry = &self.telemetry;
        for p in providers {
            let labels = [("provider", p.provider.as_str())];
            telemetry
                .gauge("callmux_provider_active_calls", &labels)
                .set(p.active as f64);
            if let Some(limit) = p.limit {
                telemetry
                    .gauge("callmux_provider_call_limit", &labels)
                    .set(limit as f64);
            }
        }
        telemetry
            .gauge("callmux_org_active_calls", &[("org", org)])
            .set(total.active as f64);
    }
}

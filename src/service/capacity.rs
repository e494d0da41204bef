//! An org's capacity (DESIGN §15): each of its providers' active calls and limit, from the
//! very snapshot the lists answer with (so no extra upstream ask) and each kind's own
//! figures. A change that updates the snapshot — a poll, a pushed event — moves it too.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use super::auth::{self, AuthError, Presented};
use super::merge::ProviderFailure;
use super::{ListError, Service, Snapshot};
use crate::error_code::ErrorCode;
use crate::provider::capacity::Source;

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
    /// Whether callmux places calls through this provider.
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
            let listed = match (snapshot, failed) {
                (Some(s), None) => {
                    let n = s.calls().filter(|c| &*c.provider == id).count() as u64;
                    b.last_listed.0.store(n, Ordering::Relaxed);
                    n
                }
                _ => b.last_listed.get(),
            };
            for error in failed.map(|f| &f.error).into_iter().chain(&figures.error) {
                errors.push(CapacityError {
                    provider: id.to_owned(),
                    error: error.code(),
                    message: error.to_string(),
                });
            }
            let held = match (snapshot, failed) {
                (Some(s), None) => b
                    .reserved
                    .unlisted(|call| s.calls().any(|c| &*c.provider == id && c.call_id == call)),
                _ => b.reserved.being_placed(),
            };
            let active = figures.reported_active.map_or(listed, u64::from) + held as u64;
            let limit = figures.limit.map(u64::from);
            providers.push(ProviderCapacity {
                provider: id.to_owned(),
                kind: b.spec.kind.kind(),
                active,
                limit,
                headroom: limit.map(|l| l.saturating_sub(active)),
                source: figures.source,
                places_calls: b.backend.places.is_some(),
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

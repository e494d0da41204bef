//! The service core, free of HTTP: a loaded configuration with its providers built, and one
//! org's snapshot answered end to end — authentication, fan-out, merge — reused while the
//! providers' answers are unchanged.

pub mod auth;
pub mod capacity;
pub mod control;
pub mod events;
pub mod index;
pub mod limits;
pub mod limits_fleet;
pub mod live;
pub mod merge;
pub mod passthrough;
pub mod place;
mod place_fleet;
pub mod reload;
pub mod route;
pub mod shared_index;
pub mod sign_in;
pub mod snapshot;
pub mod whoami;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::{Config, OrgAuth, ProviderSpec};
use crate::provider::layers::{self, observe::Observed, observe::Outcome};
use crate::provider::{Backend, ListCalls, ProviderError, RequestContext};
use crate::state::Store;
use crate::telemetry::Telemetry;
use auth::{AuthError, Identity, Presented, Standing, Verdicts};
use merge::{Answer, ProviderFailure};
pub use snapshot::{Snapshot, Version};

/// A loaded configuration with its providers built.
pub struct Service {
    config: Config,
    /// Looked up on every request: foldhash (randomly seeded) rather than SipHash; the ids
    /// are the configuration's, so no caller chooses what is in the table.
    orgs: HashMap<String, OrgRuntime, foldhash::fast::RandomState>,
    verdicts: Verdicts,
    /// Every provider, in config order.
    providers: Vec<Built>,
    telemetry: Arc<Telemetry>,
    /// What this replica shares with the others (the process's one store).
    store: Store,
    /// The call → provider index the fleet shares, with Redis.
    shared_index: Option<shared_index::SharedIndex>,
    /// Placing on routes: idempotency keys and queues, kept across reloads.
    placing: Arc<route::Placing>,
}

impl Service {
    /// A place may have freed (a pushed end): queued placements look again.
    pub fn place_freed(&self) {
        self.placing.freed();
    }
}

/// One provider as built from its settings: what requests ask, and what `/readyz` reads.
/// Kept across a reload that leaves its settings unchanged.
#[derive(Clone)]
struct Built {
    spec: ProviderSpec,
    observed: Arc<Observed>,
    listed: Arc<dyn ListCalls>,
    /// Kept for call control, which never goes through listing's layers.
    backend: Backend,
    /// Places reserved by calls being placed through this provider.
    reserved: Arc<place::Reserved>,
    /// What this provider last listed, for capacity while its list fails.
    last_listed: Arc<capacity::LastListed>,
    /// Its placing failures in a row, and its cooldown.
    cooldown: Arc<route::cooldown::Cooldown>,
    /// What its platform pushed, laid over its answers until its next one.
    pushes: Arc<layers::overlay::Pushes>,
}

/// What one org needs at request time.
struct OrgRuntime {
    /// The org's id, shared by every request's context and snapshot.
    id: Arc<str>,
    /// The org's providers, in its list's order.
    providers: Vec<Arc<dyn ListCalls>>,
    /// The org's last snapshot; for an org whose callers bring their own Bland credentials
    /// (`callers` is `Some`), each caller's, keyed by their credentials' digest: each gets
    /// their own answer.
    last: Slot,
    callers: Option<moka::sync::Cache<[u8; 32], Arc<Slot>>>,
}

/// One caller's (or a whole org's) last snapshot.
#[derive(Default)]
struct Slot {
    last: Mutex<Option<Arc<Snapshot>>>,
    /// Held while a snapshot is built, so that requests that arrive meanwhile with the same
    /// answers wait for it rather than each merging their own.
    building: tokio::sync::Mutex<()>,
    /// Which provider listed each call, for call control.
    index: index::CallIndex,
}

/// Callers of one org whose last snapshots are kept (the least recently served go first).
const CALLERS_KEPT: u64 = 1_024;

/// Answers with at least this many calls in all are merged on the blocking pool, so a large
/// answer does not hold up a runtime thread's other requests (where the work passes about
/// half a millisecond; BENCHMARKS.md). The edge writes bodies this long there too.
pub const OFF_RUNTIME_CALLS: usize = 2_000;
const MERGE_OFF_RUNTIME_CALLS: usize = OFF_RUNTIME_CALLS;

// Merging and hashing in two halves wait for another thread; they must only ever start on
// the blocking pool.
const _: () = assert!(
    MERGE_OFF_RUNTIME_CALLS <= merge::MERGE_IN_TWO_FROM
        && MERGE_OFF_RUNTIME_CALLS <= snapshot::DIGEST_IN_TWO_FROM
);

/// An org's snapshot, ready to render.
#[derive(Debug)]
pub struct Listed {
    pub snapshot: Arc<Snapshot>,
    /// Time spent waiting on providers.
    pub waited: Duration,
}

/// Why a request got no snapshot.
#[derive(Debug)]
pub enum ListError {
    Auth(AuthError),
    /// Every provider the org may see failed.
    AllFailed {
        failures: Vec<ProviderFailure>,
        waited: Duration,
    },
}

impl From<AuthError> for ListError {
    fn from(e: AuthError) -> Self {
        Self::Auth(e)
    }
}

impl Built {
    fn new(spec: &ProviderSpec, store: &Store, telemetry: &Arc<Telemetry>) -> Result<Self, String> {
        let backend = spec.kind.build(Arc::from(spec.id.as_str()), &spec.common)?;
        let (listed, observed, pushes) = layers::wrap(
            backend.list.clone(),
            &spec.common,
            spec.kind.forwards_caller_credentials(),
            store,
            telemetry,
        );
        Ok(Self {
            spec: spec.clone(),
            observed,
            listed,
            backend,
            reserved: Arc::default(),
            last_listed: Arc::default(),
            cooldown: Arc::default(),
            pushes,
        })
    }
}

impl Service {
    /// `config` served on `store`, the process's one store.
    pub fn new(config: Config, store: &Store, telemetry: Arc<Telemetry>) -> Result<Self, String> {
        Self::keeping(config, None, store, telemetry)
    }

    /// `config` built, on a reload, from the `previous` service: each provider whose
    /// settings are unchanged is kept as it is, with its cached answers, circuit breaker,
    /// last outcome and upstream connections; the others are built afresh.
    pub fn keeping(
        config: Config,
        previous: Option<&Service>,
        store: &Store,
        telemetry: Arc<Telemetry>,
    ) -> Result<Self, String> {
        let mut built = Vec::with_capacity(config.providers.len());
        for spec in &config.providers {
            let kept = previous.and_then(|p| p.providers.iter().find(|b| b.spec == *spec));
            built.push(match kept {
                Some(b) => b.clone(),
                None => Built::new(spec, store, &telemetry)?,
            });
        }
        let providers: HashMap<&str, &Built> =
            built.iter().map(|b| (b.spec.id.as_str(), b)).collect();
        let orgs = config
            .orgs
            .iter()
            .map(|org| {
                let runtime = OrgRuntime {
                    id: Arc::from(org.id.as_str()),
                    providers: org
                        .providers
                        .iter()
                        .map(|id| providers[id.as_str()].listed.clone())
                        .collect(),
                    last: Slot::default(),
                    callers: matches!(org.auth, OrgAuth::Upstream { .. }).then(|| {
                        moka::sync::Cache::builder()
                            .max_capacity(CALLERS_KEPT)
                            .eviction_policy(moka::policy::EvictionPolicy::lru())
                            .time_to_idle(crate::provider::CALLER_IDLE)
                            .build()
                    }),
                };
                (org.id.clone(), runtime)
            })
            .collect();
        let placing = previous.map_or_else(Arc::default, |p| {
            p.placing.reloaded(&config.routes);
            p.placing.clone()
        });
        Ok(Self {
            verdicts: Verdicts::new(
                config.server.auth_cache_ttl,
                config.server.auth_rejection_ttl,
                store.redis().cloned(),
            ),
            config,
            orgs,
            providers: built,
            telemetry,
            store: store.clone(),
            shared_index: store.redis().cloned().map(shared_index::SharedIndex::new),
            placing,
        })
    }

    /// Each provider's id, kind and last real upstream ask, in config order.
    pub fn provider_outcomes(&self) -> impl Iterator<Item = (&str, &'static str, Option<Outcome>)> {
        self.providers.iter().map(|b| {
            (
                b.spec.id.as_str(),
                b.spec.kind.kind(),
                b.observed.last_outcome(),
            )
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Lays a signed push over `provider`'s answers, until its next one; `false` if it
    /// moves nothing (an unknown provider, a step back, a replay).
    pub fn pushed(&self, provider: &str, moved: &crate::provider::kind::Move) -> bool {
        self.providers
            .iter()
            .find(|b| b.spec.id == provider)
            .is_some_and(|b| b.pushes.push(&Arc::from(provider), moved))
    }

    /// Where `provider`'s answer is among `org`'s, in its list's (and snapshots') order.
    pub fn position(&self, org: &str, provider: &str) -> Option<usize> {
        self.config
            .org(org)?
            .providers
            .iter()
            .position(|p| p == provider)
    }

    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.telemetry
    }

    /// The store this replica shares state through.
    /// What Bland said lately of the keys callers brought.
    pub fn verdicts(&self) -> &Verdicts {
        &self.verdicts
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Authenticates `presented` and answers its org's active calls.
    ///
    /// An org that authenticates through Bland has the key checked by that provider before
    /// any other provider is asked, unless Bland accepted the same key moments ago; either
    /// way a Bland rejection in this request is a 401, never a partial list.
    pub async fn list(&self, presented: &Presented) -> Result<Listed, ListError> {
        let identity = auth::identify(&self.config, presented)?;
        let org = identity.org();
        let runtime = &self.orgs[&org.id];
        let ctx = self.context(&identity, presented);

        let mut waited = Duration::ZERO;
        let mut prefetched = None;
        let authority = match identity {
            Identity::ViaUpstream(org, provider, _) => {
                let at = org
                    .providers
                    .iter()
                    .position(|p| p == provider)
                    .expect("config validation puts the auth provider in the org's list");
                let standing = self.verdicts.standing(&org.id, presented).await;
                if standing == Standing::Rejected {
                    return Err(AuthError::Rejected.into());
                }
                if standing == Standing::Unknown {
                    let started = Instant::now();
                    let answer = runtime.providers[at].active_calls(&ctx).await;
                    waited += started.elapsed();
                    match &answer {
                        Err(ProviderError::Rejected(_)) => {
                            self.verdicts.reject(&org.id, presented).await;
                            return Err(AuthError::Rejected.into());
                        }
                        Err(error) => {
                            return Err(AuthError::Unavailable {
                                provider: provider.to_string(),
                                error: error.clone(),
                            }
                            .into())
                        }
                        Ok(_) => self.verdicts.accept(&org.id, presented).await,
                    }
                    prefetched = Some((at, answer));
                }
                Some(at)
            }
            Identity::Verified(..) => None,
        };

        let started = Instant::now();
        let answers = merge::gather(&runtime.providers, &ctx, prefetched).await;
        waited += started.elapsed();
        if let Some(at) = authority {
            if let Err(ProviderError::Rejected(_)) = answers[at] {
                self.verdicts.reject(&org.id, presented).await;
                return Err(AuthError::Rejected.into());
            }
        }
        let failures = failures_of(runtime, &answers);
        if failures.len() == answers.len() {
            return Err(ListError::AllFailed { failures, waited });
        }
        // Borrowed, not cloned, for the common case: the hot path pays no reference count.
        let callers_slot;
        let slot = match (&runtime.callers, &ctx.forwarded) {
            (Some(callers), Some(caller)) => {
                callers_slot = callers.get_with(caller.digest(), Default::default);
                &*callers_slot
            }
            _ => &runtime.last,
        };
        let snapshot = slot
            .snapshot(&runtime.id, answers, failures, || self.placing.freed())
            .await;
        if let Some(index) = &self.shared_index {
            index.publish(&ctx, runtime.providers.iter().map(|p| p.id()), &snapshot);
        }
        Ok(Listed { snapshot, waited })
    }
}

/// The failed answers among `answers`, named by their providers.
fn failures_of(runtime: &OrgRuntime, answers: &[Answer]) -> Vec<ProviderFailure> {
    runtime
        .providers
        .iter()
        .zip(answers)
        .filter_map(|(p, a)| {
            a.as_ref().err().map(|error| ProviderFailure {
                provider: Arc::from(p.id()),
                error: error.clone(),
            })
        })
        .collect()
}

impl Service {
    /// `org`'s active calls as callmux itself sees them, with no caller (to watch an org
    /// with webhooks while no one is subscribed). `None` for an org that is gone, or whose
    /// callers bring their own Bland keys: there is nothing to list with but theirs.
    pub async fn list_unattended(&self, org: &str) -> Option<Result<Listed, ListError>> {
        let spec = self.config.org(org)?;
        if matches!(spec.auth, OrgAuth::Upstream { .. }) {
            return None;
        }
        let runtime = self.orgs.get(org)?;
        let ctx = RequestContext {
            org_id: runtime.id.clone(),
            forwarded: None,
        };
        let started = Instant::now();
        let answers = merge::gather(&runtime.providers, &ctx, None).await;
        let waited = started.elapsed();
        let failures = failures_of(runtime, &answers);
        if failures.len() == answers.len() {
            return Some(Err(ListError::AllFailed { failures, waited }));
        }
        let snapshot = runtime
            .last
            .snapshot(&runtime.id, answers, failures, || self.placing.freed())
            .await;
        Some(Ok(Listed { snapshot, waited }))
    }
}

impl Service {
    /// Proves a caller who brings a Bland key as a list would, unless Bland accepted the same
    /// key moments ago (a key callmux issued was proved by `auth::identify`). Every route
    /// that reaches a provider for such a caller comes through here or through `list`.
    pub(super) async fn vouch(
        &self,
        identity: &Identity<'_>,
        presented: &Presented,
    ) -> Result<(), AuthError> {
        if let Identity::ViaUpstream(org, ..) = identity {
            if !self.verdicts.is_accepted(&org.id, presented).await {
                match self.list(presented).await {
                    Err(ListError::Auth(e)) => return Err(e),
                    // The authority answered (or the list would have been refused), so the
                    // key stands whatever the org's other providers did.
                    Ok(_) | Err(ListError::AllFailed { .. }) => {}
                }
            }
        }
        Ok(())
    }

    /// What the backends asked for `identity` may see of the request: its org, and the
    /// caller's own Bland credentials only for an org that authenticates through Bland.
    pub(super) fn context(&self, identity: &Identity<'_>, presented: &Presented) -> RequestContext {
        RequestContext {
            org_id: self.orgs[&identity.org().id].id.clone(),
            forwarded: match identity {
                Identity::ViaUpstream(org, ..) => presented.forwarded(org),
                Identity::Verified(..) => None,
            },
        }
    }
}

impl OrgRuntime {
    /// The caller's own slot, for an org whose callers bring their own Bland keys; `None`
    /// means the org's slot, `last`.
    fn caller_slot(&self, ctx: &RequestContext) -> Option<Arc<Slot>> {
        match (&self.callers, &ctx.forwarded) {
            (Some(callers), Some(caller)) => {
                Some(callers.get_with(caller.digest(), Default::default))
            }
            _ => None,
        }
    }
}

impl Slot {
    /// The last snapshot built here, if any.
    fn latest(&self) -> Option<Arc<Snapshot>> {
        self.last.lock().expect("snapshot lock").clone()
    }

    /// The snapshot of these answers: the last one, if built from these very answers, else
    /// a new one. Concurrent requests with the same new answers build it once.
    async fn snapshot(
        &self,
        org: &Arc<str>,
        answers: Vec<Answer>,
        failures: Vec<ProviderFailure>,
        changed: impl FnOnce(),
    ) -> Arc<Snapshot> {
        if let Some(hit) = self.reuse(&answers) {
            return hit;
        }
        let _building = self.building.lock().await;
        // Another request may have built it while this one waited.
        if let Some(hit) = self.reuse(&answers) {
            return hit;
        }
        let total: usize = answers.iter().flatten().map(|calls| calls.len()).sum();
        let org = org.clone();
        let previous = self.last.lock().expect("snapshot lock").clone();
        let snapshot = Arc::new(if total >= MERGE_OFF_RUNTIME_CALLS {
            tokio::task::spawn_blocking(move || {
                Snapshot::new(org, answers, failures, previous.as_deref())
            })
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
        } else {
            Snapshot::new(org, answers, failures, previous.as_deref())
        });
        let before = self
            .last
            .lock()
            .expect("snapshot lock")
            .replace(snapshot.clone());
        // Other calls listed: a place may have freed for a queued placement.
        if before.is_none_or(|b| b.version() != snapshot.version()) {
            changed();
        }
        snapshot
    }

    fn reuse(&self, answers: &[Answer]) -> Option<Arc<Snapshot>> {
        let slot = self.last.lock().expect("snapshot lock");
        slot.as_ref().filter(|s| s.built_from(answers)).cloned()
    }
}

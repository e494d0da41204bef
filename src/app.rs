//! The running service's state, and one list request answered end to end: auth, fan-out,
//! merge, and the body in the asked shape, reused while the providers' answers are unchanged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;

use crate::auth::{self, AuthError, Identity, Presented, Verdicts};
use crate::breaker::Breaker;
use crate::coalesce::Coalesced;
use crate::config::{Config, OrgAuth, ProviderSpec};
use crate::merge::{self, Answer, ProviderFailure};
use crate::observe::{Observed, Outcome};
use crate::provider::{self, Provider, ProviderError, RequestContext};
use crate::wire::{ErrorItem, Shape, Written};

/// A loaded configuration with its providers built.
pub struct App {
    config: Config,
    orgs: HashMap<String, OrgRuntime>,
    verdicts: Verdicts,
    /// Every provider, in config order.
    providers: Vec<Built>,
}

/// One provider as built from its settings: what requests ask, and what `/readyz` reads.
/// Kept across a reload that leaves its settings unchanged.
#[derive(Clone)]
struct Built {
    spec: ProviderSpec,
    observed: Arc<Observed>,
    served: Arc<dyn Provider>,
}

/// What one org needs at request time.
struct OrgRuntime {
    /// The org's id, shared by every request's context and answer.
    id: Arc<str>,
    /// The org's providers, in its list's order.
    providers: Vec<Arc<dyn Provider>>,
    /// The last bodies served to the org's callers; for an org whose callers bring their own
    /// Bland credentials (`callers` is `Some`), to each caller, keyed by their credentials'
    /// digest: each gets their own answer, and callers taking turns would otherwise each
    /// rebuild over the other's body.
    bodies: Bodies,
    callers: Option<moka::sync::Cache<[u8; 32], Arc<Bodies>>>,
    /// Bodies built (not reused), per shape: `callmux_bodies_built_total`, by org.
    built: [metrics::Counter; 2],
}

/// One caller's (or a whole org's) last body per shape.
#[derive(Default)]
struct Bodies {
    /// The last body served per shape, and the answers it was built from.
    rendered: [Mutex<Option<Rendered>>; 2],
    /// Held while a body is built, per shape, so that requests that arrive meanwhile with
    /// the same answers wait for that body rather than each building their own.
    building: [tokio::sync::Mutex<()>; 2],
}

/// Callers of one org whose last bodies are kept (the least recently served go first).
const CALLERS_KEPT: u64 = 1_024;

/// Answers with at least this many calls in all are merged and written on the blocking pool
/// (from about 0.6 ms of work), so a large answer does not hold up a runtime thread's other
/// requests.
const RENDER_OFF_RUNTIME_CALLS: usize = 2_000;

// Merging and writing in two halves wait for another thread; they must only ever start on
// the blocking pool. (The merged list is never longer than the answers' calls in all.)
const _: () = assert!(
    RENDER_OFF_RUNTIME_CALLS <= crate::merge::MERGE_IN_TWO_FROM
        && RENDER_OFF_RUNTIME_CALLS <= crate::wire::WRITE_IN_TWO_FROM
);

struct Rendered {
    inputs: Vec<Answer>,
    body: Written,
    calls: usize,
}

/// A list answer, ready to send.
#[derive(Debug)]
pub struct Listed {
    pub org: Arc<str>,
    pub body: Written,
    /// How many calls the body lists.
    pub calls: usize,
    /// Providers that failed; their calls are missing and `body` names them.
    pub failures: Vec<ProviderFailure>,
    /// Time spent waiting on providers.
    pub waited: Duration,
}

/// Why a list request got no list.
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
    /// Per provider, inside out: the backend; a circuit breaker; observation (a span, metrics,
    /// the last outcome); coalescing, outermost so that requests waiting on one ask share its
    /// outcome and it is observed and counted once.
    fn new(spec: &ProviderSpec) -> Result<Self, String> {
        let guarded = Arc::new(Breaker::new(provider::build(spec)?, spec.breaker));
        let observed = Arc::new(Observed::new(guarded));
        Ok(Self {
            spec: spec.clone(),
            served: Arc::new(Coalesced::new(observed.clone(), spec.cache_ttl)),
            observed,
        })
    }
}

impl App {
    pub fn new(config: Config) -> Result<Self, String> {
        Self::keeping(config, None)
    }

    /// `config` built, on a reload, from the `previous` app: each provider whose settings
    /// are unchanged is kept as it is, with its cached answers, circuit breaker, last outcome
    /// and upstream connections; the others are built afresh.
    pub fn keeping(config: Config, previous: Option<&App>) -> Result<Self, String> {
        // Metric handles made below must bind to the real recorder.
        crate::observe::prometheus();
        let mut built = Vec::with_capacity(config.providers.len());
        for spec in &config.providers {
            let kept = previous.and_then(|p| p.providers.iter().find(|b| b.spec == *spec));
            built.push(match kept {
                Some(b) => b.clone(),
                None => Built::new(spec)?,
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
                        .map(|id| providers[id.as_str()].served.clone())
                        .collect(),
                    bodies: Default::default(),
                    callers: matches!(org.auth, OrgAuth::Upstream { .. }).then(|| {
                        moka::sync::Cache::builder()
                            .max_capacity(CALLERS_KEPT)
                            .eviction_policy(moka::policy::EvictionPolicy::lru())
                            .time_to_idle(provider::CALLER_IDLE)
                            .build()
                    }),
                    built: Shape::ALL.map(|shape| {
                        metrics::counter!("callmux_bodies_built_total", "org" => org.id.clone(), "shape" => shape.name())
                    }),
                };
                (org.id.clone(), runtime)
            })
            .collect();
        Ok(Self {
            verdicts: Verdicts::new(config.server.auth_cache_ttl),
            config,
            orgs,
            providers: built,
        })
    }

    /// Each provider's id, kind and last real upstream ask, in config order.
    pub fn provider_outcomes(&self) -> impl Iterator<Item = (&str, &'static str, Option<Outcome>)> {
        self.providers.iter().map(|b| {
            (
                b.spec.id.as_str(),
                b.spec.kind.name(),
                b.observed.last_outcome(),
            )
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Authenticates the request and answers its org's active calls in `shape`.
    ///
    /// An org that authenticates through Bland has the key checked by that provider before
    /// any other provider is asked, unless Bland accepted the same key moments ago; either
    /// way a Bland rejection in this request is a 401, never a partial list.
    pub async fn list(&self, headers: &HeaderMap, shape: Shape) -> Result<Listed, ListError> {
        let presented = Presented::from_headers(headers)?;
        let identity = auth::identify(&self.config, &presented)?;
        let org = identity.org();
        let runtime = &self.orgs[&org.id];
        let ctx = RequestContext {
            org_id: runtime.id.clone(),
            forwarded: match identity {
                Identity::ViaUpstream(..) => presented.forwarded(),
                Identity::Verified(_) => None,
            },
        };

        let mut waited = Duration::ZERO;
        let mut prefetched = None;
        let authority = match identity {
            Identity::ViaUpstream(org, provider) => {
                let at = org
                    .providers
                    .iter()
                    .position(|p| p == provider)
                    .expect("config validation puts the auth provider in the org's list");
                if !self.verdicts.is_accepted(&org.id, &presented) {
                    let started = Instant::now();
                    let answer = runtime.providers[at].active_calls(&ctx).await;
                    waited += started.elapsed();
                    match &answer {
                        Err(ProviderError::Rejected(_)) => return Err(AuthError::Rejected.into()),
                        Err(error) => {
                            return Err(AuthError::Unavailable {
                                provider: provider.to_string(),
                                error: error.clone(),
                            }
                            .into())
                        }
                        Ok(_) => self.verdicts.accept(&org.id, &presented),
                    }
                    prefetched = Some((at, answer));
                }
                Some(at)
            }
            Identity::Verified(_) => None,
        };

        let started = Instant::now();
        let answers = merge::gather(&runtime.providers, &ctx, prefetched).await;
        waited += started.elapsed();
        if let Some(at) = authority {
            if let Err(ProviderError::Rejected(_)) = answers[at] {
                self.verdicts.forget(&org.id, &presented);
                return Err(AuthError::Rejected.into());
            }
        }
        let failures: Vec<ProviderFailure> = runtime
            .providers
            .iter()
            .zip(&answers)
            .filter_map(|(p, a)| {
                a.as_ref().err().map(|error| ProviderFailure {
                    provider: Arc::from(p.id()),
                    error: error.clone(),
                })
            })
            .collect();
        if failures.len() == answers.len() {
            return Err(ListError::AllFailed { failures, waited });
        }
        // Borrowed, not cloned, for the common case: the hot path pays no reference count.
        let callers_bodies;
        let bodies = match (&runtime.callers, &ctx.forwarded) {
            (Some(callers), Some(caller)) => {
                callers_bodies = callers.get_with(caller.digest(), Default::default);
                &*callers_bodies
            }
            _ => &runtime.bodies,
        };
        let (body, calls) = runtime.render(bodies, shape, &answers, &failures).await;
        Ok(Listed {
            org: runtime.id.clone(),
            body,
            calls,
            failures,
            waited,
        })
    }
}

impl OrgRuntime {
    /// The body for these answers: the last one built into `bodies`, if built from these
    /// very answers (an unchanged upstream hands out the same `Calls`; a failure must be the
    /// same failure), else a new one. Concurrent requests with the same new answers build it
    /// once.
    async fn render(
        &self,
        bodies: &Bodies,
        shape: Shape,
        answers: &[Answer],
        failures: &[ProviderFailure],
    ) -> (Written, usize) {
        if let Some(hit) = bodies.reuse(shape, answers) {
            return hit;
        }
        let _building = bodies.building[shape as usize].lock().await;
        // Another request may have built it while this one waited.
        if let Some(hit) = bodies.reuse(shape, answers) {
            return hit;
        }
        let total: usize = answers.iter().flatten().map(|calls| calls.len()).sum();
        let (body, calls) = if total >= RENDER_OFF_RUNTIME_CALLS {
            let (org, answers, failures) = (self.id.clone(), answers.to_vec(), failures.to_vec());
            tokio::task::spawn_blocking(move || build(shape, &org, &answers, &failures))
                .await
                .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
        } else {
            build(shape, &self.id, answers, failures)
        };
        self.built[shape as usize].increment(1);
        *bodies.rendered[shape as usize].lock().expect("render lock") = Some(Rendered {
            inputs: answers.to_vec(),
            body: body.clone(),
            calls,
        });
        (body, calls)
    }
}

impl Bodies {
    /// The last body built for `shape`, if it was built from exactly these answers.
    fn reuse(&self, shape: Shape, answers: &[Answer]) -> Option<(Written, usize)> {
        let slot = self.rendered[shape as usize].lock().expect("render lock");
        let r = slot.as_ref()?;
        let same = r.inputs.len() == answers.len()
            && r.inputs.iter().zip(answers).all(|pair| match pair {
                (Ok(had), Ok(now)) => Arc::ptr_eq(had, now),
                (Err(had), Err(now)) => had == now,
                _ => false,
            });
        same.then(|| (r.body.clone(), r.calls))
    }
}

/// Merges the answers and writes them in `shape`, with `errors` naming the failures.
fn build(
    shape: Shape,
    org: &str,
    answers: &[Answer],
    failures: &[ProviderFailure],
) -> (Written, usize) {
    let merged = merge::merge(answers);
    let body = with_error_items(failures, |errors| shape.write_parts(&merged, org, errors));
    (body, merged.len())
}

/// Writes a body with the `errors` entries naming `failures`, through `write`.
pub fn with_error_items<R>(
    failures: &[ProviderFailure],
    write: impl FnOnce(&[ErrorItem<'_>]) -> R,
) -> R {
    let messages: Vec<String> = failures.iter().map(|f| f.error.to_string()).collect();
    let items: Vec<ErrorItem<'_>> = failures
        .iter()
        .zip(&messages)
        .map(|(f, m)| ErrorItem {
            provider: Some(&f.provider),
            error: f.error.code(),
            message: m,
        })
        .collect();
    write(&items)
}

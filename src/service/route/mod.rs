//! Placing a call on a route (DESIGN §16): the org's route chosen, a target with room picked
//! by the route's strategy and a place held on it before anything is sent, failover past
//! refusals, the first-come queue when every target is full, and `Idempotency-Key`.

pub mod attempt;
pub mod by_key;
pub mod choose;
pub mod cooldown;
pub mod held;
pub mod idempotency;
pub mod request;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::auth::{self, Presented};
use super::control::ControlError;
use super::{Built, ListError, Service};
use crate::config::{OrgSpec, RouteSpec};
use crate::error_code::ErrorCode;
use crate::provider::place::{PlaceOutcome, PlaceRequest};
use crate::provider::RequestContext;
pub use attempt::Attempt;
use choose::Open;
use idempotency::{Begin, Kept, Keys};
use request::Placement;

/// How often a queued placement looks again for room when no place was seen to free (a
/// hold that ran out, another replica's call that ended).
const RECHECK: Duration = Duration::from_millis(250);

/// What placing on routes keeps across reloads: the idempotency keys, each route's queue, and
/// the signal that a place may have freed.
#[derive(Default)]
pub struct Placing {
    keys: Keys,
    queues: Mutex<HashMap<String, Arc<Queue>>>,
    /// The calls each key placed that may be active (`max_active_placed`).
    by_key: by_key::PlacedByKey,
    /// Notified whenever a place may have freed: a list showing other calls, an end through
    /// callmux, a pushed end, a refused placement's place released.
    freed: Notify,
}

/// One route's waiting placements on this replica, first come first served.
#[derive(Default)]
struct Queue {
    /// Held by the placement at the head of the line.
    line: tokio::sync::Mutex<()>,
    waiting: AtomicU32,
}

/// Leaves the count of waiting placements when dropped (answered, timed out or cancelled).
struct Waiting<'a>(&'a AtomicU32);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A call placed on a route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RoutePlaced {
    pub call_id: String,
    pub provider: String,
    pub route: String,
    /// Always `queued`: the platform has taken the call; lists show how it goes on.
    pub status: &'static str,
    /// The targets tried before, in order; empty when the first took it.
    pub attempts: Vec<Attempt>,
    /// The number called: not in the answer, but in the call every view shows at once.
    #[serde(skip)]
    pub to: String,
}

impl RoutePlaced {
    /// The placed call as the lists show it until its platform lists it itself.
    pub fn call(&self) -> crate::call::Call {
        let mut call = crate::call::Call::new(
            self.call_id.as_str(),
            Arc::from(self.provider.as_str()),
            crate::call::CallStatus::Queued,
        );
        call.to = Some(crate::call::Text::from(self.to.as_str()));
        call.direction = Some(crate::call::Direction::Outbound);
        call.created_at = Some(crate::call::time::now_ms());
        call
    }
}

/// Which shape the placement came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    /// `POST /calls`.
    Own,
    /// `POST /api/call` on an org with routes.
    Agent,
}

/// What a placement answered: its status and body, rendered by the route's edge, and
/// whether it is a kept answer sent again.
#[derive(Debug)]
pub struct Answered {
    pub kept: Kept,
    pub replayed: bool,
    /// The call this request placed (not a kept answer's).
    pub placed: Option<RoutePlaced>,
}

impl Service {
    /// A call was ended through callmux: its held place frees at once, here and in the
    /// fleet, and queued placements look again.
    pub(super) async fn call_ended(&self, provider: &str, call_id: &str) {
        if let Some(built) = self.providers.iter().find(|b| b.spec.id == provider) {
            built.reserved.ended(call_id);
        }
        if let Some(redis) = self.store.redis() {
            held::ended(redis, provider, call_id).await;
        }
        self.placing.freed();
    }
}

impl Placing {
    fn queue(&self, route: &str) -> Arc<Queue> {
        self.queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(route.to_owned())
            .or_default()
            .clone()
    }

    /// After a reload: forgets the queues of routes that are gone, once nobody waits in them.
    pub fn reloaded(&self, routes: &[crate::config::RouteSpec]) {
        self.queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|id, queue| routes.iter().any(|r| r.id == *id) || Arc::strong_count(queue) > 1);
    }

    #[cfg(test)]
    fn queues(&self) -> usize {
        self.queues.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// A place may have freed: queued placements look again.
    pub fn freed(&self) {
        self.freed.notify_waiters();
    }
}

impl Service {
    /// Whether `presented`'s org places calls on routes (`POST /api/call` then uses its
    /// default route rather than part two's agent-server placement).
    pub fn places_on_routes(&self, presented: &Presented) -> bool {
        auth::identify(&self.config, presented).is_ok_and(|i| !i.org().routes.is_empty())
    }

    /// Places a call for `presented`'s org on one of its routes. `body` is read only once the
    /// caller is known; `idempotency` is the `Idempotency-Key` header as sent. `render` turns
    /// an outcome into the status and body the client sees (and a kept answer keeps).
    /// Audited and counted whatever the outcome.
    pub async fn place_on_route(
        &self,
        asked: Asked,
        presented: &Presented,
        idempotency: Option<&[u8]>,
        body: impl Future<Output = Result<Bytes, ControlError>>,
        render: impl Fn(&Result<RoutePlaced, ControlError>) -> Kept,
    ) -> Result<Answered, ControlError> {
        let identity = auth::identify(&self.config, presented)?;
        let org = identity.org();
        let org_id = self.orgs[&org.id].id.clone();
        let key_name = identity.key_name();
        let result = async {
            self.vouch(&identity, presented).await?;
            let key = request::idempotency_key(idempotency).map_err(ControlError::InvalidBody)?;
            let body = body.await?;
            let placement = match asked {
                Asked::Own => request::own(&body),
                Asked::Agent => request::agent(&body),
            }
            .map_err(ControlError::InvalidBody)?;
            let route = self.route_of(org, placement.route.as_deref())?;
            let ctx = self.context(&identity, presented);
            Ok((key, body, placement, route, ctx))
        }
        .await;
        let (key, body, placement, route, ctx) = match result {
            Ok(ready) => ready,
            Err(e) => {
                self.audit_placement(&org_id, key_name, "", "", &Err(&e));
                return Err(e);
            }
        };
        let redis = self.store.redis().map(|r| &**r);
        let digest = idempotency::digest(&body);
        if let Some(key) = &key {
            let refused = match self.placing.keys.begin(&org_id, key, digest, redis).await {
                Begin::Fresh => None,
                Begin::Replay(kept) => {
                    return Ok(Answered {
                        kept,
                        replayed: true,
                        placed: None,
                    })
                }
                Begin::Reused => Some(ControlError::IdempotencyReused),
                Begin::InFlight => Some(ControlError::IdempotencyInFlight),
            };
            if let Some(e) = refused {
                self.audit_placement(&org_id, key_name, &route.id, "", &Err(&e));
                return Err(e);
            }
        }
        // The key's own bound on the calls it placed that are still active.
        let slot = match identity
            .key()
            .and_then(|k| Some((k, k.limits.max_active_placed?)))
        {
            None => None,
            Some((k, max)) => {
                let runtime = &self.orgs[&org.id];
                let latest = runtime.last.latest();
                let listed = |provider: &str, call: &str| {
                    latest.as_deref().is_some_and(|s| {
                        s.calls().any(|c| {
                            &*c.provider == provider && c.call_id == call && c.status.is_active()
                        })
                    })
                };
                match self.placing.by_key.take(&org_id, &k.name, max, listed) {
                    Some(taken) => Some(taken),
                    None => {
                        let e = ControlError::KeyFull {
                            key: k.name.to_string(),
                            max,
                        };
                        self.audit_placement(&org_id, key_name, &route.id, "", &Err(&e));
                        if let Some(key) = &key {
                            self.placing.keys.forget(&org_id, key, redis).await;
                        }
                        return Err(e);
                    }
                }
            }
        };
        let result = self
            .place_checked(org, route, &placement, &ctx, presented)
            .await;
        if let Some(taken) = &slot {
            match &result {
                Ok(placed) => self
                    .placing
                    .by_key
                    .placed(taken, &placed.provider, &placed.call_id),
                Err(ControlError::PlaceUnknown { .. }) => self.placing.by_key.unknown(taken),
                Err(_) => self.placing.by_key.release(taken),
            }
        }
        let provider = match &result {
            Ok(placed) => placed.provider.as_str(),
            Err(e) => e.provider().map_or("", |p| &**p),
        };
        self.audit_placement(&org_id, key_name, &route.id, provider, &result.as_ref());
        // An answer that says what became of the call is kept; one that placed nothing and
        // may be retried (a full route) is not.
        let keep = match &result {
            Ok(_) => true,
            Err(e) => matches!(
                e,
                ControlError::Rejected { .. } | ControlError::PlaceUnknown { .. }
            ),
        };
        if !keep {
            if let Some(key) = &key {
                self.placing.keys.forget(&org_id, key, redis).await;
            }
            return Err(result.expect_err("only failures are not kept"));
        }
        let kept = render(&result);
        if let Some(key) = &key {
            self.placing
                .keys
                .finish(&org_id, key, digest, kept.clone(), redis)
                .await;
        }
        Ok(Answered {
            kept,
            replayed: false,
            placed: result.ok(),
        })
    }

    /// The route `asked` (or the org's default) if the org may use it.
    fn route_of(&self, org: &OrgSpec, asked: Option<&str>) -> Result<&RouteSpec, ControlError> {
        let id = match asked {
            Some(id) => id,
            None => org.routes.first().ok_or_else(|| {
                ControlError::RouteNotFound(
                    "this organisation has no routes to place calls on; list them in \
                     [orgs.<id>] routes = [\"...\"]"
                        .into(),
                )
            })?,
        };
        if !org.routes.iter().any(|r| r == id) {
            let shown: String = id.chars().take(64).collect();
            return Err(ControlError::RouteNotFound(format!(
                "route {shown:?} is not one this organisation may use; it may use {:?}",
                org.routes
            )));
        }
        self.config
            .route(id)
            .ok_or_else(|| ControlError::RouteNotFound(format!("route {id:?} is not configured")))
    }

    /// Choosing, holding, sending and failing over, until a target takes the call, one says
    /// what became of it, or no target is left (after the queue's wait, if it has one).
    async fn place_checked(
        &self,
        org: &OrgSpec,
        route: &RouteSpec,
        placement: &Placement,
        ctx: &RequestContext,
        presented: &Presented,
    ) -> Result<RoutePlaced, ControlError> {
        let targets: Vec<&Built> = route
            .targets
            .iter()
            .map(|t| {
                self.providers
                    .iter()
                    .find(|b| b.spec.id == t.provider)
                    .expect("config validation names only defined providers in routes")
            })
            .collect();
        let mut tried = vec![false; targets.len()];
        let mut attempts: Vec<Attempt> = Vec::new();
        let queue = self.placing.queue(&route.id);
        let deadline = Instant::now() + route.queue_timeout;
        let mut in_line = None;
        // A placement arriving while others wait goes behind them.
        if !route.queue_timeout.is_zero() && queue.waiting.load(Ordering::Relaxed) > 0 {
            in_line = Some(self.join(route, &queue, deadline, &attempts).await?);
        }
        loop {
            let freed = pin!(self.placing.freed.notified());
            let mut freed = freed;
            freed.as_mut().enable();
            let chosen = self
                .choose(org, ctx, route, &targets, &tried, presented)
                .await?;
            let Some((at, hold)) = chosen else {
                if tried.iter().all(|&t| t) || route.queue_timeout.is_zero() {
                    return Err(self.full(route, &targets, attempts));
                }
                if in_line.is_none() {
                    in_line = Some(self.join(route, &queue, deadline, &attempts).await?);
                    continue;
                }
                tokio::select! {
                    _ = freed => {}
                    _ = tokio::time::sleep(RECHECK) => {}
                    _ = tokio::time::sleep_until(deadline) => {
                        return Err(self.full(route, &targets, attempts));
                    }
                }
                continue;
            };
            // Out of the line before sending: the next in line may take another place.
            in_line = None;
            tried[at] = true;
            let built = targets[at];
            let target = &route.targets[at];
            let provider: Arc<str> = Arc::from(built.spec.id.as_str());
            let request = PlaceRequest {
                to: placement.to.clone(),
                variables: placement.variables.clone(),
                metadata: placement.metadata.clone(),
                prompt: placement.prompt.clone(),
                webhook_url: placement.webhook_url.clone(),
                target: target.settings.clone(),
            };
            let places = built
                .backend
                .places
                .as_ref()
                .expect("config validation takes only targets that place calls");
            let outcome = places.place(ctx, &request).await;
            let redis = self.store.redis().map(|r| &**r);
            let cooling = built.spec.common.placing;
            match outcome {
                PlaceOutcome::Placed { call_id, limits } => {
                    hold.keep(Some(&call_id)).await;
                    if let Some(limits) = limits {
                        built.backend.capacity.learn(&limits);
                    }
                    built.cooldown.succeeded();
                    self.placed_call(org, ctx, &provider, &call_id).await;
                    return Ok(RoutePlaced {
                        call_id,
                        provider: provider.to_string(),
                        route: route.id.clone(),
                        status: "queued",
                        attempts,
                        to: placement.to.clone(),
                    });
                }
                PlaceOutcome::Refused {
                    code,
                    reason,
                    limits,
                } => {
                    hold.release().await;
                    self.placing.freed();
                    if let Some(limits) = limits {
                        built.backend.capacity.learn(&limits);
                    }
                    built.cooldown.failed(&provider, cooling, redis).await;
                    attempts.push(Attempt {
                        provider: provider.to_string(),
                        error: code,
                        message: reason,
                    });
                }
                PlaceOutcome::Rejected { message } => {
                    hold.release().await;
                    self.placing.freed();
                    built.cooldown.succeeded();
                    return Err(ControlError::Rejected {
                        provider,
                        message,
                        attempts,
                    });
                }
                PlaceOutcome::Unknown { reason } => {
                    // The call may exist: its place stays held until the hold runs out.
                    hold.keep(None).await;
                    built.cooldown.failed(&provider, cooling, redis).await;
                    return Err(ControlError::PlaceUnknown {
                        provider,
                        reason,
                        attempts,
                    });
                }
            }
        }
    }

    /// Joins the route's line: refused at once when `max_queued` wait already, or when the
    /// line does not move before `deadline`.
    async fn join<'q>(
        &self,
        route: &RouteSpec,
        queue: &'q Queue,
        deadline: Instant,
        attempts: &[Attempt],
    ) -> Result<(tokio::sync::MutexGuard<'q, ()>, Waiting<'q>), ControlError> {
        if queue.waiting.fetch_add(1, Ordering::Relaxed) >= route.max_queued {
            queue.waiting.fetch_sub(1, Ordering::Relaxed);
            return Err(ControlError::RouteFull {
                route: route.id.clone(),
                why: format!(
                    "its {} queued placements wait already (max_queued)",
                    route.max_queued
                ),
                attempts: attempts.to_vec(),
                retry_after: super::control::RETRY_AFTER_SECS,
            });
        }
        let waiting = Waiting(&queue.waiting);
        match tokio::time::timeout_at(deadline, queue.line.lock()).await {
            Ok(guard) => Ok((guard, waiting)),
            Err(_) => Err(ControlError::RouteFull {
                route: route.id.clone(),
                why: format!(
                    "no place freed within its queue_timeout_ms of {}",
                    route.queue_timeout.as_millis()
                ),
                attempts: attempts.to_vec(),
                retry_after: super::control::RETRY_AFTER_SECS,
            }),
        }
    }

    /// 503 `AT_CAPACITY`: no target left with room, with when to retry (the soonest cooldown
    /// end, if a cooling target is why).
    fn full(&self, route: &RouteSpec, targets: &[&Built], attempts: Vec<Attempt>) -> ControlError {
        let soonest = targets.iter().filter_map(|b| b.cooldown.until_ms()).min();
        let why = if attempts.is_empty() {
            "every target is full, cooling down or failing".to_owned()
        } else {
            "every target with room refused the call (see attempts)".to_owned()
        };
        ControlError::RouteFull {
            route: route.id.clone(),
            why,
            attempts,
            retry_after: cooldown::retry_after(soonest),
        }
    }

    /// The target to try now, with a place held on it; `None` when none has room.
    async fn choose(
        &self,
        org: &OrgSpec,
        ctx: &RequestContext,
        route: &RouteSpec,
        targets: &[&Built],
        tried: &[bool],
        presented: &Presented,
    ) -> Result<Option<(usize, held::Held)>, ControlError> {
        let redis = self.store.redis().map(|r| &**r);
        let mut left = Vec::with_capacity(targets.len());
        for (at, built) in targets.iter().enumerate() {
            if !tried[at] && !built.cooldown.cooling(&built.spec.id, redis).await {
                left.push((at, built.backend.capacity.figures().await));
            }
        }
        // Headroom needs the calls listed now: the lists' own snapshot and caches, so no
        // extra upstream ask when a list was just answered. A target without a limit needs
        // no count, so a route none of whose targets has one asks no one, and reads open
        // circuits from the last snapshot.
        let snapshot = if left.iter().any(|(_, f)| f.limit.is_some()) {
            match self.list(presented).await {
                Ok(listed) => Some(listed.snapshot),
                Err(ListError::Auth(e)) => return Err(e.into()),
                Err(ListError::AllFailed { .. }) => None,
            }
        } else {
            let runtime = &self.orgs[&org.id];
            match runtime.caller_slot(ctx) {
                Some(slot) => slot.latest(),
                None => runtime.last.latest(),
            }
        };
        let mut open = Vec::with_capacity(left.len());
        let mut bases = vec![None; targets.len()];
        for (at, figures) in left {
            let built = targets[at];
            let id = built.spec.id.as_str();
            let failure = snapshot
                .as_deref()
                .and_then(|s| s.failures().iter().find(|f| &*f.provider == id));
            if failure.is_some_and(|f| f.error.code() == ErrorCode::CircuitOpen) {
                continue;
            }
            // Only a target with a limit needs its calls counted.
            let count = figures
                .limit
                .map(|_| built.count(snapshot.as_deref(), failure.is_some(), &figures));
            let headroom = count
                .as_ref()
                .zip(figures.limit)
                .map(|(count, limit)| u64::from(limit).saturating_sub(count.listed + count.held));
            if headroom == Some(0) {
                continue;
            }
            let (listed, shown) = count.map_or((0, HashSet::new()), |c| (c.listed, c.shown));
            bases[at] = Some((listed, figures.limit, shown));
            open.push(Open {
                at,
                headroom,
                weight: route.targets[at].weight,
            });
        }
        // Held in the strategy's order: a target whose last place another placement took
        // meanwhile is passed over for the next.
        while let Some(at) = choose::pick(route.strategy, &open, |n| fastrand::u64(0..n)) {
            let (listed, limit, shown) = bases[at].take().expect("an open target has its figures");
            let hold = held::Held::take(
                &targets[at].spec.id,
                &targets[at].reserved,
                self.store.redis(),
                listed,
                limit,
                |call| shown.contains(call),
            )
            .await;
            if let Some(hold) = hold {
                return Ok(Some((at, hold)));
            }
            open.retain(|o| o.at != at);
        }
        Ok(None)
    }

    /// A call just placed: in the org's call → provider index at once, here and in the
    /// fleet's, so it can be ended through any replica before any list shows it.
    async fn placed_call(
        &self,
        org: &OrgSpec,
        ctx: &RequestContext,
        provider: &Arc<str>,
        call_id: &str,
    ) {
        let runtime = &self.orgs[&org.id];
        let slot = runtime.caller_slot(ctx);
        let slot = slot.as_deref().unwrap_or(&runtime.last);
        slot.index.placed(call_id, provider.clone());
        if let Some(shared) = &self.shared_index {
            shared.placed(ctx, provider, call_id).await;
        }
    }

    /// Logs a placement at info and counts it in `callmux_placements_total`.
    fn audit_placement(
        &self,
        org: &str,
        key: &str,
        route: &str,
        provider: &str,
        result: &Result<&RoutePlaced, &ControlError>,
    ) {
        let (outcome, code, call_id, attempts) = match result {
            Ok(placed) => ("placed", "", placed.call_id.as_str(), placed.attempts.len()),
            Err(e) => (e.outcome(), e.code().as_str(), "", e.attempts().len()),
        };
        tracing::info!(
            route,
            org,
            key,
            provider,
            call_id,
            attempts,
            outcome,
            error = code,
            "placement"
        );
        self.telemetry
            .counter(
                "callmux_placements_total",
                &[
                    ("route", route),
                    ("provider", provider),
                    ("outcome", outcome),
                ],
            )
            .increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{RouteSpec, Strategy};

    fn route(id: &str) -> RouteSpec {
        RouteSpec {
            id: id.to_owned(),
            strategy: Strategy::Priority,
            queue_timeout: std::time::Duration::ZERO,
            max_queued: 1,
            targets: Vec::new(),
        }
    }

    #[test]
    fn a_reload_forgets_the_queue_of_a_removed_route_once_nobody_waits_in_it() {
        let placing = Placing::default();
        drop(placing.queue("kept"));
        drop(placing.queue("removed"));
        let waiting = placing.queue("removed-but-waited-on");
        placing.reloaded(&[route("kept")]);
        assert_eq!(placing.queues(), 2);
        drop(waiting);
        placing.reloaded(&[route("kept")]);
        assert_eq!(placing.queues(), 1);
    }
}

//! Call control in the service core: ending a call, routed to the provider that listed it for
//! the org, with the caller authenticated exactly as a list is. Never coalesced or cached.

use std::sync::Arc;

use super::auth::{self, AuthError, Identity, Presented};
use futures::StreamExt;

use super::merge::ProviderFailure;
use super::route::attempt::Attempt;
use super::{ListError, Service};
use crate::error_code::ErrorCode;
use crate::provider::{EndError, ProviderError, RequestContext};

/// The longest call id callmux passes on, in bytes.
pub const MAX_CALL_ID_BYTES: usize = 256;

/// How many ends stop-all sends to one provider at once.
const STOP_ALL_PER_PROVIDER: usize = 16;

/// What stop-all did.
#[derive(Debug)]
pub struct Stopped {
    /// Calls ended.
    pub ended: usize,
    /// Providers that could not be listed, or did not end every call they listed.
    pub failures: Vec<StopFailure>,
    /// Whether every provider of the org is in `failures`.
    pub every_provider_failed: bool,
}

/// One provider's part of stop-all that failed.
#[derive(Debug)]
pub struct StopFailure {
    pub provider: Arc<str>,
    pub code: ErrorCode,
    pub message: String,
}

impl StopFailure {
    /// A provider whose list failed, so none of its calls could be ended.
    fn unlisted(failure: &ProviderFailure) -> Self {
        Self {
            provider: failure.provider.clone(),
            code: failure.error.code(),
            message: format!(
                "could not be listed, so its calls were not ended: {}",
                failure.error
            ),
        }
    }
}

/// A call ended, and by whom.
#[derive(Debug, Clone)]
pub struct Ended {
    pub provider: Arc<str>,
}

/// Why a call was not ended. Messages name no URL, key or header value.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Auth(AuthError),
    #[error(
        "the call id is not one callmux passes on: it must be 1 to 256 bytes with no `/`, `?`, \
         `#`, `%`, whitespace or control characters"
    )]
    InvalidCallId,
    #[error("no active call with this id is visible to this organisation")]
    NotFound,
    #[error("{0}")]
    InvalidBody(String),
    #[error(
        "no provider of this organisation places calls: set place_calls = true on one of its \
         twilio-media-stream providers"
    )]
    NoPlacer,
    #[error(
        "every agent server of this organisation that places calls is at its max_active_calls; \
         try again later"
    )]
    AtCapacity,
    #[error("provider `{provider}` cannot end calls")]
    NotSupported { provider: Arc<str> },
    #[error(
        "provider `{provider}` {error}, so whether it took effect is unknown; list the calls to see"
    )]
    OutcomeUnknown {
        provider: Arc<str>,
        error: ProviderError,
    },
    #[error("provider `{provider}` {error}")]
    Failed {
        provider: Arc<str>,
        error: ProviderError,
    },
    #[error("{0}")]
    RouteNotFound(String),
    #[error("provider `{provider}` rejected the call: {message}")]
    Rejected {
        provider: Arc<str>,
        message: String,
        attempts: Vec<Attempt>,
    },
    #[error(
        "provider `{provider}` {reason}, so whether the call was placed is unknown; it is not \
         sent anywhere else: list the calls to see"
    )]
    PlaceUnknown {
        provider: Arc<str>,
        reason: String,
        attempts: Vec<Attempt>,
    },
    #[error("route `{route}` has no target with room: {why}; try again later")]
    RouteFull {
        route: String,
        why: String,
        attempts: Vec<Attempt>,
        /// Seconds, for `retry-after`.
        retry_after: u64,
    },
    #[error(
        "this Idempotency-Key was used with another body; use a new key for another placement"
    )]
    IdempotencyReused,
    #[error(
        "the first placement with this Idempotency-Key has not been answered yet; retry \
         shortly for its answer"
    )]
    IdempotencyInFlight,
    #[error(
        "key `{key}` has {max} placed calls active already (its max_active_placed); place \
         again when one ends"
    )]
    KeyFull { key: String, max: u32 },
}

/// What `AT_CAPACITY` asks a client to wait, in seconds, when no cooldown says sooner.
pub const RETRY_AFTER_SECS: u64 = 5;

impl ControlError {
    /// Seconds for `retry-after`: on the refusals a client may retry unchanged a little later.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::RouteFull { retry_after, .. } => Some(*retry_after),
            Self::AtCapacity | Self::KeyFull { .. } | Self::IdempotencyInFlight => {
                Some(RETRY_AFTER_SECS)
            }
            _ => None,
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            Self::Auth(e) => e.status(),
            Self::InvalidCallId | Self::InvalidBody(_) => 400,
            Self::NotFound => 404,
            Self::NoPlacer => 501,
            Self::AtCapacity => 503,
            Self::NotSupported { .. } => 501,
            Self::OutcomeUnknown { .. } | Self::PlaceUnknown { .. } => 504,
            Self::Failed { .. } => 502,
            Self::RouteNotFound(_) => 404,
            Self::Rejected { .. } | Self::IdempotencyReused => 422,
            Self::RouteFull { .. } | Self::KeyFull { .. } => 503,
            Self::IdempotencyInFlight => 409,
        }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Auth(e) => e.code(),
            Self::InvalidCallId => ErrorCode::InvalidCallId,
            Self::NotFound => ErrorCode::CallNotFound,
            Self::InvalidBody(_) => ErrorCode::InvalidBody,
            Self::NoPlacer => ErrorCode::NotSupported,
            Self::AtCapacity => ErrorCode::AtCapacity,
            Self::NotSupported { .. } => ErrorCode::NotSupported,
            Self::OutcomeUnknown { .. } | Self::PlaceUnknown { .. } => ErrorCode::OutcomeUnknown,
            Self::Failed { error, .. } => error.code(),
            Self::RouteNotFound(_) => ErrorCode::RouteNotFound,
            Self::Rejected { .. } => ErrorCode::PlaceRejected,
            Self::RouteFull { .. } | Self::KeyFull { .. } => ErrorCode::AtCapacity,
            Self::IdempotencyReused => ErrorCode::IdempotencyKeyReused,
            Self::IdempotencyInFlight => ErrorCode::IdempotencyInFlight,
        }
    }

    /// The provider the failure is about, if one was reached.
    pub fn provider(&self) -> Option<&Arc<str>> {
        match self {
            Self::NotSupported { provider }
            | Self::OutcomeUnknown { provider, .. }
            | Self::PlaceUnknown { provider, .. }
            | Self::Rejected { provider, .. }
            | Self::Failed { provider, .. } => Some(provider),
            _ => None,
        }
    }

    /// The `outcome` label of the control-action counter.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Auth(_) => "auth_failed",
            Self::InvalidCallId => "invalid_call_id",
            Self::NotFound => "not_found",
            Self::InvalidBody(_) => "invalid_body",
            Self::NoPlacer => "not_supported",
            Self::AtCapacity => "at_capacity",
            Self::NotSupported { .. } => "not_supported",
            Self::OutcomeUnknown { .. } | Self::PlaceUnknown { .. } => "outcome_unknown",
            Self::Failed { .. } => "failed",
            Self::RouteNotFound(_) => "route_not_found",
            Self::Rejected { .. } => "rejected",
            Self::RouteFull { .. } | Self::KeyFull { .. } => "at_capacity",
            Self::IdempotencyReused => "idempotency_key_reused",
            Self::IdempotencyInFlight => "idempotency_in_flight",
        }
    }

    /// The targets a placement tried before this answer.
    pub fn attempts(&self) -> &[Attempt] {
        match self {
            Self::Rejected { attempts, .. }
            | Self::PlaceUnknown { attempts, .. }
            | Self::RouteFull { attempts, .. } => attempts,
            _ => &[],
        }
    }
}

impl From<AuthError> for ControlError {
    fn from(e: AuthError) -> Self {
        Self::Auth(e)
    }
}

/// Whether `id` may go into an upstream path: 1 to 256 bytes, none of `/ ? # %`, no
/// whitespace and no control characters.
pub fn valid_call_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_CALL_ID_BYTES
        && !matches!(id, "." | "..")
        && !id
            .chars()
            .any(|c| matches!(c, '/' | '?' | '#' | '%') || c.is_whitespace() || c.is_control())
}

impl Service {
    /// Ends `call_id` for the caller's org; see [`Service::end_call_on`].
    pub async fn end_call(
        &self,
        presented: &Presented,
        call_id: &str,
    ) -> Result<Ended, ControlError> {
        self.end_call_on("end", presented, call_id).await
    }

    /// Ends `call_id` for the caller's org, asked through `route` (the metrics label):
    /// authenticated as a list is, the id checked before anything is sent, and the end sent
    /// once to the provider that listed the call for this org. Logged and counted whatever
    /// the outcome.
    pub async fn end_call_on(
        &self,
        route: &'static str,
        presented: &Presented,
        call_id: &str,
    ) -> Result<Ended, ControlError> {
        let (org, result) = self.end(presented, call_id).await;
        let (provider, outcome) = match &result {
            Ok(ended) => (Some(&ended.provider), "ended"),
            Err(e) => (e.provider(), e.outcome()),
        };
        let provider = provider.map_or("", |p| &**p);
        let code = result.as_ref().err().map_or("", |e| e.code().as_str());
        let key = self.key_name(presented);
        self.audit(route, org.as_deref(), key, provider, call_id, outcome, code);
        result
    }

    /// Ends every active call the caller's org sees, on every provider at once: a fresh
    /// list, then each call's end sent once to the provider that listed it. Logged and
    /// counted per provider.
    pub async fn stop_all(&self, presented: &Presented) -> Result<Stopped, ControlError> {
        let identity = match auth::identify(&self.config, presented) {
            Ok(identity) => identity,
            Err(e) => {
                self.audit(
                    "stop_all",
                    None,
                    "",
                    "",
                    "",
                    "auth_failed",
                    e.code().as_str(),
                );
                return Err(e.into());
            }
        };
        let org = identity.org();
        let key = identity.key_name();
        let ctx = self.context(&identity, presented);
        let (calls, mut failures) = match self.list(presented).await {
            Ok(listed) => {
                let snapshot = &listed.snapshot;
                let mut by_provider: Vec<(Arc<str>, Vec<String>)> = Vec::new();
                for call in snapshot.calls() {
                    match by_provider.iter_mut().find(|(p, _)| *p == call.provider) {
                        Some((_, ids)) => ids.push(call.call_id.to_string()),
                        None => by_provider
                            .push((call.provider.clone(), vec![call.call_id.to_string()])),
                    }
                }
                let failures: Vec<StopFailure> = snapshot
                    .failures()
                    .iter()
                    .map(StopFailure::unlisted)
                    .collect();
                (by_provider, failures)
            }
            Err(ListError::Auth(e)) => {
                self.audit(
                    "stop_all",
                    Some(&org.id),
                    key,
                    "",
                    "",
                    "auth_failed",
                    e.code().as_str(),
                );
                return Err(e.into());
            }
            Err(ListError::AllFailed { failures, .. }) => (
                Vec::new(),
                failures.iter().map(StopFailure::unlisted).collect(),
            ),
        };
        let per_provider = calls.iter().map(|(provider, ids)| {
            let ctx = &ctx;
            async move {
                let ends: Vec<_> = ids
                    .iter()
                    .map(|id| async move {
                        // A listed id callmux will not pass on is still live: a failure, not
                        // a call that ended meanwhile.
                        if !valid_call_id(id) {
                            return (id, Err(ControlError::InvalidCallId));
                        }
                        (id, self.end_on(org, provider, ctx, id).await)
                    })
                    .collect();
                let outcomes: Vec<(&String, Result<(), ControlError>)> =
                    futures::stream::iter(ends)
                        .buffer_unordered(STOP_ALL_PER_PROVIDER)
                        .collect()
                        .await;
                (provider, outcomes)
            }
        });
        let mut ended = 0;
        for (provider, outcomes) in futures::future::join_all(per_provider).await {
            let mut failed = Vec::new();
            for (id, outcome) in &outcomes {
                let (label, code) = match outcome {
                    Ok(()) => ("ended", ""),
                    Err(e) => (e.outcome(), e.code().as_str()),
                };
                self.audit("stop_all", Some(&org.id), key, provider, id, label, code);
                match outcome {
                    Ok(()) => ended += 1,
                    // Ended meanwhile, by someone else or by hanging up: nothing to stop.
                    Err(ControlError::NotFound) => {}
                    Err(e) => failed.push(e),
                }
            }
            if let Some(first) = failed.first() {
                failures.push(StopFailure {
                    provider: provider.clone(),
                    code: first.code(),
                    message: format!(
                        "{} of its {} calls were not ended; the first: {}",
                        failed.len(),
                        outcomes.len(),
                        first
                    ),
                });
            }
        }
        Ok(Stopped {
            ended,
            every_provider_failed: failures.len() == org.providers.len(),
            failures,
        })
    }

    /// Logs a control action at info and counts it; the id as the client sent it may hold
    /// anything, so it is logged escaped and cut short.
    /// The name of the key `presented` is, for the audit line; empty if it is none.
    pub(super) fn key_name(&self, presented: &Presented) -> &str {
        auth::identify(&self.config, presented).map_or("", |i| i.key_name())
    }

    #[allow(clippy::too_many_arguments)] // one audit line's fields, each named at the call
    pub(super) fn audit(
        &self,
        route: &'static str,
        org: Option<&str>,
        key: &str,
        provider: &str,
        call_id: &str,
        outcome: &'static str,
        code: &str,
    ) {
        let shown: String = call_id.chars().take(MAX_CALL_ID_BYTES).collect();
        tracing::info!(
            route,
            org = org.unwrap_or(""),
            key,
            provider,
            call_id = ?shown,
            outcome,
            error = code,
            "control action"
        );
        self.telemetry
            .counter(
                "callmux_control_actions_total",
                &[
                    ("route", route),
                    ("key", key),
                    ("provider", provider),
                    ("outcome", outcome),
                ],
            )
            .increment(1);
    }

    /// The end itself, and the org it was for once known (for the log).
    async fn end(
        &self,
        presented: &Presented,
        call_id: &str,
    ) -> (Option<Arc<str>>, Result<Ended, ControlError>) {
        let identity = match auth::identify(&self.config, presented) {
            Ok(identity) => identity,
            Err(e) => return (None, Err(e.into())),
        };
        let runtime = &self.orgs[&identity.org().id];
        let org = Some(runtime.id.clone());
        if !valid_call_id(call_id) {
            return (org, Err(ControlError::InvalidCallId));
        }
        (org, self.end_checked(identity, presented, call_id).await)
    }

    async fn end_checked(
        &self,
        identity: Identity<'_>,
        presented: &Presented,
        call_id: &str,
    ) -> Result<Ended, ControlError> {
        let org = identity.org();
        let runtime = &self.orgs[&org.id];
        let ctx = self.context(&identity, presented);
        let caller_slot = runtime.caller_slot(&ctx);
        let slot = caller_slot.as_deref().unwrap_or(&runtime.last);
        // A caller who brings a Bland key proves it as a list would, unless Bland accepted
        // the same key moments ago; the index then routes the call.
        let vouched = match identity {
            Identity::ViaUpstream(..) => self.verdicts.is_accepted(&org.id, presented).await,
            Identity::Verified(..) => true,
        };
        let kept = vouched
            .then(|| slot.latest())
            .flatten()
            .and_then(|last| slot.index.owner(&last, call_id));
        // Not known here: another replica may have listed it (with a fleet).
        let kept = match (kept, &self.shared_index) {
            (None, Some(shared)) if vouched => shared.owner(&ctx, &org.providers, call_id).await,
            (kept, _) => kept,
        };
        let owner = match kept {
            Some(owner) => owner,
            None => match self.list(presented).await {
                Ok(listed) => slot
                    .index
                    .owner(&listed.snapshot, call_id)
                    .ok_or(ControlError::NotFound)?,
                Err(ListError::Auth(e)) => return Err(e.into()),
                // No provider answered, so no owner can be found: the first failure is the
                // answer, as it would be for the list.
                Err(ListError::AllFailed { failures, .. }) => {
                    let first = failures.into_iter().next().ok_or(ControlError::NotFound)?;
                    return Err(ControlError::Failed {
                        provider: first.provider,
                        error: first.error,
                    });
                }
            },
        };
        self.end_on(org, &owner, &ctx, call_id).await?;
        Ok(Ended { provider: owner })
    }

    /// Sends the end of `call_id` to `owner`, which must be one of `org`'s providers.
    pub(super) async fn end_on(
        &self,
        org: &crate::config::OrgSpec,
        owner: &Arc<str>,
        ctx: &RequestContext,
        call_id: &str,
    ) -> Result<(), ControlError> {
        let built = self
            .providers
            .iter()
            .find(|b| *b.spec.id == **owner && org.providers.iter().any(|p| **p == **owner))
            .ok_or(ControlError::NotFound)?;
        let Some(end) = &built.backend.end else {
            return Err(ControlError::NotSupported {
                provider: owner.clone(),
            });
        };
        match end.end_call(ctx, call_id).await {
            Ok(()) => {
                self.call_ended(owner, call_id).await;
                Ok(())
            }
            Err(EndError::NotFound) => Err(ControlError::NotFound),
            Err(EndError::Failed(error)) if error.outcome_unknown() => {
                Err(ControlError::OutcomeUnknown {
                    provider: owner.clone(),
                    error,
                })
            }
            Err(EndError::Failed(error)) => Err(ControlError::Failed {
                provider: owner.clone(),
                error,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_ids_that_could_change_an_upstream_path_are_invalid() {
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "x?y",
            "x#y",
            "a%2Fb",
            "a b",
            "a\tb",
            "a\0b",
            "a\u{7f}",
            &"x".repeat(257),
        ] {
            assert!(!valid_call_id(bad), "{bad:?}");
        }
        for good in ["c1", "CA0123abcd", "a.b-c_d:e", &"x".repeat(256)] {
            assert!(valid_call_id(good), "{good:?}");
        }
    }
}

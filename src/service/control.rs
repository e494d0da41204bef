//! Call control in the service core: ending a call, routed to the provider that listed it for
//! the org, with the caller authenticated exactly as a list is. Never coalesced or cached.

use std::sync::Arc;

use super::auth::{self, AuthError, Identity, Presented};
use super::{ListError, Service, Snapshot};
use crate::provider::{EndError, ProviderError, RequestContext};

/// The longest call id callmux passes on, in bytes.
pub const MAX_CALL_ID_BYTES: usize = 256;

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
    #[error("provider `{provider}` cannot end calls")]
    NotSupported { provider: Arc<str> },
    #[error(
        "provider `{provider}` {error}: the call may or may not have ended; list the calls to see"
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
}

impl ControlError {
    pub fn status(&self) -> u16 {
        match self {
            Self::Auth(e) => e.status(),
            Self::InvalidCallId => 400,
            Self::NotFound => 404,
            Self::NotSupported { .. } => 501,
            Self::OutcomeUnknown { .. } => 504,
            Self::Failed { .. } => 502,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::Auth(e) => e.code(),
            Self::InvalidCallId => "INVALID_CALL_ID",
            Self::NotFound => "CALL_NOT_FOUND",
            Self::NotSupported { .. } => "NOT_SUPPORTED",
            Self::OutcomeUnknown { .. } => "OUTCOME_UNKNOWN",
            Self::Failed { error, .. } => error.code(),
        }
    }

    /// The provider the failure is about, if one was reached.
    pub fn provider(&self) -> Option<&Arc<str>> {
        match self {
            Self::NotSupported { provider }
            | Self::OutcomeUnknown { provider, .. }
            | Self::Failed { provider, .. } => Some(provider),
            _ => None,
        }
    }

    /// The `outcome` label of the control-action counter.
    fn outcome(&self) -> &'static str {
        match self {
            Self::Auth(_) => "auth_failed",
            Self::InvalidCallId => "invalid_call_id",
            Self::NotFound => "not_found",
            Self::NotSupported { .. } => "not_supported",
            Self::OutcomeUnknown { .. } => "outcome_unknown",
            Self::Failed { .. } => "failed",
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
        // The id as the client sent it may hold anything: logged escaped, and cut short.
        let shown: String = call_id.chars().take(MAX_CALL_ID_BYTES).collect();
        tracing::info!(
            route,
            org = org.as_deref().unwrap_or(""),
            provider,
            call_id = ?shown,
            outcome,
            error = result.as_ref().err().map(|e| e.code()).unwrap_or(""),
            "control action: end call"
        );
        self.telemetry
            .counter(
                "callmux_control_actions_total",
                &[
                    ("route", route),
                    ("provider", provider),
                    ("outcome", outcome),
                ],
            )
            .increment(1);
        result
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
        let ctx = RequestContext {
            org_id: runtime.id.clone(),
            forwarded: match identity {
                Identity::ViaUpstream(..) => presented.forwarded(),
                Identity::Verified(_) => None,
            },
        };
        // A caller who brings a Bland key proves it as a list would, unless Bland accepted
        // the same key moments ago; the list's snapshot then routes the call.
        let vouched = match identity {
            Identity::ViaUpstream(..) => self.verdicts.is_accepted(&org.id, presented).await,
            Identity::Verified(_) => true,
        };
        let kept = vouched
            .then(|| {
                let slot = match (&runtime.callers, &ctx.forwarded) {
                    (Some(callers), Some(caller)) => callers.get(&caller.digest()),
                    _ => None,
                };
                let last = match &slot {
                    Some(slot) => slot.last.lock().expect("snapshot lock").clone(),
                    None => runtime.last.last.lock().expect("snapshot lock").clone(),
                };
                last.as_deref().and_then(|s| owner(s, call_id))
            })
            .flatten();
        let owner = match kept {
            Some(owner) => owner,
            None => match self.list(presented).await {
                Ok(listed) => owner(&listed.snapshot, call_id).ok_or(ControlError::NotFound)?,
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
        // The owner is one of the org's providers: it listed the call for this org.
        let built = self
            .providers
            .iter()
            .find(|b| *b.spec.id == *owner && org.providers.iter().any(|p| **p == *owner))
            .ok_or(ControlError::NotFound)?;
        let Some(end) = &built.backend.end else {
            return Err(ControlError::NotSupported { provider: owner });
        };
        match end.end_call(&ctx, call_id).await {
            Ok(()) => Ok(Ended { provider: owner }),
            Err(EndError::NotFound) => Err(ControlError::NotFound),
            Err(EndError::Failed(error @ ProviderError::Timeout(_))) => {
                Err(ControlError::OutcomeUnknown {
                    provider: owner,
                    error,
                })
            }
            Err(EndError::Failed(error)) => Err(ControlError::Failed {
                provider: owner,
                error,
            }),
        }
    }
}

/// The provider that listed `call_id` in `snapshot`, if any did.
fn owner(snapshot: &Snapshot, call_id: &str) -> Option<Arc<str>> {
    snapshot
        .calls()
        .find(|c| c.call_id == call_id)
        .map(|c| c.provider.clone())
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

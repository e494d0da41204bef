//! What a backend kind is: the traits each kind's folder implements (reading and checking its
//! own settings, building its backend), apart from the list of kinds, so a kind never imports
//! the registry that names it.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use super::place::{PlaceOutcome, PlaceRequest};
use super::{Backend, Common, RequestContext};
use crate::settings::Check;

/// A backend kind: reads and checks its own part of a provider's table.
pub trait Kind: Sync {
    /// The `kind = "..."` value.
    fn name(&self) -> &'static str;

    /// Validates the kind's own fields of `providers.<id>` (`table` holds only those: the
    /// common ones are read apart). Problems go into `check`, naming fields under `at`.
    fn settings(
        &self,
        at: &str,
        table: &figment::value::Value,
        check: &mut Check<'_>,
    ) -> Option<Arc<dyn KindSettings>>;
}

/// One provider's validated, kind-specific settings.
pub trait KindSettings: fmt::Debug + Send + Sync + DynEq {
    fn kind(&self) -> &'static str;

    /// What `check-config` prints after the common settings, credentials masked: where the
    /// upstream is, and anything particular to the kind.
    fn summary(&self) -> String;

    /// Builds the backend.
    fn build(&self, id: Arc<str>, common: &Common) -> Result<Backend, String>;

    /// Whether the backend sends the caller's own credentials upstream (a `bland`
    /// provider without a key of its own): only orgs whose callers bring upstream keys
    /// may list it, and only such a provider can be an org's `auth`.
    fn forwards_caller_credentials(&self) -> bool {
        false
    }

    /// Reads and checks a route target's settings for this provider (`table` holds only the
    /// kind's own: `provider` and `weight` are read apart), naming fields under `at`. A kind
    /// (or a provider) that cannot place calls says so, naming `{at}.provider`.
    fn target(
        &self,
        at: &str,
        _table: &figment::value::Value,
        check: &mut Check<'_>,
    ) -> Option<Arc<dyn TargetSettings>> {
        check.push(
            format!("{at}.provider"),
            format!("is a `{}` provider, which cannot place calls", self.kind()),
            "choose a provider whose kind places calls",
        );
        None
    }
}

/// A route target's validated, kind-specific settings: what the kind needs to start a call
/// (an agent, a from number, a TwiML URL). The kind's placer downcasts them to its own type.
pub trait TargetSettings: fmt::Debug + Send + Sync + DynEq {
    /// What `check-config` prints for the target.
    fn summary(&self) -> String;
}

/// Placing a call through a provider: the one canonical request in, the one canonical
/// outcome out. Sent once, never again after any byte went out; the kind's wire shapes stay
/// in its own folder.
#[async_trait]
pub trait Places: Send + Sync {
    async fn place(&self, ctx: &RequestContext, request: &PlaceRequest) -> PlaceOutcome;
}

/// A target table that may hold no settings of its kind's own.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoFields {}

/// A target of no settings (agent servers, `static`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoTargetSettings;

impl TargetSettings for NoTargetSettings {
    fn summary(&self) -> String {
        String::new()
    }
}

/// The kind's own target settings out of `request`, or a refusal naming the mismatch (a
/// request built for another kind: callmux's bug, never the platform's).
pub fn target_of<T: 'static>(request: &PlaceRequest) -> Result<&T, PlaceOutcome> {
    request
        .target
        .as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| PlaceOutcome::Refused {
            reason: "the route target's settings are of another kind (a bug)".into(),
            limits: None,
        })
}

/// Settings compared across kinds, so a reload can keep a provider whose settings did not
/// change. Implemented for every `PartialEq` type.
pub trait DynEq {
    fn as_any(&self) -> &dyn Any;
    fn dyn_eq(&self, other: &dyn Any) -> bool;
}

impl<T: PartialEq + 'static> DynEq for T {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn dyn_eq(&self, other: &dyn Any) -> bool {
        other.downcast_ref::<T>() == Some(self)
    }
}

impl PartialEq for dyn KindSettings {
    fn eq(&self, other: &Self) -> bool {
        self.dyn_eq(other.as_any())
    }
}

impl Eq for dyn KindSettings {}

//! What a backend kind is: the traits each kind's folder implements (reading and checking its
//! own settings, building its backend), apart from the list of kinds, so a kind never imports
//! the registry that names it.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use super::{Backend, Common};
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

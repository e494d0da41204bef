//! What a backend kind is: the traits each kind's folder implements (reading and checking its
//! own settings, building its backend), apart from the list of kinds, so a kind never imports
//! the registry that names it.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use axum::http::HeaderMap;

use super::{Backend, Common};
use crate::call::{Call, CallStatus};
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

    /// The provider's platform webhooks (`POST /hooks/{kind}/{provider_id}`), when its
    /// settings give what checks them.
    fn hook(&self) -> Option<&dyn Hook> {
        None
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

/// A platform's webhooks, as one kind checks and reads them: the signature first, then the
/// status move the body carries. Bodies are read (at most `max_body` bytes, within a short
/// deadline of their own) only once `signed` found a signature to check.
pub trait Hook: Send + Sync {
    /// The largest body the platform sends.
    fn max_body(&self) -> usize {
        MAX_HOOK_BYTES
    }

    /// Whether the headers carry a signature at all, before any of the body is read.
    fn signed(&self, headers: &HeaderMap) -> Result<(), Refusal>;

    /// Checks the signature over the whole request and reads what it moves: `None` for a
    /// signed event that moves nothing (an event type not used, a status not known).
    fn read(&self, pushed: &Pushed<'_>) -> Result<Option<Move>, Refusal>;
}

/// Platform webhook bodies are capped at 1 MiB (DESIGN §17).
pub const MAX_HOOK_BYTES: usize = 1024 * 1024;

/// One pushed request, its body read whole.
pub struct Pushed<'a> {
    /// The query the hook was called with (Twilio signs the URL it called).
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    /// When it arrived, for signatures that carry a timestamp.
    pub now: SystemTime,
}

/// What a signed event moves: one call, forward only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub call_id: String,
    pub status: CallStatus,
    /// For a started event, the call as its body carries it (its provider set by whoever
    /// knows which provider took it): a call not listed yet is added with these fields.
    pub started: Option<Call>,
}

/// Why a pushed request moved nothing; each message names what was wrong and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 403: no signature header.
    MissingSignature(&'static str),
    /// 403: a signature that does not verify, in an odd form, or out of its time window.
    BadSignature(&'static str),
    /// 403: signed, but for another account.
    WrongAccount(&'static str),
    /// 400: signed, but not a body the platform sends.
    BadBody(String),
}

/// The value of header `name`, if it is there and text.
pub fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Whether `given` is the hex HMAC-SHA256 of `parts` keyed by `key`, compared in constant
/// time (any case of hex digits; anything not hex is not it).
pub fn hex_hmac_sha256_matches(key: &[u8], parts: &[&[u8]], given: &str) -> bool {
    use hmac::digest::KeyInit;
    use hmac::{Hmac, Mac};
    let Ok(given) = hex::decode(given.trim()) else {
        return false;
    };
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key)
        .expect("HMAC takes a key of any length");
    for part in parts {
        mac.update(part);
    }
    mac.verify_slice(&given).is_ok()
}

/// A route target's validated, kind-specific settings: what the kind needs to start a call
/// (an agent, a from number, a TwiML URL). The kind's placer downcasts them to its own type.
pub trait TargetSettings: fmt::Debug + Send + Sync + DynEq {
    /// What `check-config` prints for the target.
    fn summary(&self) -> String;
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

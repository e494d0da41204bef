//! The canonical call: the one model every provider parses into and every wire shape writes from.

use std::sync::Arc;

/// Text of a call field. Strings of up to 24 bytes (numbers, statuses, timestamps, short
/// objectives) are held inline, so most fields cost no allocation of their own and a call's
/// fields sit together in memory; longer ones (UUIDs) are allocated as a `String` would be.
pub type Text = compact_str::CompactString;

/// One live call, as callmux understands it whatever platform it came from.
///
/// Fields an upstream did not send are `None`: callmux never invents them. The ordering is
/// only a tie-break that makes choices between two reports of one call deterministic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Call {
    pub call_id: Text,
    /// Id of the provider (from `providers.toml`) that reported the call.
    pub provider: Arc<str>,
    /// The organisation that owns the call: the upstream's own value where it gives one
    /// (Bland's `user_id`), otherwise filled in with the requesting org's id when merged.
    pub org: Option<Text>,
    pub from: Option<Text>,
    pub to: Option<Text>,
    pub direction: Option<Direction>,
    pub status: CallStatus,
    pub objective: Option<Text>,
    pub pathway_id: Option<Text>,
    /// When the call started, as the ISO 8601 text the upstream gave.
    pub started_at: Option<Text>,
    /// When the call record was created, in Unix epoch milliseconds.
    pub created_at: Option<u64>,
    pub international: Option<bool>,
}

impl Call {
    /// A call with only the fields every upstream must give; the rest start unknown.
    pub fn new(call_id: impl Into<Text>, provider: Arc<str>, status: CallStatus) -> Self {
        Self {
            call_id: call_id.into(),
            provider,
            org: None,
            from: None,
            to: None,
            direction: None,
            status,
            objective: None,
            pathway_id: None,
            started_at: None,
            created_at: None,
            international: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    Outbound,
    Inbound,
}

/// Where a call is in its life. Values an upstream sends that callmux does not know are kept
/// verbatim in [`CallStatus::Other`] and served back as they came, never dropped.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CallStatus {
    /// Accepted but not yet ringing (`initiating` / Bland `QUEUED`).
    Queued,
    Ringing,
    InProgress,
    Completed,
    Failed,
    Busy,
    NoAnswer,
    Canceled,
    Other(Text),
}

impl CallStatus {
    /// Whether a call in this status belongs in an active-calls list. Unknown statuses count
    /// as active: leaving them out would silently shorten the list.
    pub fn is_active(&self) -> bool {
        !matches!(
            self,
            Self::Completed | Self::Failed | Self::Busy | Self::NoAnswer | Self::Canceled
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_statuses_are_inactive_and_everything_else_is_active() {
        for s in [
            CallStatus::Completed,
            CallStatus::Failed,
            CallStatus::Busy,
            CallStatus::NoAnswer,
            CallStatus::Canceled,
        ] {
            assert!(!s.is_active(), "{s:?}");
        }
        for s in [
            CallStatus::Queued,
            CallStatus::Ringing,
            CallStatus::InProgress,
            CallStatus::Other("ON_HOLD".into()),
        ] {
            assert!(s.is_active(), "{s:?}");
        }
    }
}

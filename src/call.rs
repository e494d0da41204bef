//! The canonical call: the one model every provider parses into and every wire shape writes from.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Text of a call field. Strings of up to 24 bytes (numbers, statuses, timestamps, short
/// objectives) are held inline, so most fields cost no allocation of their own and a call's
/// fields sit together in memory; longer ones (UUIDs) are allocated as a `String` would be.
pub type Text = compact_str::CompactString;

/// One live call, as callmux understands it whatever platform it came from.
///
/// Fields an upstream did not send are `None`: callmux never invents them. The ordering is
/// only a tie-break that makes choices between two reports of one call deterministic.
///
/// `repr(C)` keeps the fields the merge reads for every call (`call_id`, `status`,
/// `created_at`, `telephony_id`) together in the first two cache lines: left to the
/// compiler, `telephony_id` landed in a line of its own, and the merge of 200,000 calls
/// waited on memory for it (BENCHMARKS.md).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[repr(C)]
pub struct Call {
    pub call_id: Text,
    pub status: CallStatus,
    /// When the call record was created, in Unix epoch milliseconds.
    pub created_at: Option<u64>,
    /// The telephony carrier's id of the phone call (the Twilio CallSid) where the platform
    /// gives one: two platforms reporting the same phone call share it.
    pub telephony_id: Option<Text>,
    /// Id of the provider (from `providers.toml`) that reported the call.
    pub provider: Arc<str>,
    /// The organisation that owns the call: the upstream's own value where it gives one
    /// (Bland's `user_id`), otherwise filled in with the requesting org's id when merged.
    pub org: Option<Text>,
    pub from: Option<Text>,
    pub to: Option<Text>,
    pub objective: Option<Text>,
    pub pathway_id: Option<Text>,
    /// When the call was answered or began, in Unix epoch milliseconds, whatever text or
    /// number the upstream wrote it as.
    pub started_at: Option<u64>,
    /// `start_time` exactly as a Bland upstream sent it, so a Bland client gets back what
    /// Bland wrote; `None` for calls from other kinds of upstream.
    pub bland_start_time: Option<Text>,
    pub direction: Option<Direction>,
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
            telephony_id: None,
            bland_start_time: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Outbound,
    Inbound,
}

/// Where a call is in its life. Values an upstream sends that callmux does not know are kept
/// verbatim in [`CallStatus::Other`] and served back as they came, never dropped.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
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

    /// Whether a pushed status may replace this one: calls only move forward (queued,
    /// ringing, in progress, ended), since a webhook carries no order and may be replayed.
    pub fn moves_to(&self, to: &CallStatus) -> bool {
        fn rank(s: &CallStatus) -> u8 {
            match s {
                CallStatus::Queued => 0,
                CallStatus::Ringing | CallStatus::Other(_) => 1,
                CallStatus::InProgress => 2,
                _ => 3,
            }
        }
        rank(to) > rank(self)
    }
}

/// Reading and writing the times upstreams send, held as Unix epoch milliseconds.
pub mod time {
    /// An ISO 8601 / RFC 3339 instant (`2025-09-23T19:48:20.740Z`, any offset).
    pub fn from_iso8601(text: &str) -> Option<u64> {
        let ts: jiff::Timestamp = text.trim().parse().ok()?;
        u64::try_from(ts.as_millisecond()).ok()
    }

    /// An RFC 2822 date (`Tue, 10 Aug 2010 14:46:14 +0000`), as Twilio writes them.
    pub fn from_rfc2822(text: &str) -> Option<u64> {
        let zoned = jiff::fmt::rfc2822::parse(text.trim()).ok()?;
        u64::try_from(zoned.timestamp().as_millisecond()).ok()
    }

    /// ISO 8601 UTC with milliseconds, `2025-09-23T19:48:20.740Z`.
    pub fn to_iso8601(ms: u64) -> Option<String> {
        let ts = jiff::Timestamp::from_millisecond(i64::try_from(ms).ok()?).ok()?;
        Some(ts.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
    }

    /// Now, in Unix epoch milliseconds.
    pub fn now_ms() -> u64 {
        u64::try_from(jiff::Timestamp::now().as_millisecond()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fields_the_merge_reads_share_the_first_two_cache_lines() {
        let end = std::mem::offset_of!(Call, telephony_id) + std::mem::size_of::<Option<Text>>();
        assert!(end <= 128, "{end}");
        assert!(std::mem::offset_of!(Call, created_at) < 128);
    }

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

    #[test]
    fn times_read_from_iso_8601_and_rfc_2822_are_held_as_epoch_milliseconds() {
        assert_eq!(
            time::from_iso8601("2025-09-23T19:48:20.740Z"),
            Some(1_758_656_900_740)
        );
        assert_eq!(
            time::from_iso8601("2025-09-23T21:48:20.740+02:00"),
            Some(1_758_656_900_740)
        );
        assert_eq!(
            time::from_rfc2822("Tue, 23 Sep 2025 19:48:20 +0000"),
            Some(1_758_656_900_000)
        );
        assert_eq!(
            time::to_iso8601(1_758_656_900_740).as_deref(),
            Some("2025-09-23T19:48:20.740Z")
        );
        for bad in ["", "yesterday", "2025-13-45T00:00:00Z", "Tue, 99 Sep 2025"] {
            assert_eq!(time::from_iso8601(bad), None, "{bad}");
            assert_eq!(time::from_rfc2822(bad), None, "{bad}");
        }
    }
}

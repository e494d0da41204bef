//! callmux's own shape, `GET /calls` → `{"calls": [...], "count": N, "errors": [...] | null}`:
//! every canonical field of each call, written only (no upstream speaks it).

use super::json::{push_str, push_str_content, push_usize};
use super::{push_errors, ErrorItem, ListWriter};
use crate::call::{Call, CallStatus, Direction};

/// The own shape's part of writing a list (see [`ListWriter`]). It has no owner field, so
/// `org` is unused.
pub(super) struct Writer;

impl ListWriter for Writer {
    fn open(out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"calls\":[");
    }

    fn call(out: &mut Vec<u8>, c: &Call, _org: &str) {
        let text = |out: &mut Vec<u8>, value: Option<&str>| match value {
            Some(v) => push_str(out, v),
            None => out.extend_from_slice(b"null"),
        };
        let time = |out: &mut Vec<u8>, ms: Option<u64>| {
            text(out, ms.and_then(crate::call::time::to_iso8601).as_deref())
        };
        out.extend_from_slice(b"{\"call_id\":\"");
        push_str_content(out, &c.call_id);
        out.extend_from_slice(b"\",\"provider\":\"");
        push_str_content(out, &c.provider);
        out.extend_from_slice(b"\",\"from\":");
        text(out, c.from.as_deref());
        out.extend_from_slice(b",\"to\":");
        text(out, c.to.as_deref());
        out.extend_from_slice(b",\"direction\":");
        text(
            out,
            c.direction.map(|d| match d {
                Direction::Inbound => "inbound",
                Direction::Outbound => "outbound",
            }),
        );
        out.extend_from_slice(b",\"status\":\"");
        push_str_content(out, status(&c.status));
        out.extend_from_slice(b"\",\"created_at\":");
        time(out, c.created_at);
        out.extend_from_slice(b",\"started_at\":");
        time(out, c.started_at);
        out.extend_from_slice(b",\"telephony_id\":");
        text(out, c.telephony_id.as_deref());
        out.extend_from_slice(b",\"objective\":");
        text(out, c.objective.as_deref());
        out.extend_from_slice(b",\"pathway_id\":");
        text(out, c.pathway_id.as_deref());
        out.extend_from_slice(b",\"international\":");
        out.extend_from_slice(match c.international {
            Some(true) => b"true",
            Some(false) => b"false",
            None => b"null",
        });
        out.push(b'}');
    }

    fn close(out: &mut Vec<u8>, count: usize, errors: &[ErrorItem<'_>]) {
        out.extend_from_slice(b"],\"count\":");
        push_usize(out, count);
        out.extend_from_slice(b",\"errors\":");
        push_errors(out, errors);
        out.push(b'}');
    }
}

/// One call as the own shape writes it in a list: the `data` of a `call.*` webhook event.
pub fn call_object(c: &Call) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    Writer::call(&mut out, c, "");
    out
}

/// The canonical status's own word: `queued`, `ringing`, `in-progress`, the ended ones as
/// Twilio writes them, and anything else as the upstream sent it.
pub fn status(s: &CallStatus) -> &str {
    match s {
        CallStatus::Queued => "queued",
        CallStatus::Ringing => "ringing",
        CallStatus::InProgress => "in-progress",
        CallStatus::Completed => "completed",
        CallStatus::Failed => "failed",
        CallStatus::Busy => "busy",
        CallStatus::NoAnswer => "no-answer",
        CallStatus::Canceled => "canceled",
        CallStatus::Other(s) => s,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use serde_json::json;

    #[test]
    fn every_canonical_field_is_written_with_times_in_iso_8601_and_unknowns_as_null() {
        let mut full = Call::new("c1", Arc::from("tw"), CallStatus::InProgress);
        full.from = Some("+1555".into());
        full.to = Some("+1666".into());
        full.direction = Some(Direction::Outbound);
        full.created_at = Some(1_758_656_900_740);
        full.started_at = Some(1_758_656_901_000);
        full.telephony_id = Some("CA1".into());
        full.objective = Some("say \"hi\"".into());
        full.pathway_id = Some("pw".into());
        full.international = Some(false);
        let bare = Call::new(
            "c2",
            Arc::from("agents"),
            CallStatus::Other("on-hold".into()),
        );
        let failed = [ErrorItem {
            provider: Some("p2"),
            error: crate::error_code::ErrorCode::UpstreamTimeout,
            message: "no answer",
        }];
        let body = super::super::Shape::Own.write([&full, &bare], "org", &failed);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            json!({"calls": [
                {"call_id": "c1", "provider": "tw", "from": "+1555", "to": "+1666",
                 "direction": "outbound", "status": "in-progress",
                 "created_at": "2025-09-23T19:48:20.740Z", "started_at": "2025-09-23T19:48:21.000Z",
                 "telephony_id": "CA1", "objective": "say \"hi\"", "pathway_id": "pw",
                 "international": false},
                {"call_id": "c2", "provider": "agents", "from": null, "to": null,
                 "direction": null, "status": "on-hold", "created_at": null, "started_at": null,
                 "telephony_id": null, "objective": null, "pathway_id": null,
                 "international": null}],
             "count": 2,
             "errors": [{"provider": "p2", "error": "UPSTREAM_TIMEOUT", "message": "no answer"}]})
        );
        let empty = super::super::Shape::Own.write(std::iter::empty(), "org", &[]);
        assert_eq!(empty, br#"{"calls":[],"count":0,"errors":null}"#);
    }
}

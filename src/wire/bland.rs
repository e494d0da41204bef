//! Bland's list-active-calls shape: `GET /v1/calls/active` → `{"data": [...], "errors": null}`.

use std::sync::Arc;

use serde::Deserialize;

use super::json::{push_key, push_str, push_u64_str};
use super::{buffer_for, from_body, opt_text, push_errors, req_text, ErrorItem, ParseError};
use crate::call::{Call, CallStatus};

/// Reads a Bland answer into canonical calls (every status, active or not). Empty strings are
/// Bland's "not given" and become `None`, so writing the call back yields the same strings.
pub fn parse(body: &[u8], provider: &Arc<str>) -> Result<Vec<Call>, ParseError> {
    #[derive(Deserialize)]
    struct Body {
        #[serde(default)]
        data: Option<Vec<CallIn>>,
        #[serde(default)]
        errors: Option<Vec<UpstreamError>>,
    }
    #[derive(Deserialize)]
    struct UpstreamError {
        #[serde(default, deserialize_with = "opt_text")]
        error: Option<String>,
        #[serde(default, deserialize_with = "opt_text")]
        message: Option<String>,
    }
    #[derive(Deserialize)]
    struct CallIn {
        #[serde(deserialize_with = "req_text")]
        call_id: String,
        #[serde(default, deserialize_with = "opt_text")]
        user_id: Option<String>,
        #[serde(default, deserialize_with = "opt_text")]
        from: Option<String>,
        #[serde(default, deserialize_with = "opt_text")]
        to: Option<String>,
        #[serde(default, deserialize_with = "opt_text")]
        objective: Option<String>,
        #[serde(default, deserialize_with = "opt_text")]
        pathway_id: Option<String>,
        #[serde(default, deserialize_with = "opt_text")]
        start_time: Option<String>,
        #[serde(default, deserialize_with = "opt_text")]
        international: Option<String>,
        #[serde(deserialize_with = "req_text")]
        status: String,
        #[serde(default, deserialize_with = "opt_text")]
        timestamp: Option<String>,
    }

    let body: Body = from_body(body)?;
    let Some(data) = body.data else {
        let reported = body
            .errors
            .unwrap_or_default()
            .into_iter()
            .map(|e| match (e.error, e.message) {
                (Some(code), Some(msg)) => format!("{code}: {msg}"),
                (code, msg) => code.or(msg).unwrap_or_default(),
            })
            .collect::<Vec<_>>();
        return Err(if reported.is_empty() {
            ParseError::Malformed("`data` is missing or null and no `errors` were given".into())
        } else {
            ParseError::Reported(reported.join("; "))
        });
    };
    Ok(data
        .into_iter()
        .map(|c| {
            let mut call = Call::new(c.call_id, provider.clone(), status_from_wire(c.status));
            call.org = c.user_id;
            call.from = c.from;
            call.to = c.to;
            call.objective = c.objective;
            call.pathway_id = c.pathway_id;
            call.started_at = c.start_time;
            call.international = c.international.and_then(|s| match s.as_str() {
                "true" => Some(true),
                "false" => Some(false),
                _ => None,
            });
            call.created_at = c.timestamp.and_then(|t| t.parse().ok());
            call
        })
        .collect())
}

pub fn status_from_wire(s: String) -> CallStatus {
    match s.as_str() {
        "QUEUED" => CallStatus::Queued,
        "IN_PROGRESS" => CallStatus::InProgress,
        "COMPLETED" => CallStatus::Completed,
        "FAILED" => CallStatus::Failed,
        "BUSY" => CallStatus::Busy,
        "NO_ANSWER" => CallStatus::NoAnswer,
        "CANCELED" => CallStatus::Canceled,
        _ => CallStatus::Other(s),
    }
}

/// Bland has no ringing state: a ringing call has not started, so it reads as `QUEUED`.
pub fn status_to_wire(s: &CallStatus) -> &str {
    match s {
        CallStatus::Queued | CallStatus::Ringing => "QUEUED",
        CallStatus::InProgress => "IN_PROGRESS",
        CallStatus::Completed => "COMPLETED",
        CallStatus::Failed => "FAILED",
        CallStatus::Busy => "BUSY",
        CallStatus::NoAnswer => "NO_ANSWER",
        CallStatus::Canceled => "CANCELED",
        CallStatus::Other(s) => s,
    }
}

/// `{"data": [...], "errors": null}`; `errors` lists what failed when anything did. Every
/// field of every call is a string, `""` for anything unknown, as Bland clients expect; `org`
/// is the `user_id` of calls whose upstream named no owner.
pub fn write<'c, I>(calls: I, org: &str, errors: &[ErrorItem<'_>]) -> Vec<u8>
where
    I: IntoIterator<Item = &'c Call>,
    I::IntoIter: ExactSizeIterator,
{
    let calls = calls.into_iter();
    let mut out = buffer_for(calls.len());
    out.extend_from_slice(b"{\"data\":[");
    for (i, call) in calls.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_call(&mut out, call, org);
    }
    out.extend_from_slice(b"],\"errors\":");
    push_errors(&mut out, errors);
    out.push(b'}');
    out
}

/// `""` for a field the upstream did not give.
fn text(field: &Option<String>) -> &str {
    field.as_deref().unwrap_or("")
}

fn write_call(out: &mut Vec<u8>, c: &Call, org: &str) {
    let field = |out: &mut Vec<u8>, key: &str, value: &str| {
        out.push(b',');
        push_key(out, key);
        push_str(out, value);
    };
    out.push(b'{');
    push_key(out, "call_id");
    push_str(out, &c.call_id);
    field(out, "user_id", c.org.as_deref().unwrap_or(org));
    field(out, "from", text(&c.from));
    field(out, "to", text(&c.to));
    field(out, "objective", text(&c.objective));
    field(out, "pathway_id", text(&c.pathway_id));
    field(out, "start_time", text(&c.started_at));
    let international = match c.international {
        Some(true) => "true",
        Some(false) => "false",
        None => "",
    };
    field(out, "international", international);
    field(out, "status", status_to_wire(&c.status));
    out.extend_from_slice(b",\"timestamp\":");
    match c.created_at {
        Some(ms) => push_u64_str(out, ms),
        None => out.extend_from_slice(b"\"\""),
    }
    out.push(b'}');
}

/// Bland's error envelope: `{"data": null, "errors": [...]}`.
pub fn write_error(errors: &[ErrorItem<'_>]) -> Vec<u8> {
    let mut out = b"{\"data\":null,\"errors\":".to_vec();
    push_errors(&mut out, errors);
    out.push(b'}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    const SEED: &str = r#"{"data":[{"call_id":"8dd6f762-6c67-4546-aaad-3e59f5e4a09c","user_id":"bdffa9e8-436c-416d-b95f-a77b19ae4411","from":"+18475586665","to":"+13105100966","objective":"You are a 2...","pathway_id":"","start_time":"","international":"false","status":"QUEUED","timestamp":"1758656817432"},{"call_id":"dadbc09a-9b0b-4eb5-b67f-0c7f1206c623","user_id":"bdffa9e8-436c-416d-b95f-a77b19ae4411","from":"+18154728283","to":"+16106876633","objective":"You are a 2...","pathway_id":"","start_time":"","international":"false","status":"IN_PROGRESS","timestamp":"1758656900740"}],"errors":null}"#;

    #[test]
    fn the_reference_example_survives_bland_to_canonical_to_bland_unchanged() {
        let calls = parse(SEED.as_bytes(), &Arc::from("bland")).unwrap();
        assert_eq!(calls[0].created_at, Some(1_758_656_817_432));
        assert_eq!(calls[0].international, Some(false));
        assert_eq!(calls[1].status, CallStatus::InProgress);
        let back: Value = serde_json::from_slice(&write(&calls, "org", &[])).unwrap();
        assert_eq!(back, serde_json::from_str::<Value>(SEED).unwrap());
    }

    #[test]
    fn an_error_envelope_from_upstream_is_reported_with_its_message() {
        let body = br#"{"data":null,"errors":[{"error":"RATE_LIMITED","message":"slow down"}]}"#;
        assert_eq!(
            parse(body, &Arc::from("bland")),
            Err(ParseError::Reported("RATE_LIMITED: slow down".into()))
        );
    }

    #[test]
    fn numbers_and_bools_where_strings_belong_are_read_as_text() {
        let body = br#"{"data":[{"call_id":42,"status":"QUEUED","timestamp":1700000000000,"international":true}]}"#;
        let calls = parse(body, &Arc::from("bland")).unwrap();
        assert_eq!(calls[0].call_id, "42");
        assert_eq!(calls[0].created_at, Some(1_700_000_000_000));
        assert_eq!(calls[0].international, Some(true));
    }

    #[test]
    fn unknown_fields_become_empty_strings_on_the_way_out() {
        let call = Call::new("x", Arc::from("agents"), CallStatus::Ringing);
        let out: Value = serde_json::from_slice(&write(&[call], "", &[])).unwrap();
        assert_eq!(
            out,
            json!({"data":[{"call_id":"x","user_id":"","from":"","to":"","objective":"",
                "pathway_id":"","start_time":"","international":"","status":"QUEUED","timestamp":""}],
                "errors":null})
        );
    }
}

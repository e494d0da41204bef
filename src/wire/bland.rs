//! Bland's list-active-calls shape: `GET /v1/calls/active` → `{"data": [...], "errors": null}`.

use std::borrow::Cow;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::json::{push_str_content, push_u64};
use super::{
    from_body, push_errors, CallList, ErrorItem, Field, ListWriter, Nullable, ParseError, Readers,
    Required, WireCall,
};
use crate::call::{Call, CallStatus, Text};

/// A Bland call object is about 290 bytes; guessing a little more calls than that from the
/// body's size avoids copying the list while it grows, and costs only untouched memory.
const TYPICAL_CALL_BYTES: usize = 256;

/// Reads a Bland answer into canonical calls (every status, active or not). Empty strings are
/// Bland's "not given" and become `None`, so writing the call back yields the same strings.
pub fn parse(body: &[u8], provider: &Arc<str>) -> Result<Vec<Call>, ParseError> {
    parse_with(body, provider, Readers::default())
}

/// [`parse`] with a choice of readers, for the differential tests.
#[doc(hidden)]
pub fn parse_with(
    body: &[u8],
    provider: &Arc<str>,
    readers: Readers,
) -> Result<Vec<Call>, ParseError> {
    let seed = BodySeed {
        provider,
        capacity: body.len() / TYPICAL_CALL_BYTES,
    };
    let (data, errors) = from_body(body, seed, readers)?;
    if let Some(calls) = data {
        return Ok(calls);
    }
    let errors = errors.unwrap_or_default();
    if errors.is_empty() {
        return Err(ParseError::Malformed(
            "`data` is missing or null and no `errors` were given".into(),
        ));
    }
    let reported = errors
        .into_iter()
        .filter_map(|e| match (e.error.0, e.message.0) {
            (Some(code), Some(msg)) => Some(format!("{code}: {msg}")),
            (code, msg) => code.or(msg).map(Cow::into_owned),
        })
        .collect::<Vec<_>>();
    // Entries that name nothing still say the upstream refused; an empty message would not.
    Err(ParseError::Reported(if reported.is_empty() {
        "an error without a code or a message".into()
    } else {
        reported.join("; ")
    }))
}

#[derive(Deserialize)]
struct CallIn<'a> {
    #[serde(borrow)]
    call_id: Required<'a>,
    #[serde(borrow, default)]
    user_id: Field<'a>,
    #[serde(borrow, default)]
    from: Field<'a>,
    #[serde(borrow, default)]
    to: Field<'a>,
    #[serde(borrow, default)]
    objective: Field<'a>,
    #[serde(borrow, default)]
    pathway_id: Field<'a>,
    #[serde(borrow, default)]
    start_time: Field<'a>,
    #[serde(borrow, default)]
    international: Field<'a>,
    #[serde(borrow)]
    status: Required<'a>,
    #[serde(borrow, default)]
    timestamp: Field<'a>,
}

impl<'de> WireCall<'de> for CallIn<'de> {
    fn into_call(self, provider: &Arc<str>) -> Call {
        let mut call = Call::new(
            &*self.call_id.0,
            provider.clone(),
            status_from_wire(&self.status.0),
        );
        call.org = self.user_id.text();
        call.from = self.from.text();
        call.to = self.to.text();
        call.objective = self.objective.text();
        call.pathway_id = self.pathway_id.text();
        call.bland_start_time = self.start_time.text();
        call.started_at = self
            .start_time
            .0
            .as_deref()
            .and_then(crate::call::time::from_iso8601);
        call.international = match self.international.0.as_deref() {
            Some("true") => Some(true),
            Some("false") => Some(false),
            _ => None,
        };
        call.created_at = self.timestamp.0.and_then(|t| t.parse().ok());
        call
    }
}

#[derive(Deserialize)]
struct UpstreamError<'a> {
    #[serde(borrow, default)]
    error: Field<'a>,
    #[serde(borrow, default)]
    message: Field<'a>,
}

/// The envelope, `{"data": [...] | null, "errors": [...] | null}`, with the calls read
/// straight into canonical ones. Other keys are ignored.
#[derive(Clone, Copy)]
struct BodySeed<'p> {
    provider: &'p Arc<str>,
    capacity: usize,
}

type Envelope<'de> = (Option<Vec<Call>>, Option<Vec<UpstreamError<'de>>>);

impl<'de> DeserializeSeed<'de> for BodySeed<'_> {
    type Value = Envelope<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for BodySeed<'_> {
    type Value = Envelope<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an object with `data` and `errors`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        #[derive(Deserialize)]
        #[serde(field_identifier, rename_all = "lowercase")]
        enum Key {
            Data,
            Errors,
            #[serde(other)]
            Other,
        }
        let (mut data, mut errors) = (None, None);
        while let Some(key) = map.next_key()? {
            match key {
                Key::Data if data.is_some() => return Err(de::Error::duplicate_field("data")),
                Key::Data => {
                    data = Some(map.next_value_seed(Nullable(CallList {
                        provider: self.provider,
                        capacity: self.capacity,
                        shape: PhantomData::<fn() -> CallIn<'de>>,
                    }))?)
                }
                Key::Errors if errors.is_some() => {
                    return Err(de::Error::duplicate_field("errors"))
                }
                Key::Errors => errors = Some(map.next_value::<Option<Vec<UpstreamError>>>()?),
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok((data.flatten(), errors.flatten()))
    }
}

pub fn status_from_wire(s: &str) -> CallStatus {
    match s {
        "QUEUED" => CallStatus::Queued,
        "IN_PROGRESS" => CallStatus::InProgress,
        "COMPLETED" => CallStatus::Completed,
        "FAILED" => CallStatus::Failed,
        "BUSY" => CallStatus::Busy,
        "NO_ANSWER" => CallStatus::NoAnswer,
        "CANCELED" => CallStatus::Canceled,
        _ => CallStatus::Other(Text::from(s)),
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
    I::IntoIter: ExactSizeIterator + Clone,
{
    super::write_list::<Writer, _>(calls, org, errors)
}

/// The Bland shape's part of writing a list (see [`ListWriter`]).
pub(super) struct Writer;

impl ListWriter for Writer {
    fn open(out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"data\":[");
    }

    fn call(out: &mut Vec<u8>, c: &Call, org: &str) {
        let international = match c.international {
            Some(true) => "true",
            Some(false) => "false",
            None => "",
        };
        // What a Bland upstream sent goes back as sent; other upstreams' times are written
        // the way Bland writes them.
        let written_start;
        let start_time = match (&c.bland_start_time, c.started_at) {
            (Some(sent), _) => sent.as_str(),
            (None, Some(ms)) => {
                written_start = crate::call::time::to_iso8601(ms).unwrap_or_default();
                &written_start
            }
            (None, None) => "",
        };
        // Every value is a string, so each key, with the quotes and punctuation around it, is
        // one fixed piece: a call is written in twenty copies rather than seventy small writes.
        let fields: [(&[u8], &str); 9] = [
            (b"{\"call_id\":\"", &c.call_id),
            (b"\",\"user_id\":\"", c.org.as_deref().unwrap_or(org)),
            (b"\",\"from\":\"", text(&c.from)),
            (b"\",\"to\":\"", text(&c.to)),
            (b"\",\"objective\":\"", text(&c.objective)),
            (b"\",\"pathway_id\":\"", text(&c.pathway_id)),
            (b"\",\"start_time\":\"", start_time),
            (b"\",\"international\":\"", international),
            (b"\",\"status\":\"", status_to_wire(&c.status)),
        ];
        for (key, value) in fields {
            out.extend_from_slice(key);
            push_str_content(out, value);
        }
        out.extend_from_slice(b"\",\"timestamp\":\"");
        if let Some(ms) = c.created_at {
            push_u64(out, ms);
        }
        out.extend_from_slice(b"\"}");
    }

    fn close(out: &mut Vec<u8>, _count: usize, errors: &[ErrorItem<'_>]) {
        out.extend_from_slice(b"],\"errors\":");
        push_errors(out, errors);
        out.push(b'}');
    }
}

/// `""` for a field the upstream did not give.
fn text(field: &Option<Text>) -> &str {
    field.as_deref().unwrap_or("")
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
        // Read by the plain reader alone, with no second reading by serde_json.
        let plain = parse_with(SEED.as_bytes(), &Arc::from("bland"), Readers::PlainOnly);
        assert_eq!(plain.as_ref(), Ok(&calls));
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
    fn an_error_envelope_whose_entries_name_nothing_is_still_reported_with_a_message() {
        for body in [
            &br#"{"data":null,"errors":[{}]}"#[..],
            br#"{"data":null,"errors":[{"error":"","message":null}]}"#,
        ] {
            assert_eq!(
                parse(body, &Arc::from("bland")),
                Err(ParseError::Reported(
                    "an error without a code or a message".into()
                ))
            );
        }
        let body = br#"{"data":null,"errors":[{},{"message":"slow down"}]}"#;
        assert_eq!(
            parse(body, &Arc::from("bland")),
            Err(ParseError::Reported("slow down".into()))
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
    fn a_deeply_nested_unknown_value_is_skipped_without_overflowing_the_stack() {
        // The plain reader gives up past 32 levels, and serde_json skips values without
        // recursing; a parser that recurses (sonic-rs, tried for speed) overflows the stack
        // on this body and aborts the whole process.
        let depth = 1_000_000;
        let body = format!(
            r#"{{"data":[{{"call_id":"x","status":"QUEUED","extra":{}{}}}]}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        );
        let calls = parse(body.as_bytes(), &Arc::from("bland")).unwrap();
        assert_eq!(calls.len(), 1);
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

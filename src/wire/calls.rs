//! The calls shape of Twilio media-stream agent servers: `GET /api/calls` → `{"calls": [...], "count": N}`.

use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::json::{push_str, push_str_content, push_usize};
use super::{
    from_body, push_errors, CallList, ErrorItem, Field, ListWriter, ParseError, Readers, Required,
    WireCall,
};
use crate::call::{Call, CallStatus, Direction, Text};

/// An agent server's call object is about 130 bytes; see `bland::TYPICAL_CALL_BYTES`.
const TYPICAL_CALL_BYTES: usize = 112;

/// Reads an agent server's answer into canonical calls (every status, active or not).
///
/// `to_number` is the callee of an outbound call and the caller of an incoming one; when the
/// direction is missing or unknown it is read as `to`, the number's own name.
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
    from_body(body, seed, readers)
}

#[derive(Deserialize)]
struct CallIn<'a> {
    #[serde(borrow)]
    call_id: Required<'a>,
    #[serde(borrow, default)]
    to_number: Field<'a>,
    #[serde(borrow)]
    status: Required<'a>,
    #[serde(borrow, default)]
    direction: Field<'a>,
}

impl<'de> WireCall<'de> for CallIn<'de> {
    fn into_call(self, provider: &Arc<str>) -> Call {
        let direction = self.direction.0.as_deref().and_then(direction_from_wire);
        let mut call = Call::new(
            &*self.call_id.0,
            provider.clone(),
            status_from_wire(&self.status.0),
        );
        match direction {
            Some(Direction::Inbound) => call.from = self.to_number.text(),
            _ => call.to = self.to_number.text(),
        }
        call.direction = direction;
        call
    }
}

/// The envelope, `{"calls": [...], "count": N}`, with the calls read straight into canonical
/// ones. `count` and other keys are ignored: the list is what counts.
#[derive(Clone, Copy)]
struct BodySeed<'p> {
    provider: &'p Arc<str>,
    capacity: usize,
}

impl<'de> DeserializeSeed<'de> for BodySeed<'_> {
    type Value = Vec<Call>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for BodySeed<'_> {
    type Value = Vec<Call>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an object with `calls`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        #[derive(Deserialize)]
        #[serde(field_identifier, rename_all = "lowercase")]
        enum Key {
            Calls,
            #[serde(other)]
            Other,
        }
        let mut calls = None;
        while let Some(key) = map.next_key()? {
            match key {
                Key::Calls if calls.is_some() => return Err(de::Error::duplicate_field("calls")),
                Key::Calls => {
                    calls = Some(map.next_value_seed(CallList {
                        provider: self.provider,
                        capacity: self.capacity,
                        shape: PhantomData::<fn() -> CallIn<'de>>,
                    })?)
                }
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        calls.ok_or_else(|| de::Error::missing_field("calls"))
    }
}

pub fn status_from_wire(s: &str) -> CallStatus {
    match s {
        "initiating" => CallStatus::Queued,
        "ringing" => CallStatus::Ringing,
        "in-progress" => CallStatus::InProgress,
        "completed" => CallStatus::Completed,
        "failed" => CallStatus::Failed,
        "busy" => CallStatus::Busy,
        "no-answer" => CallStatus::NoAnswer,
        "canceled" => CallStatus::Canceled,
        _ => CallStatus::Other(Text::from(s)),
    }
}

pub fn status_to_wire(s: &CallStatus) -> &str {
    match s {
        CallStatus::Queued => "initiating",
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

fn direction_from_wire(s: &str) -> Option<Direction> {
    match s {
        "outbound" => Some(Direction::Outbound),
        "incoming" | "inbound" => Some(Direction::Inbound),
        _ => None,
    }
}

fn direction_to_wire(d: Option<Direction>) -> Option<&'static str> {
    d.map(|d| match d {
        Direction::Outbound => "outbound",
        Direction::Inbound => "incoming",
    })
}

/// `{"calls": [...], "count": N}`, plus `"errors"` when anything failed. `count` is always
/// the number of calls listed; a partial answer is told apart by its `errors`.
pub fn write<'c, I>(calls: I, errors: &[ErrorItem<'_>]) -> Vec<u8>
where
    I: IntoIterator<Item = &'c Call>,
    I::IntoIter: ExactSizeIterator + Clone,
{
    super::write_list::<Writer, _>(calls, "", errors)
}

/// The calls shape's part of writing a list (see [`ListWriter`]). It has no owner field, so
/// `org` is unused.
pub(super) struct Writer;

impl ListWriter for Writer {
    fn open(out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"calls\":[");
    }

    fn call(out: &mut Vec<u8>, c: &Call, _org: &str) {
        let to_number = match c.direction {
            Some(Direction::Inbound) => c.from.as_deref(),
            Some(Direction::Outbound) => c.to.as_deref(),
            None => c.to.as_deref().or(c.from.as_deref()),
        };
        let nullable = |out: &mut Vec<u8>, value: Option<&str>| match value {
            Some(v) => push_str(out, v),
            None => out.extend_from_slice(b"null"),
        };
        out.extend_from_slice(b"{\"call_id\":\"");
        push_str_content(out, &c.call_id);
        out.extend_from_slice(b"\",\"to_number\":");
        nullable(out, to_number);
        out.extend_from_slice(b",\"status\":\"");
        push_str_content(out, status_to_wire(&c.status));
        out.extend_from_slice(b"\",\"direction\":");
        nullable(out, direction_to_wire(c.direction));
        out.push(b'}');
    }

    fn close(out: &mut Vec<u8>, count: usize, errors: &[ErrorItem<'_>]) {
        out.extend_from_slice(b"],\"count\":");
        push_usize(out, count);
        if !errors.is_empty() {
            out.extend_from_slice(b",\"errors\":");
            push_errors(out, errors);
        }
        out.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pid() -> Arc<str> {
        Arc::from("agents")
    }

    #[test]
    fn incoming_to_number_is_the_caller_and_outbound_is_the_callee() {
        let body = br#"{"calls":[
            {"call_id":"a","to_number":"+1","status":"ringing","direction":"outbound"},
            {"call_id":"b","to_number":"+2","status":"in-progress","direction":"incoming"}],"count":2}"#;
        let calls = parse(body, &pid()).unwrap();
        assert_eq!(calls[0].to.as_deref(), Some("+1"));
        assert_eq!(calls[0].from, None);
        assert_eq!(calls[1].from.as_deref(), Some("+2"));
        assert_eq!(calls[1].to, None);
        let out: serde_json::Value = serde_json::from_slice(&write(&calls, &[])).unwrap();
        assert_eq!(
            out,
            serde_json::json!({"calls":[
                {"call_id":"a","to_number":"+1","status":"ringing","direction":"outbound"},
                {"call_id":"b","to_number":"+2","status":"in-progress","direction":"incoming"}],"count":2})
        );
    }

    #[test]
    fn the_reference_example_is_read_by_the_plain_reader_alone() {
        // As the reference document prints it, spaces and all.
        let body = br#"{
"calls" : [
{
"call_id" : "a1b2c3d4-e5f6-7890-abcd-ef1234567890" ,
"to_number" : "+1234567890" ,
"status" : "in-progress" ,
"direction" : "outbound"
},
{
"call_id" : "c3d4e5f6-a7b8-9012-cdef-123456789012" ,
"to_number" : "+15555555555" ,
"status" : "in-progress" ,
"direction" : "incoming"
}
],
"count" : 2
}"#;
        let plain = parse_with(body, &pid(), Readers::PlainOnly).unwrap();
        assert_eq!(plain.len(), 2);
        assert_eq!(plain[1].from.as_deref(), Some("+15555555555"));
        assert_eq!(Ok(plain), parse_with(body, &pid(), Readers::SerdeJson));
    }

    #[test]
    fn every_documented_status_round_trips_and_unknown_ones_are_kept_verbatim() {
        for s in [
            "initiating",
            "ringing",
            "in-progress",
            "completed",
            "failed",
            "busy",
            "no-answer",
            "canceled",
            "on-hold",
        ] {
            assert_eq!(status_to_wire(&status_from_wire(s)), s);
        }
        assert_eq!(
            status_from_wire("on-hold"),
            CallStatus::Other("on-hold".into())
        );
    }

    #[test]
    fn a_body_of_the_wrong_shape_is_a_parse_error_not_a_panic() {
        for body in [
            &b"not json"[..],
            b"{}",
            b"[]",
            b"{\"calls\":{}}",
            b"{\"calls\":[{\"status\":\"ringing\"}]}",
        ] {
            assert!(matches!(parse(body, &pid()), Err(ParseError::Malformed(_))));
        }
    }
}

//! Retell's v3 list shape, `POST /v3/list-calls` → `{"items": [...], "has_more": bool,
//! "pagination_key": "..."}`, read straight into canonical calls and the next page's key.

use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::call::{Call, CallStatus, Direction, Text};
use crate::provider::http::Page;
use crate::wire::{from_body, CallList, Field, ParseError, Readers, Required, WireCall};

/// A guess, not a measurement: a v3 call object of an ongoing call (ids, numbers, agent,
/// metadata, dynamic variables, no transcript) is a few hundred bytes. Too high a guess
/// only costs a regrowth; too low one reserves memory the list never touches.
const TYPICAL_CALL_BYTES: usize = 512;

/// The latest time callmux takes: 9999-12-30T22:00:00.000Z, where its date library (and so
/// the ISO 8601 `start_time` it writes for Bland clients) ends, a day short of the year's
/// end. Anything later is a mistake, not a date, and a time callmux read but could not
/// write back would come out as unknown on one route and known on another.
pub const LATEST_MS: u64 = 253_402_207_200_000;

/// Reads one page of Retell's answer: every call on it (ended ones too; the merge leaves
/// them out), and the key of the next page when `has_more` says there is one.
pub fn parse_page(body: &[u8], provider: &Arc<str>) -> Result<Page, ParseError> {
    parse_page_with(body, provider, Readers::default())
}

/// [`parse_page`] with a choice of readers, for the differential tests and the fuzz target.
#[doc(hidden)]
pub fn parse_page_with(
    body: &[u8],
    provider: &Arc<str>,
    readers: Readers,
) -> Result<Page, ParseError> {
    let seed = BodySeed {
        provider,
        capacity: body.len() / TYPICAL_CALL_BYTES,
    };
    let envelope = from_body(body, seed, readers)?;
    // Absent is "no more": the field is optional in Retell's schema, and a last page need
    // not say so. Anything but a boolean is refused rather than guessed at, since reading
    // it as "no more" would make a list silently short.
    let more = match envelope.has_more.0.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            return Err(ParseError::Malformed(
                "`has_more` is neither true nor false".into(),
            ))
        }
    };
    let next = match (more, envelope.pagination_key.0) {
        (false, _) => None,
        (true, Some(key)) => Some(key.into_owned()),
        (true, None) => {
            return Err(ParseError::Malformed(
                "`has_more` is true but no `pagination_key` names the next page".into(),
            ))
        }
    };
    Ok(Page {
        calls: envelope.items,
        next,
    })
}

#[derive(Deserialize)]
struct CallIn<'a> {
    #[serde(borrow)]
    call_id: Required<'a>,
    #[serde(borrow)]
    call_status: Required<'a>,
    #[serde(borrow, default)]
    from_number: Field<'a>,
    #[serde(borrow, default)]
    to_number: Field<'a>,
    #[serde(borrow, default)]
    direction: Field<'a>,
    #[serde(borrow, default)]
    start_timestamp: Field<'a>,
    #[serde(borrow, default)]
    telephony_identifier: Option<TelephonyIdentifier<'a>>,
}

#[derive(Deserialize)]
struct TelephonyIdentifier<'a> {
    #[serde(borrow, default)]
    twilio_call_sid: Field<'a>,
}

impl<'de> WireCall<'de> for CallIn<'de> {
    fn into_call(self, provider: &Arc<str>) -> Call {
        let mut call = Call::new(
            &*self.call_id.0,
            provider.clone(),
            status_from_wire(&self.call_status.0),
        );
        call.from = self.from_number.text();
        call.to = self.to_number.text();
        call.direction = self.direction.0.as_deref().and_then(direction_from_wire);
        // Retell gives one time, when the call began; its record is made then too.
        let started = self.start_timestamp.0.as_deref().and_then(epoch_ms);
        call.started_at = started;
        call.created_at = started;
        call.telephony_id = self
            .telephony_identifier
            .and_then(|t| t.twilio_call_sid.text());
        call
    }
}

/// One call object as a webhook carries it (the shape the list's items have), read as the
/// list reads it; `None` if it lacks what a listed call needs (its id and status).
pub fn call_of(object: &serde_json::Value, provider: &Arc<str>) -> Option<Call> {
    CallIn::deserialize(object)
        .ok()
        .map(|call| call.into_call(provider))
}

/// Epoch milliseconds written as plain decimal digits (a JSON number arrives here as its
/// text). A sign, a fraction, an exponent or a time past [`LATEST_MS`] is not a time
/// callmux can use, so the call is kept and its time is unknown.
pub fn epoch_ms(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|&ms| ms <= LATEST_MS)
}

/// Retell's words, exactly as it spells them. `not_connected` (the call never connected)
/// and `error` have no canonical word of their own; the nearest ended ones keep them out of
/// the list without a new variant.
pub fn status_from_wire(s: &str) -> CallStatus {
    match s {
        "registered" => CallStatus::Queued,
        "ongoing" => CallStatus::InProgress,
        "ended" => CallStatus::Completed,
        "error" => CallStatus::Failed,
        "not_connected" => CallStatus::NoAnswer,
        _ => CallStatus::Other(Text::from(s)),
    }
}

fn direction_from_wire(s: &str) -> Option<Direction> {
    match s {
        "inbound" => Some(Direction::Inbound),
        "outbound" => Some(Direction::Outbound),
        _ => None,
    }
}

/// The envelope as read: `items` is required (a body without it is not a list, and reading
/// it as an empty one would hide that), the rest decided on after.
struct Envelope<'de> {
    items: Vec<Call>,
    has_more: Field<'de>,
    pagination_key: Field<'de>,
}

#[derive(Clone, Copy)]
struct BodySeed<'p> {
    provider: &'p Arc<str>,
    capacity: usize,
}

impl<'de> DeserializeSeed<'de> for BodySeed<'_> {
    type Value = Envelope<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for BodySeed<'_> {
    type Value = Envelope<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an object with `items`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        #[derive(Deserialize)]
        #[serde(field_identifier, rename_all = "snake_case")]
        enum Name {
            Items,
            HasMore,
            PaginationKey,
            #[serde(other)]
            Other,
        }
        let (mut items, mut has_more, mut pagination_key) = (None, None, None);
        while let Some(name) = map.next_key()? {
            match name {
                Name::Items if items.is_some() => return Err(de::Error::duplicate_field("items")),
                Name::Items => {
                    items = Some(map.next_value_seed(CallList {
                        provider: self.provider,
                        capacity: self.capacity,
                        shape: PhantomData::<fn() -> CallIn<'de>>,
                    })?)
                }
                Name::HasMore if has_more.is_some() => {
                    return Err(de::Error::duplicate_field("has_more"))
                }
                Name::HasMore => has_more = Some(map.next_value::<Field<'de>>()?),
                Name::PaginationKey if pagination_key.is_some() => {
                    return Err(de::Error::duplicate_field("pagination_key"))
                }
                Name::PaginationKey => pagination_key = Some(map.next_value::<Field<'de>>()?),
                Name::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Envelope {
            items: items.ok_or_else(|| de::Error::missing_field("items"))?,
            has_more: has_more.unwrap_or_default(),
            pagination_key: pagination_key.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pid() -> Arc<str> {
        Arc::from("retell")
    }

    fn calls_and_next(
        result: Result<Page, ParseError>,
    ) -> Result<(Vec<Call>, Option<String>), ParseError> {
        result.map(|p| (p.calls, p.next))
    }

    #[test]
    fn every_documented_status_maps_and_unknown_ones_are_kept_verbatim() {
        assert_eq!(status_from_wire("registered"), CallStatus::Queued);
        assert_eq!(status_from_wire("ongoing"), CallStatus::InProgress);
        for ended in ["ended", "error", "not_connected"] {
            assert!(!status_from_wire(ended).is_active(), "{ended}");
        }
        assert_eq!(
            status_from_wire("transferring"),
            CallStatus::Other("transferring".into())
        );
        assert!(status_from_wire("transferring").is_active());
    }

    #[test]
    fn times_are_plain_epoch_milliseconds_up_to_the_year_9999_or_unknown() {
        assert_eq!(epoch_ms("1703302407333"), Some(1_703_302_407_333));
        assert_eq!(epoch_ms("0"), Some(0));
        assert_eq!(epoch_ms("253402207200000"), Some(LATEST_MS));
        assert_eq!(
            crate::call::time::to_iso8601(LATEST_MS).as_deref(),
            Some("9999-12-30T22:00:00.000Z")
        );
        assert_eq!(crate::call::time::to_iso8601(LATEST_MS + 1), None);
        for bad in [
            "",
            "-1",
            "+1703302407333",
            "1703302407333.5",
            "1.7e12",
            " 1703302407333",
            "253402207200001",
            "253402300799999",
            "99999999999999999999999",
            "soon",
        ] {
            assert_eq!(epoch_ms(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_time_callmux_cannot_use_leaves_the_call_listed_without_a_time() {
        for ts in [
            "-5",
            "1703302407333.5",
            "1e300",
            "253402207200001",
            "\"later\"",
            "{}",
        ] {
            let body = format!(
                r#"{{"items":[{{"call_id":"c","call_status":"ongoing","start_timestamp":{ts}}}]}}"#
            );
            let got = parse_page(body.as_bytes(), &pid());
            if ts == "{}" {
                // An object where a time belongs is not Retell's shape at all.
                assert!(matches!(got, Err(ParseError::Malformed(_))), "{ts}");
                continue;
            }
            let page = got.unwrap_or_else(|e| panic!("{ts}: {e}"));
            assert_eq!(page.calls[0].started_at, None, "{ts}");
            assert_eq!(page.calls[0].created_at, None, "{ts}");
        }
    }

    #[test]
    fn has_more_names_the_next_page_by_its_key_and_otherwise_the_list_ends() {
        let page = parse_page(
            br#"{"items":[],"has_more":true,"pagination_key":"call_9"}"#,
            &pid(),
        )
        .unwrap();
        assert_eq!(page.next.as_deref(), Some("call_9"));
        for body in [
            &br#"{"items":[],"has_more":false,"pagination_key":"call_9"}"#[..],
            br#"{"items":[]}"#,
            br#"{"items":[],"has_more":null}"#,
        ] {
            assert_eq!(parse_page(body, &pid()).unwrap().next, None);
        }
        for body in [
            &br#"{"items":[],"has_more":true}"#[..],
            br#"{"items":[],"has_more":true,"pagination_key":""}"#,
            br#"{"items":[],"has_more":"yes","pagination_key":"k"}"#,
            br#"{"items":[],"has_more":1,"pagination_key":"k"}"#,
        ] {
            assert!(
                matches!(parse_page(body, &pid()), Err(ParseError::Malformed(_))),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn a_body_of_the_wrong_shape_is_a_parse_error_not_a_panic() {
        for body in [
            &b"not json"[..],
            b"null",
            b"{}",
            b"[]",
            br#"{"items":{}}"#,
            br#"{"items":null}"#,
            br#"{"items":[{"call_status":"ongoing"}]}"#,
            br#"{"items":[{"call_id":"c"}]}"#,
            br#"{"items":[],"items":[]}"#,
            br#"{"items":[{"call_id":"c","call_status":"ongoing","telephony_identifier":"CA1"}]}"#,
        ] {
            assert!(
                matches!(parse_page(body, &pid()), Err(ParseError::Malformed(_))),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn a_plain_body_is_read_by_the_plain_reader_alone_and_as_serde_json_reads_it() {
        let body = br#"{"items":[{"call_type":"phone_call","call_id":"c1","agent_id":"a","call_status":"ongoing","from_number":"+14157774444","to_number":"+12137774445","direction":"outbound","start_timestamp":1703302407333,"telephony_identifier":{"twilio_call_sid":"CA0123"},"metadata":{}}],"has_more":false,"pagination_key":"c1"}"#;
        let plain = calls_and_next(parse_page_with(body, &pid(), Readers::PlainOnly)).unwrap();
        assert_eq!(
            Ok(plain.clone()),
            calls_and_next(parse_page_with(body, &pid(), Readers::SerdeJson))
        );
        let c = &plain.0[0];
        assert_eq!(c.telephony_id.as_deref(), Some("CA0123"));
        assert_eq!(c.started_at, Some(1_703_302_407_333));
        assert_eq!(c.direction, Some(Direction::Outbound));
    }
}

//! Twilio's list of calls, `GET /2010-04-01/Accounts/{AccountSid}/Calls.json`, read straight into canonical calls.

use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::call::time::from_rfc2822;
use crate::call::{Call, CallStatus, Direction, Text};
use crate::provider::http::Page;
use crate::wire::{from_body, CallList, Field, ParseError, Readers, Required, WireCall};

/// A Twilio call object is 1.5 to 2.5 KB, most of it `subresource_uris`; guessing from a
/// smaller size only reserves room that is never touched.
const TYPICAL_CALL_BYTES: usize = 1024;

/// One page of Twilio's list: its calls (every status, active or not) and its
/// `next_page_uri`, as Twilio wrote it (a path relative to the API's host), if there is one.
///
/// A body with no `calls` but Twilio's error fields (`code`, `message`) is reported as the
/// error it names.
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
    if let Some(calls) = envelope.calls {
        return Ok(Page {
            calls,
            next: envelope.next_page_uri,
        });
    }
    Err(match (envelope.code, envelope.message) {
        (Some(code), Some(message)) => ParseError::Reported(format!("{code}: {message}")),
        (Some(only), None) | (None, Some(only)) => ParseError::Reported(only),
        (None, None) => ParseError::Malformed("missing field `calls`".into()),
    })
}

#[derive(Deserialize)]
struct CallIn<'a> {
    #[serde(borrow)]
    sid: Required<'a>,
    #[serde(borrow, default)]
    from: Field<'a>,
    #[serde(borrow, default)]
    to: Field<'a>,
    #[serde(borrow)]
    status: Required<'a>,
    #[serde(borrow, default)]
    direction: Field<'a>,
    #[serde(borrow, default)]
    date_created: Field<'a>,
    #[serde(borrow, default)]
    start_time: Field<'a>,
}

impl<'de> WireCall<'de> for CallIn<'de> {
    fn into_call(self, provider: &Arc<str>) -> Call {
        let sid = Text::from(&*self.sid.0);
        let mut call = Call::new(
            sid.clone(),
            provider.clone(),
            status_from_wire(&self.status.0),
        );
        call.from = self.from.text();
        call.to = self.to.text();
        call.direction = self.direction.0.as_deref().and_then(direction_from_wire);
        // Twilio leaves `start_time` empty until a call is dialed; a date that does not
        // read is as unknown as an empty one.
        call.created_at = self.date_created.0.as_deref().and_then(from_rfc2822);
        call.started_at = self.start_time.0.as_deref().and_then(from_rfc2822);
        // The sid is the CallSid itself: another platform reporting the same phone call
        // (Vapi, Retell) names it too, and the merge lists the call once.
        call.telephony_id = Some(sid);
        call
    }
}

/// Twilio's call statuses (the Call resource's "Call Status Values"). Unknown ones are kept
/// verbatim and count as active.
pub fn status_from_wire(s: &str) -> CallStatus {
    match s {
        "queued" => CallStatus::Queued,
        "ringing" => CallStatus::Ringing,
        "in-progress" => CallStatus::InProgress,
        "completed" => CallStatus::Completed,
        "busy" => CallStatus::Busy,
        "failed" => CallStatus::Failed,
        "no-answer" => CallStatus::NoAnswer,
        "canceled" => CallStatus::Canceled,
        _ => CallStatus::Other(Text::from(s)),
    }
}

/// `outbound-api` is a call placed through the REST API, `outbound-dial` one placed by a
/// `<Dial>`. The Elastic SIP Trunking directions (`trunking-originating`,
/// `trunking-terminating`) and anything else are unknown, as DESIGN §8 maps them.
fn direction_from_wire(s: &str) -> Option<Direction> {
    match s {
        "inbound" => Some(Direction::Inbound),
        "outbound-api" | "outbound-dial" => Some(Direction::Outbound),
        _ => None,
    }
}

/// What a page holds that callmux uses; every other key (`page`, `uri`, `start`, …) is
/// skipped unread.
#[derive(Default)]
struct Envelope {
    calls: Option<Vec<Call>>,
    next_page_uri: Option<String>,
    code: Option<String>,
    message: Option<String>,
}

#[derive(Clone, Copy)]
struct BodySeed<'p> {
    provider: &'p Arc<str>,
    capacity: usize,
}

impl<'de> DeserializeSeed<'de> for BodySeed<'_> {
    type Value = Envelope;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for BodySeed<'_> {
    type Value = Envelope;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an object with `calls`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        #[derive(Deserialize)]
        #[serde(field_identifier, rename_all = "snake_case")]
        enum Key {
            Calls,
            NextPageUri,
            Code,
            Message,
            #[serde(other)]
            Other,
        }
        let mut out = Envelope::default();
        let mut seen_next = false;
        while let Some(key) = map.next_key()? {
            match key {
                Key::Calls if out.calls.is_some() => {
                    return Err(de::Error::duplicate_field("calls"))
                }
                Key::Calls => {
                    out.calls = Some(map.next_value_seed(CallList {
                        provider: self.provider,
                        capacity: self.capacity,
                        shape: PhantomData::<fn() -> CallIn<'de>>,
                    })?)
                }
                // A second link could point anywhere the first did not; neither is trusted.
                Key::NextPageUri if seen_next => {
                    return Err(de::Error::duplicate_field("next_page_uri"))
                }
                Key::NextPageUri => {
                    seen_next = true;
                    out.next_page_uri = owned(map.next_value()?);
                }
                Key::Code => out.code = owned(map.next_value()?),
                Key::Message => out.message = owned(map.next_value()?),
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(out)
    }
}

fn owned(field: Field<'_>) -> Option<String> {
    field.0.map(|t| t.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pid() -> Arc<str> {
        Arc::from("twilio")
    }

    #[test]
    fn every_documented_status_reads_as_its_canonical_status_and_others_are_kept() {
        for (wire, canonical) in [
            ("queued", CallStatus::Queued),
            ("ringing", CallStatus::Ringing),
            ("in-progress", CallStatus::InProgress),
            ("completed", CallStatus::Completed),
            ("busy", CallStatus::Busy),
            ("failed", CallStatus::Failed),
            ("no-answer", CallStatus::NoAnswer),
            ("canceled", CallStatus::Canceled),
            ("paused", CallStatus::Other("paused".into())),
        ] {
            assert_eq!(status_from_wire(wire), canonical, "{wire}");
        }
    }

    #[test]
    fn a_page_reads_its_calls_and_its_next_page_uri() {
        let body = br#"{"calls": [{"sid": "CA1", "status": "ringing", "direction": "outbound-dial",
            "from": "+1", "to": "+2", "date_created": "Fri, 18 Oct 2019 17:00:00 +0000",
            "start_time": "", "subresource_uris": {"events": "/x"}, "duration": null}],
            "next_page_uri": "/2010-04-01/Accounts/AC1/Calls.json?Page=1", "page": 0}"#;
        for readers in [Readers::PlainFirst, Readers::SerdeJson] {
            let page = parse_page_with(body, &pid(), readers).unwrap();
            let c = &page.calls[0];
            assert_eq!(c.call_id, "CA1");
            assert_eq!(c.telephony_id.as_deref(), Some("CA1"));
            assert_eq!(c.direction, Some(Direction::Outbound));
            assert_eq!(c.created_at, Some(1_571_418_000_000));
            assert_eq!(c.started_at, None);
            assert_eq!(
                page.next.as_deref(),
                Some("/2010-04-01/Accounts/AC1/Calls.json?Page=1")
            );
        }
    }

    #[test]
    fn twilios_error_body_is_reported_with_its_code_and_message() {
        let body = br#"{"code": 20003, "message": "Authenticate", "more_info": "https://www.twilio.com/docs/errors/20003", "status": 401}"#;
        assert_eq!(
            parse_page(body, &pid()).map(|p| p.calls),
            Err(ParseError::Reported("20003: Authenticate".into()))
        );
        assert_eq!(
            parse_page(b"{}", &pid()).map(|p| p.calls),
            Err(ParseError::Malformed("missing field `calls`".into()))
        );
    }

    #[test]
    fn a_second_next_page_uri_or_calls_is_refused() {
        for body in [
            &br#"{"calls": [], "next_page_uri": null, "next_page_uri": "/x"}"#[..],
            br#"{"calls": [], "calls": []}"#,
        ] {
            assert!(matches!(
                parse_page(body, &pid()),
                Err(ParseError::Malformed(_))
            ));
        }
    }
}

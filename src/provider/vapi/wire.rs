//! Vapi's list-calls shape, `GET /call` → a plain JSON array of Call objects, read straight
//! into canonical calls; each live call's control URL is kept apart, never in a `Call`.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::call::{time, Call, CallStatus, Direction, Text};
use crate::provider::http::Page;
use crate::wire::{from_body, Field, ParseError, Readers, Required};

/// Calls asked for per page (`limit`), Vapi's maximum. A page this full may have older calls
/// after it.
pub const PAGE_LIMIT: usize = 1000;

/// A Vapi call object carries its assistant, costs and transcript, so even a short call is
/// a kilobyte or more; a guess on the low side reserves room for every call without copying
/// the list as it grows, and the cap keeps a body of one huge call from reserving more.
const TYPICAL_CALL_BYTES: usize = 1024;

/// A call's `monitor.controlUrl`. Whoever holds it can steer or end the call without any
/// key, so it is never logged, listed or shown: its `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct ControlUrl(String);

impl ControlUrl {
    /// The URL itself, for the one place that sends to it.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ControlUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ControlUrl([REDACTED])")
    }
}

/// Each live call on a page and its control URL (`None`: Vapi gave none, as when the
/// assistant's `monitorPlan.controlEnabled` is off). Ended calls are not kept: they cannot
/// be ended.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Controls(pub Vec<(Text, Option<ControlUrl>)>);

/// Reads one page of Vapi's answer into canonical calls (every status, ended ones too; the
/// merge leaves those out). A full page's `next` is the oldest `createdAt` on it, as sent:
/// the next page is the calls created before that.
pub fn parse_page(body: &[u8], provider: &Arc<str>) -> Result<Page, ParseError> {
    parse_page_with(body, provider, Readers::default()).map(|(page, _)| page)
}

/// [`parse_page`] with a choice of readers, and the page's control URLs; for the backend,
/// the differential tests and the fuzz target.
#[doc(hidden)]
pub fn parse_page_with(
    body: &[u8],
    provider: &Arc<str>,
    readers: Readers,
) -> Result<(Page, Controls), ParseError> {
    let seed = PageSeed {
        provider,
        capacity: (body.len() / TYPICAL_CALL_BYTES).min(PAGE_LIMIT),
    };
    from_body(body, seed, readers)
}

/// One Call object as a server message carries it (`message.call`), read as the list reads
/// it; `None` if it lacks what a listed call needs (its id and status).
pub fn call_of(object: &serde_json::Value, provider: &Arc<str>) -> Option<Call> {
    CallIn::deserialize(object)
        .ok()
        .map(|call| call.into_call(provider).0)
}

/// The fields callmux reads of Vapi's Call object; the rest (assistant, messages, costs,
/// artifacts, `monitor.listenUrl`) are skipped unread.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CallIn<'a> {
    #[serde(borrow)]
    id: Required<'a>,
    #[serde(borrow, default, rename = "type")]
    kind: Field<'a>,
    #[serde(borrow)]
    status: Required<'a>,
    #[serde(borrow, default)]
    created_at: Field<'a>,
    #[serde(borrow, default)]
    started_at: Field<'a>,
    #[serde(borrow, default)]
    customer: Option<Customer<'a>>,
    #[serde(borrow, default)]
    phone_number: Option<PhoneNumber<'a>>,
    #[serde(borrow, default)]
    phone_call_provider: Field<'a>,
    #[serde(borrow, default)]
    phone_call_provider_id: Field<'a>,
    #[serde(borrow, default)]
    transport: Option<Transport<'a>>,
    #[serde(borrow, default)]
    monitor: Option<Monitor<'a>>,
}

/// A SIP caller has a `sipUri` and no `number`; its address is kept as written
/// (`sip:...`), as the `twilio` kind keeps Twilio's `sip:` addresses.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Customer<'a> {
    #[serde(borrow, default)]
    number: Field<'a>,
    #[serde(borrow, default)]
    sip_uri: Field<'a>,
}

/// The call's own number, when the call carries it rather than only a `phoneNumberId`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PhoneNumber<'a> {
    #[serde(borrow, default)]
    number: Field<'a>,
    /// What the API reference's Call schema names the digits of a Twilio number.
    #[serde(borrow, default)]
    twilio_phone_number: Field<'a>,
    /// A Vapi SIP number's address, dialled as `sip:<user>@sip.vapi.ai`.
    #[serde(borrow, default)]
    sip_uri: Field<'a>,
}

/// Where newer answers put the Twilio CallSid (`phoneCallProviderId` is deprecated).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Transport<'a> {
    #[serde(borrow, default)]
    provider: Field<'a>,
    #[serde(borrow, default)]
    call_sid: Field<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Monitor<'a> {
    #[serde(borrow, default)]
    control_url: Field<'a>,
}

impl CallIn<'_> {
    fn into_call(self, provider: &Arc<str>) -> (Call, Option<ControlUrl>) {
        let mut call = Call::new(
            &*self.id.0,
            provider.clone(),
            status_from_wire(&self.status.0),
        );
        let direction = match self.kind.0.as_deref() {
            Some("inboundPhoneCall") => Some(Direction::Inbound),
            Some("outboundPhoneCall") => Some(Direction::Outbound),
            _ => None,
        };
        let customer = self
            .customer
            .and_then(|c| c.number.text().or_else(|| c.sip_uri.text()));
        let ours = self.phone_number.and_then(|p| {
            p.number
                .text()
                .or_else(|| p.twilio_phone_number.text())
                .or_else(|| p.sip_uri.text())
        });
        // Of a call whose direction is unknown the customer is read as `to`, as the calls
        // shape reads the number of a call without a direction.
        (call.from, call.to) = match direction {
            Some(Direction::Inbound) => (customer, ours),
            _ => (ours, customer),
        };
        call.direction = direction;
        call.created_at = self.created_at.0.as_deref().and_then(time::from_iso8601);
        call.started_at = self.started_at.0.as_deref().and_then(time::from_iso8601);
        let twilio = |provider: &Field<'_>| provider.0.as_deref() == Some("twilio");
        call.telephony_id = twilio(&self.phone_call_provider)
            .then(|| self.phone_call_provider_id.text())
            .flatten()
            .or_else(|| {
                let t = self.transport?;
                twilio(&t.provider).then(|| t.call_sid.text()).flatten()
            });
        let control = self
            .monitor
            .and_then(|m| m.control_url.0)
            .map(|url| ControlUrl(url.into_owned()));
        (call, control)
    }
}

/// The array of calls, read straight into canonical ones, noting on the way the oldest
/// creation time (the next page's bound) and the live calls' control URLs.
#[derive(Clone, Copy)]
struct PageSeed<'p> {
    provider: &'p Arc<str>,
    capacity: usize,
}

impl<'de> DeserializeSeed<'de> for PageSeed<'_> {
    type Value = (Page, Controls);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for PageSeed<'_> {
    type Value = (Page, Controls);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of Vapi calls")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut calls = Vec::with_capacity(self.capacity);
        let mut controls = Vec::new();
        let mut oldest: Option<(u64, Cow<'de, str>)> = None;
        while let Some(wire) = seq.next_element::<CallIn<'de>>()? {
            let created = wire.created_at.0.clone();
            let (call, control) = wire.into_call(self.provider);
            if let (Some(ms), Some(text)) = (call.created_at, created) {
                if oldest.as_ref().is_none_or(|(seen, _)| ms < *seen) {
                    oldest = Some((ms, text));
                }
            }
            if call.status.is_active() {
                controls.push((call.call_id.clone(), control));
            }
            calls.push(call);
        }
        let next = match oldest {
            _ if calls.len() < PAGE_LIMIT => None,
            Some((_, text)) => Some(text.trim().to_owned()),
            // Without a creation time there is no way to ask for the rest, and a list must
            // never be silently short.
            None => {
                return Err(de::Error::custom(format!(
                    "a full page of {} calls has no readable createdAt to ask for the next page by",
                    calls.len()
                )))
            }
        };
        Ok((Page { calls, next }, Controls(controls)))
    }
}

/// Vapi's statuses. `scheduled` and `queued` have not begun ringing; `forwarding` is a call
/// being transferred, still live. Of the ended ones, `not-found` (Vapi lost track of the
/// call) reads as canceled and `deletion-failed` as failed: both are over.
pub fn status_from_wire(s: &str) -> CallStatus {
    match s {
        "scheduled" | "queued" => CallStatus::Queued,
        "ringing" => CallStatus::Ringing,
        "in-progress" | "forwarding" => CallStatus::InProgress,
        "ended" => CallStatus::Completed,
        "not-found" => CallStatus::Canceled,
        "deletion-failed" => CallStatus::Failed,
        _ => CallStatus::Other(Text::from(s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(body: &str) -> (Page, Controls) {
        let provider: Arc<str> = Arc::from("v");
        let plain = parse_page_with(body.as_bytes(), &provider, Readers::PlainFirst).unwrap();
        let serde = parse_page_with(body.as_bytes(), &provider, Readers::SerdeJson).unwrap();
        assert_eq!(plain.0.calls, serde.0.calls);
        assert_eq!(plain.0.next, serde.0.next);
        assert_eq!(plain.1, serde.1);
        plain
    }

    #[test]
    fn a_control_url_never_shows_in_debug_output() {
        let (_, controls) = read(
            r#"[{"id":"c","status":"in-progress","monitor":{"controlUrl":"https://x.vapi.ai/c/control"}}]"#,
        );
        assert_eq!(controls.0.len(), 1);
        let shown = format!("{controls:?} {controls:#?}");
        assert!(!shown.contains("x.vapi.ai"), "{shown}");
        assert!(shown.contains("REDACTED"), "{shown}");
    }

    #[test]
    fn only_live_calls_keep_a_control_url_entry() {
        let (page, controls) = read(
            r#"[{"id":"live","status":"ringing","monitor":{"controlUrl":"https://a.vapi.ai/1/control"}},
                {"id":"done","status":"ended","monitor":{"controlUrl":"https://a.vapi.ai/2/control"}},
                {"id":"bare","status":"queued"}]"#,
        );
        assert_eq!(page.calls.len(), 3);
        let ids: Vec<(&str, bool)> = controls
            .0
            .iter()
            .map(|(id, url)| (id.as_str(), url.is_some()))
            .collect();
        assert_eq!(ids, [("live", true), ("bare", false)]);
    }

    #[test]
    fn a_page_short_of_the_limit_has_no_next_page() {
        let (page, _) =
            read(r#"[{"id":"a","status":"queued","createdAt":"2024-09-10T11:14:12.339Z"}]"#);
        assert_eq!(page.next, None);
    }
}

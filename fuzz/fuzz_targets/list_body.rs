//! Fuzzes every kind's reader of an upstream list body: the first byte picks the kind's wire
//! (`b` Bland, `c` the calls shape of agent servers and static files, `r` Retell, `t` Twilio,
//! `v` Vapi; any other byte one of them by its value), the rest is the body. For every body a
//! reader accepts, the calls are written back out in both client shapes and read again
//! (`round_trip`), and every body must read exactly as serde_json alone reads it: the plain
//! reader callmux tries first gives up rather than answer differently.
#![no_main]

use std::sync::Arc;

use callmux::call::Call;
use callmux::provider::{retell, twilio, vapi};
use callmux::wire::Readers;
use libfuzzer_sys::fuzz_target;

mod round_trip;

/// Each wire's selecting byte and its checks; the byte is fixed so seeds keep their wire when
/// a wire is added.
const WIRES: &[(u8, fn(&[u8], &Arc<str>))] = &[
    (b'b', bland),
    (b'c', calls),
    (b'r', retell),
    (b't', twilio),
    (b'v', vapi),
];

fuzz_target!(|data: &[u8]| {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let check = WIRES
        .iter()
        .find(|(byte, _)| *byte == first)
        .unwrap_or(&WIRES[usize::from(first) % WIRES.len()])
        .1;
    check(body, &Arc::from("p"));
});

/// The plain reader and serde_json read `body` alike, and what they accept round-trips.
fn same_read<T: PartialEq + std::fmt::Debug>(
    provider: &Arc<str>,
    read: impl Fn(Readers) -> Result<T, callmux::wire::ParseError>,
    calls: impl Fn(&T) -> &[Call],
) -> Option<T> {
    let plain_first = read(Readers::PlainFirst);
    assert_eq!(
        plain_first,
        read(Readers::SerdeJson),
        "the plain reader and serde_json read this body differently"
    );
    let read = plain_first.ok()?;
    round_trip::check(calls(&read), provider);
    Some(read)
}

/// Bland's `/v1/calls/active` body.
fn bland(body: &[u8], provider: &Arc<str>) {
    same_read(
        provider,
        |readers| callmux::wire::bland::parse_with(body, provider, readers),
        |calls| calls,
    );
}

/// An agent server's `/api/calls` body.
fn calls(body: &[u8], provider: &Arc<str>) {
    same_read(
        provider,
        |readers| callmux::wire::calls::parse_with(body, provider, readers),
        |calls| calls,
    );
}

/// One page of Retell's `POST /v3/list-calls` answer.
fn retell(body: &[u8], provider: &Arc<str>) {
    // `Page` has no `PartialEq`: compare what it holds.
    let read =
        |readers| retell::wire::parse_page_with(body, provider, readers).map(|p| (p.calls, p.next));
    if let Some((calls, next)) = same_read(provider, read, |(calls, _)| calls) {
        assert!(
            next.as_deref().is_none_or(|k| !k.is_empty()),
            "an empty next key"
        );
        for c in &calls {
            assert_eq!(c.started_at, c.created_at, "Retell gives one time for both");
            let latest = retell::wire::LATEST_MS;
            assert!(
                c.started_at.is_none_or(|ms| ms <= latest),
                "a time past 9999"
            );
        }
    }
}

/// A page of Twilio's Calls list, whose `next_page_uri` must stay on the base URL's host.
fn twilio(body: &[u8], provider: &Arc<str>) {
    let read =
        |readers| twilio::wire::parse_page_with(body, provider, readers).map(|p| (p.calls, p.next));
    let Some((_, Some(uri))) = same_read(provider, read, |(calls, _)| calls) else {
        return;
    };
    let base = url::Url::parse("https://api.twilio.com/base/").unwrap();
    if let Some(url) = twilio::page_url(&base, &uri) {
        assert_eq!(
            url.host_str(),
            Some("api.twilio.com"),
            "{uri:?} left the host"
        );
        assert_eq!(url.scheme(), "https");
        assert_eq!(url.port(), None);
    }
}

/// A Vapi `GET /call` body: the calls, the next page's bound, each live call's control URL.
fn vapi(body: &[u8], provider: &Arc<str>) {
    let read = |readers| {
        vapi::wire::parse_page_with(body, provider, readers)
            .map(|(page, controls)| (page.calls, page.next, controls))
    };
    if let Some((calls, next, controls)) = same_read(provider, read, |(calls, _, _)| calls) {
        // Only a full page asks for more, and only by a creation time one of its calls has.
        assert_eq!(next.is_some(), calls.len() >= vapi::wire::PAGE_LIMIT);
        // Control URLs are kept for live calls only, one entry per live call.
        let live = calls.iter().filter(|c| c.status.is_active()).count();
        assert_eq!(controls.0.len(), live);
    }
}

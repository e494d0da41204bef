//! Fuzzes every kind's reader of a create-call answer: the first byte picks the kind (`a`
//! agent servers, `b` Bland, `r` Retell, `t` Twilio, `v` Vapi; any other byte one of them by
//! its value), the second the HTTP status (from a fixed list, by its value), the rest is the
//! body. Whatever arrives, the outcome keeps the rules that decide failover: only a 2xx
//! places a call, and then with a non-empty id; a 5xx other than 503 never reads as a
//! refusal (the call may exist) unless Vapi says its limit blocked it; a 2xx is never a
//! refusal or rejection on any other ground; messages stay short.
#![no_main]

use callmux::provider::place::PlaceOutcome;
use callmux::provider::{bland, retell, twilio, twilio_media_stream, vapi};
use libfuzzer_sys::fuzz_target;

/// Each kind's selecting byte and reader; fixed, so seeds keep their kind.
const KINDS: &[(u8, fn(u16, &[u8]) -> PlaceOutcome)] = &[
    (b'a', twilio_media_stream::read_place_answer),
    (b'b', bland::place::read_answer),
    (b'r', retell::place::read_answer),
    (b't', twilio::place::read_answer),
    (b'v', vapi::place::read_answer),
];

/// Statuses the platforms answer with, and a few they should not.
const STATUSES: &[u16] = &[
    200, 201, 202, 204, 400, 401, 402, 403, 404, 409, 422, 429, 500, 502, 503, 504, 100, 302,
];

fuzz_target!(|data: &[u8]| {
    let [kind, status, body @ ..] = data else {
        return;
    };
    let read = KINDS
        .iter()
        .find(|(byte, _)| byte == kind)
        .unwrap_or(&KINDS[usize::from(*kind) % KINDS.len()])
        .1;
    let status = STATUSES[usize::from(*status) % STATUSES.len()];
    let outcome = read(status, body);
    let blocked = matches!(
        &outcome,
        PlaceOutcome::Refused { limits: Some(l), .. } if l.blocked
    );
    match &outcome {
        PlaceOutcome::Placed { call_id, .. } => {
            assert!((200..300).contains(&status), "placed on HTTP {status}");
            assert!(!call_id.is_empty(), "placed without an id");
        }
        PlaceOutcome::Refused { reason, .. } => {
            assert!(
                matches!(status, 429 | 503) || blocked,
                "refused on HTTP {status}"
            );
            assert!(reason.chars().count() <= 400, "a long reason");
        }
        PlaceOutcome::Rejected { message } => {
            assert!((400..500).contains(&status) && status != 429, "rejected on HTTP {status}");
            assert!(message.chars().count() <= 300, "a long message");
        }
        PlaceOutcome::Unknown { .. } => {
            assert!(!(400..500).contains(&status), "unknown on HTTP {status}");
        }
    }
});

//! Fuzzes `callmux::provider::vapi::wire::parse_page` (a Vapi `GET /call` body: the calls, the
//! next page's bound, each live call's control URL) and, for every body it accepts, writing
//! the calls back out in both client shapes and reading them again (`round_trip`). Every body
//! must also read exactly as serde_json alone reads it: the plain reader callmux tries first
//! gives up rather than answer differently.
#![no_main]

use std::sync::Arc;

use callmux::provider::vapi::wire::{parse_page_with, PAGE_LIMIT};
use callmux::wire::Readers;
use libfuzzer_sys::fuzz_target;

mod round_trip;

fuzz_target!(|data: &[u8]| {
    let provider: Arc<str> = Arc::from("p");
    let read = |readers| {
        parse_page_with(data, &provider, readers)
            .map(|(page, controls)| (page.calls, page.next, controls))
    };
    let plain_first = read(Readers::PlainFirst);
    assert_eq!(
        plain_first,
        read(Readers::SerdeJson),
        "the plain reader and serde_json read this body differently"
    );
    if let Ok((calls, next, controls)) = plain_first {
        // Only a full page asks for more, and only by a creation time one of its calls has.
        assert_eq!(next.is_some(), calls.len() >= PAGE_LIMIT);
        // Control URLs are kept for live calls only, one entry per live call.
        let live = calls.iter().filter(|c| c.status.is_active()).count();
        assert_eq!(controls.0.len(), live);
        round_trip::check(&calls, &provider);
    }
});

//! Fuzzes `callmux::provider::retell::wire::parse_page` (one page of Retell's
//! `POST /v3/list-calls` answer) and, for every page it accepts, writing the calls back out in
//! both client shapes and reading them again (`round_trip`). Every body must also read
//! exactly as serde_json alone reads it: the plain reader callmux tries first gives up rather
//! than answer differently.
#![no_main]

use std::sync::Arc;

use callmux::provider::retell::wire::{parse_page_with, LATEST_MS};
use callmux::wire::Readers;
use libfuzzer_sys::fuzz_target;

mod round_trip;

fuzz_target!(|data: &[u8]| {
    let provider: Arc<str> = Arc::from("p");
    // `Page` has no `PartialEq`: compare what it holds.
    let read = |readers| parse_page_with(data, &provider, readers).map(|p| (p.calls, p.next));
    let page = read(Readers::PlainFirst);
    assert_eq!(
        page,
        read(Readers::SerdeJson),
        "the plain reader and serde_json read this body differently"
    );
    if let Ok((calls, next)) = page {
        assert!(next.as_deref().is_none_or(|k| !k.is_empty()), "an empty next key");
        for c in &calls {
            assert_eq!(c.started_at, c.created_at, "Retell gives one time for both");
            assert!(c.started_at.is_none_or(|ms| ms <= LATEST_MS), "a time past 9999");
        }
        round_trip::check(&calls, &provider);
    }
});

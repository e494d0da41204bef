//! Fuzzes `callmux::wire::calls::parse` (an agent server's `/api/calls` body) and, for every
//! body it accepts, writing the calls back out in both client shapes and reading them again
//! (`round_trip`). Every body must also read exactly as serde_json alone reads it: the plain
//! reader callmux tries first gives up rather than answer differently.
#![no_main]

use std::sync::Arc;

use callmux::wire::Readers;
use libfuzzer_sys::fuzz_target;

mod round_trip;

fuzz_target!(|data: &[u8]| {
    let provider: Arc<str> = Arc::from("p");
    let read = callmux::wire::calls::parse_with(data, &provider, Readers::PlainFirst);
    assert_eq!(
        read,
        callmux::wire::calls::parse_with(data, &provider, Readers::SerdeJson),
        "the plain reader and serde_json read this body differently"
    );
    if let Ok(calls) = read {
        round_trip::check(&calls, &provider);
    }
});

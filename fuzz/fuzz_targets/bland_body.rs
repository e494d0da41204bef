//! Fuzzes `callmux::wire::bland::parse` (an upstream Bland `/v1/calls/active` body) and, for
//! every body it accepts, writing the calls back out in both client shapes and reading them
//! again (`round_trip`).
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;

mod round_trip;

fuzz_target!(|data: &[u8]| {
    let provider: Arc<str> = Arc::from("p");
    if let Ok(calls) = callmux::wire::bland::parse(data, &provider) {
        round_trip::check(&calls, &provider);
    }
});

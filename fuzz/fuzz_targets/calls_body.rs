//! Fuzzes `callmux::wire::calls::parse` (an agent server's `/api/calls` body) and, for every
//! body it accepts, writing the calls back out in both client shapes.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let provider: Arc<str> = Arc::from("p");
    let Ok(calls) = callmux::wire::calls::parse(data, &provider) else {
        return;
    };
    // `org` is the `user_id` written for calls whose upstream named no owner.
    let bland = callmux::wire::bland::write(&calls, "org", &[]);
    let calls_shape = callmux::wire::calls::write(&calls, &[]);
    assert!(
        serde_json::from_slice::<serde_json::Value>(&bland).is_ok(),
        "bland::write produced invalid JSON"
    );
    assert!(
        serde_json::from_slice::<serde_json::Value>(&calls_shape).is_ok(),
        "calls::write produced invalid JSON"
    );
    // What callmux writes, callmux can read back: same number of calls in each shape.
    let again = callmux::wire::bland::parse(&bland, &provider).expect("re-read bland output");
    assert_eq!(again.len(), calls.len());
    let again = callmux::wire::calls::parse(&calls_shape, &provider).expect("re-read calls output");
    assert_eq!(again.len(), calls.len());
});

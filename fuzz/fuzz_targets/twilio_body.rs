//! Fuzzes `callmux::provider::twilio::wire::parse_page` (a page of Twilio's Calls list) and,
//! for every page it accepts, writing the calls back out in both client shapes and reading
//! them again (`round_trip`), and turning its `next_page_uri` into a URL, which must stay on
//! the base URL's host. Every body must also read exactly as serde_json alone reads it.
#![no_main]

use std::sync::Arc;

use callmux::provider::twilio::{page_url, wire};
use callmux::wire::Readers;
use libfuzzer_sys::fuzz_target;

mod round_trip;

fuzz_target!(|data: &[u8]| {
    let provider: Arc<str> = Arc::from("p");
    let read =
        wire::parse_page_with(data, &provider, Readers::PlainFirst).map(|p| (p.calls, p.next));
    assert_eq!(
        read,
        wire::parse_page_with(data, &provider, Readers::SerdeJson).map(|p| (p.calls, p.next)),
        "the plain reader and serde_json read this body differently"
    );
    if let Ok((calls, next)) = read {
        round_trip::check(&calls, &provider);
        if let Some(uri) = next {
            let base = url::Url::parse("https://api.twilio.com/base/").unwrap();
            if let Some(url) = page_url(&base, &uri) {
                assert_eq!(
                    url.host_str(),
                    Some("api.twilio.com"),
                    "{uri:?} left the host"
                );
                assert_eq!(url.scheme(), "https");
                assert_eq!(url.port(), None);
            }
        }
    }
});

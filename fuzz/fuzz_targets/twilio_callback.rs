//! Fuzzes the check of a Twilio status callback, `provider::twilio::signature::valid`, on an
//! arbitrary URL, form body, signature and `X-Twilio-Webhooks-Signature-Settings` header, and
//! checks that a signature made by `sign` (HMAC-SHA1 and HMAC-SHA256 alike) for the URL as
//! written (and with its default port written out) is always accepted, while the same
//! signature over other parameters, or made with the other algorithm, is not.
//!
//! Input: split at `\n` into the auth token, the URL, the form body, the signature and the
//! settings header (none when absent: HMAC-SHA1).
#![no_main]

use callmux::provider::twilio::signature::{sign, valid, Algorithm};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(5, '\n');
    let token = parts.next().unwrap_or("").as_bytes();
    let (Some(url_text), Some(form), signature, settings) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    let Ok(url) = url::Url::parse(url_text) else {
        return;
    };
    let params: Vec<(String, String)> = url::form_urlencoded::parse(form.as_bytes())
        .into_owned()
        .collect();
    // Whatever arrives, the header is read and the check answers without panicking.
    if let Some(announced) = Algorithm::announced(settings) {
        let _ = valid(announced, token, &url, &params, signature.unwrap_or(""));
    }

    // Only an http(s) URL with a host and no user name or password can be a provider's
    // `public_url` (config refuses others); for anything else the answer above is all that
    // matters.
    if !matches!(url.scheme(), "http" | "https")
        || url.host_str().is_none_or(str::is_empty)
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return;
    }
    for (algorithm, other) in [
        (Algorithm::HmacSha1, Algorithm::HmacSha256),
        (Algorithm::HmacSha256, Algorithm::HmacSha1),
    ] {
        // What Twilio would send for this request is accepted...
        let signed = sign(algorithm, token, url.as_str(), &params);
        assert!(
            valid(algorithm, token, &url, &params, &signed),
            "own signature refused"
        );
        if url.port().is_none() {
            if let Some(port) = url.port_or_known_default() {
                // `url` drops a default port it is given, so write it out by hand.
                let host = url.host_str().unwrap_or("");
                let rest = &url[url::Position::BeforePath..];
                let written = format!("{}://{host}:{port}{rest}", url.scheme());
                let with_port = sign(algorithm, token, &written, &params);
                assert!(
                    valid(algorithm, token, &url, &params, &with_port),
                    "port form refused"
                );
            }
        }
        // ...and not for another set of parameters, nor as the other algorithm's.
        // A parameter the form does not hold already: an exact duplicate may be read as the
        // same form (the fuzzer found that one), which is no forgery.
        let mut more = params.clone();
        let name = (0..)
            .map(|n| format!("Forged{n}"))
            .find(|name| params.iter().all(|(k, _)| k != name))
            .unwrap_or_default();
        more.push((name, "\u{0}forged".into()));
        assert!(
            !valid(algorithm, token, &url, &more, &signed),
            "signature accepted for other params"
        );
        assert!(
            !valid(other, token, &url, &params, &signed),
            "signature accepted for the other algorithm"
        );
    }
});

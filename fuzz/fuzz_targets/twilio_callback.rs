//! Fuzzes the check of a Twilio status callback, `provider::twilio::signature::valid`, on an
//! arbitrary URL, form body and signature, and checks that a signature made by `sign` for the
//! URL as written (and with its default port written out) is always accepted, while the same
//! signature over other parameters is not.
//!
//! Input: split at `\n` into the auth token, the URL, the form body and the signature.
#![no_main]

use callmux::provider::twilio::signature::{sign, valid};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(4, '\n');
    let token = parts.next().unwrap_or("").as_bytes();
    let (Some(url_text), Some(form), signature) = (parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    let Ok(url) = url::Url::parse(url_text) else {
        return;
    };
    let params: Vec<(String, String)> = url::form_urlencoded::parse(form.as_bytes())
        .into_owned()
        .collect();
    // Whatever arrives, the check answers without panicking.
    let _ = valid(token, &url, &params, signature.unwrap_or(""));

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
    // What Twilio would send for this request is accepted...
    let signed = sign(token, url.as_str(), &params);
    assert!(valid(token, &url, &params, &signed), "own signature refused");
    if url.port().is_none() {
        if let Some(port) = url.port_or_known_default() {
            let mut with_port = url.clone();
            if with_port.set_port(Some(port)).is_ok() {
                // `url` drops a default port it is given, so write it out by hand.
                let host = url.host_str().unwrap_or("");
                let rest = &url[url::Position::BeforePath..];
                let written = format!("{}://{host}:{port}{rest}", url.scheme());
                let signed = sign(token, &written, &params);
                assert!(valid(token, &url, &params, &signed), "port form refused");
            }
        }
    }
    // ...and not for another set of parameters.
    let mut other = params.clone();
    other.push(("CallStatus".into(), "\u{0}forged".into()));
    assert!(!valid(token, &url, &other, &signed), "signature accepted for other params");
});

//! `X-Twilio-Signature`, checked as Twilio's own validators check it: HMAC-SHA1 keyed by the
//! account's auth token over the full URL Twilio called, then each form parameter's name and
//! value (names sorted; a repeated name's values sorted), base64; compared in constant time,
//! with the URL tried both without and with its port (the default one if none is written).

use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// Whether `signature` is Twilio's for a request to `url` (query included) carrying the form
/// `params`, signed with `token`.
pub fn valid(token: &[u8], url: &url::Url, params: &[(String, String)], signature: &str) -> bool {
    let Ok(given) = base64::engine::general_purpose::STANDARD.decode(signature.trim()) else {
        return false;
    };
    let Some(host) = url.host_str() else {
        return false;
    };
    let rest = &url[url::Position::BeforePath..];
    let without_port = format!("{}://{host}{rest}", url.scheme());
    let with_port = url
        .port_or_known_default()
        .map(|port| format!("{}://{host}:{port}{rest}", url.scheme()));
    // Both are computed and compared, whichever matches, so timing says nothing of which.
    let a = verify(token, &without_port, params, &given);
    let b = with_port.is_some_and(|u| verify(token, &u, params, &given));
    a | b
}

fn verify(token: &[u8], url: &str, params: &[(String, String)], given: &[u8]) -> bool {
    mac(token, url, params).verify_slice(given).is_ok()
}

fn mac(token: &[u8], url: &str, params: &[(String, String)]) -> Hmac<Sha1> {
    let mut mac = Hmac::<Sha1>::new_from_slice(token).expect("HMAC takes a key of any length");
    mac.update(url.as_bytes());
    // Sorted by name, then value; a pair repeated exactly counts once (as twilio-python's
    // `sorted(set(values))` does).
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    sorted.dedup();
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    mac
}

/// The signature of a request, as Twilio computes it: for tests and tools that sign.
pub fn sign(token: &[u8], url: &str, params: &[(String, String)]) -> String {
    base64::engine::general_purpose::STANDARD
        .encode(mac(token, url, params).finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Twilio's SDK test vectors (twilio-python tests/unit/test_request_validator.py).
    const TOKEN: &[u8] = b"12345";
    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";

    fn params() -> Vec<(String, String)> {
        [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn url(text: &str) -> url::Url {
        url::Url::parse(text).unwrap()
    }

    #[test]
    fn the_sdk_vector_signs_and_validates() {
        assert_eq!(sign(TOKEN, URL, &params()), "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
        assert!(valid(
            TOKEN,
            &url(URL),
            &params(),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
        // In any order the form sent them.
        let mut reversed = params();
        reversed.reverse();
        assert!(valid(
            TOKEN,
            &url(URL),
            &reversed,
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
    }

    #[test]
    fn repeated_parameters_are_signed_with_their_values_sorted() {
        let params: Vec<(String, String)> = [
            ("Sid", "CA123"),
            ("SidAccount", "AC123"),
            ("Digits", "5678"),
            ("Digits", "1234"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(sign(TOKEN, URL, &params), "IK+Dwps556ElfBT0I3Rgjkr1wJU=");
        assert!(valid(
            TOKEN,
            &url(URL),
            &params,
            "IK+Dwps556ElfBT0I3Rgjkr1wJU="
        ));
    }

    #[test]
    fn the_url_is_tried_with_and_without_its_port() {
        // Signed without the port, called with one.
        let with_1234 = url("https://mycompany.com:1234/myapp.php?foo=1&bar=2");
        assert!(valid(
            TOKEN,
            &with_1234,
            &params(),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
        // Signed with the port it was called on.
        let http_1234 = url("http://mycompany.com:1234/myapp.php?foo=1&bar=2");
        assert!(valid(
            TOKEN,
            &http_1234,
            &params(),
            "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="
        ));
        // Signed with the default port, called without: :443 and :80.
        assert!(valid(
            TOKEN,
            &url(URL),
            &params(),
            "kvajT1Ptam85bY51eRf/AJRuM3w="
        ));
        let http = url("http://mycompany.com/myapp.php?foo=1&bar=2");
        assert!(valid(
            TOKEN,
            &http,
            &params(),
            "0ZXoZLH/DfblKGATFgpif+LLRf4="
        ));
    }

    #[test]
    fn a_wrong_token_url_parameter_or_signature_is_refused() {
        let good = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";
        assert!(!valid(b"54321", &url(URL), &params(), good));
        assert!(!valid(
            TOKEN,
            &url("https://mycompany.com/myapp.php?foo=1&bar=3"),
            &params(),
            good
        ));
        let mut changed = params();
        changed[2].1 = "9999".into();
        assert!(!valid(TOKEN, &url(URL), &changed, good));
        for forged in [
            "",
            "not base64!",
            "RSOYDt4T1cUTdK1PDd93/VVr8B8",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        ] {
            assert!(!valid(TOKEN, &url(URL), &params(), forged), "{forged}");
        }
    }
}

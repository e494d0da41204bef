//! `X-Twilio-Signature`, checked as Twilio's own validators check it: an HMAC over the full
//! URL Twilio called, then each form parameter's name and value (names sorted; a repeated
//! name's values sorted), base64; compared in constant time, with the URL tried both without
//! and with its port (the default one if none is written). The HMAC is SHA-1, or the one
//! `X-Twilio-Webhooks-Signature-Settings` announces (`key=<id>,algorithm=HMAC_SHA256`).

use base64::Engine;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::Sha256;

/// The header that announces how a webhook was signed, when not with HMAC-SHA1.
pub const SETTINGS_HEADER: &str = "x-twilio-webhooks-signature-settings";

/// The HMACs Twilio signs webhooks with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    HmacSha1,
    HmacSha256,
}

impl Algorithm {
    /// The algorithm `X-Twilio-Webhooks-Signature-Settings` names, read as twilio-python's
    /// `get_signature_algorithm` reads it: the first `algorithm=` entry of its
    /// comma-separated list, HMAC-SHA1 when there is none (or no header). `None` for a
    /// name callmux does not know, which the libraries refuse too.
    pub fn announced(settings: Option<&str>) -> Option<Self> {
        let named = settings.unwrap_or("").split(',').find_map(|part| {
            let (name, value) = part.split_once('=')?;
            (name.trim() == "algorithm" && !value.trim().is_empty()).then(|| value.trim())
        });
        match named {
            None => Some(Self::HmacSha1),
            Some(n) if n.eq_ignore_ascii_case("HMAC_SHA1") => Some(Self::HmacSha1),
            Some(n) if n.eq_ignore_ascii_case("HMAC_SHA256") => Some(Self::HmacSha256),
            Some(_) => None,
        }
    }
}

/// Whether `signature` is Twilio's, made with `algorithm`, for a request to `url` (query
/// included) carrying the form `params`, signed with `token`.
pub fn valid(
    algorithm: Algorithm,
    token: &[u8],
    url: &url::Url,
    params: &[(String, String)],
    signature: &str,
) -> bool {
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
    let verify = |url: &str| {
        match algorithm {
            Algorithm::HmacSha1 => mac::<Hmac<Sha1>>(token, url, params).verify_slice(&given),
            Algorithm::HmacSha256 => mac::<Hmac<Sha256>>(token, url, params).verify_slice(&given),
        }
        .is_ok()
    };
    // Both are computed and compared, whichever matches, so timing says nothing of which.
    let a = verify(&without_port);
    let b = with_port.is_some_and(|u| verify(&u));
    a | b
}

fn mac<M: Mac + KeyInit>(token: &[u8], url: &str, params: &[(String, String)]) -> M {
    let mut mac = <M as KeyInit>::new_from_slice(token).expect("HMAC takes a key of any length");
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
pub fn sign(algorithm: Algorithm, token: &[u8], url: &str, params: &[(String, String)]) -> String {
    let bytes = match algorithm {
        Algorithm::HmacSha1 => mac::<Hmac<Sha1>>(token, url, params)
            .finalize()
            .into_bytes()
            .to_vec(),
        Algorithm::HmacSha256 => mac::<Hmac<Sha256>>(token, url, params)
            .finalize()
            .into_bytes()
            .to_vec(),
    };
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA1: Algorithm = Algorithm::HmacSha1;

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
        assert_eq!(
            sign(SHA1, TOKEN, URL, &params()),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        );
        assert!(valid(
            SHA1,
            TOKEN,
            &url(URL),
            &params(),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
        // In any order the form sent them.
        let mut reversed = params();
        reversed.reverse();
        assert!(valid(
            SHA1,
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
        assert_eq!(
            sign(SHA1, TOKEN, URL, &params),
            "IK+Dwps556ElfBT0I3Rgjkr1wJU="
        );
        assert!(valid(
            SHA1,
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
            SHA1,
            TOKEN,
            &with_1234,
            &params(),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
        // Signed with the port it was called on.
        let http_1234 = url("http://mycompany.com:1234/myapp.php?foo=1&bar=2");
        assert!(valid(
            SHA1,
            TOKEN,
            &http_1234,
            &params(),
            "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="
        ));
        // Signed with the default port, called without: :443 and :80.
        assert!(valid(
            SHA1,
            TOKEN,
            &url(URL),
            &params(),
            "kvajT1Ptam85bY51eRf/AJRuM3w="
        ));
        let http = url("http://mycompany.com/myapp.php?foo=1&bar=2");
        assert!(valid(
            SHA1,
            TOKEN,
            &http,
            &params(),
            "0ZXoZLH/DfblKGATFgpif+LLRf4="
        ));
    }

    #[test]
    fn a_wrong_token_url_parameter_or_signature_is_refused() {
        let good = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";
        assert!(!valid(SHA1, b"54321", &url(URL), &params(), good));
        assert!(!valid(
            SHA1,
            TOKEN,
            &url("https://mycompany.com/myapp.php?foo=1&bar=3"),
            &params(),
            good
        ));
        let mut changed = params();
        changed[2].1 = "9999".into();
        assert!(!valid(SHA1, TOKEN, &url(URL), &changed, good));
        for forged in [
            "",
            "not base64!",
            "RSOYDt4T1cUTdK1PDd93/VVr8B8",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        ] {
            assert!(
                !valid(SHA1, TOKEN, &url(URL), &params(), forged),
                "{forged}"
            );
        }
    }

    // Computed by twilio-python 9.13.0's own `RequestValidator("12345").compute_signature(
    // URL, params, "HMAC_SHA256")`, the URL as written and with `:443`.
    #[test]
    fn hmac_sha256_signs_and_validates_as_the_sdk_does() {
        const SHA256: Algorithm = Algorithm::HmacSha256;
        let sdk = "033hgUJA9M/hXIZsYjwkerEP/DBm35nEri5FhCYjA5s=";
        assert_eq!(sign(SHA256, TOKEN, URL, &params()), sdk);
        assert!(valid(SHA256, TOKEN, &url(URL), &params(), sdk));
        let with_443 = "grxRoa/VNtXxd524NGLxIdev83nh23xhrRUVm50Umq4=";
        assert!(valid(SHA256, TOKEN, &url(URL), &params(), with_443));
        // Neither form is taken for the other algorithm.
        assert!(!valid(SHA1, TOKEN, &url(URL), &params(), sdk));
        assert!(!valid(
            SHA256,
            TOKEN,
            &url(URL),
            &params(),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
    }

    // What twilio-python's `get_signature_algorithm` answers for each header.
    #[test]
    fn the_settings_header_names_the_algorithm_as_the_sdk_reads_it() {
        use Algorithm::{HmacSha1, HmacSha256};
        for (header, expected) in [
            (None, Some(HmacSha1)),
            (Some(""), Some(HmacSha1)),
            (Some("key=a"), Some(HmacSha1)),
            (Some("algorithm="), Some(HmacSha1)),
            (
                Some("key=webhooks_sharedkey_1,algorithm=HMAC_SHA256"),
                Some(HmacSha256),
            ),
            (Some(" algorithm = hmac_sha256 "), Some(HmacSha256)),
            (Some("key=a=b,algorithm=HMAC_SHA256"), Some(HmacSha256)),
            (
                Some("algorithm=HMAC_SHA1,algorithm=HMAC_SHA256"),
                Some(HmacSha1),
            ),
            (Some("algorithm=HMAC_SHA512"), None),
        ] {
            assert_eq!(Algorithm::announced(header), expected, "{header:?}");
        }
    }
}

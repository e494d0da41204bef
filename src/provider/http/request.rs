//! One upstream request as a kind describes it: method, URL, headers and body, the auth
//! scheme that proves it, and the URL helpers that keep ids inside one path segment.

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};
use bytes::Bytes;

/// How a request proves itself to the upstream. Every secret is a header value marked
/// sensitive, so `Debug` output redacts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    None,
    /// A header of the platform's own, sent as given.
    Header(HeaderName, HeaderValue),
    /// `authorization: Bearer <token>`.
    Bearer(HeaderValue),
    /// `authorization: Basic base64(user:password)`.
    Basic(HeaderValue),
}

impl Auth {
    /// `Bearer <token>`, or `None` when the token cannot be a header value.
    pub fn bearer(token: &str) -> Option<Self> {
        let mut v = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
        v.set_sensitive(true);
        Some(Self::Bearer(v))
    }

    pub fn basic(user: &str, password: &str) -> Option<Self> {
        use base64::Engine;
        let pair = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let mut v = HeaderValue::from_str(&format!("Basic {pair}")).ok()?;
        v.set_sensitive(true);
        Some(Self::Basic(v))
    }

    fn apply(&self, headers: &mut HeaderMap) {
        match self {
            Self::None => {}
            Self::Header(name, value) => {
                headers.insert(name.clone(), value.clone());
            }
            Self::Bearer(value) | Self::Basic(value) => {
                headers.insert(axum::http::header::AUTHORIZATION, value.clone());
            }
        }
    }
}

/// One upstream request, as a kind describes it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    pub url: reqwest::Url,
    /// Every header to send, `content-type` included where there is a body.
    pub headers: HeaderMap,
    pub body: Option<Bytes>,
}

impl Request {
    pub fn get(url: reqwest::Url) -> Self {
        Self {
            method: Method::GET,
            url,
            headers: HeaderMap::new(),
            body: None,
        }
    }

    /// A POST with no body.
    pub fn post(url: reqwest::Url) -> Self {
        Self {
            method: Method::POST,
            url,
            headers: HeaderMap::new(),
            body: None,
        }
    }

    /// A POST with a JSON body.
    pub fn post_json(url: reqwest::Url, body: &serde_json::Value) -> Self {
        Self::post(url).with_body(Bytes::from(body.to_string()), "application/json")
    }

    /// A POST with a form body.
    pub fn post_form(url: reqwest::Url, fields: &[(&str, &str)]) -> Self {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        Self::post(url).with_body(Bytes::from(body), "application/x-www-form-urlencoded")
    }

    /// The same request with `body`, sent as `content_type`.
    pub fn with_body(mut self, body: Bytes, content_type: &'static str) -> Self {
        self.headers.insert(
            reqwest::header::CONTENT_TYPE,
            HeaderValue::from_static(content_type),
        );
        self.body = Some(body);
        self
    }

    /// The same request with a query parameter added.
    pub fn query(mut self, name: &str, value: &str) -> Self {
        self.url.query_pairs_mut().append_pair(name, value);
        self
    }

    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }

    pub fn auth(mut self, auth: &Auth) -> Self {
        auth.apply(&mut self.headers);
        self
    }
}

/// `{base_url}/{path}`, whether or not the base URL ends in a slash or has a path of its own.
pub fn endpoint(base: &url::Url, path: &str) -> reqwest::Url {
    let joined = format!("{}/{path}", base.as_str().trim_end_matches('/'));
    reqwest::Url::parse(&joined).expect("a valid base URL joined with a fixed path is valid")
}

/// `base` with `segment` appended as one path segment, percent-encoded: an id from a client
/// or an upstream can never add a segment, a query or a fragment of its own. `None` for
/// `""`, `.` and `..`, which no encoding keeps from meaning "this" or "the parent" folder.
pub fn with_segment(base: &reqwest::Url, segment: &str) -> Option<reqwest::Url> {
    if matches!(segment, "" | "." | "..") {
        return None;
    }
    let mut url = base.clone();
    url.path_segments_mut().ok()?.pop_if_empty().push(segment);
    Some(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_goes_into_a_url_as_one_encoded_segment() {
        let base = reqwest::Url::parse("http://127.0.0.1:1/v1/calls").unwrap();
        for (id, want) in [
            ("abc", "http://127.0.0.1:1/v1/calls/abc"),
            ("a/b", "http://127.0.0.1:1/v1/calls/a%2Fb"),
            ("a?b#c", "http://127.0.0.1:1/v1/calls/a%3Fb%23c"),
            ("a b%2F", "http://127.0.0.1:1/v1/calls/a%20b%252F"),
            ("%2e%2e", "http://127.0.0.1:1/v1/calls/%252e%252e"),
            ("...", "http://127.0.0.1:1/v1/calls/..."),
        ] {
            let url = with_segment(&base, id).unwrap();
            assert_eq!(url.as_str(), want, "{id}");
            assert_eq!(url.path_segments().unwrap().count(), 3, "{id}");
        }
        for id in ["", ".", ".."] {
            assert_eq!(with_segment(&base, id), None, "{id:?}");
        }
    }

    #[test]
    fn basic_and_bearer_credentials_are_redacted_in_debug_output() {
        let basic = Auth::basic("AC123", "sekrit-token").unwrap();
        let bearer = Auth::bearer("sekrit-token").unwrap();
        let shown = format!("{basic:?} {bearer:?}");
        assert!(!shown.contains("sekrit"), "{shown}");
        assert!(!shown.contains(&base64_of("AC123:sekrit-token")), "{shown}");
    }

    fn base64_of(s: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(s)
    }
}

//! The two wire shapes callmux reads from upstreams and writes to clients; nothing else sees them.

pub mod bland;
pub mod calls;
mod json;

use serde::{Deserialize, Deserializer, Serialize};

use crate::call::Call;

/// The client wire shapes callmux serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shape {
    /// `GET /v1/calls/active`: `{"data": [...], "errors": null}`.
    Bland,
    /// `GET /api/calls`: `{"calls": [...], "count": N}`.
    Calls,
}

impl Shape {
    pub const ALL: [Shape; 2] = [Shape::Bland, Shape::Calls];

    /// A list of calls, with `errors` if any provider failed. `org` is the `user_id` of
    /// calls whose upstream named no owner.
    pub fn write<'c, I>(self, calls: I, org: &str, errors: &[ErrorItem<'_>]) -> Vec<u8>
    where
        I: IntoIterator<Item = &'c Call>,
        I::IntoIter: ExactSizeIterator,
    {
        match self {
            Shape::Bland => bland::write(calls, org, errors),
            Shape::Calls => calls::write(calls, errors),
        }
    }

    /// An answer without a list, in this shape's error envelope.
    pub fn write_error(self, errors: &[ErrorItem<'_>]) -> Vec<u8> {
        match self {
            Shape::Bland => bland::write_error(errors),
            Shape::Calls => calls::write(std::iter::empty(), errors),
        }
    }
}

/// Output buffer sized for `n` calls, so large lists are not copied while growing.
pub(crate) fn buffer_for(n: usize) -> Vec<u8> {
    Vec::with_capacity(64 + n * 256)
}

/// One entry of the `errors` array in either shape. `provider` is present for a provider's
/// failure and absent for an error of the request itself (auth, overload).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ErrorItem<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<&'a str>,
    pub error: &'a str,
    pub message: &'a str,
}

/// Reads one upstream shape into canonical calls, named after the provider given.
pub type Parser = fn(&[u8], &std::sync::Arc<str>) -> Result<Vec<Call>, ParseError>;

/// Why an upstream body could not be read as its shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not JSON, or JSON of another shape. The text is serde's, naming line and column.
    #[error("{0}")]
    Malformed(String),
    /// Well-formed, but the upstream answered with its own error envelope instead of calls.
    #[error("{0}")]
    Reported(String),
}

impl From<serde_json::Error> for ParseError {
    fn from(e: serde_json::Error) -> Self {
        Self::Malformed(e.to_string())
    }
}

/// Parses a whole upstream body. UTF-8 is checked once for the body, rather than once per
/// string as `serde_json::from_slice` does, which was a tenth of all parse work.
pub(crate) fn from_body<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ParseError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| ParseError::Malformed(format!("the body is not UTF-8 text ({e})")))?;
    Ok(serde_json::from_str(text)?)
}

/// Appends the `errors` array, or `null` when there are none.
pub(crate) fn push_errors(out: &mut Vec<u8>, errors: &[ErrorItem<'_>]) {
    if errors.is_empty() {
        out.extend_from_slice(b"null");
    } else {
        serde_json::to_writer(out, errors).expect("serialising to a Vec cannot fail");
    }
}

/// A field upstreams send as a string but some send as a number or bool; read all as text.
/// `null` and `""` are both "not given". A visitor rather than an untagged enum: serde's
/// untagged enums buffer every value before matching, which dominated parse time.
pub(crate) fn opt_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct TextVisitor;

    impl<'de> serde::de::Visitor<'de> for TextVisitor {
        type Value = Option<String>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string, number, boolean or null")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok((!v.is_empty()).then(|| v.to_owned()))
        }
        fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok((!v.is_empty()).then_some(v))
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
    }

    d.deserialize_any(TextVisitor)
}

/// Like [`opt_text`] for a field that must be present and non-empty.
pub(crate) fn req_text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    opt_text(d)?.ok_or_else(|| serde::de::Error::custom("must be a non-empty string"))
}

//! The two wire shapes callmux reads from upstreams and writes to clients; nothing else sees them.

pub mod bland;
pub mod calls;

use std::cell::Cell;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

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

/// Serialises an iterator as a JSON array without collecting it first.
pub(crate) struct SeqOf<I>(Cell<Option<I>>);

impl<I> SeqOf<I> {
    pub fn new(iter: I) -> Self {
        Self(Cell::new(Some(iter)))
    }
}

impl<I> Serialize for SeqOf<I>
where
    I: Iterator,
    I::Item: Serialize,
{
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let iter = self
            .0
            .take()
            .ok_or_else(|| serde::ser::Error::custom("SeqOf serialised twice"))?;
        s.collect_seq(iter)
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

/// A field upstreams send as a string but some send as a number or bool; read all as text.
/// `null` and `""` are both "not given".
pub(crate) fn opt_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        S(String),
        U(u64),
        I(i64),
        F(f64),
        B(bool),
    }
    Ok(match Option::<Text>::deserialize(d)? {
        None => None,
        Some(Text::S(s)) if s.is_empty() => None,
        Some(Text::S(s)) => Some(s),
        Some(Text::U(n)) => Some(n.to_string()),
        Some(Text::I(n)) => Some(n.to_string()),
        Some(Text::F(n)) => Some(n.to_string()),
        Some(Text::B(b)) => Some(b.to_string()),
    })
}

/// Like [`opt_text`] for a field that must be present and non-empty.
pub(crate) fn req_text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    opt_text(d)?.ok_or_else(|| serde::de::Error::custom("must be a non-empty string"))
}

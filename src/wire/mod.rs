//! The two wire shapes callmux reads from upstreams and writes to clients; nothing else sees them.

pub mod bland;
pub mod calls;
mod json;

use std::borrow::Cow;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::call::{Call, Text};

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

    /// The shape's name in metrics.
    pub fn name(self) -> &'static str {
        match self {
            Shape::Bland => "bland",
            Shape::Calls => "calls",
        }
    }

    /// A list of calls, with `errors` if any provider failed. `org` is the `user_id` of
    /// calls whose upstream named no owner.
    pub fn write<'c, I>(self, calls: I, org: &str, errors: &[ErrorItem<'_>]) -> Vec<u8>
    where
        I: IntoIterator<Item = &'c Call>,
        I::IntoIter: ExactSizeIterator + Clone,
    {
        match self {
            Shape::Bland => write_list::<bland::Writer, _>(calls, org, errors),
            Shape::Calls => write_list::<calls::Writer, _>(calls, org, errors),
        }
    }

    /// The same body as [`Shape::write`], written in two halves at once, on two threads,
    /// when the list is long enough to be worth it.
    pub fn write_parts(self, calls: &[&Call], org: &str, errors: &[ErrorItem<'_>]) -> Written {
        if calls.len() < WRITE_IN_TWO_FROM {
            return Written::whole(self.write(calls.iter().copied(), org, errors));
        }
        self.write_in_two(calls, calls.len() / 2, org, errors)
    }

    /// The body split after the first `at` calls, each half written on its own thread.
    fn write_in_two(
        self,
        calls: &[&Call],
        at: usize,
        org: &str,
        errors: &[ErrorItem<'_>],
    ) -> Written {
        match self {
            Shape::Bland => write_in_two::<bland::Writer>(calls, at, org, errors),
            Shape::Calls => write_in_two::<calls::Writer>(calls, at, org, errors),
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

/// Lists at least this long are written in two halves at once, on two threads: at this size
/// writing the Bland shape takes about 0.4 ms, and half that in two halves. (Handing half to
/// another thread costs well under 20 µs, but the gain only matters for large lists.)
const WRITE_IN_TWO_FROM: usize = 4_096;

/// How one shape writes a list: what comes before the calls, each call, and what follows.
/// The separators between calls are the same for every shape.
pub(crate) trait ListWriter {
    fn open(out: &mut Vec<u8>);
    /// One call; `org` is its `user_id` if its upstream named no owner.
    fn call(out: &mut Vec<u8>, call: &Call, org: &str);
    /// After the calls; `count` is how many the whole list has.
    fn close(out: &mut Vec<u8>, count: usize, errors: &[ErrorItem<'_>]);
}

/// A whole list in one buffer.
fn write_list<'c, W: ListWriter, I>(calls: I, org: &str, errors: &[ErrorItem<'_>]) -> Vec<u8>
where
    I: IntoIterator<Item = &'c Call>,
    I::IntoIter: ExactSizeIterator + Clone,
{
    let calls = calls.into_iter();
    let count = calls.len();
    let mut out = buffer_for(count);
    W::open(&mut out);
    write_calls::<W, _>(&mut out, calls, org, true);
    W::close(&mut out, count, errors);
    out
}

/// A list in two buffers, the first `at` calls in one and the rest in the other, written at
/// once; the two, one after the other, are exactly what [`write_list`] writes.
fn write_in_two<W: ListWriter>(
    calls: &[&Call],
    at: usize,
    org: &str,
    errors: &[ErrorItem<'_>],
) -> Written {
    let (first, rest) = calls.split_at(at);
    let (head, tail) = rayon_core::join(
        || {
            let mut out = buffer_for(first.len());
            W::open(&mut out);
            write_calls::<W, _>(&mut out, first.iter().copied(), org, true);
            out
        },
        || {
            let mut out = buffer_for(rest.len());
            write_calls::<W, _>(&mut out, rest.iter().copied(), org, first.is_empty());
            W::close(&mut out, calls.len(), errors);
            out
        },
    );
    Written {
        head: head.into(),
        tail: tail.into(),
    }
}

/// Calls separated by commas; `first` when they start the list, so no comma leads.
fn write_calls<'c, W: ListWriter, I>(out: &mut Vec<u8>, calls: I, org: &str, first: bool)
where
    I: Iterator<Item = &'c Call> + Clone,
{
    for (i, call) in prefetching(calls).enumerate() {
        if i > 0 || !first {
            out.push(b',');
        }
        W::call(out, call, org);
    }
}

/// A written body in the pieces it was written in, to be sent one after the other: joining
/// the halves of a long list would copy the whole body once more.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    pub head: bytes::Bytes,
    pub tail: bytes::Bytes,
}

impl Written {
    pub fn whole(body: impl Into<bytes::Bytes>) -> Self {
        Self {
            head: body.into(),
            tail: bytes::Bytes::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.head.len() + self.tail.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The body in one buffer (a copy when it is in two).
    pub fn to_vec(&self) -> Vec<u8> {
        [&self.head[..], &self.tail[..]].concat()
    }
}

/// Calls in order, each step also asking the CPU to start loading calls a few places ahead.
///
/// Merged lists are not in memory order (calls without a creation time follow `call_id`), so
/// writing a large list waits on memory for each call's fields and its `call_id`; the
/// profile showed over half of serialising spent there. Hints cost nothing when the data is
/// already in cache and never change what is read.
fn prefetching<'c, I>(calls: I) -> impl Iterator<Item = &'c Call>
where
    I: Iterator<Item = &'c Call> + Clone,
{
    const STRUCT_AHEAD: usize = 16;
    const TEXT_AHEAD: usize = 8;
    let mut structs = calls.clone().skip(STRUCT_AHEAD);
    let mut texts = calls.clone().skip(TEXT_AHEAD);
    calls.inspect(move |_| {
        if let Some(c) = structs.next() {
            prefetch((c as *const Call).cast());
            prefetch((c as *const Call).cast::<u8>().wrapping_add(64));
            prefetch((c as *const Call).cast::<u8>().wrapping_add(128));
            prefetch((c as *const Call).cast::<u8>().wrapping_add(192));
        }
        if let Some(c) = texts.next() {
            prefetch(c.call_id.as_ptr());
            if let Some(org) = &c.org {
                prefetch(org.as_ptr());
            }
        }
    })
}

#[inline(always)]
fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint; it never faults, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Output buffer sized for `n` calls, so large lists are not copied while growing.
fn buffer_for(n: usize) -> Vec<u8> {
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
pub type Parser = fn(&[u8], &Arc<str>) -> Result<Vec<Call>, ParseError>;

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

/// Parses a whole upstream body with `seed`. UTF-8 is checked once for the body, rather than
/// once per string as `serde_json::from_slice` does, which was a tenth of all parse work.
pub(crate) fn from_body<'a, S: DeserializeSeed<'a>>(
    body: &'a [u8],
    seed: S,
) -> Result<S::Value, ParseError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| ParseError::Malformed(format!("the body is not UTF-8 text ({e})")))?;
    let mut de = serde_json::Deserializer::from_str(text);
    let value = seed.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// Appends the `errors` array, or `null` when there are none.
pub(crate) fn push_errors(out: &mut Vec<u8>, errors: &[ErrorItem<'_>]) {
    if errors.is_empty() {
        out.extend_from_slice(b"null");
    } else {
        serde_json::to_writer(out, errors).expect("serialising to a Vec cannot fail");
    }
}

/// A text field as an upstream sent it: borrowed from the body when it needed no unescaping,
/// so reading it allocates nothing; the caller keeps only what it needs. Upstreams send most
/// fields as strings but some send numbers or booleans, which are read as their text. `null`
/// and `""` are both "not given" (`None`).
///
/// A visitor rather than an untagged enum: serde's untagged enums buffer every value before
/// matching, which dominated parse time.
#[derive(Debug, Default)]
pub(crate) struct Field<'a>(pub Option<Cow<'a, str>>);

impl Field<'_> {
    pub fn text(&self) -> Option<Text> {
        self.0.as_deref().map(Text::from)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Field<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct FieldVisitor;

        impl<'de> Visitor<'de> for FieldVisitor {
            type Value = Field<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string, number, boolean or null")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Field((!v.is_empty()).then_some(Cow::Borrowed(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Field((!v.is_empty()).then(|| Cow::Owned(v.to_owned()))))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Field(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Field(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Field(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Field(Some(Cow::Borrowed(if v { "true" } else { "false" }))))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Field(None))
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Field(None))
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(self)
            }
        }

        d.deserialize_any(FieldVisitor)
    }
}

/// Like [`Field`] for a field that must be present and non-empty.
#[derive(Debug)]
pub(crate) struct Required<'a>(pub Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Required<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Field::deserialize(d)?
            .0
            .map(Required)
            .ok_or_else(|| de::Error::custom("must be a non-empty string"))
    }
}

/// One wire shape's call object, turned into a canonical call as soon as it is read.
pub(crate) trait WireCall<'de>: Deserialize<'de> {
    fn into_call(self, provider: &Arc<str>) -> Call;
}

/// Reads a JSON array of `T` straight into canonical calls, with no intermediate list of
/// wire objects. `capacity` is a guess from the body's size, so a large list is not copied
/// while it grows.
pub(crate) struct CallList<'p, T> {
    pub provider: &'p Arc<str>,
    pub capacity: usize,
    pub shape: PhantomData<fn() -> T>,
}

impl<'de, T: WireCall<'de>> DeserializeSeed<'de> for CallList<'_, T> {
    type Value = Vec<Call>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<Call>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, T: WireCall<'de>> Visitor<'de> for CallList<'_, T> {
    type Value = Vec<Call>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array of calls")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Call>, A::Error> {
        let mut calls = Vec::with_capacity(self.capacity);
        while let Some(call) = seq.next_element::<T>()? {
            calls.push(call.into_call(self.provider));
        }
        Ok(calls)
    }
}

/// `null` as `None`, anything else through the inner seed.
pub(crate) struct Nullable<S>(pub S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Nullable<S> {
    type Value = Option<S::Value>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de, S: DeserializeSeed<'de>> Visitor<'de> for Nullable<S> {
    type Value = Option<S::Value>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("null or a value")
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.0.deserialize(d).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::CallStatus;

    #[test]
    fn a_list_written_in_two_halves_is_byte_for_byte_the_list_written_whole() {
        let calls: Vec<Call> = (0..5)
            .map(|i| {
                let mut c = Call::new(format!("c{i}"), Arc::from("p"), CallStatus::Ringing);
                c.created_at = Some(i);
                c
            })
            .collect();
        let refs: Vec<&Call> = calls.iter().collect();
        let failed = [ErrorItem {
            provider: Some("p2"),
            error: "UPSTREAM_TIMEOUT",
            message: "no answer",
        }];
        for shape in Shape::ALL {
            for errors in [&[][..], &failed] {
                let whole = shape.write(refs.iter().copied(), "org", errors);
                for at in 0..=refs.len() {
                    let parts = shape.write_in_two(&refs, at, "org", errors);
                    assert_eq!(
                        String::from_utf8(parts.to_vec()).unwrap(),
                        String::from_utf8(whole.clone()).unwrap(),
                        "{shape:?} split after {at}"
                    );
                }
            }
        }
    }
}

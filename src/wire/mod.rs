//! The two wire shapes callmux reads from upstreams and writes to clients; nothing else sees them.

pub mod bland;
pub mod calls;
mod json;
pub mod own;
mod plain;

use std::borrow::Cow;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::call::{Call, Text};
use crate::error_code::ErrorCode;

/// The client wire shapes callmux serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shape {
    /// `GET /v1/calls/active`: `{"data": [...], "errors": null}`.
    Bland,
    /// `GET /api/calls`: `{"calls": [...], "count": N}`.
    Calls,
    /// `GET /calls`, callmux's own: `{"calls": [...], "count": N, "errors": [...] | null}`
    /// with every canonical field.
    Own,
}

impl Shape {
    pub const ALL: [Shape; 3] = [Shape::Bland, Shape::Calls, Shape::Own];

    /// The shape's name in metrics.
    pub fn name(self) -> &'static str {
        match self {
            Shape::Bland => "bland",
            Shape::Calls => "calls",
            Shape::Own => "own",
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
            Shape::Bland => bland::write(calls, org, errors),
            Shape::Calls => calls::write(calls, errors),
            Shape::Own => write_list::<own::Writer, _>(calls, org, errors),
        }
    }

    /// The same body as [`Shape::write`]. A long list is written in two halves at once, on
    /// two threads, and kept as the two pieces, so a large answer is ready in about half the
    /// time and never copied into one buffer.
    pub fn write_parts(self, calls: &[&Call], org: &str, errors: &[ErrorItem<'_>]) -> Written {
        let split = (calls.len() >= WRITE_IN_TWO_FROM).then_some(calls.len() / 2);
        match self {
            Shape::Bland => write_parts::<bland::Writer>(calls, split, org, errors),
            Shape::Calls => write_parts::<calls::Writer>(calls, split, org, errors),
            Shape::Own => write_parts::<own::Writer>(calls, split, org, errors),
        }
    }

    /// An answer without a list, in this shape's error envelope.
    pub fn write_error(self, errors: &[ErrorItem<'_>]) -> Vec<u8> {
        match self {
            Shape::Bland => bland::write_error(errors),
            Shape::Calls => calls::write(std::iter::empty(), errors),
            Shape::Own => write_list::<own::Writer, _>(std::iter::empty(), "", errors),
        }
    }

    /// A live stream's `change`: `{"added": [items], "updated": [items], "ended":
    /// ["call_id", ...], "errors": [...] | null}`, items in this shape's own form.
    pub fn write_change(
        self,
        added: &[Call],
        updated: &[Call],
        ended: &[Text],
        org: &str,
        errors: &[ErrorItem<'_>],
    ) -> Vec<u8> {
        let mut out = buffer_for(added.len() + updated.len());
        for (key, calls) in [(&b"{\"added\":["[..], added), (b"],\"updated\":[", updated)] {
            out.extend_from_slice(key);
            for (i, call) in calls.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                self.write_item(&mut out, call, org);
            }
        }
        out.extend_from_slice(b"],\"ended\":[");
        for (i, id) in ended.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            json::push_str(&mut out, id);
        }
        out.extend_from_slice(b"],\"errors\":");
        push_errors(&mut out, errors);
        out.push(b'}');
        out
    }

    /// One call as an item of this shape's list, appended to `out` (a stream's `added` and
    /// `updated` hold these).
    pub fn write_item(self, out: &mut Vec<u8>, call: &Call, org: &str) {
        match self {
            Shape::Bland => bland::Writer::call(out, call, org),
            Shape::Calls => calls::Writer::call(out, call, org),
            Shape::Own => own::Writer::call(out, call, org),
        }
    }
}

/// Lists at least this long are written in two halves at once, on two threads (measured:
/// BENCHMARKS.md). Handing half to another thread costs little, but the caller waits for
/// it: the edge writes lists this long on the blocking pool, never on a runtime thread.
pub(crate) const WRITE_IN_TWO_FROM: usize = 4_096;

/// What makes one wire shape's list: the text before the calls, a call, the text after.
/// Each shape gives only these; the commas, and splitting a list into pieces written at
/// once, are the same for both and live here once.
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
    piece::<W, _>(calls, org, true, false, Some((count, errors)))
}

/// A list's body, whole, or with `split` in two pieces written at once: the first `split`
/// calls in one and the rest in the other. One after the other, the pieces are exactly what
/// [`write_list`] writes.
fn write_parts<W: ListWriter>(
    calls: &[&Call],
    split: Option<usize>,
    org: &str,
    errors: &[ErrorItem<'_>],
) -> Written {
    let close = Some((calls.len(), errors));
    let Some(at) = split else {
        return Written::whole(piece::<W, _>(
            calls.iter().copied(),
            org,
            true,
            false,
            close,
        ));
    };
    let (first, rest) = calls.split_at(at);
    let (head, tail) = rayon_core::join(
        || piece::<W, _>(first.iter().copied(), org, true, false, None),
        || piece::<W, _>(rest.iter().copied(), org, false, !first.is_empty(), close),
    );
    Written {
        head: head.into(),
        tail: tail.into(),
    }
}

/// One piece of a list's body: the opening if `opens`; the calls, after a comma if
/// `continues` (earlier calls are in another piece); the closing if `close` gives the whole
/// list's count and errors.
fn piece<'c, W: ListWriter, I>(
    calls: I,
    org: &str,
    opens: bool,
    continues: bool,
    close: Option<(usize, &[ErrorItem<'_>])>,
) -> Vec<u8>
where
    I: ExactSizeIterator<Item = &'c Call> + Clone,
{
    let mut out = buffer_for(calls.len());
    if opens {
        W::open(&mut out);
    }
    for (i, call) in prefetching(calls).enumerate() {
        if i > 0 || continues {
            out.push(b',');
        }
        W::call(&mut out, call, org);
    }
    if let Some((count, errors)) = close {
        W::close(&mut out, count, errors);
    }
    out
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

    /// The body in one buffer (a copy when it is in two); only tests need it whole.
    #[cfg(test)]
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
            prefetch((c as *const Call).cast::<u8>().wrapping_add(256));
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
    pub error: ErrorCode,
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

/// Which readers [`from_body`] uses. Only the differential tests and the fuzz targets choose
/// anything but the default.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Readers {
    /// The plain reader, then serde_json if the plain reader gave up.
    #[default]
    PlainFirst,
    /// serde_json alone.
    SerdeJson,
    /// The plain reader alone; `Malformed("not plain JSON")` where it gives up.
    PlainOnly,
}

/// Parses a whole upstream body with `seed`. UTF-8 is checked once for the body, rather than
/// once per string as `serde_json::from_slice` does, which was a tenth of all parse work.
/// The plain reader takes bodies shaped like the reference examples, in about two thirds of
/// serde_json's time; anything it gives up on is read again by serde_json, whose errors name
/// line and column.
pub(crate) fn from_body<'a, S: DeserializeSeed<'a> + Clone>(
    body: &'a [u8],
    seed: S,
    readers: Readers,
) -> Result<S::Value, ParseError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| ParseError::Malformed(format!("the body is not UTF-8 text ({e})")))?;
    match readers {
        Readers::PlainFirst => {
            if let Ok(value) = plain::read(text, seed.clone()) {
                return Ok(value);
            }
        }
        Readers::PlainOnly => {
            return plain::read(text, seed).map_err(|e| ParseError::Malformed(e.to_string()))
        }
        Readers::SerdeJson => {}
    }
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
            error: crate::error_code::ErrorCode::UpstreamTimeout,
            message: "no answer",
        }];
        for shape in Shape::ALL {
            for errors in [&[][..], &failed] {
                let whole = shape.write(refs.iter().copied(), "org", errors);
                for at in 0..=refs.len() {
                    let parts = match shape {
                        Shape::Bland => {
                            write_parts::<bland::Writer>(&refs, Some(at), "org", errors)
                        }
                        Shape::Calls => {
                            write_parts::<calls::Writer>(&refs, Some(at), "org", errors)
                        }
                        Shape::Own => write_parts::<own::Writer>(&refs, Some(at), "org", errors),
                    };
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

//! A quick reader for the plain JSON upstreams send; anything less plain is left to serde_json.
//!
//! Reading a 26 MiB Bland answer with serde_json took about 45 ms at best, most of it serde_json's
//! own per-token work rather than ours (BENCHMARKS.md); sonic-rs and simd-json measured no
//! quicker here. Upstream lists are plain: flat objects of strings, integers, booleans and
//! nulls. This reader takes exactly that subset of JSON, strictly, and gives up (an error,
//! never a guess) on anything else: fractions and exponents, negative numbers (`-0` too),
//! numbers above `u64::MAX`, `\u` surrogates (pairs or lone), nesting deeper than
//! [`MAX_DEPTH`], anything that is not JSON at all, and any body a visitor refuses.
//! [`super::from_body`] then reads the body again with serde_json, which also names what is
//! wrong with it.
//!
//! So for any body this reader either gives up or hands the visitors exactly what
//! serde_json would: the same calls (borrowed strings as borrowed, escaped ones as owned
//! text), numbers and literals. A proptest and the body fuzz targets hold the two equal.

use std::borrow::Cow;

use serde::de::value::{BorrowedStrDeserializer, StrDeserializer};
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

/// Deeper values are left to serde_json; upstream lists nest three deep.
const MAX_DEPTH: u8 = 32;

/// The reader gave up: the body is not plain JSON, or a visitor refused it. Which does not
/// matter; serde_json reads the body again and says.
#[derive(Debug)]
pub(crate) struct GaveUp;

impl std::fmt::Display for GaveUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not plain JSON")
    }
}

impl std::error::Error for GaveUp {}

impl de::Error for GaveUp {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        GaveUp
    }
}

type Result<T> = std::result::Result<T, GaveUp>;

/// Reads `text` whole with `seed`: one value, then only whitespace.
pub(crate) fn read<'de, S: DeserializeSeed<'de>>(text: &'de str, seed: S) -> Result<S::Value> {
    let mut de = Reader {
        text,
        at: 0,
        depth: MAX_DEPTH,
    };
    let value = seed.deserialize(&mut de)?;
    de.whitespace();
    if de.at == text.len() {
        Ok(value)
    } else {
        Err(GaveUp)
    }
}

struct Reader<'de> {
    text: &'de str,
    at: usize,
    /// How many more arrays or objects may open.
    depth: u8,
}

impl<'de> Reader<'de> {
    fn bytes(&self) -> &'de [u8] {
        self.text.as_bytes()
    }

    fn whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes().get(self.at) {
            self.at += 1;
        }
    }

    /// The next byte after whitespace, not taken.
    fn peek(&mut self) -> Result<u8> {
        self.whitespace();
        self.bytes().get(self.at).copied().ok_or(GaveUp)
    }

    /// Takes `byte` after whitespace, or gives up.
    fn expect(&mut self, byte: u8) -> Result<()> {
        if self.peek()? == byte {
            self.at += 1;
            Ok(())
        } else {
            Err(GaveUp)
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<()> {
        if self.bytes()[self.at..].starts_with(word) {
            self.at += word.len();
            Ok(())
        } else {
            Err(GaveUp)
        }
    }

    /// A string, its opening quote next.
    fn string(&mut self) -> Result<Cow<'de, str>> {
        self.expect(b'"')?;
        let start = self.at;
        let end = special(self.bytes(), start);
        match self.bytes().get(end) {
            Some(b'"') => {
                self.at = end + 1;
                // Quotes are ASCII, so both ends are character boundaries of valid text.
                Ok(Cow::Borrowed(&self.text[start..end]))
            }
            Some(b'\\') => {
                let mut out = String::with_capacity(end - start + 16);
                out.push_str(&self.text[start..end]);
                self.at = end;
                self.escaped(out).map(Cow::Owned)
            }
            // A control character, which JSON forbids in strings, or the end of the body.
            _ => Err(GaveUp),
        }
    }

    /// The rest of a string that holds escapes, `out` holding what came before.
    fn escaped(&mut self, mut out: String) -> Result<String> {
        loop {
            let end = special(self.bytes(), self.at);
            out.push_str(&self.text[self.at..end]);
            self.at = end + 1;
            match self.bytes().get(end) {
                Some(b'"') => return Ok(out),
                Some(b'\\') => {}
                _ => return Err(GaveUp),
            }
            let escape = *self.bytes().get(self.at).ok_or(GaveUp)?;
            self.at += 1;
            out.push(match escape {
                b'"' => '"',
                b'\\' => '\\',
                b'/' => '/',
                b'b' => '\u{8}',
                b'f' => '\u{c}',
                b'n' => '\n',
                b'r' => '\r',
                b't' => '\t',
                b'u' => {
                    let hex = self.text.get(self.at..self.at + 4).ok_or(GaveUp)?;
                    // `from_str_radix` would also take a sign.
                    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return Err(GaveUp);
                    }
                    self.at += 4;
                    let code = u32::from_str_radix(hex, 16).map_err(|_| GaveUp)?;
                    // Surrogates (pairs, or lone ones serde_json refuses) are serde_json's.
                    char::from_u32(code).ok_or(GaveUp)?
                }
                _ => return Err(GaveUp),
            });
        }
    }

    /// A non-negative integer that fits in a `u64`, as serde_json reads it.
    fn integer(&mut self) -> Result<u64> {
        let digits = self.bytes()[self.at..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        let text = &self.text[self.at..self.at + digits];
        let after = self.bytes().get(self.at + digits);
        // `01` is not JSON; fractions and exponents are floats, which are serde_json's.
        if digits == 0
            || (digits > 1 && text.starts_with('0'))
            || matches!(after, Some(b'.' | b'e' | b'E'))
        {
            return Err(GaveUp);
        }
        let n = text.parse().map_err(|_| GaveUp)?;
        self.at += digits;
        Ok(n)
    }

    /// Runs `inside` one level deeper, giving up past [`MAX_DEPTH`].
    fn nested<T>(&mut self, inside: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        self.depth = self.depth.checked_sub(1).ok_or(GaveUp)?;
        let value = inside(self);
        self.depth += 1;
        value
    }

    /// Whether another member follows in an object or array closed by `close`; takes the
    /// comma before it, or the closing byte.
    fn next_element_start(&mut self, first: &mut bool, close: u8) -> Result<bool> {
        let next = self.peek()?;
        if next == close {
            self.at += 1;
            return Ok(false);
        }
        if !std::mem::take(first) {
            if next != b',' {
                return Err(GaveUp);
            }
            self.at += 1;
        }
        Ok(true)
    }

    /// Like [`Self::next_element_start`], for an object: a key must follow a comma.
    fn next_key_start(&mut self, first: &mut bool, close: u8) -> Result<bool> {
        let more = self.next_element_start(first, close)?;
        if more && self.peek()? != b'"' {
            return Err(GaveUp);
        }
        Ok(more)
    }
}

/// Where the first `"`, `\` or control character is, from `at`; the text's length if none.
/// Eight bytes at a time: most strings are a few dozen bytes without escapes.
fn special(bytes: &[u8], mut at: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Flags bytes below `n`; the lowest flag is always right, which is all that is used.
    let below = |w: u64, n: u8| w.wrapping_sub(ONES * n as u64) & !w & HIGH;
    while let Some(chunk) = bytes.get(at..at + 8) {
        let w = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let found = below(w ^ (ONES * b'"' as u64), 1)
            | below(w ^ (ONES * b'\\' as u64), 1)
            | below(w, 0x20);
        if found != 0 {
            return at + (found.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    at + bytes[at..]
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .unwrap_or(bytes.len() - at)
}

/// `Deserializer` methods that give up whatever comes.
macro_rules! give_up {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, _: V) -> Result<V::Value> {
            Err(GaveUp)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for &mut Reader<'de> {
    type Error = GaveUp;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.peek()? {
            b'"' => self.deserialize_str(visitor),
            b'{' => self.deserialize_map(visitor),
            b'[' => self.deserialize_seq(visitor),
            b't' => {
                self.literal(b"true")?;
                visitor.visit_bool(true)
            }
            b'f' => {
                self.literal(b"false")?;
                visitor.visit_bool(false)
            }
            b'n' => {
                self.literal(b"null")?;
                visitor.visit_unit()
            }
            _ => visitor.visit_u64(self.integer()?),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.string()? {
            Cow::Borrowed(s) => visitor.visit_borrowed_str(s),
            // serde_json hands escaped strings over as `visit_str`, so this does too.
            Cow::Owned(s) => visitor.visit_str(&s),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_str(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        if self.peek()? == b'n' {
            self.literal(b"null")?;
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.expect(b'[')?;
        self.nested(|de| {
            let mut items = Items::new(de, &[]);
            let value = visitor.visit_seq(&mut items)?;
            items.finished(value)
        })
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_struct("", &[], visitor)
    }

    /// Objects only: serde_json also reads a struct from an array, which this leaves to it.
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        self.expect(b'{')?;
        self.nested(|de| {
            let mut items = Items::new(de, fields);
            let value = visitor.visit_map(&mut items)?;
            items.finished(value)
        })
    }

    /// Read as strictly as any value: serde_json checks what it skips too.
    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_any(de::IgnoredAny)?;
        visitor.visit_unit()
    }

    // Nothing callmux reads asks for these. serde_json's rules for each differ from
    // `deserialize_any`'s (`deserialize_u64` refuses a string, a struct may be an array, an
    // enum a string or an object), so rather than copy those rules the reader gives up.
    give_up! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char deserialize_bytes
        deserialize_byte_buf deserialize_unit
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, _: &'static str, _: V) -> Result<V::Value> {
        Err(GaveUp)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: V,
    ) -> Result<V::Value> {
        Err(GaveUp)
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, _: V) -> Result<V::Value> {
        Err(GaveUp)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: usize,
        _: V,
    ) -> Result<V::Value> {
        Err(GaveUp)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        _: V,
    ) -> Result<V::Value> {
        Err(GaveUp)
    }
}

/// The members of one array or object, read in turn.
struct Items<'a, 'de> {
    de: &'a mut Reader<'de>,
    first: bool,
    /// The closing bracket has been read.
    done: bool,
    /// A struct's field names, in the order upstreams usually send them.
    fields: &'static [&'static str],
    /// The field whose name is likely next.
    next: usize,
}

impl<'a, 'de> Items<'a, 'de> {
    fn new(de: &'a mut Reader<'de>, fields: &'static [&'static str]) -> Self {
        Self {
            de,
            first: true,
            done: false,
            fields,
            next: 0,
        }
    }

    /// An array or object its visitor left unread gives up: reading on, its rest would be
    /// taken for the enclosing array's members. serde_json refuses it too, unless only the
    /// closing bracket is left; no visitor of callmux's stops early.
    fn finished<T>(&self, value: T) -> Result<T> {
        if self.done {
            Ok(value)
        } else {
            Err(GaveUp)
        }
    }

    /// The next key, its opening quote next. Upstreams send a struct's keys in the same
    /// order call after call, so the likely one is compared whole rather than scanned for.
    fn key(&mut self) -> Result<Cow<'de, str>> {
        debug_assert_eq!(self.de.bytes().get(self.de.at), Some(&b'"'));
        let at = self.de.at + 1;
        if let Some(field) = self.fields.get(self.next) {
            let rest = &self.de.bytes()[at..];
            // Field names hold no quote, backslash or control character, so a match here is
            // exactly the string the scan would find.
            if rest.starts_with(field.as_bytes()) && rest.get(field.len()) == Some(&b'"') {
                self.de.at = at + field.len() + 1;
                self.next += 1;
                return Ok(Cow::Borrowed(&self.de.text[at..at + field.len()]));
            }
        }
        let key = self.de.string()?;
        if let Cow::Borrowed(name) = key {
            if let Some(i) = self.fields.iter().position(|f| *f == name) {
                self.next = i + 1;
            }
        }
        Ok(key)
    }
}

impl<'de> SeqAccess<'de> for &mut Items<'_, 'de> {
    type Error = GaveUp;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        if self.done || !self.de.next_element_start(&mut self.first, b']')? {
            self.done = true;
            return Ok(None);
        }
        seed.deserialize(&mut *self.de).map(Some)
    }
}

impl<'de> MapAccess<'de> for &mut Items<'_, 'de> {
    type Error = GaveUp;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        if self.done || !self.de.next_key_start(&mut self.first, b'}')? {
            self.done = true;
            return Ok(None);
        }
        // As serde_json does: borrowed keys as borrowed, escaped ones as `visit_str`.
        let key = match self.key()? {
            Cow::Borrowed(name) => seed.deserialize(BorrowedStrDeserializer::new(name))?,
            Cow::Owned(name) => seed.deserialize(StrDeserializer::new(&name))?,
        };
        self.de.expect(b':')?;
        Ok(Some(key))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        seed.deserialize(&mut *self.de)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;
    use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};

    use crate::wire::{bland, calls, Readers};

    /// Both shapes' answers to `body` with `readers`, as comparable values.
    fn read(body: &str, readers: Readers) -> [String; 2] {
        let p: Arc<str> = Arc::from("p");
        [
            format!("{:?}", bland::parse_with(body.as_bytes(), &p, readers)),
            format!("{:?}", calls::parse_with(body.as_bytes(), &p, readers)),
        ]
    }

    fn plain_reads(body: &str) -> bool {
        let p: Arc<str> = Arc::from("p");
        bland::parse_with(body.as_bytes(), &p, Readers::PlainOnly).is_ok()
    }

    #[test]
    fn a_plain_body_is_read_as_serde_json_reads_it() {
        let body = " {\"errors\" : null, \"ignored\": {\"a\": [1, true, false, null, \"x\", {}], \"b\": []},\n\
            \"data\": [\t{\"call_id\": \"c1\", \"status\": \"QUEUED\", \"from\": 15551234, \"to\": \"\",\
            \"international\": true, \"timestamp\": \"1758656817432\", \"objective\": \"say \\\"hi\\\"\\n\\u00e9\\/\"},\
            {\"status\": \"IN_PROGRESS\", \"user_id\": null, \"call_id\": \"c2\", \"extra\": [[[]]]}],\
            \"calls\": [{\"call_id\": \"a1\", \"status\": \"ringing\", \"to_number\": \"+1\", \"direction\": \"incoming\"}],\
            \"count\": 1} \r\n";
        assert!(
            plain_reads(body),
            "the plain reader gave up on a plain body"
        );
        assert_eq!(
            read(body, Readers::PlainOnly),
            read(body, Readers::SerdeJson)
        );
    }

    /// `depth` arrays, one inside the other.
    fn nested_arrays(depth: usize) -> String {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    }

    /// A Bland call with `extra`, a field no shape reads; the list sits three levels deep.
    fn with_extra(value: &str) -> String {
        format!(r#"{{"data":[{{"call_id":"c","status":"QUEUED","extra":{value}}}]}}"#)
    }

    #[test]
    fn an_array_its_visitor_leaves_unread_makes_the_reader_give_up() {
        /// An array of arrays, of which only the first element of each is read.
        #[derive(Clone, Copy)]
        struct FirstOnly(bool);
        impl<'de> Visitor<'de> for FirstOnly {
            type Value = usize;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an array")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
                if !self.0 {
                    return Ok(usize::from(seq.next_element::<de::IgnoredAny>()?.is_some()));
                }
                let mut n = 0;
                while seq.next_element_seed(FirstOnly(false))?.is_some() {
                    n += 1;
                }
                Ok(n)
            }
        }
        impl<'de> DeserializeSeed<'de> for FirstOnly {
            type Value = usize;
            fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
                d.deserialize_seq(self)
            }
        }
        // Had the reader gone on after the inner `[1`, `,[]]` would have been read as the
        // rest of the outer array: two arrays read, from text that is not even JSON.
        assert!(super::read("[[1,[]]", FirstOnly(true)).is_err());
        assert!(serde_json::from_str::<serde::de::IgnoredAny>("[[1,[]]").is_err());
        // Arrays read to their end are taken; `[1]` is not, as its `]` is left unread.
        assert_eq!(super::read("[[],[]]", FirstOnly(true)).ok(), Some(2));
        assert!(super::read("[[1]]", FirstOnly(true)).is_err());
    }

    #[test]
    fn the_plain_reader_takes_escaped_keys_and_nesting_up_to_its_limit() {
        for body in [
            r#"{"data":[{"call\u005fid":"c","st\u0061tus":"QUEUED"}]}"#.to_owned(),
            with_extra(&nested_arrays(29)),
        ] {
            assert!(plain_reads(&body), "the plain reader gave up on {body:?}");
            assert_eq!(
                read(&body, Readers::PlainFirst),
                read(&body, Readers::SerdeJson)
            );
        }
    }

    #[test]
    fn the_plain_reader_gives_up_on_what_it_does_not_take_and_serde_json_answers() {
        let to = |value: &str| {
            format!(r#"{{"data":[{{"call_id":"c","status":"QUEUED","to":{value}}}]}}"#)
        };
        let bodies = [
            to("1.5"),
            to("-1"),
            to("-0"),
            to("1e3"),
            to("01"),
            to("18446744073709551616"),
            to(r#""\ud83d\ude00""#),
            to(r#""\ud800""#),
            to(r#""\x""#),
            to("\"tab\there\""),
            to("\"unterminated"),
            to("nul"),
            to("nulls"),
            // Inside a field no shape reads, so only the reader can refuse them.
            with_extra("[1,]"),
            with_extra(r#"{"a":1,}"#),
            with_extra(r#"{"a" 1}"#),
            with_extra("[1 2]"),
            with_extra("truex"),
            // Past the limit: serde_json takes these.
            with_extra(&nested_arrays(30)),
            with_extra(&nested_arrays(40)),
            r#"{"data":[["c","QUEUED"]]}"#.to_owned(),
            r#"{"data":[{"call_id":"c",xuser_id":"u","status":"QUEUED"}]}"#.to_owned(),
            r#"{"data":[{"call_id":"c";"status":"QUEUED"}]}"#.to_owned(),
            r#"{"data":[{"call_id":"a","call_id":"b","status":"QUEUED"}]}"#.to_owned(),
            r#"{"data":[]} x"#.to_owned(),
            r#"{"data":[],}"#.to_owned(),
            "\u{feff}{\"data\":[]}".to_owned(),
            String::new(),
        ];
        for body in &bodies {
            assert!(!plain_reads(body), "the plain reader took {body:?}");
            assert_eq!(
                read(body, Readers::PlainFirst),
                read(body, Readers::SerdeJson),
                "{body:?}"
            );
        }
    }

    /// Scalar values: plain ones only, or plain and not, so that generated bodies hit both
    /// readers' edges.
    fn scalar(plain: bool) -> BoxedStrategy<String> {
        let taken = prop_oneof![
            Just("\"\"".to_owned()),
            Just("null".to_owned()),
            Just("true".to_owned()),
            Just("0".to_owned()),
            Just("1758656817432".to_owned()),
            Just(r#""a\"b\\c\n\/\u0041\u00e9\t""#.to_owned()),
            "\"[a-zA-Z0-9 +_\\-]{1,40}\"",
            "\"[^\"\\\\\\x00-\\x1f]{0,8}\"",
        ];
        if plain {
            return taken.boxed();
        }
        prop_oneof![
            taken,
            Just("-3".to_owned()),
            Just("2.5".to_owned()),
            Just("007".to_owned()),
            Just(r#""\ud83d\ude00""#.to_owned()),
            "\"[\\x00-\\x7f]{0,12}\"",
            "\"\\PC{0,8}\"",
        ]
        .boxed()
    }

    fn value(plain: bool) -> BoxedStrategy<String> {
        scalar(plain)
            .prop_recursive(4, 24, 4, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..4)
                        .prop_map(|v| format!("[{}]", v.join(","))),
                    proptest::collection::vec(("[a-z_]{1,10}", inner), 0..4).prop_map(|v| {
                        let members: Vec<String> =
                            v.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                        format!("{{{}}}", members.join(","))
                    }),
                ]
            })
            .boxed()
    }

    /// A call object: an id and a status that both shapes take (mostly, unless `plain`),
    /// other fields or not, in any order, with or without whitespace.
    fn call(plain: bool) -> impl Strategy<Value = String> {
        let valid_id = "\"[a-z0-9\\-]{1,36}\"".boxed();
        let valid_status = prop_oneof![
            Just("\"QUEUED\"".to_owned()),
            Just("\"ringing\"".to_owned())
        ];
        let (id, status) = if plain {
            (valid_id, valid_status.boxed())
        } else {
            (
                prop_oneof![4 => valid_id, 1 => scalar(false)].boxed(),
                prop_oneof![4 => valid_status, 1 => scalar(false)].boxed(),
            )
        };
        let optional = |key: &'static str, value: BoxedStrategy<String>| {
            proptest::option::of(value.prop_map(move |v| (key, v)))
        };
        (
            id,
            status,
            optional("user_id", scalar(plain)),
            optional("from", scalar(plain)),
            optional("to", scalar(plain)),
            optional("objective", scalar(plain)),
            optional("international", scalar(plain)),
            optional("timestamp", scalar(plain)),
            optional("to_number", scalar(plain)),
            optional("direction", scalar(plain)),
            optional("extra", value(plain)),
            prop_oneof![Just(""), Just(""), Just(" "), Just("\n\t")],
        )
            .prop_flat_map(|(id, status, a, b, c, d, e, f, g, h, i, ws)| {
                let mut members = vec![("call_id", id), ("status", status)];
                members.extend([a, b, c, d, e, f, g, h, i].into_iter().flatten());
                (Just(members).prop_shuffle(), Just(ws))
            })
            .prop_map(|(members, ws)| {
                let members: Vec<String> = members
                    .iter()
                    .map(|(k, v)| format!("{ws}\"{k}\"{ws}:{ws}{v}"))
                    .collect();
                format!("{{{}}}", members.join(","))
            })
    }

    /// A body both shapes read: the same calls under `data` and `calls`.
    fn body(calls: &[String], errors: &str) -> String {
        let list = calls.join(",");
        format!(r#"{{"data":[{list}],"errors":{errors},"calls":[{list}],"count":1}}"#)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        /// Whatever the body, valid or not, plain or not, reading it gives exactly what
        /// serde_json alone gives: the same calls, or the same error.
        #[test]
        fn every_body_reads_as_serde_json_alone_reads_it(
            calls in proptest::collection::vec(call(false), 0..5),
            errors in proptest::option::weighted(0.2, value(false)),
            cut in proptest::option::weighted(0.5, (any::<proptest::sample::Index>(), prop_oneof![
                proptest::sample::select(b"[]{},:\"\\ \t\n0-.eEntfu;x".to_vec()),
                any::<u8>(),
            ])),
        ) {
            let mut body = body(&calls, errors.as_deref().unwrap_or("null")).into_bytes();
            // Sometimes one byte changed, so that nearly-valid bodies are common too.
            if let Some((at, byte)) = cut {
                let at = at.index(body.len());
                body[at] = byte;
            }
            let body = String::from_utf8_lossy(&body).into_owned();
            prop_assert_eq!(read(&body, Readers::PlainFirst), read(&body, Readers::SerdeJson));
        }

        /// The other half of the bargain: a plain body is taken by the plain reader alone,
        /// so the comparison above is not between serde_json and itself.
        #[test]
        fn every_plain_body_is_read_by_the_plain_reader_alone(
            calls in proptest::collection::vec(call(true), 0..5),
        ) {
            let body = body(&calls, "null");
            let plain = read(&body, Readers::PlainOnly);
            prop_assert!(!plain.iter().any(|r| r.contains("not plain JSON")), "{body}: {plain:?}");
            prop_assert_eq!(plain, read(&body, Readers::SerdeJson));
        }
    }
}

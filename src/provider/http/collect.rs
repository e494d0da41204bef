//! Reading a body that is usually the same as last time: compared as it streams in, copied
//! only from its first difference.

use bytes::{Bytes, BytesMut};

/// A whole upstream body: the same bytes as the last one, or new ones.
#[derive(Debug, PartialEq, Eq)]
pub enum Fetched {
    Same,
    New(Bytes),
}

/// Gathers a body that is usually byte-for-byte the last one (an upstream whose calls have
/// not changed). While the chunks match the last body they are only compared, in cache as
/// they arrive; the bytes are copied into a buffer of their own only from the first
/// difference on.
pub(super) struct Collector<'a> {
    last: Option<&'a Bytes>,
    /// How many leading bytes of `last` the body has matched so far, while `copy` is `None`.
    matched: usize,
    copy: Option<BytesMut>,
    capacity: usize,
}

impl<'a> Collector<'a> {
    pub(super) fn new(last: Option<&'a Bytes>, capacity: usize) -> Self {
        Self {
            last,
            matched: 0,
            copy: last.is_none().then(|| BytesMut::with_capacity(capacity)),
            capacity,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.copy.as_ref().map_or(self.matched, BytesMut::len)
    }

    pub(super) fn push(&mut self, chunk: &[u8]) {
        if let Some(copy) = &mut self.copy {
            copy.extend_from_slice(chunk);
            return;
        }
        let last = self.last.map_or(&[][..], |b| &b[..]);
        let end = self.matched + chunk.len();
        if last.get(self.matched..end) == Some(chunk) {
            self.matched = end;
            return;
        }
        let mut copy = BytesMut::with_capacity(self.capacity.max(end));
        copy.extend_from_slice(&last[..self.matched]);
        copy.extend_from_slice(chunk);
        self.copy = Some(copy);
    }

    pub(super) fn finish(self) -> Fetched {
        match (self.copy, self.last) {
            (Some(copy), _) => Fetched::New(copy.freeze()),
            (None, Some(last)) if self.matched == last.len() => Fetched::Same,
            // A body that stopped short of the last one: a copy of that prefix, so the memo
            // does not keep the whole of the last body alive behind a shorter one.
            (None, Some(last)) => Fetched::New(Bytes::copy_from_slice(&last[..self.matched])),
            (None, None) => Fetched::New(Bytes::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Feeds `body` to a collector in chunks of the given sizes (cycled).
    fn collect(last: Option<&Bytes>, body: &[u8], sizes: &[usize]) -> Fetched {
        let mut c = Collector::new(last, 0);
        let mut rest = body;
        for size in sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (chunk, tail) = rest.split_at((*size).clamp(1, rest.len()));
            c.push(chunk);
            assert_eq!(c.len(), body.len() - tail.len());
            rest = tail;
        }
        c.finish()
    }

    proptest! {
        #[test]
        fn a_body_is_same_exactly_when_it_equals_the_last_and_new_bytes_are_kept_whole(
            last in proptest::option::of(proptest::collection::vec(0u8..4, 0..64)),
            edit in proptest::option::of((0usize..64, proptest::collection::vec(0u8..4, 0..8), 0usize..8)),
            sizes in proptest::collection::vec(1usize..20, 1..4),
        ) {
            // Mostly bodies close to the last one: the last body with one splice, or as it is.
            let mut body = last.clone().unwrap_or_default();
            if let Some((at, insert, remove)) = edit {
                let at = at.min(body.len());
                let end = (at + remove).min(body.len());
                body.splice(at..end, insert);
            }
            let last = last.map(Bytes::from);
            let expected = if last.as_deref() == Some(&body[..]) {
                Fetched::Same
            } else {
                Fetched::New(Bytes::from(body.clone()))
            };
            prop_assert_eq!(collect(last.as_ref(), &body, &sizes), expected);
        }
    }
}

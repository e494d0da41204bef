//! Request ids: each request's `x-request-id` (the caller's, else a new random one) set on
//! the request, for its span, and echoed on its answer, by one layer with a concrete future;
//! new ids are cut from a per-thread buffer, not allocated one by one.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use axum::http::{HeaderName, HeaderValue, Request, Response};
use bytes::BytesMut;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

/// The header carrying a request's id, both ways.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Hyphenated UUIDs.
const ID_LEN: usize = uuid::fmt::Hyphenated::LENGTH;
/// Ids cut from one buffer before the next is taken; a buffer is freed when its last id is.
const IDS_PER_BUFFER: usize = 256;

thread_local! {
    static IDS: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// A random (v4) UUID from a per-thread generator: an id only has to tell requests apart,
/// not be unguessable, and asking the kernel for randomness would be a system call on
/// every request.
pub fn new_id() -> HeaderValue {
    let id = uuid::Builder::from_random_bytes(fastrand::u128(..).to_le_bytes()).into_uuid();
    let mut text = [0u8; ID_LEN];
    id.hyphenated().encode_lower(&mut text);
    let bytes = IDS.with(|ids| {
        let mut ids = ids.borrow_mut();
        if ids.capacity() < ID_LEN {
            *ids = BytesMut::with_capacity(ID_LEN * IDS_PER_BUFFER);
        }
        ids.extend_from_slice(&text);
        ids.split().freeze()
    });
    HeaderValue::from_maybe_shared(bytes).expect("a UUID is a valid header value")
}

/// Sets the id on the request (keeping the caller's) and echoes it on the answer unless the
/// answer carries one of its own: tower-http's `SetRequestId` and `PropagateRequestId` in
/// one, without the two request and response extensions they add.
#[derive(Clone, Copy)]
pub struct Identify;

impl<S> Layer<S> for Identify {
    type Service = Identified<S>;

    fn layer(&self, inner: S) -> Identified<S> {
        Identified { inner }
    }
}

#[derive(Clone)]
pub struct Identified<S> {
    inner: S,
}

impl<S, A, B> Service<Request<A>> for Identified<S>
where
    S: Service<Request<A>, Response = Response<B>>,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = Echo<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<A>) -> Self::Future {
        let id = match request.headers().get(&REQUEST_ID) {
            Some(id) => id.clone(),
            None => {
                let id = new_id();
                request.headers_mut().insert(REQUEST_ID, id.clone());
                id
            }
        };
        Echo {
            answer: self.inner.call(request),
            id: Some(id),
        }
    }
}

pin_project! {
    /// The answer, with the request's id added on the way out.
    pub struct Echo<F> {
        #[pin]
        answer: F,
        id: Option<HeaderValue>,
    }
}

impl<F, B, E> Future for Echo<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.answer.poll(cx))?;
        if let Some(id) = this.id.take() {
            response.headers_mut().entry(REQUEST_ID).or_insert(id);
        }
        Poll::Ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_are_distinct_hyphenated_uuids_across_buffers() {
        let ids: Vec<HeaderValue> = (0..IDS_PER_BUFFER * 2 + 3).map(|_| new_id()).collect();
        let mut seen = std::collections::HashSet::new();
        for id in &ids {
            let text = id.to_str().unwrap();
            let parsed = uuid::Uuid::parse_str(text).unwrap();
            assert_eq!(parsed.hyphenated().to_string(), text);
            assert!(seen.insert(text.to_string()), "{text} twice");
        }
    }
}

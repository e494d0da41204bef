//! Serves a live stream's connection without hyper: reads and parses its one request head,
//! answers it through the same router, and writes the answer's frames itself.
//!
//! Why by hand: a stream holds its connection for hours, and a hyper HTTP/1 connection holds
//! an 8 KiB read buffer and an 8 KiB header write buffer for as long as it lives (hyper 1.12's
//! `INIT_BUFFER_SIZE`, which a server cannot lower: `max_buf_size` has it as its minimum).
//! Measured with the release binary, 10,000 idle keep-alive connections cost 13.1 KiB each, and
//! a stream only about 1.7 KiB more (BENCHMARKS.md, "Streams at half the memory"). A stream
//! read on its own has no buffer left once its head is parsed, and writes each event straight
//! from the shared `Bytes`.
//!
//! Only the plainest stream request is taken: `GET` of a stream path, `HTTP/1.1`, a complete
//! head within `max_header_bytes` that `httparse` accepts, no body, nothing after the head.
//! Anything else — another path or method, HTTP/1.0, a malformed or oversized head, pipelined
//! bytes — is handed to hyper with the bytes read so far ([`First::Other`]), and hyper answers
//! it exactly as it always has. The request runs through the whole router (request id, span,
//! metrics, the scope gate, authentication, `max_streams`), so only the wire is done here.

use std::future::poll_fn;

use axum::body::Body;
use axum::http::header::{CONTENT_LENGTH, DATE, TRANSFER_ENCODING};
use axum::http::{Method, Request, Response, Version};
use bytes::{Buf, BufMut, Bytes};
use http_body::Body as _;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use super::paths::{BLAND_STREAM_ROUTE, CALLS_STREAM_ROUTE, OWN_STREAM_ROUTE};

/// Header fields a stream request may have; more goes to hyper (which allows 100).
const MAX_HEADERS: usize = 64;
/// What is read first; most heads fit, and it grows up to `max_header_bytes` if not.
const FIRST_READ: usize = 1024;

/// What a new connection's first bytes turned out to be.
pub(super) enum First {
    /// A plain stream request, parsed, for [`answer`].
    Stream(Box<Request<Body>>),
    /// Anything else, with every byte read so far, for hyper to read first.
    Other(Bytes),
    /// The connection failed before sending anything usable.
    Gone,
}

/// Reads a new connection's first request head as far as needed to tell a plain stream
/// request (read whole, within `max_head` bytes) from anything else. No deadline here: the
/// caller bounds it by the header-read timeout.
pub(super) async fn first(stream: &mut TcpStream, max_head: usize) -> First {
    let mut read = Vec::with_capacity(FIRST_READ.min(max_head + 1));
    loop {
        // One byte past the limit, to tell a head of exactly `max_head` from a longer one.
        let room = (max_head + 1).saturating_sub(read.len());
        if room == 0 {
            return First::Other(read.into());
        }
        match stream.read_buf(&mut (&mut read).limit(room)).await {
            Ok(0) if read.is_empty() => return First::Gone,
            // Closed mid-head: hyper sees the same end and answers as it always did.
            Ok(0) => return First::Other(read.into()),
            Ok(_) => {}
            Err(_) => return First::Gone,
        }
        match classify(&read) {
            Verdict::More => {}
            Verdict::Other => return First::Other(read.into()),
            Verdict::Stream(request) => return First::Stream(request),
        }
    }
}

enum Verdict {
    More,
    Other,
    Stream(Box<Request<Body>>),
}

/// Whether `read` (all bytes so far) is, or may yet be, a plain stream request.
fn classify(read: &[u8]) -> Verdict {
    const GET: &[u8] = b"GET /";
    const VERSION: &[u8] = b" HTTP/1.1\r";
    let n = read.len().min(GET.len());
    if read[..n] != GET[..n] {
        return Verdict::Other;
    }
    let Some(line_end) = read.iter().position(|&b| b == b'\n') else {
        return Verdict::More;
    };
    let Some(target) = read[..line_end]
        .strip_prefix(b"GET ")
        .and_then(|rest| rest.strip_suffix(VERSION))
    else {
        return Verdict::Other;
    };
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    let stream_path = [BLAND_STREAM_ROUTE, CALLS_STREAM_ROUTE, OWN_STREAM_ROUTE]
        .iter()
        .any(|p| p.as_bytes() == path);
    if !stream_path {
        return Verdict::Other;
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(read) {
        Ok(httparse::Status::Partial) => Verdict::More,
        // Anything after the head (a body, a pipelined request) is hyper's to read.
        Ok(httparse::Status::Complete(n)) if n == read.len() => {
            match request(target, parsed.headers) {
                Some(request) => Verdict::Stream(request),
                None => Verdict::Other,
            }
        }
        Ok(httparse::Status::Complete(_)) | Err(_) => Verdict::Other,
    }
}

/// The request as hyper would have given it, or `None` for anything hyper should judge
/// (a body announced, a target or field `http` refuses).
fn request(target: &[u8], headers: &[httparse::Header<'_>]) -> Option<Box<Request<Body>>> {
    let mut builder = Request::builder()
        .method(Method::GET)
        .uri(target)
        .version(Version::HTTP_11);
    for header in headers {
        let body = (header.name.eq_ignore_ascii_case(CONTENT_LENGTH.as_str())
            && header.value != b"0")
            || header.name.eq_ignore_ascii_case(TRANSFER_ENCODING.as_str());
        if body {
            return None;
        }
        builder = builder.header(header.name, header.value);
    }
    builder.body(Body::empty()).ok().map(Box::new)
}

/// Answers `request` through `router` on `stream`, then closes the connection: when the
/// answer's body ends, when the client closes its side (so a subscriber that went away frees
/// its place at once), or when `close` is signalled (a reader fallen behind).
pub(super) async fn answer(
    mut stream: TcpStream,
    request: Request<Body>,
    router: axum::Router,
    close: &Notify,
) {
    let service = TowerToHyperService::new(router);
    // Boxed: the router's future is large and over once it answers; inline, every stream's
    // task would keep its size for as long as the stream is open.
    let Ok(response) = Box::pin(hyper::service::Service::call(&service, request)).await;
    drop(service);
    let (mut head, sized, mut body) = head(response);
    let chunked = !sized;
    let (mut from, mut to) = stream.split();
    // What a client sends after its request is read and dropped; its end ends the stream.
    let mut scratch = [0u8; 64];
    if !written(&mut to, &mut head, close).await {
        return;
    }
    loop {
        let frame = tokio::select! {
            biased;
            () = close.notified() => return,
            read = from.read(&mut scratch) => match read {
                Ok(n) if n > 0 => continue,
                _ => return,
            },
            frame = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)) => frame,
        };
        let data = match frame {
            None => break,
            Some(Err(e)) => {
                tracing::debug!(error = %e, "stream body failed; closing");
                return;
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if !data.is_empty() => data,
                _ => continue,
            },
        };
        let sent = if chunked {
            let mut size = [0u8; 18];
            let n = chunk_size(&mut size, data.len());
            let mut chunk = Buf::chain(Buf::chain(&size[..n], data), &b"\r\n"[..]);
            written(&mut to, &mut chunk, close).await
        } else {
            written(&mut to, &mut { data }, close).await
        };
        if !sent {
            return;
        }
    }
    if chunked && !written(&mut to, &mut &b"0\r\n\r\n"[..], close).await {
        return;
    }
    let _ = to.shutdown().await;
}

/// Writes all of `buf`, unless `close` is signalled first; whether it was written.
async fn written<W, B>(to: &mut W, buf: &mut B, close: &Notify) -> bool
where
    W: AsyncWriteExt + Unpin,
    B: Buf,
{
    tokio::select! {
        biased;
        () = close.notified() => false,
        sent = to.write_all_buf(buf) => sent.is_ok(),
    }
}

/// `{len:x}\r\n` into `out`; its length.
fn chunk_size(out: &mut [u8; 18], len: usize) -> usize {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digits = ((usize::BITS - len.leading_zeros()).div_ceil(4)).max(1) as usize;
    for i in 0..digits {
        out[digits - 1 - i] = HEX[(len >> (4 * i)) & 0xf];
    }
    out[digits] = b'\r';
    out[digits + 1] = b'\n';
    digits + 2
}

/// The answer's head as hyper writes it (status line, the answer's headers, `date`, a
/// `content-length` for a body of known length, else chunked), with `connection: close`:
/// the connection ends with the answer. Also whether the body's length is known.
fn head(response: Response<Body>) -> (Bytes, bool, Body) {
    let (parts, body) = response.into_parts();
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(
        parts
            .status
            .canonical_reason()
            .unwrap_or_default()
            .as_bytes(),
    );
    out.extend_from_slice(b"\r\n");
    let mut sized = false;
    for (name, value) in &parts.headers {
        if name == TRANSFER_ENCODING || name == "connection" {
            continue;
        }
        sized |= name == CONTENT_LENGTH;
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !sized {
        if let Some(length) = body.size_hint().exact() {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(length.to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
            sized = true;
        }
    }
    if !sized {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    if !parts.headers.contains_key(DATE) {
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(httpdate::fmt_http_date(std::time::SystemTime::now()).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"connection: close\r\n\r\n");
    (out.into(), sized, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HEAD: &[u8] =
        b"GET /calls/stream?x=1 HTTP/1.1\r\nhost: callmux\r\nauthorization: k\r\n\r\n";

    proptest! {
        #[test]
        fn any_bytes_are_classified_without_panicking(
            read in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let _ = classify(&read);
        }

        #[test]
        fn a_plain_stream_head_asks_for_more_until_whole_and_anything_after_it_is_hyper_s(
            cut in 0usize..HEAD.len(),
            extra in proptest::collection::vec(any::<u8>(), 1..16),
        ) {
            prop_assert!(matches!(classify(&HEAD[..cut]), Verdict::More));
            prop_assert!(matches!(classify(HEAD), Verdict::Stream(_)));
            let mut more = HEAD.to_vec();
            more.extend_from_slice(&extra);
            prop_assert!(matches!(classify(&more), Verdict::Other));
        }
    }

    #[test]
    fn a_chunk_size_is_lowercase_hex_then_crlf() {
        for (len, text) in [
            (0, "0\r\n"),
            (9, "9\r\n"),
            (255, "ff\r\n"),
            (4096, "1000\r\n"),
        ] {
            let mut out = [0u8; 18];
            let n = chunk_size(&mut out, len);
            assert_eq!(&out[..n], text.as_bytes());
        }
    }
}

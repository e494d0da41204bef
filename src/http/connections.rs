//! Serves HTTP/1.1 connections within bounds: a header-read timeout, an idle timeout, a cap.
//!
//! Each connection is in one of three phases, and only two of them have a deadline:
//!
//! - *head*: waiting for a request head that has not fully arrived — from the moment the
//!   connection opens, and on a kept-alive connection from the first byte of its next
//!   request. Closed `header_read_timeout` after the phase began.
//! - *request*: a request head was read and its answer is being made or sent. No deadline
//!   here (`[server] request_timeout_ms` bounds the answer). hyper drops an answer's body
//!   as soon as its last piece is queued in hyper's own buffer, which may hold megabytes a
//!   slow reader has yet to take; the phase ends only at the flush that follows, when every
//!   byte has gone to the kernel (which delivers what it holds even after a close).
//! - *idle*: the answer is sent and nothing of a next request has arrived. Closed
//!   `idle_timeout` after the phase began.
//!
//! hyper's own `http1::Builder::header_read_timeout` is turned off: in hyper 1.12 its timer
//! starts when the connection opens and again as soon as an answer is sent, so it bounds the
//! idle wait and the next head together, as one budget; it cannot tell a quiet kept-alive
//! connection from one trickling a head. The phases above are kept instead by the three hooks
//! that can see them: the socket (bytes arriving), the service (a head was read) and the
//! response body (the answer is done).
//!
//! A new connection's first request head is read here, within the same header-read
//! timeout: a plain live-stream request is answered off hyper (`direct_streams`, which says
//! why), and any other connection is given to hyper with the bytes read so far, first.
//!
//! At most `max_connections` are open at once: the accept loop takes a permit before it
//! accepts, so beyond the cap new connections wait in the kernel's listen backlog (not
//! accepted, not refused) until one closes; the connections already open, and the server,
//! carry on. A flood of connections that send nothing therefore holds permits for at most
//! `header_read_timeout` each, and the clients queued behind it are accepted as they expire.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;

use super::direct_streams;
use crate::telemetry::Telemetry;

/// `callmux_connections_closed_total`, by the timeout that closed the connection.
struct Closed {
    header_read: metrics::Counter,
    idle: metrics::Counter,
}

/// The bounds every connection is kept within.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// From opening, or from the first byte of the next request, to a complete request head.
    pub header_read_timeout: Duration,
    /// A kept-alive connection with no next request begun is closed after this.
    pub idle_timeout: Duration,
    /// Connections open at once; beyond this, new ones wait in the listen backlog.
    pub max_connections: usize,
    /// The longest request head a live stream is read with off hyper; a longer one goes to
    /// hyper (`[server] max_header_bytes`).
    pub max_header_bytes: usize,
}

/// Serves `router` over HTTP/1.1 on `listener` within `limits` until `shutdown` resolves;
/// then stops accepting (the listener is closed, so new connections are refused), lets each
/// connection finish the request it is answering, closes idle ones, and returns when all
/// are closed. Callers wanting a bound on that wait put a timer around it.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: ConnectionLimits,
    telemetry: &Telemetry,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let closed = Arc::new(Closed {
        header_read: telemetry.counter(
            "callmux_connections_closed_total",
            &[("reason", "header_read_timeout")],
        ),
        idle: telemetry.counter(
            "callmux_connections_closed_total",
            &[("reason", "idle_timeout")],
        ),
    });
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    // For the connections served off hyper (live streams): told to stop, and waited for.
    let (stopping, stopped) = tokio::sync::watch::channel(());
    let mut http = http1::Builder::new();
    // Off: the phases in this module replace it (see the module documentation).
    http.header_read_timeout(None);
    let http = Arc::new(http);
    let mut shutdown = pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = accept_within(&listener, &permits) => accepted,
        };
        let Some((stream, peer, permit)) = accepted else {
            continue;
        };
        let connection = Connection {
            router: router.clone(),
            http: http.clone(),
            // Both taken here, not in the task, so a shutdown begun meanwhile is not missed.
            watcher: graceful.watcher(),
            stopped: stopped.clone(),
            closed: closed.clone(),
            limits,
            peer,
        };
        tokio::spawn(async move {
            connection.serve(stream).await;
            drop(permit);
        });
    }
    drop(listener);
    let _ = stopping.send(());
    drop(stopped);
    graceful.shutdown().await;
    stopping.closed().await;
    Ok(())
}

/// What one connection's task is given.
struct Connection {
    router: axum::Router,
    http: Arc<http1::Builder>,
    watcher: hyper_util::server::graceful::Watcher,
    stopped: tokio::sync::watch::Receiver<()>,
    closed: Arc<Closed>,
    limits: ConnectionLimits,
    peer: SocketAddr,
}

impl Connection {
    /// Reads the first request head far enough to tell a live stream (served off hyper, see
    /// [`direct_streams`]) from anything else (served by hyper, from the bytes read).
    async fn serve(self, mut stream: TcpStream) {
        let Connection {
            router,
            http,
            watcher,
            mut stopped,
            closed,
            limits,
            peer,
        } = self;
        let activity = Arc::new(Activity::new());
        let head_by = activity.opened + limits.header_read_timeout;
        let first = tokio::select! {
            biased;
            _ = stopped.changed() => return,
            () = tokio::time::sleep_until(head_by) => {
                tracing::debug!(reason = "header_read_timeout", "closing connection");
                closed.header_read.increment(1);
                return;
            }
            first = direct_streams::first(&mut stream, limits.max_header_bytes) => first,
        };
        match first {
            direct_streams::First::Gone => {}
            direct_streams::First::Stream(mut request) => {
                drop(watcher);
                activity.head_read();
                request
                    .extensions_mut()
                    .insert(Disconnect(activity.clone()));
                request
                    .extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                direct_streams::answer(stream, *request, router, &activity.close).await;
                drop(stopped);
            }
            direct_streams::First::Other(read) => {
                drop(stopped);
                // Boxed: a stream's task (above) need not be as large as hyper's connection.
                Box::pin(async move {
                    let io = TokioIo::new(Watched {
                        stream,
                        read,
                        activity: activity.clone(),
                    });
                    let service = Routed {
                        inner: TowerToHyperService::new(router),
                        activity: activity.clone(),
                        peer,
                    };
                    let conn = watcher.watch(http.serve_connection(io, service));
                    keep_within(conn, &activity, limits, &closed).await;
                })
                .await;
            }
        }
    }
}

/// The next connection, once fewer than `max_connections` are open; `None` after an accept
/// error (retry).
async fn accept_within(
    listener: &TcpListener,
    permits: &Arc<Semaphore>,
) -> Option<(TcpStream, SocketAddr, tokio::sync::OwnedSemaphorePermit)> {
    let permit = permits
        .clone()
        .acquire_owned()
        .await
        .expect("the connection semaphore is never closed");
    match listener.accept().await {
        Ok((stream, peer)) => Some((stream, peer, permit)),
        Err(e) => {
            accept_error(e).await;
            None
        }
    }
}

/// As `axum::serve` does: a connection that failed while queued is skipped; anything else
/// (such as running out of file descriptors) is logged and accepting pauses for a second.
async fn accept_error(e: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept failed; pausing 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Runs one connection to its end, or closes it (by dropping it) when its phase outlives
/// its timeout.
async fn keep_within<C>(conn: C, activity: &Activity, limits: ConnectionLimits, closed: &Closed)
where
    C: Future<Output = Result<(), hyper::Error>>,
{
    let mut conn = pin!(conn);
    // One timer for the connection's life, moved rather than made anew at each phase:
    // registering a new timer with tokio's wheel costs far more than moving one.
    let mut timer = pin!(tokio::time::sleep_until(
        activity.opened + limits.header_read_timeout
    ));
    let mut close = pin!(activity.close.notified());
    std::future::poll_fn(|cx| {
        if let Poll::Ready(result) = conn.as_mut().poll(cx) {
            if let Err(e) = result {
                tracing::trace!(error = %e, "connection ended with an error");
            }
            return Poll::Ready(());
        }
        if close.as_mut().poll(cx).is_ready() {
            tracing::debug!("closing connection: asked to");
            return Poll::Ready(());
        }
        // Every change of phase happens while the connection is polled, on this task, so
        // the phase read here is current: the timer is set for it with no wake-up. (A
        // connection that woke itself to say so was rescheduled, and tokio woke an idle
        // worker for it, twice a request.)
        let Some((at, reason)) = activity.deadline(limits) else {
            // Answering: nothing to time until the answer is done.
            return Poll::Pending;
        };
        if timer.deadline() != at {
            timer.as_mut().reset(at);
        }
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        tracing::debug!(reason, "closing connection");
        match reason {
            "idle_timeout" => closed.idle.increment(1),
            _ => closed.header_read.increment(1),
        }
        Poll::Ready(())
    })
    .await
}

const HEAD: u64 = 0;
const REQUEST: u64 = 1;
const IDLE: u64 = 2;
/// Still the request phase: the answer's body is done but hyper may still be writing it.
const WRITTEN: u64 = 3;
const PHASE_BITS: u32 = 2;

/// One connection's phase and when it began, shared by its socket, service and bodies (all
/// polled on the connection's task).
struct Activity {
    opened: Instant,
    /// Microseconds from `opened` to the start of the phase, shifted left by `PHASE_BITS`,
    /// with the phase in the low bits: one word, so it is never read half-written.
    phase: AtomicU64,
    /// Signalled to close the connection at once, whatever its phase ([`Disconnect`]).
    close: Notify,
}

/// Closes the connection a request came on, at once: for a live stream whose reader fell
/// behind, whose answer would otherwise never drain (a connection answering has no deadline).
/// Every request carries one in its extensions.
#[derive(Clone)]
pub struct Disconnect(Arc<Activity>);

impl Disconnect {
    pub fn now(&self) {
        self.0.close.notify_one();
    }
}

impl Activity {
    fn new() -> Self {
        Activity {
            opened: Instant::now(),
            phase: AtomicU64::new(HEAD),
            close: Notify::new(),
        }
    }

    fn enter(&self, phase: u64) {
        let micros = self.opened.elapsed().as_micros() as u64;
        self.phase
            .store((micros << PHASE_BITS) | phase, Ordering::Release);
    }

    /// Bytes arrived. On an idle connection they begin the next request's head.
    fn bytes_arrived(&self) {
        if self.phase.load(Ordering::Acquire) & 0b11 == IDLE {
            self.enter(HEAD);
        }
    }

    fn head_read(&self) {
        self.enter(REQUEST);
    }

    fn answer_done(&self) {
        self.enter(WRITTEN);
    }

    /// hyper flushed: its buffer is empty, so an answer whose body is done is all sent.
    fn flushed(&self) {
        if self.phase.load(Ordering::Acquire) & 0b11 == WRITTEN {
            self.enter(IDLE);
        }
    }

    /// When the current phase runs out, and which timeout that is; `None` while answering.
    fn deadline(&self, limits: ConnectionLimits) -> Option<(Instant, &'static str)> {
        let word = self.phase.load(Ordering::Acquire);
        let since = self.opened + Duration::from_micros(word >> PHASE_BITS);
        match word & 0b11 {
            HEAD => Some((since + limits.header_read_timeout, "header_read_timeout")),
            IDLE => Some((since + limits.idle_timeout, "idle_timeout")),
            _ => None,
        }
    }
}

/// The socket, telling the connection's activity when bytes arrive; the bytes read before
/// hyper was given it come first.
struct Watched {
    stream: TcpStream,
    read: Bytes,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.read.is_empty() {
            let n = self.read.len().min(buf.remaining());
            buf.put_slice(&self.read.split_to(n));
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.bytes_arrived();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.stream).poll_flush(cx);
        if matches!(polled, Poll::Ready(Ok(()))) {
            self.activity.flushed();
        }
        polled
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The router, telling the connection's activity when a head has been read, and handing
/// each request its peer's address (`ConnectInfo`).
struct Routed {
    inner: TowerToHyperService<axum::Router>,
    activity: Arc<Activity>,
    peer: SocketAddr,
}

impl hyper::service::Service<Request<Incoming>> for Routed {
    type Response = Response<Answer>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        self.activity.head_read();
        request
            .extensions_mut()
            .insert(Disconnect(self.activity.clone()));
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(self.peer));
        let done = AnswerDone(self.activity.clone());
        let answer = hyper::service::Service::call(&self.inner, request);
        Box::pin(async move {
            let response = answer.await?;
            Ok(response.map(|body| Answer { body, _done: done }))
        })
    }
}

/// Marks the answer done when dropped: hyper drops a response body once it has written it
/// all (or given up on it).
struct AnswerDone(Arc<Activity>);

impl Drop for AnswerDone {
    fn drop(&mut self) {
        self.0.answer_done();
    }
}

/// A response body that marks its connection idle when it is dropped.
struct Answer {
    body: Body,
    _done: AnswerDone,
}

impl http_body::Body for Answer {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

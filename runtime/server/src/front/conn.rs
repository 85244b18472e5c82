//! One client connection, from accept to close, with a deadline in every
//! phase:
//!
//! | phase | deadline |
//! |---|---|
//! | accept → first bytes that tell HTTP/1.1 from HTTP/2 | `handshake_timeout` |
//! | HTTP/1.1 request head (from when the connection is ready for it) | `header_timeout` (hyper) |
//! | HTTP/1.1 waiting for a request (before the first, between others), no byte received | `keepalive_timeout` |
//! | HTTP/2 without an open stream | `http2_idle_timeout`, then GOAWAY |
//! | HTTP/2 peer that stops answering pings | `http2_ping_interval` + `http2_ping_timeout` (hyper) |
//! | a response the client does not take (the socket refuses writes, or an HTTP/2 stream's window stays closed) | `send_timeout` |
//! | a connection closed for idleness: flushing (HTTP/1.1), GOAWAY and its PING (HTTP/2) | `send_timeout`, `http2_ping_timeout` |
//!
//! Request bodies have their own deadline (see `edge.rs`); a guest's run is
//! bounded by its app's limits. The deadlines are checked by one timer per
//! connection that wakes at the next one that could expire; activity only
//! stores timestamps (no wake-ups per request).

use super::caps::Counters;
use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// What a connection's deadlines are (from `[http]`, or the admin API's).
#[derive(Clone, Debug)]
pub(crate) struct Deadlines {
    pub(crate) handshake: Duration,
    pub(crate) header: Duration,
    pub(crate) keepalive: Duration,
    pub(crate) http2_idle: Duration,
    pub(crate) http2_ping_interval: Duration,
    pub(crate) http2_ping_timeout: Duration,
    pub(crate) send: Duration,
}

/// Serves connections with the same settings: the HTTP/1.1 and HTTP/2
/// builders are made once per listener.
pub(crate) struct Driver {
    deadlines: Deadlines,
    http1: hyper::server::conn::http1::Builder,
    http2: hyper::server::conn::http2::Builder<TokioExecutor>,
    /// HTTP/1.1 only (the admin API): no protocol detection.
    http1_only: bool,
}

/// What one HTTP/2 connection may make the node buffer: request bodies the
/// guests have not read yet, up to the connection's receive window (1 MiB),
/// and responses the client has not taken, up to 100 streams × 64 KiB
/// (hyper's defaults were 200 streams × 400 KiB). Explicit here; the
/// production front end issue makes them configurable.
const HTTP2_MAX_STREAMS: u32 = 100;
/// See [`HTTP2_MAX_STREAMS`].
const HTTP2_STREAM_WINDOW: u32 = 256 << 10;
/// See [`HTTP2_MAX_STREAMS`].
const HTTP2_CONNECTION_WINDOW: u32 = 1 << 20;
/// See [`HTTP2_MAX_STREAMS`].
const HTTP2_SEND_BUFFER: usize = 64 << 10;

/// The HTTP/2 connection preface a client starts with (RFC 9113 §3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Protocol {
    Http1,
    Http2,
}

impl Driver {
    pub(crate) fn new(deadlines: Deadlines, http1_only: bool) -> Self {
        let mut http1 = hyper::server::conn::http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(deadlines.header);
        let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .keep_alive_interval(deadlines.http2_ping_interval)
            .keep_alive_timeout(deadlines.http2_ping_timeout)
            .max_concurrent_streams(HTTP2_MAX_STREAMS)
            .initial_stream_window_size(HTTP2_STREAM_WINDOW)
            .initial_connection_window_size(HTTP2_CONNECTION_WINDOW)
            .max_send_buf_size(HTTP2_SEND_BUFFER);
        Self {
            deadlines,
            http1,
            http2,
            http1_only,
        }
    }

    /// Serves one connection until it closes, a deadline passes, or
    /// `shutdown` turns true (then in-flight requests finish; the caller
    /// bounds how long).
    pub(crate) async fn serve<F, Fut, B>(
        &self,
        mut stream: TcpStream,
        peer: SocketAddr,
        counters: &Counters,
        handler: F,
        mut shutdown: watch::Receiver<bool>,
    ) where
        F: Fn(Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Response<B>> + Send + 'static,
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        // Responses are written in one go; Nagle would only add latency.
        let _ = stream.set_nodelay(true);
        let (protocol, prefix) = if self.http1_only {
            (Protocol::Http1, Bytes::new())
        } else {
            match tokio::time::timeout(self.deadlines.handshake, detect(&mut stream)).await {
                Ok(Ok(detected)) => detected,
                Ok(Err(err)) => {
                    tracing::debug!("connection closed before its protocol was known: {err}");
                    return;
                }
                Err(_elapsed) => {
                    counters.handshake_timeouts.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        };
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(WatchedIo {
            inner: stream,
            prefix,
            activity: activity.clone(),
        });
        let tracked = activity.clone();
        let service = service_fn(move |request: Request<Incoming>| {
            let guard = RequestGuard::begin(&tracked);
            let response = handler.clone()(request, peer);
            async move {
                let response = response.await;
                Ok::<_, Infallible>(response.map(|body| TrackedBody {
                    body,
                    handed_at: None,
                    guard,
                }))
            }
        });
        match protocol {
            Protocol::Http1 => {
                let connection = self.http1.serve_connection(io, service);
                self.supervise(connection, &activity, protocol, counters, &mut shutdown)
                    .await;
            }
            Protocol::Http2 => {
                let connection = self.http2.serve_connection(io, service);
                self.supervise(connection, &activity, protocol, counters, &mut shutdown)
                    .await;
            }
        }
    }

    async fn supervise<C: Graceful>(
        &self,
        connection: C,
        activity: &Activity,
        protocol: Protocol,
        counters: &Counters,
        shutdown: &mut watch::Receiver<bool>,
    ) {
        let mut connection = std::pin::pin!(connection);
        let idle_timeout = match protocol {
            Protocol::Http1 => self.deadlines.keepalive,
            Protocol::Http2 => self.deadlines.http2_idle,
        };
        let send_timeout = self.deadlines.send;
        // How long a connection being closed for idleness may take: to
        // flush (HTTP/1.1), or to answer the PING that follows a GOAWAY
        // (HTTP/2). A request that arrives meanwhile (HTTP/2 accepts
        // streams until the PING is answered) is not cut: the connection
        // ends once it is done, under the send deadline.
        let closing_grace = match protocol {
            Protocol::Http1 => send_timeout,
            Protocol::Http2 => self.deadlines.http2_ping_timeout,
        };
        // Wakes at the next time a deadline could have passed; re-armed on
        // every wake-up from the activity's timestamps.
        let check = tokio::time::sleep(idle_timeout.min(send_timeout));
        let mut check = std::pin::pin!(check);
        // Set once the connection is being closed: when it may be dropped.
        let mut closing: Option<tokio::time::Instant> = None;
        let mut draining = false;
        loop {
            tokio::select! {
                biased;
                result = connection.as_mut() => {
                    if let Err(err) = result {
                        tracing::debug!("connection ended with an error: {err}");
                    }
                    return;
                }
                () = check.as_mut() => {
                    let now = tokio::time::Instant::now();
                    let in_flight = activity.in_flight.load(Ordering::Relaxed);
                    if closing.is_some_and(|at| now >= at) && in_flight == 0 {
                        tracing::debug!("connection did not close in time; closed");
                        return;
                    }
                    let next = match activity.expired(protocol, idle_timeout, send_timeout) {
                        Err(Expired::Send) => {
                            counters.send_timeouts.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!("client stopped reading its responses; closed");
                            return;
                        }
                        Err(Expired::Idle) => {
                            if closing.is_none() {
                                counters.idle_closed.fetch_add(1, Ordering::Relaxed);
                                connection.as_mut().graceful_shutdown();
                                closing = Some(now + closing_grace);
                            }
                            closing.expect("set above")
                        }
                        Ok(next) => next.into(),
                    };
                    let next = match closing {
                        Some(at) if at > now => next.min(at),
                        // Past the grace with requests in flight: look
                        // often for them to end.
                        Some(_) => next.min(now + Duration::from_secs(1)),
                        None => next,
                    };
                    check.as_mut().reset(next.max(now + Duration::from_millis(1)));
                }
                changed = shutdown.changed(), if !draining => {
                    if changed.is_err() || *shutdown.borrow() {
                        // The node's shutdown_timeout bounds the drain.
                        draining = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
        }
    }
}

/// Reads until the first bytes tell the protocol: the HTTP/2 preface, or
/// anything else (HTTP/1.1). Returns what was read, for the server to read
/// again.
async fn detect(stream: &mut TcpStream) -> io::Result<(Protocol, Bytes)> {
    let mut buf = [0u8; H2_PREFACE.len()];
    let mut len = 0;
    loop {
        let n = stream.read(&mut buf[len..]).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        len += n;
        let read = Bytes::copy_from_slice(&buf[..len]);
        if buf[..len] != H2_PREFACE[..len] {
            return Ok((Protocol::Http1, read));
        }
        if len == H2_PREFACE.len() {
            return Ok((Protocol::Http2, read));
        }
    }
}

/// hyper's HTTP/1.1 and HTTP/2 connections, closed the same way.
trait Graceful: Future<Output = hyper::Result<()>> {
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl<I, S, B> Graceful for hyper::server::conn::http1::Connection<I, S>
where
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    B: Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        hyper::server::conn::http1::Connection::graceful_shutdown(self);
    }
}

impl<I, S, B, E> Graceful for hyper::server::conn::http2::Connection<I, S, E>
where
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    B: Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, B>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        hyper::server::conn::http2::Connection::graceful_shutdown(self);
    }
}

/// Milliseconds on the monotonic clock since the first call, for
/// timestamps kept in atomics. Never 0 (0 means "not set").
fn now_ms() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    let base = *BASE.get_or_init(Instant::now);
    u64::try_from(base.elapsed().as_millis()).unwrap_or(u64::MAX) + 1
}

/// What a connection did last, as timestamps: written by its I/O, its
/// requests and its response bodies, read by its supervisor.
struct Activity {
    /// Requests being served (service called, response body not done).
    in_flight: AtomicU32,
    /// When `in_flight` last became 0 (or the connection opened).
    idle_since: AtomicU64,
    /// When bytes last arrived.
    last_read: AtomicU64,
    /// Since when the socket has refused what hyper writes (0: it has
    /// not): the client is not reading.
    write_blocked_since: AtomicU64,
    /// Response bodies that handed hyper a frame it has not sent yet
    /// (HTTP/2: the stream's flow-control window is closed), as a multiset
    /// of the times they did so: the oldest is the stream that has waited
    /// longest.
    handed: Mutex<BTreeMap<u64, u32>>,
}

/// Which deadline passed.
enum Expired {
    Idle,
    Send,
}

impl Activity {
    fn new() -> Self {
        let now = now_ms();
        Self {
            in_flight: AtomicU32::new(0),
            idle_since: AtomicU64::new(now),
            last_read: AtomicU64::new(now),
            write_blocked_since: AtomicU64::new(0),
            handed: Mutex::new(BTreeMap::new()),
        }
    }

    /// The deadline that passed, or when to look again.
    fn expired(
        &self,
        protocol: Protocol,
        idle_timeout: Duration,
        send_timeout: Duration,
    ) -> Result<Instant, Expired> {
        let now = now_ms();
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        // Whatever else goes on: a response not taken for send_timeout.
        let blocked = self.write_blocked_since.load(Ordering::Relaxed);
        let oldest_handed = self
            .handed
            .lock()
            .expect("handed lock")
            .first_key_value()
            .map(|(since, _)| *since);
        let stalled = [blocked, oldest_handed.unwrap_or(0)]
            .into_iter()
            .filter(|&since| since != 0)
            .min();
        let mut next = now.saturating_add(millis(idle_timeout.min(send_timeout)));
        if let Some(since) = stalled {
            let deadline = since.saturating_add(millis(send_timeout));
            if now >= deadline {
                return Err(Expired::Send);
            }
            next = next.min(deadline);
        }
        if self.in_flight.load(Ordering::Relaxed) == 0 {
            let idle_since = self.idle_since.load(Ordering::Relaxed);
            // HTTP/1.1: bytes of a next request head count as activity
            // (hyper's header timeout bounds a slow head). HTTP/2: frames
            // without a stream (pings, settings) do not.
            let since = match protocol {
                Protocol::Http1 => idle_since.max(self.last_read.load(Ordering::Relaxed)),
                Protocol::Http2 => idle_since,
            };
            let deadline = since.saturating_add(millis(idle_timeout));
            if now >= deadline {
                return Err(Expired::Idle);
            }
            next = next.min(deadline);
        }
        Ok(Instant::now() + Duration::from_millis(next - now))
    }

    /// A response body handed over a frame at `since`.
    fn handed(&self, since: u64) {
        *self
            .handed
            .lock()
            .expect("handed lock")
            .entry(since)
            .or_insert(0) += 1;
    }

    /// The frame a body handed over at `since` was taken.
    fn taken(&self, since: u64) {
        let mut handed = self.handed.lock().expect("handed lock");
        if let Some(count) = handed.get_mut(&since) {
            *count -= 1;
            if *count == 0 {
                handed.remove(&since);
            }
        }
    }

    /// What the socket said to a write: blocked since now, or progress.
    fn wrote<T>(&self, polled: &Poll<io::Result<T>>) {
        match polled {
            Poll::Pending => {
                let _ = self.write_blocked_since.compare_exchange(
                    0,
                    now_ms(),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            }
            Poll::Ready(_) => {
                if self.write_blocked_since.load(Ordering::Relaxed) != 0 {
                    self.write_blocked_since.store(0, Ordering::Relaxed);
                }
            }
        }
    }
}

/// Counts a request as in flight from the service call until its response
/// body is done (or the request is dropped).
struct RequestGuard(Arc<Activity>);

impl RequestGuard {
    fn begin(activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(activity.clone())
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.0.idle_since.store(now_ms(), Ordering::Relaxed);
        }
    }
}

/// A response body that tells its connection when hyper is waiting to send
/// what it handed over.
struct TrackedBody<B> {
    body: B,
    /// When a frame was handed over whose successor was not asked for yet.
    handed_at: Option<u64>,
    guard: RequestGuard,
}

impl<B> TrackedBody<B> {
    fn taken(&mut self) {
        if let Some(since) = self.handed_at.take() {
            self.guard.0.taken(since);
        }
    }
}

impl<B: Body + Unpin> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        this.taken();
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && frame.is_data()
        {
            let now = now_ms();
            this.handed_at = Some(now);
            this.guard.0.handed(now);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl<B> Drop for TrackedBody<B> {
    fn drop(&mut self) {
        self.taken();
    }
}

/// The client's socket: first the bytes read while detecting the protocol,
/// then the socket itself; every read is timestamped.
struct WatchedIo {
    inner: TcpStream,
    prefix: Bytes,
    activity: Arc<Activity>,
}

impl AsyncRead for WatchedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix.split_to(n));
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.last_read.store(now_ms(), Ordering::Relaxed);
        }
        polled
    }
}

impl AsyncWrite for WatchedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.activity.wrote(&polled);
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.activity.wrote(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.activity.wrote(&polled);
        polled
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

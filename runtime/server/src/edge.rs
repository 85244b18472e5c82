//! The edge phase: everything the node answers before any Wasm instance
//! exists. A request is checked here (Host, route, body size), and a small
//! body is read here, under a deadline, before an instance is taken: a
//! client trickling a small body holds a connection, never an instance. A
//! larger body streams into the guest under the same deadline, holding one
//! of the app's instances while it arrives (bounded by the deadline, the
//! app's wall-clock limit and its instance cap).
//!
//! The app's `[[edge]]` rules (JWT, then rate limits) are checked here,
//! right after routing, and a cache hit is answered from here too. The
//! one wait a rule may need, a JWT policy's key set not fetched yet (or
//! lacking a token's `kid`), is its own [`Admission::FetchKeys`] step.

use crate::config::HttpConfig;
use crate::table::AppTable;
use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, HOST};
use http::{HeaderMap, Request, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use outpost_core::{App, BodyError};
use outpost_host::edge_rules::EdgeVerdict;
use outpost_host::fetch::CACHE_CHOICE;
use outpost_host::jwt::{Jwks, JwtError};
use std::collections::VecDeque;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// A request the node answers itself, and why.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) status: StatusCode,
    pub(crate) reason: String,
    /// `Retry-After`, in seconds, for refusals about load.
    pub(crate) retry_after: Option<u32>,
    /// The connection cannot carry another request (the body was not read).
    pub(crate) close: bool,
    /// Fields describing the refusal (`RateLimit`, `RateLimit-Policy`);
    /// boxed, as refusals are returned by value on the hot path.
    pub(crate) fields: Option<Box<HeaderMap>>,
}

impl Refusal {
    pub(crate) fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.into(),
            retry_after: None,
            close: false,
            fields: None,
        }
    }
}

/// The edge phase's settings and the node-wide budget of buffered bodies.
pub(crate) struct Edge {
    deadline: BodyDeadline,
    prebuffer: u64,
    budget: Arc<BodyBudget>,
}

impl Edge {
    pub(crate) fn new(http: &HttpConfig) -> Self {
        Self {
            deadline: BodyDeadline {
                timeout: http.body_timeout,
                min_rate: http.body_min_rate,
            },
            prebuffer: http.body_prebuffer,
            budget: Arc::new(BodyBudget(AtomicU64::new(http.body_buffer_total))),
        }
    }

    /// The app for `request`, decided without waiting: the request ready
    /// to go on ([`Admission::Admitted`]: no body, or one that streams into
    /// the guest as it comes), its body to read first
    /// ([`Admission::Body`], see [`read_body`](Self::read_body)), or the
    /// answer the node gives instead. A request that needs no waiting (a
    /// GET answered from the cache, say) is never an async state machine
    /// of its own: hyper moves each request's future into place, and the
    /// hit path stays a plain call.
    pub(crate) fn admit(
        &self,
        table: &AppTable,
        request: Request<Incoming>,
        client: Option<IpAddr>,
    ) -> Result<Admission, Refusal> {
        let host = host_of(&request)?;
        // The router as of now: a deploy swapping it meanwhile does not
        // affect a request already routed.
        let routed = table
            .router()
            .route(Some(host), request.uri().path())
            .cloned();
        let Some(app) = routed else {
            return Err(Refusal::new(
                StatusCode::NOT_FOUND,
                "no app is routed for this host and path",
            ));
        };
        let (mut parts, incoming) = request.into_parts();
        let rules = app.edge_rules();
        let fields = if rules.is_empty() {
            None
        } else {
            match rules.check(&parts.method, parts.uri.path(), &mut parts.headers, client) {
                EdgeVerdict::Pass(fields) => fields.map(Box::new),
                EdgeVerdict::Unauthorized { policy, error } => {
                    return Err(unauthorized(&policy, error.as_ref()));
                }
                EdgeVerdict::KeysUnavailable { policy, why } => {
                    tracing::warn!(app = %app.name(), policy, "JWT keys unavailable: {why}");
                    let mut refusal = Refusal::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!(
                            "the keys of JWT policy {policy:?} are unavailable; try again shortly"
                        ),
                    );
                    refusal.retry_after = Some(5);
                    return Err(refusal);
                }
                EdgeVerdict::FetchKeys(jwks, generation) => {
                    return Ok(Admission::FetchKeys(Box::new(FetchKeys {
                        jwks,
                        generation,
                        request: Request::from_parts(parts, incoming),
                    })));
                }
                EdgeVerdict::Limited {
                    policy,
                    retry_after,
                    fields,
                } => {
                    let mut refusal = Refusal::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        format!(
                            "too many requests (rate limit {policy:?}); retry in {retry_after} s"
                        ),
                    );
                    refusal.retry_after = Some(u32::try_from(retry_after).unwrap_or(u32::MAX));
                    refusal.fields = Some(Box::new(fields));
                    return Err(refusal);
                }
            }
        };
        let limit = app.limits().request_body;
        // Whether a fetch reads through the cache is the handler's choice:
        // a client's copy of the field must not reach a handler that
        // forwards every field.
        parts.headers.remove(CACHE_CHOICE);
        let length = content_length(&parts.headers);
        if length.is_some_and(|length| length > limit) {
            return Ok(Admission::Body(BodyFirst::TooLarge { incoming, limit }));
        }
        let body = RequestBody::new(incoming, self.deadline);
        let body_timed_out = body.timed_out();
        let read_ahead =
            !body.is_end_stream() && length.is_none_or(|length| length <= self.prebuffer);
        let admitted = Admitted {
            app,
            request: Request::from_parts(parts, body),
            body_timed_out,
            fields,
        };
        Ok(if read_ahead {
            Admission::Body(BodyFirst::ReadAhead {
                admitted,
                length,
                limit,
            })
        } else {
            Admission::Admitted(admitted)
        })
    }

    /// The body step of [`admit`](Self::admit): a body declared too large
    /// is drained (within bounds) and refused; a small one is read whole
    /// before any instance is taken.
    pub(crate) async fn read_body(&self, first: BodyFirst) -> Result<Admitted, Refusal> {
        match first {
            BodyFirst::TooLarge { incoming, limit } => {
                drain_refused(incoming, limit).await;
                Err(too_large(limit))
            }
            BodyFirst::ReadAhead {
                mut admitted,
                length,
                limit,
            } => {
                self.read_ahead(admitted.request.body_mut(), length, limit)
                    .await?;
                Ok(admitted)
            }
        }
    }

    /// Reads up to `prebuffer` bytes of the body (the whole of it, when it
    /// is that small) before any instance is taken, into one buffer (a
    /// client sending a byte per frame must not make the node hold a frame
    /// per byte). The bytes are held against the node's body budget until
    /// the guest has them.
    async fn read_ahead(
        &self,
        body: &mut RequestBody,
        length: Option<u64>,
        limit: u64,
    ) -> Result<(), Refusal> {
        let wanted = length.unwrap_or(self.prebuffer).min(self.prebuffer);
        let busy = || {
            let mut refusal = Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the node is holding too many request bodies; try again shortly",
            );
            refusal.retry_after = Some(1);
            refusal.close = true;
            refusal
        };
        let mut reservation = self.budget.reserve(wanted).ok_or_else(busy)?;
        let mut ahead = BytesMut::with_capacity(usize::try_from(wanted).unwrap_or(0));
        let mut read: u64 = 0;
        loop {
            let Some(frame) = body.rest_frame().await else {
                break;
            };
            let frame = frame.map_err(|err| match err {
                BodyError::ConnectionReadTimeout => body_timeout(),
                other => {
                    let mut refusal = Refusal::new(
                        StatusCode::BAD_REQUEST,
                        format!("reading the request body failed: {other}"),
                    );
                    refusal.close = true;
                    refusal
                }
            })?;
            let frame = match frame.into_data() {
                Ok(data) => data,
                // Trailers end the body.
                Err(trailers) => {
                    body.ready.push_back(trailers);
                    break;
                }
            };
            read += frame.len() as u64;
            if read > limit {
                // No Content-Length, and more than the app accepts.
                if let Some(rest) = body.rest.take() {
                    drain_refused(rest.into_inner(), limit).await;
                }
                return Err(too_large(limit));
            }
            if read <= wanted {
                ahead.extend_from_slice(&frame);
                continue;
            }
            // Larger than the read-ahead (no Content-Length said so): this
            // frame is held as it came (and counted), the rest streams into
            // the guest, still under the body deadline.
            if !reservation.grow(frame.len() as u64) {
                return Err(busy());
            }
            body.ready.push_back(Frame::data(frame));
            break;
        }
        if !ahead.is_empty() {
            body.ready.push_front(Frame::data(ahead.freeze()));
        }
        body.reservation = Some(reservation);
        Ok(())
    }
}

/// What the edge decided on a request before waiting for anything.
pub(crate) enum Admission {
    /// Routed, and ready to go on.
    Admitted(Admitted),
    /// Routed; its body comes first (see [`Edge::read_body`]).
    Body(BodyFirst),
    /// A JWT policy's key set is to be fetched before the request can be
    /// checked (see [`FetchKeys::fetched`]).
    FetchKeys(Box<FetchKeys>),
}

/// A request waiting for a JWT policy's key set.
pub(crate) struct FetchKeys {
    jwks: Arc<Jwks>,
    generation: u64,
    request: Request<Incoming>,
}

impl FetchKeys {
    /// The request, once the key set is fetched (or could not be): to be
    /// admitted again, which now decides without fetching.
    pub(crate) async fn fetched(self) -> Request<Incoming> {
        self.jwks.refresh(self.generation).await;
        self.request
    }
}

/// 401 for a JWT policy's refusal, with the challenge RFC 6750 describes:
/// no error code when the request had no token, `invalid_token` and why
/// when it had one.
fn unauthorized(policy: &str, error: Option<&JwtError>) -> Refusal {
    let (reason, challenge) = match error {
        None => (
            format!("a token is required (JWT policy {policy:?})"),
            format!("Bearer realm=\"{policy}\""),
        ),
        Some(error) => {
            // The description is ours, never the token's text: quotes and
            // backslashes cannot occur in it.
            let description = error.to_string().replace(['"', '\\'], "'");
            (
                format!("the token is not accepted (JWT policy {policy:?}): {error}"),
                format!(
                    "Bearer realm=\"{policy}\", error=\"invalid_token\", error_description=\"{description}\""
                ),
            )
        }
    };
    let mut refusal = Refusal::new(StatusCode::UNAUTHORIZED, reason);
    let mut fields = HeaderMap::new();
    if let Ok(value) = http::HeaderValue::try_from(challenge) {
        fields.insert(http::header::WWW_AUTHENTICATE, value);
    }
    refusal.fields = Some(Box::new(fields));
    refusal
}

/// A request whose body the edge deals with before it goes on.
#[expect(
    clippy::large_enum_variant,
    reason = "made once per request with a body, and moved straight into the future that reads it"
)]
pub(crate) enum BodyFirst {
    /// Declared larger than the app accepts: drained, then refused.
    TooLarge { incoming: Incoming, limit: u64 },
    /// Small enough (or of unknown length) to read ahead.
    ReadAhead {
        admitted: Admitted,
        length: Option<u64>,
        limit: u64,
    },
}

/// A request on its way to its app.
pub(crate) struct Admitted {
    pub(crate) app: App,
    pub(crate) request: Request<RequestBody>,
    /// Set if the client misses the body deadline while the guest reads.
    pub(crate) body_timed_out: BodyTimedOut,
    /// Fields the edge adds to the response (`RateLimit`); boxed, so a
    /// request without them carries a pointer, not a map.
    pub(crate) fields: Option<Box<HeaderMap>>,
}

/// Whether a request's body missed its deadline. The guest sees a read
/// error then, and whatever it answers, the client gets 408: the client
/// failed to send its request, as the guest could not tell it (wasmtime 48's
/// `http-error-code` does not recognize body errors).
/// (`None` for a request without a body: nothing to watch.)
#[derive(Clone, Default)]
pub(crate) struct BodyTimedOut(Option<Arc<std::sync::atomic::AtomicBool>>);

impl BodyTimedOut {
    pub(crate) fn happened(&self) -> bool {
        self.0
            .as_ref()
            .is_some_and(|flag| flag.load(Ordering::Relaxed))
    }

    fn set(&self) {
        if let Some(flag) = &self.0 {
            flag.store(true, Ordering::Relaxed);
        }
    }
}

/// The answer to a client that missed the body deadline.
pub(crate) fn body_timeout() -> Refusal {
    let mut refusal = Refusal::new(
        StatusCode::REQUEST_TIMEOUT,
        "the request body did not arrive in time",
    );
    refusal.close = true;
    refusal
}

fn too_large(limit: u64) -> Refusal {
    Refusal::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body exceeds the limit of {limit} bytes"),
    )
}

/// The host a request is addressed to, without port or trailing dot: the
/// URI authority (HTTP/2, absolute-form HTTP/1.1) or the Host header.
/// Several Host headers, or an HTTP/2 `:authority` that names another host
/// than `Host` (RFC 9113 §8.3.1), are refused: a proxy in front might route
/// by the other one.
pub(crate) fn host_of<B>(request: &Request<B>) -> Result<&str, Refusal> {
    let mut hosts = request.headers().get_all(HOST).iter();
    let header = hosts.next();
    if hosts.next().is_some() {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "the request has several Host headers",
        ));
    }
    let header = match header {
        Some(value) => Some(value.to_str().map_err(|_| {
            Refusal::new(StatusCode::BAD_REQUEST, "the Host header is not valid text")
        })?),
        None => None,
    };
    let host = match (request.uri().authority(), header) {
        (Some(authority), Some(header))
            if request.version() == Version::HTTP_2
                && !authority.as_str().eq_ignore_ascii_case(header) =>
        {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "the :authority and Host of the request name different hosts",
            ));
        }
        (Some(authority), _) => authority.host(),
        (None, Some(header)) => match header.rsplit_once(':') {
            // "[::1]:8080" and "example.com:8080" lose the port; "[::1]" stays.
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => header,
        },
        (None, None) => {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "the request has no Host header",
            ));
        }
    };
    // "example.com." is the same name as "example.com" (fully qualified).
    Ok(host.strip_suffix('.').unwrap_or(host))
}

fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers.get(CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// How long a client may take to send its body: `timeout` without a byte,
/// and, after the first `timeout`, at least `min_rate` bytes per second on
/// average (Apache's mod_reqtimeout `body=timeout,MinRate=rate`).
#[derive(Clone, Copy, Debug)]
struct BodyDeadline {
    timeout: Duration,
    min_rate: u64,
}

impl BodyDeadline {
    /// When a body that started at `started`, last made progress at
    /// `last_progress` and has `received` bytes must have sent more by.
    fn due(&self, started: Instant, last_progress: Instant, received: u64) -> Instant {
        let idle = last_progress + self.timeout;
        if self.min_rate == 0 {
            return idle;
        }
        let earned = Duration::from_secs_f64(received as f64 / self.min_rate as f64);
        idle.min(started + self.timeout + earned)
    }
}

/// A request body on its way to the guest: the frames read ahead at the
/// edge, then the rest from the connection, under the body deadline. A
/// missed deadline is the guest's read error `connection-read-timeout`.
pub(crate) struct RequestBody {
    /// Read ahead: at most one data frame of what was read, one held as it
    /// came, and trailers.
    ready: VecDeque<Frame<Bytes>>,
    rest: Option<Deadlined>,
    reservation: Option<Reservation>,
}

impl RequestBody {
    fn new(incoming: Incoming, deadline: BodyDeadline) -> Self {
        let rest = (!incoming.is_end_stream()).then(|| {
            let timed_out = BodyTimedOut(Some(Arc::default()));
            Deadlined::new(incoming, deadline, timed_out)
        });
        Self {
            ready: VecDeque::new(),
            rest,
            reservation: None,
        }
    }

    /// Tells whether this body missed its deadline.
    fn timed_out(&self) -> BodyTimedOut {
        self.rest
            .as_ref()
            .map_or_else(BodyTimedOut::default, |rest| rest.timed_out.clone())
    }

    async fn rest_frame(&mut self) -> Option<Result<Frame<Bytes>, BodyError>> {
        let rest = self.rest.as_mut()?;
        let frame = rest.frame().await;
        if frame.is_none() {
            self.rest = None;
        }
        frame
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        if let Some(frame) = this.ready.pop_front() {
            return Poll::Ready(Some(Ok(frame)));
        }
        // What was read ahead is in the guest now: give its budget back.
        this.reservation = None;
        let Some(rest) = this.rest.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(rest).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            this.rest = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.ready.is_empty() && self.rest.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        let ready: u64 = self
            .ready
            .iter()
            .filter_map(|frame| frame.data_ref())
            .map(|data| data.len() as u64)
            .sum();
        match &self.rest {
            None => SizeHint::with_exact(ready),
            Some(rest) => {
                let rest = rest.incoming.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(rest.lower() + ready);
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper + ready);
                }
                hint
            }
        }
    }
}

/// The connection's body with the body deadline applied.
struct Deadlined {
    incoming: Incoming,
    deadline: BodyDeadline,
    started: Instant,
    last_progress: Instant,
    received: u64,
    /// Armed only while the client keeps us waiting.
    timer: Option<Pin<Box<Sleep>>>,
    timed_out: BodyTimedOut,
}

impl Deadlined {
    fn new(incoming: Incoming, deadline: BodyDeadline, timed_out: BodyTimedOut) -> Self {
        let now = Instant::now();
        Self {
            incoming,
            deadline,
            started: now,
            last_progress: now,
            received: 0,
            timer: None,
            timed_out,
        }
    }

    fn into_inner(self) -> Incoming {
        self.incoming
    }
}

impl Body for Deadlined {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.incoming).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                    this.last_progress = Instant::now();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(BodyError::from(err)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let due = this
                    .deadline
                    .due(this.started, this.last_progress, this.received);
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
                if timer.deadline() != due {
                    timer.as_mut().reset(due);
                }
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.timed_out.set();
                        Poll::Ready(Some(Err(BodyError::ConnectionReadTimeout)))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}

/// Bytes of read-ahead bodies the node may hold at once.
struct BodyBudget(AtomicU64);

/// Bytes taken from the budget, given back when dropped.
struct Reservation {
    budget: Arc<BodyBudget>,
    bytes: u64,
}

impl Reservation {
    /// Takes `more` bytes from the budget too, if it has them.
    fn grow(&mut self, more: u64) -> bool {
        let taken = self.budget.take(more);
        if taken {
            self.bytes += more;
        }
        taken
    }
}

impl BodyBudget {
    fn reserve(self: &Arc<Self>, bytes: u64) -> Option<Reservation> {
        self.take(bytes).then(|| Reservation {
            budget: self.clone(),
            bytes,
        })
    }

    fn take(&self, bytes: u64) -> bool {
        self.0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(bytes)
            })
            .is_ok()
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.0.fetch_add(self.bytes, Ordering::Relaxed);
    }
}

/// Reads and drops a refused request body, like a web server's lingering
/// close: a client still sending would otherwise have its connection reset
/// under it and might never read the refusal. Bounded in bytes and time;
/// past either the connection just closes.
pub(crate) async fn drain(mut body: Incoming, max_bytes: u64, max_time: Duration) {
    let read = async {
        let mut seen: u64 = 0;
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, |data| data.len() as u64);
            if seen > max_bytes {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(max_time, read).await;
}

/// Drains the body of a request refused for its size: four times the limit
/// (at least 1 MiB), for at most 5 s.
async fn drain_refused(body: Incoming, limit: u64) {
    drain(
        body,
        limit.saturating_mul(4).max(1 << 20),
        Duration::from_secs(5),
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(uri: &str, version: Version, hosts: &[&str]) -> Result<String, String> {
        let mut builder = Request::builder().uri(uri).version(version);
        for host in hosts {
            builder = builder.header(HOST, *host);
        }
        let request = builder.body(()).unwrap();
        host_of(&request)
            .map(str::to_owned)
            .map_err(|refusal| refusal.reason)
    }

    #[test]
    fn host_comes_from_authority_or_host_header_without_port_or_trailing_dot() {
        let h1 = Version::HTTP_11;
        assert_eq!(host("http://a.com:81/x", h1, &["b.com"]).unwrap(), "a.com");
        assert_eq!(host("/x", h1, &["b.com:8080"]).unwrap(), "b.com");
        assert_eq!(host("/x", h1, &["[::1]:8080"]).unwrap(), "[::1]");
        assert_eq!(host("/x", h1, &["b.com"]).unwrap(), "b.com");
        assert_eq!(host("/x", h1, &["example.com."]).unwrap(), "example.com");
        assert_eq!(host("/x", h1, &["example.com.:80"]).unwrap(), "example.com");
        assert!(host("/x", h1, &[]).unwrap_err().contains("no Host"));
    }

    #[test]
    fn ambiguous_hosts_are_refused() {
        let err = host("/x", Version::HTTP_11, &["a.com", "b.com"]).unwrap_err();
        assert!(err.contains("several Host headers"), "{err}");
        let err = host("https://a.com/x", Version::HTTP_2, &["b.com"]).unwrap_err();
        assert!(err.contains(":authority and Host"), "{err}");
        assert_eq!(
            host("https://a.com/x", Version::HTTP_2, &["A.com"]).unwrap(),
            "a.com"
        );
    }

    #[test]
    fn the_body_budget_is_shared_and_given_back() {
        let budget = Arc::new(BodyBudget(AtomicU64::new(100)));
        let mut a = budget.reserve(50).unwrap();
        assert!(budget.reserve(60).is_none());
        assert!(a.grow(10));
        assert!(!a.grow(50));
        let _b = budget.reserve(40).unwrap();
        drop(a);
        assert!(budget.reserve(60).is_some());
    }

    #[test]
    fn the_body_deadline_earns_time_with_bytes_after_the_grace() {
        let deadline = BodyDeadline {
            timeout: Duration::from_secs(10),
            min_rate: 1000,
        };
        let start = Instant::now();
        let secs = Duration::from_secs;
        // A trickle: 1 byte, received at 9 s. Due at the grace (10 s) plus
        // the 1 ms that byte earned, not at 9 + 10 s.
        assert_eq!(
            deadline.due(start, start + secs(9), 1),
            start + secs(10) + Duration::from_millis(1)
        );
        // Plenty received: the idle timeout is what is due.
        assert_eq!(
            deadline.due(start, start + secs(30), 1_000_000),
            start + secs(40)
        );
        // No minimum rate: only the idle timeout.
        let idle_only = BodyDeadline {
            min_rate: 0,
            ..deadline
        };
        assert_eq!(idle_only.due(start, start + secs(9), 1), start + secs(19));
    }
}

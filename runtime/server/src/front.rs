//! The HTTP front end: accepts connections within the node's caps, serves
//! each (HTTP/1.1 or HTTP/2 with prior knowledge, detected per connection)
//! under deadlines (`front/conn.rs`), passes each request through the edge
//! phase (`edge.rs`) to its app, and adds `x-request-id` to every response.

mod caps;
mod conn;

pub(crate) use caps::ConnectionCaps;
pub(crate) use conn::{Deadlines, Driver};

use crate::cached::Handler;
use crate::config::HttpConfig;
use crate::edge::{self, Admission, Admitted, BodyTimedOut, Edge, Refusal};
use crate::table::AppTable;
use bytes::Bytes;
use caps::RateLimitedLog;
use http::header::{CONNECTION, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use outpost_core::{App, Failure, RequestId, RequestMeta, ResponseBody};
use outpost_host::cache::CachedRequest;
use outpost_host::client::TrustedProxies;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Everything the front end's workers share.
pub(crate) struct Front {
    table: Arc<AppTable>,
    edge: Edge,
    trusted_proxies: TrustedProxies,
    driver: Arc<Driver>,
    caps: Arc<ConnectionCaps>,
    shutdown_timeout: Duration,
    /// The admin API's connection cap: descriptors kept for it.
    admin_connections: usize,
}

/// File descriptors kept beyond those open now, the apps' artifacts and the
/// admin API's connections: for files (uploads, the store, the audit log),
/// a compile, the next deployed apps, and a connection accepted past a cap
/// before it is closed.
const SPARE_DESCRIPTORS: u64 = 64;

impl Front {
    pub(crate) fn new(table: Arc<AppTable>, http: &HttpConfig, admin_connections: usize) -> Self {
        let deadlines = Deadlines {
            handshake: http.handshake_timeout,
            header: http.header_timeout,
            keepalive: http.keepalive_timeout,
            http2_idle: http.http2_idle_timeout,
            http2_ping_interval: http.http2_ping_interval,
            http2_ping_timeout: http.http2_ping_timeout,
            send: http.send_timeout,
        };
        Self {
            table,
            edge: Edge::new(http),
            trusted_proxies: http.trusted_proxies.clone(),
            driver: Arc::new(Driver::new(deadlines, false)),
            caps: Arc::new(ConnectionCaps::new(
                http.max_connections,
                http.max_connections_per_ip,
            )),
            shutdown_timeout: http.shutdown_timeout,
            admin_connections,
        }
    }

    /// The front end's connection counters, for `/v1/stats`.
    pub(crate) fn stats(&self) -> serde_json::Value {
        self.caps.counters.to_json(self.caps.open())
    }

    /// Makes client connections fit the process's file descriptors, so
    /// that running out of them never stops the admin API or the node's own
    /// files: raises the soft limit to the hard one (as nginx and Go
    /// programs do), then keeps back the descriptors open now (listeners,
    /// the store, loaded apps' artifacts), one per app for artifacts mapped
    /// later (`lazy_load`), the admin API's connections and a spare, and
    /// lowers the connection cap (saying so) if what is left is smaller.
    /// Called at start and after every activation: each app served holds
    /// its artifact open.
    pub(crate) fn fit_descriptors(&self) -> anyhow::Result<()> {
        use rustix::process::{Resource, getrlimit, setrlimit};
        let mut limit = getrlimit(Resource::Nofile);
        if limit.current < limit.maximum {
            limit.current = limit.maximum;
            if let Err(err) = setrlimit(Resource::Nofile, limit) {
                tracing::debug!("cannot raise the open files limit: {err}");
                limit = getrlimit(Resource::Nofile);
            }
        }
        let Some(allowed) = limit.current else {
            return Ok(());
        };
        let apps = self.table.list().len() as u64;
        let admin = self.admin_connections as u64;
        let open = std::fs::read_dir("/proc/self/fd").map_or(0, |entries| entries.count()) as u64;
        let reserved = open + apps + admin + SPARE_DESCRIPTORS;
        let budget = allowed.saturating_sub(reserved);
        if budget < 16 {
            anyhow::bail!(
                "the process may open only {allowed} files (ulimit -n), and the node needs {reserved} for itself \
                 ({open} open, {apps} apps, {admin} admin connections, {SPARE_DESCRIPTORS} spare) \
                 plus some for clients; raise the limit (LimitNOFILE= in the systemd unit, or `ulimit -n`)"
            );
        }
        let budget = usize::try_from(budget).unwrap_or(usize::MAX);
        if let Some(was) = self.caps.lower_max_total(budget) {
            tracing::warn!(
                "http.max_connections lowered from {was} to {budget} to fit the process's file descriptors; \
                 raise the limit (LimitNOFILE= in the systemd unit, or `ulimit -n`) to allow more"
            );
        }
        Ok(())
    }
}

/// Serves the front end on one worker's listener until `shutdown`
/// resolves, then lets in-flight requests finish (up to
/// `http.shutdown_timeout`).
pub(crate) async fn serve(
    listener: TcpListener,
    front: Arc<Front>,
    shutdown: impl Future<Output = ()>,
) {
    let handler = {
        let front = front.clone();
        move |request, peer| handle(&front, request, peer)
    };
    accept_loop(
        listener,
        &front.caps,
        front.driver.clone(),
        handler,
        shutdown,
        front.shutdown_timeout,
        "front end",
    )
    .await;
}

/// Accepts connections within `caps` and serves each with `driver` until
/// `shutdown` resolves; then waits up to `drain` for open connections to
/// finish their requests. Shared by the front end and the admin API.
pub(crate) async fn accept_loop<F, Fut, B>(
    listener: TcpListener,
    caps: &Arc<ConnectionCaps>,
    driver: Arc<Driver>,
    handler: F,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
    what: &'static str,
) where
    F: Fn(Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (stop_tx, stop_rx) = watch::channel(false);
    let accept_errors = RateLimitedLog::new(Duration::from_secs(10));
    let mut backoff = ACCEPT_BACKOFF_MIN;
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => {
                    backoff = ACCEPT_BACKOFF_MIN;
                    accepted
                }
                Err(err) => {
                    // Out of file descriptors, typically: back off (up to a
                    // second) and keep serving the connections we have; one
                    // log line per 10 s, however many attempts fail.
                    caps.counters.accept_errors.fetch_add(1, Ordering::Relaxed);
                    accept_errors.warn(|suppressed| format!(
                        "{what}: accept failed: {err}; backing off (and {suppressed} more failures since the last such line)"
                    ));
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Beyond a cap the connection is closed at once: it costs a
        // descriptor for the moment of the accept, nothing more.
        let Ok(admitted) = caps.admit(peer) else {
            continue;
        };
        let driver = driver.clone();
        let handler = handler.clone();
        let stop = stop_rx.clone();
        let counters = caps.clone();
        tokio::spawn(async move {
            driver
                .serve(stream, peer, &counters.counters, handler, stop)
                .await;
            drop(admitted);
        });
    }
    drop(listener);
    drop(stop_rx);
    let _ = stop_tx.send(true);
    tokio::select! {
        () = stop_tx.closed() => tracing::info!("{what}: all connections drained"),
        () = tokio::time::sleep(drain) => {
            tracing::warn!("{what}: connections still open after {drain:?}; closing them");
        }
    }
}

/// The first pause after a failed accept, doubled on each failure in a row.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// The longest pause after a failed accept.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// A request's answer: made at once when the edge decides it without
/// waiting (a refusal, a cache hit), else a boxed future; either way the
/// future hyper moves into place for every request stays small.
enum Answer {
    Now(Option<Response<ResponseBody>>),
    Later(Pin<Box<dyn Future<Output = Response<ResponseBody>> + Send>>),
}

impl Answer {
    fn now(response: Response<ResponseBody>) -> Self {
        Self::Now(Some(response))
    }

    fn later(answer: impl Future<Output = Response<ResponseBody>> + Send + 'static) -> Self {
        Self::Later(Box::pin(answer))
    }
}

impl Future for Answer {
    type Output = Response<ResponseBody>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Self::Now(response) => Poll::Ready(
                response
                    .take()
                    .expect("an answer is polled until it is ready, once"),
            ),
            Self::Later(answer) => answer.as_mut().poll(cx),
        }
    }
}

/// One request through the edge phase to its app (or the cache in front
/// of it), with a fresh request id.
fn handle(front: &Arc<Front>, request: Request<Incoming>, peer: SocketAddr) -> Answer {
    let meta = RequestMeta {
        id: RequestId::next(),
        client: Some(front.trusted_proxies.client(peer, request.headers())),
        // The front end speaks plain HTTP until TLS termination lands.
        https: false,
    };
    let admission = front.edge.admit(&front.table, request, meta.client);
    proceed(front, admission, meta)
}

/// The rest of a request's way once the edge decided on it.
fn proceed(front: &Arc<Front>, admission: Result<Admission, Refusal>, meta: RequestMeta) -> Answer {
    match admission {
        Err(refusal) => Answer::now(refusal_response(&refusal, meta.id)),
        Ok(Admission::Admitted(admitted)) => serve_admitted(admitted, meta),
        Ok(Admission::Body(first)) => {
            let front = front.clone();
            Answer::later(async move {
                match front.edge.read_body(first).await {
                    Ok(admitted) => serve_admitted(admitted, meta).await,
                    Err(refusal) => refusal_response(&refusal, meta.id),
                }
            })
        }
        Ok(Admission::FetchKeys(wait)) => {
            let front = front.clone();
            Answer::later(async move {
                let request = wait.fetched().await;
                // Admitted again with the keys fetched; a second fetch is
                // not due so soon, so this decides.
                match front.edge.admit(&front.table, request, meta.client) {
                    Ok(Admission::FetchKeys(_)) => refusal_response(
                        &Refusal::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "the token's keys could not be fetched; try again shortly",
                        ),
                        meta.id,
                    ),
                    admission => proceed(&front, admission, meta).await,
                }
            })
        }
    }
}

/// An admitted request's answer: from the app's cache when it is in front
/// and holds a usable response, else from the app's handler.
fn serve_admitted(admitted: Admitted, meta: RequestMeta) -> Answer {
    let Admitted {
        app,
        request,
        body_timed_out,
        fields,
    } = admitted;
    let finished = Finished {
        body_timed_out,
        fields,
        id: meta.id,
    };
    if !app.cache().rules().in_front {
        return Answer::later(async move {
            let outcome = app.handle(request, meta).await;
            finished.response(outcome)
        });
    }
    match through_cache(&app, meta).lookup(&request) {
        Ok(hit) => Answer::now(finished.response(Ok(hit))),
        Err(miss) => Answer::later(async move {
            let outcome = through_cache(&app, meta).ask(request, miss).await;
            finished.response(outcome)
        }),
    }
}

/// `app`'s cache in front of its handler, for request `meta`.
fn through_cache(app: &App, meta: RequestMeta) -> CachedRequest<'_, Handler> {
    CachedRequest {
        policy: app.cache(),
        origin: Handler {
            app: app.clone(),
            meta,
        },
        app: app.name(),
        https: meta.https,
        id: meta.id,
    }
}

/// What the edge knows about a request when its app's answer comes.
struct Finished {
    body_timed_out: BodyTimedOut,
    /// Fields the edge adds (`RateLimit`).
    fields: Option<Box<HeaderMap>>,
    id: RequestId,
}

impl Finished {
    /// The response to send for `outcome`, with the request id and the
    /// edge's fields.
    fn response(self, outcome: Result<Response<ResponseBody>, Failure>) -> Response<ResponseBody> {
        if self.body_timed_out.happened() {
            return refusal_response(&edge::body_timeout(), self.id);
        }
        let mut response = match outcome {
            Ok(mut response) => {
                response
                    .headers_mut()
                    .insert(X_REQUEST_ID, header_value(self.id));
                response
            }
            Err(failure) => {
                let mut refusal = Refusal::new(failure.status(), failure.public_reason());
                refusal.retry_after = failure.retry_after();
                refusal_response(&refusal, self.id)
            }
        };
        if let Some(fields) = self.fields {
            add_fields(response.headers_mut(), *fields);
        }
        response
    }
}

/// Appends `fields` to `headers` (a `HeaderMap`'s own `extend` replaces
/// a name's values instead of adding to them).
fn add_fields(headers: &mut HeaderMap, fields: HeaderMap) {
    let mut name = None;
    for (next, value) in fields {
        if next.is_some() {
            name = next;
        }
        if let Some(name) = &name {
            headers.append(name, value);
        }
    }
}

/// A response made by the host itself (refused at the edge, or a guest
/// failure): the reason as plain text, with the request id to quote in a
/// bug report.
fn refusal_response(refusal: &Refusal, request_id: RequestId) -> Response<ResponseBody> {
    let body = format!("{}\nrequest id: {request_id}\n", refusal.reason);
    let mut response = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = refusal.status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(X_REQUEST_ID, header_value(request_id));
    if let Some(seconds) = refusal.retry_after {
        headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
    }
    if let Some(fields) = &refusal.fields {
        add_fields(headers, HeaderMap::clone(fields));
    }
    if refusal.close {
        // HTTP/1.1: the request body was not read to its end, so the
        // connection cannot carry another request. (HTTP/2 ignores it.)
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

fn header_value(request_id: RequestId) -> HeaderValue {
    HeaderValue::from_bytes(&request_id.hex()).expect("hex digits are a valid header value")
}

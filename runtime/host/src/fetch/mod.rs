//! Upstream fetch: `wasi:http/outgoing-handler`, pooled and policy-checked.
//!
//! - [`FetchService`], one per node: the connection pool (keep-alive,
//!   HTTP/2 by ALPN, a bound per origin), the resolver and the private-range
//!   rule, built from node.toml's `[outbound]`.
//! - [`FetchPolicy`], one per app version: `allowed_outbound_hosts` parsed
//!   into rules, and the app's [`FetchLimits`].
//! - [`FetchCtx`], one per request, in the Store: the handles above and
//!   the request's counters. It is the `WasiHttpHooks` wasmtime-wasi-http
//!   calls for every outgoing request.

mod address;
mod allow;
mod backend;
mod body;
mod connect;

pub use address::{Host, PrivateAllowance, is_public};
pub use allow::{Destination, OutboundRule};
pub use backend::{
    BACKEND_SUFFIX, Backend, BackendSpec, Balance, EndpointStats, HashKey, HealthCheck,
};

use crate::cache::{CachePolicy, CachedRequest, Origin, strip_hop_by_hop};
use crate::{RequestId, RequestMeta};
use backend::{HealthChecker, backend_name};
use body::UpstreamBody;
use bytes::Bytes;
use connect::{
    CONNECT_SCOPE, ConnectError, ConnectProgress, ConnectScope, Connector, ConnectorConfig,
};
use http_body_util::{BodyExt, Empty, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::collections::BTreeMap;
use std::error::Error as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Semaphore;
use wasmtime_wasi_http::{
    DEFAULT_FORBIDDEN_HEADERS, Error, RequestOptions, WasiBody, WasiHttpHooks,
};

/// Node-wide settings of outbound requests (`[outbound]` in node.toml).
#[derive(Clone, Debug)]
pub struct FetchConfig {
    /// Private ranges outbound requests may reach.
    pub allow_private: PrivateAllowance,
    /// Certificates trusted besides the webpki roots (PEM, DER-decoded).
    pub extra_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// How long a DNS lookup may take.
    pub dns_timeout: Duration,
    /// An idle pooled connection is closed after this long.
    pub idle_timeout: Duration,
    /// Idle connections kept per origin.
    pub max_idle_per_origin: usize,
    /// Connections open per origin at once; more requests wait for one
    /// (within their connect timeout).
    pub max_connections_per_origin: usize,
}

impl Default for FetchConfig {
    fn default() -> Self {
        Self {
            allow_private: PrivateAllowance::default(),
            extra_roots: Vec::new(),
            dns_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(90),
            max_idle_per_origin: 64,
            max_connections_per_origin: 256,
        }
    }
}

/// What one request of an app may do outbound. A guest's own
/// `request-options` can lower the timeouts, never raise them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchLimits {
    /// Until a connection to the origin is open (TLS included).
    pub connect_timeout: Duration,
    /// From the request being sent until the response head arrives.
    pub first_byte_timeout: Duration,
    /// Between two chunks of the response body.
    pub between_bytes_timeout: Duration,
    /// Outbound requests one incoming request may make.
    pub subrequests: u32,
    /// Outbound requests in flight at once per incoming request; more wait.
    pub concurrency: u32,
    /// Bytes of one response body.
    pub response_body: u64,
}

impl Default for FetchLimits {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            first_byte_timeout: Duration::from_secs(30),
            between_bytes_timeout: Duration::from_secs(30),
            subrequests: 32,
            concurrency: 8,
            response_body: 128 << 20,
        }
    }
}

impl FetchLimits {
    /// The most an app may ask for unless the operator says otherwise.
    pub fn node_maxima() -> Self {
        Self {
            connect_timeout: Duration::from_secs(30),
            first_byte_timeout: Duration::from_secs(120),
            between_bytes_timeout: Duration::from_secs(120),
            subrequests: 1000,
            concurrency: 64,
            response_body: 1 << 30,
        }
    }

    /// No maxima.
    pub fn unbounded() -> Self {
        Self {
            connect_timeout: Duration::MAX,
            first_byte_timeout: Duration::MAX,
            between_bytes_timeout: Duration::MAX,
            subrequests: u32::MAX,
            concurrency: u32::MAX,
            response_body: u64::MAX,
        }
    }

    /// The defaults, lowered to `maxima`.
    pub fn defaults_within(maxima: &Self) -> Self {
        let defaults = Self::default();
        Self {
            connect_timeout: defaults.connect_timeout.min(maxima.connect_timeout),
            first_byte_timeout: defaults.first_byte_timeout.min(maxima.first_byte_timeout),
            between_bytes_timeout: defaults
                .between_bytes_timeout
                .min(maxima.between_bytes_timeout),
            subrequests: defaults.subrequests.min(maxima.subrequests),
            concurrency: defaults.concurrency.min(maxima.concurrency),
            response_body: defaults.response_body.min(maxima.response_body),
        }
    }

    /// The timeouts of one request: these limits, lowered by the guest's.
    fn timeouts(&self, options: Option<&RequestOptions>) -> (Duration, Duration, Duration) {
        let lower = |limit: Duration, asked: Option<Duration>| {
            asked.map_or(limit, |asked| asked.min(limit))
        };
        let options = options.copied().unwrap_or_default();
        (
            lower(self.connect_timeout, options.connect_timeout),
            lower(self.first_byte_timeout, options.first_byte_timeout),
            lower(self.between_bytes_timeout, options.between_bytes_timeout),
        )
    }
}

/// An app's outbound policy, resolved when the app is loaded (see
/// [`FetchService::policy`]).
#[derive(Debug, Default)]
pub struct FetchPolicy {
    /// Where its requests may go; empty: nowhere.
    allowed: Vec<OutboundRule>,
    /// What each of its requests may do.
    limits: FetchLimits,
    /// Its named backends, by name.
    backends: BTreeMap<String, Arc<Backend>>,
}

impl FetchPolicy {
    fn allows(&self, destination: &Destination) -> bool {
        self.allowed.iter().any(|rule| rule.allows(destination))
    }

    /// Its backends, for the admin API.
    pub fn backends(&self) -> impl Iterator<Item = &Arc<Backend>> {
        self.backends.values()
    }
}

/// The largest request body of a GET, HEAD, OPTIONS or TRACE request to a
/// backend: such requests are kept whole so that a failed one can be sent
/// again to another endpoint.
const RETRY_BODY_MAX: usize = 64 << 10;

/// Counters of the node's outbound requests.
#[derive(Debug, Default)]
pub struct FetchStats {
    sent: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
}

/// The node's outbound HTTP client. Built once at start; shared by every
/// app and request.
pub struct FetchService {
    client: Client<Connector, WasiBody>,
    connector: Connector,
    health: HealthChecker,
    stats: FetchStats,
}

impl std::fmt::Debug for FetchService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FetchService").finish_non_exhaustive()
    }
}

impl FetchService {
    /// Builds the pool. Must run inside a Tokio runtime only when requests
    /// are made, not to build.
    pub fn new(config: &FetchConfig) -> Result<Self, String> {
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        for certificate in &config.extra_roots {
            roots
                .add(certificate.clone())
                .map_err(|err| format!("a CA certificate cannot be used: {err}"))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|err| format!("TLS setup failed: {err}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let connector = Connector::new(ConnectorConfig {
            allow_private: config.allow_private.clone(),
            tls: Arc::new(tls),
            dns_timeout: config.dns_timeout,
            default_connect_timeout: FetchLimits::default().connect_timeout,
            max_connections_per_origin: config.max_connections_per_origin,
        });
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(config.idle_timeout)
            .pool_max_idle_per_host(config.max_idle_per_origin)
            // A request on a pooled connection the origin closed meanwhile
            // is sent again on a fresh one (hyper only does this when no
            // byte of it was written).
            .retry_canceled_requests(true)
            .build(connector.clone());
        let health = {
            let client = client.clone();
            HealthChecker::start(move |endpoint, check| {
                health_check(client.clone(), endpoint, check)
            })?
        };
        Ok(Self {
            client,
            connector,
            health,
            stats: FetchStats::default(),
        })
    }

    /// An app's policy: its allowlist and limits, and its backends, whose
    /// health checks start now and stop when the policy is dropped.
    pub fn policy(
        &self,
        allowed: Vec<OutboundRule>,
        limits: FetchLimits,
        backends: &[BackendSpec],
    ) -> FetchPolicy {
        let backends = backends
            .iter()
            .map(|spec| {
                let backend = Arc::new(Backend::new(spec.clone()));
                self.health.watch(&backend);
                (spec.name.clone(), backend)
            })
            .collect();
        FetchPolicy {
            allowed,
            limits,
            backends,
        }
    }

    /// A GET of `url` made by the node itself (a JWT policy's key set, say),
    /// through the pool and its private-range rule, the whole answer within
    /// `timeout` and its body within `max_bytes`.
    pub async fn get_document(
        &self,
        url: &http::Uri,
        timeout: Duration,
        max_bytes: usize,
    ) -> Result<http::Response<Bytes>, String> {
        let destination = Destination::of(url)?;
        let uri = normalised_uri(url, &destination).map_err(|err| err.to_string())?;
        let request = http::Request::get(uri)
            .header(http::header::ACCEPT, "application/json")
            .body(
                Empty::<Bytes>::new()
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            )
            .map_err(|err| err.to_string())?;
        let scope = ConnectScope {
            timeout,
            progress: Arc::new(ConnectProgress::default()),
        };
        self.stats.sent.fetch_add(1, Ordering::Relaxed);
        let exchange = async {
            let response = CONNECT_SCOPE
                .scope(scope, self.client.request(request))
                .await
                .map_err(|err| match err.source() {
                    Some(source) => source.to_string(),
                    None => err.to_string(),
                })?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, max_bytes)
                .collect()
                .await
                .map_err(|_| format!("the answer is larger than {max_bytes} bytes"))?
                .to_bytes();
            Ok(http::Response::from_parts(parts, body))
        };
        let result = tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {} s", timeout.as_secs())));
        if result.is_err() {
            self.stats.failed.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Outbound requests sent, refused and failed, and open connections.
    pub fn stats(&self) -> FetchCounters {
        FetchCounters {
            sent: self.stats.sent.load(Ordering::Relaxed),
            refused: self.stats.refused.load(Ordering::Relaxed),
            failed: self.stats.failed.load(Ordering::Relaxed),
            open_connections: self.connector.open_connections(),
        }
    }
}

/// A snapshot of [`FetchService`]'s counters.
#[derive(Clone, Debug, Default)]
pub struct FetchCounters {
    /// Requests handed to the pool.
    pub sent: u64,
    /// Requests refused before anything was sent (allowlist, limits).
    pub refused: u64,
    /// Requests that failed (connect, TLS, timeouts, protocol).
    pub failed: u64,
    /// Open connections, by origin (`host:port`).
    pub open_connections: Vec<(String, usize)>,
}

/// One request's view of outbound fetch.
pub struct FetchCtx {
    service: Arc<FetchService>,
    policy: Arc<FetchPolicy>,
    /// The app's cache, which requests to a backend with `cache = true`
    /// (or with `outpost-cache: on`) read through.
    cache: Arc<CachePolicy>,
    app: Arc<str>,
    request: Option<RequestMeta>,
    sent: u32,
    in_flight: Arc<Semaphore>,
    refusal_logged: bool,
}

impl FetchCtx {
    /// A context for an instance of `app`; [`FetchCtx::begin`] binds it to
    /// its request.
    pub fn new(
        service: Arc<FetchService>,
        policy: Arc<FetchPolicy>,
        cache: Arc<CachePolicy>,
        app: Arc<str>,
    ) -> Self {
        let in_flight = Arc::new(Semaphore::new(policy.limits.concurrency as usize));
        Self {
            service,
            policy,
            cache,
            app,
            request: None,
            sent: 0,
            in_flight,
            refusal_logged: false,
        }
    }

    /// Binds the context to the request the instance serves.
    pub fn begin(&mut self, request: RequestMeta) {
        self.request = Some(request);
    }

    /// Refuses a request: the guest gets `code`, the log one line per
    /// incoming request (a guest may try many times).
    fn refuse(&mut self, code: Error, destination: &dyn std::fmt::Display, why: &str) -> Error {
        self.service.stats.refused.fetch_add(1, Ordering::Relaxed);
        if !self.refusal_logged {
            self.refusal_logged = true;
            let request_id = self
                .request
                .map(|request| request.id.to_string())
                .unwrap_or_default();
            tracing::warn!(
                app = &*self.app,
                request_id,
                destination = %crate::printable_capped(format_args!("{destination}"), 256),
                "outbound request refused: {why}"
            );
        }
        code
    }
}

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), Error>> + Send>,
                ),
                Error,
            >,
        > + Send,
>;

impl WasiHttpHooks for FetchCtx {
    // The default asks `forbidden_header_filter`, which allocates an `Arc`
    // per call: once for every header of every request and response.
    fn is_forbidden_header(&mut self, name: &http::HeaderName) -> bool {
        DEFAULT_FORBIDDEN_HEADERS.contains(name)
    }

    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> SendFuture {
        let destination = match Destination::of(request.uri()) {
            Ok(destination) => destination,
            Err(why) => {
                let uri = request.uri().to_string();
                let code = self.refuse(Error::HttpRequestUriInvalid, &uri, &why);
                return Box::new(async move { Err(code) });
            }
        };
        let backend = match backend_name(&destination.host) {
            Some(name) => match self.policy.backends.get(name) {
                Some(backend) => Some(backend.clone()),
                None => {
                    let why = format!("the app declares no backend named {name:?}");
                    let code = self.refuse(Error::HttpRequestDenied, &destination, &why);
                    return Box::new(async move { Err(code) });
                }
            },
            None if self.policy.allows(&destination) => None,
            None => {
                let code = self.refuse(
                    Error::HttpRequestDenied,
                    &destination,
                    "not in the app's allowed_outbound_hosts",
                );
                return Box::new(async move { Err(code) });
            }
        };
        let limits = &self.policy.limits;
        if self.sent >= limits.subrequests {
            let why = format!(
                "the request already made {} outbound requests (limits.subrequests)",
                limits.subrequests
            );
            let code = self.refuse(Error::InternalError(Some(why.clone())), &destination, &why);
            return Box::new(async move { Err(code) });
        }
        self.sent += 1;
        if backend.is_none() {
            // The pool keys connections by scheme and authority: the
            // normalised one, so every spelling of an address shares them.
            if let Ok(uri) = normalised_uri(request.uri(), &destination) {
                *request.uri_mut() = uri;
            }
        }
        let (connect, first_byte, between_bytes) = limits.timeouts(options.as_ref());
        let cached = match request.headers_mut().remove(CACHE_CHOICE) {
            Some(choice) if choice == "on" => true,
            Some(choice) if choice == "off" => false,
            _ => backend.as_ref().is_some_and(|backend| backend.spec.cache),
        };
        let outbound = Outbound {
            exchange: Exchange {
                service: self.service.clone(),
                connect,
                first_byte,
            },
            backend,
            client: self.request.and_then(|request| request.client),
            between_bytes,
            cap: limits.response_body,
            in_flight: self.in_flight.clone(),
        };
        let cache = cached.then(|| {
            let id = self
                .request
                .map_or_else(RequestId::next, |request| request.id);
            (self.cache.clone(), self.app.clone(), destination.https, id)
        });
        let send = async move {
            let response = match cache {
                None => outbound.ask(request).await,
                Some((policy, app, https, id)) => {
                    let cached = CachedRequest {
                        policy: &policy,
                        origin: outbound,
                        app: &app,
                        https,
                        id,
                    };
                    match cached.lookup(&request) {
                        Ok(hit) => Ok(hit),
                        Err(miss) => cached.ask(request, miss).await,
                    }
                }
            };
            let done: Box<dyn Future<Output = Result<(), Error>> + Send> =
                Box::new(async { Ok(()) });
            response.map(|response| (response, done))
        };
        // wasmtime runs this in a task of its own: it keeps the request's span.
        Box::new(tracing::Instrument::instrument(
            send,
            tracing::Span::current(),
        ))
    }
}

/// The request header by which a guest asks for its request to read
/// through the app's cache (`on`) or not (`off`), whatever its backend's
/// `cache` says. The host removes it before sending.
pub const CACHE_CHOICE: http::HeaderName = http::HeaderName::from_static("outpost-cache");

/// One outbound request, ready to go: to an endpoint of its backend, or
/// where its URI says, under the request's limits.
#[derive(Clone)]
struct Outbound {
    exchange: Exchange,
    backend: Option<Arc<Backend>>,
    client: Option<std::net::IpAddr>,
    between_bytes: Duration,
    cap: u64,
    in_flight: Arc<Semaphore>,
}

impl Origin for Outbound {
    type Body = WasiBody;
    type Failure = Error;

    async fn ask(
        &self,
        request: http::Request<WasiBody>,
    ) -> Result<http::Response<WasiBody>, Error> {
        let permit = self
            .in_flight
            .clone()
            .acquire_owned()
            .await
            .expect("the in-flight semaphore is never closed");
        let exchange = &self.exchange;
        let result = match &self.backend {
            Some(backend) => exchange.to_backend(backend, request, self.client).await,
            None => exchange.send(request).await,
        };
        let result = result.and_then(|mut response| {
            // Fields about the connection to the origin, not the message
            // (RFC 9110 §7.6.1): neither the guest nor the cache keeps them.
            strip_hop_by_hop(response.headers_mut());
            let declared = response
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
            match declared {
                Some(length) if length > self.cap => {
                    Err(Error::HttpResponseBodySize(Some(self.cap)))
                }
                _ => Ok(response.map(|incoming| {
                    UpstreamBody::new(incoming, self.between_bytes, self.cap, permit).boxed_unsync()
                })),
            }
        });
        if result.is_err() {
            exchange
                .service
                .stats
                .failed
                .fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    async fn ask_again(
        self,
        request: http::Request<()>,
    ) -> Result<http::Response<WasiBody>, Error> {
        let request = request.map(|()| Empty::new().map_err(|never| match never {}).boxed_unsync());
        self.ask(request).await
    }

    fn host<B>(request: &http::Request<B>) -> &str {
        request.uri().host().unwrap_or_default()
    }
}

/// One outbound request's way through the pool, under its timeouts.
#[derive(Clone)]
struct Exchange {
    service: Arc<FetchService>,
    connect: Duration,
    first_byte: Duration,
}

impl Exchange {
    /// Sends `request` to the origin its URI names.
    async fn send(
        &self,
        request: http::Request<WasiBody>,
    ) -> Result<http::Response<hyper::body::Incoming>, Error> {
        self.service.stats.sent.fetch_add(1, Ordering::Relaxed);
        let progress = Arc::new(ConnectProgress::default());
        let scope = ConnectScope {
            timeout: self.connect,
            progress: progress.clone(),
        };
        let send = CONNECT_SCOPE.scope(scope, self.service.client.request(request));
        match until_first_byte(send, &progress, self.connect, self.first_byte).await {
            None => Err(Error::ConnectionReadTimeout),
            Some(Err(err)) => Err(request_error(&err)),
            Some(Ok(response)) => Ok(response),
        }
    }

    /// Sends `request` to an endpoint of `backend`; a GET, HEAD, OPTIONS or
    /// TRACE request that fails (no connection, or 502/503/504) is sent
    /// once more, to another endpoint.
    async fn to_backend(
        &self,
        backend: &Arc<Backend>,
        request: http::Request<WasiBody>,
        client: Option<std::net::IpAddr>,
    ) -> Result<http::Response<hyper::body::Incoming>, Error> {
        let key = backend.key_of(client, request.headers());
        let (parts, body) = request.into_parts();
        let retryable = matches!(
            parts.method,
            http::Method::GET | http::Method::HEAD | http::Method::OPTIONS | http::Method::TRACE
        );
        // A retryable request is kept whole, to be sent twice if need be.
        let (mut body, kept) = if retryable {
            let whole = Limited::new(body, RETRY_BODY_MAX)
                .collect()
                .await
                .map_err(|_| Error::HttpRequestBodySize(Some(RETRY_BODY_MAX as u64)))?
                .to_bytes();
            (None, Some(whole))
        } else {
            (Some(body), None)
        };
        let unavailable = || {
            tracing::warn!(
                backend = %backend.spec.name,
                "no endpoint of the backend is up; the request fails at once"
            );
            Error::DestinationUnavailable
        };
        let first = backend.pick(&key, None).ok_or_else(unavailable)?;
        let mut attempt_body = || match (&kept, body.take()) {
            (Some(kept), _) => Full::new(kept.clone())
                .map_err(|never| match never {})
                .boxed_unsync(),
            (None, Some(body)) => body,
            (None, None) => Empty::new().map_err(|never| match never {}).boxed_unsync(),
        };
        let outcome = self.attempt(backend, first, &parts, attempt_body()).await;
        let failed = match &outcome {
            Ok(response) => is_retryable_status(response.status()),
            Err(_) => true,
        };
        if !(failed && retryable) {
            return outcome;
        }
        let Some(second) = backend.pick(&key, Some(first)) else {
            return outcome;
        };
        tracing::debug!(
            backend = %backend.spec.name,
            "retrying on {}",
            backend.endpoints[second].destination
        );
        self.attempt(backend, second, &parts, attempt_body()).await
    }

    /// One try on endpoint `i` of `backend`, recorded in its counters.
    async fn attempt(
        &self,
        backend: &Arc<Backend>,
        i: usize,
        parts: &http::request::Parts,
        body: WasiBody,
    ) -> Result<http::Response<hyper::body::Incoming>, Error> {
        let endpoint = &backend.endpoints[i].destination;
        let mut request = http::Request::new(body);
        *request.method_mut() = parts.method.clone();
        *request.headers_mut() = parts.headers.clone();
        let authority = endpoint_authority(endpoint);
        *request.uri_mut() = http::Uri::builder()
            .scheme(if endpoint.https { "https" } else { "http" })
            .authority(authority.as_str())
            .path_and_query(parts.uri.path_and_query().map_or("/", |path| path.as_str()))
            .build()
            .map_err(|_| Error::HttpRequestUriInvalid)?;
        // The endpoint sees its own name, as behind nginx's proxy_pass.
        if let Ok(host) = http::HeaderValue::from_str(&authority) {
            request.headers_mut().insert(http::header::HOST, host);
        }
        let in_flight = backend.start(i);
        let outcome = self.send(request).await;
        match &outcome {
            Ok(response) => {
                in_flight.answered();
                backend.record(i, response.status().is_server_error());
            }
            Err(_) => backend.record(i, true),
        }
        outcome
    }
}

/// Answers after which an idempotent request to a backend is tried on
/// another endpoint.
fn is_retryable_status(status: http::StatusCode) -> bool {
    matches!(status.as_u16(), 502..=504)
}

/// `host[:port]` of an endpoint, the port left out when it is the default.
fn endpoint_authority(endpoint: &Destination) -> String {
    let default_port = if endpoint.https { 443 } else { 80 };
    if endpoint.port == default_port {
        endpoint.host.to_string()
    } else {
        format!("{}:{}", endpoint.host, endpoint.port)
    }
}

/// One active health check: GET the endpoint's health path within the
/// check's timeout, through the node's pool (and its private-range rule).
async fn health_check(
    client: Client<Connector, WasiBody>,
    endpoint: Destination,
    check: HealthCheck,
) -> bool {
    let uri = format!(
        "{}://{}{}",
        if endpoint.https { "https" } else { "http" },
        endpoint_authority(&endpoint),
        check.path
    );
    let Ok(request) = http::Request::get(uri).body(
        Empty::<Bytes>::new()
            .map_err(|never| match never {})
            .boxed_unsync(),
    ) else {
        return false;
    };
    let scope = ConnectScope {
        timeout: check.timeout,
        progress: Arc::new(ConnectProgress::default()),
    };
    let exchange = async {
        let response = CONNECT_SCOPE
            .scope(scope, client.request(request))
            .await
            .ok()?;
        let status = response.status().as_u16();
        // Read the body so the connection goes back to the pool.
        let _ = response.into_body().collect().await;
        Some(status)
    };
    matches!(
        tokio::time::timeout(check.timeout, exchange).await,
        Ok(Some(status)) if status == check.expect_status
    )
}

/// `send`'s output, or `None` once `first_byte` passed since the request
/// went out on its connection (a new connection's connect time, bounded by
/// the connector's own timeout, does not count).
async fn until_first_byte<F: Future>(
    send: F,
    progress: &ConnectProgress,
    connect: Duration,
    first_byte: Duration,
) -> Option<F::Output> {
    let sent = tokio::time::Instant::now();
    let mut send = std::pin::pin!(send);
    loop {
        let deadline = progress.first_byte_from(sent, connect) + first_byte;
        tokio::select! {
            output = &mut send => return Some(output),
            () = tokio::time::sleep_until(deadline) => {
                // The deadline only moves later (a connect started, then
                // finished): past the latest one, give up.
                if progress.first_byte_from(sent, connect) + first_byte <= deadline {
                    return None;
                }
            }
        }
    }
}

/// `uri` with its authority written as the policy read it.
fn normalised_uri(uri: &http::Uri, to: &Destination) -> Result<http::Uri, http::Error> {
    let scheme = if to.https { "https" } else { "http" };
    let default_port = if to.https { 443 } else { 80 };
    let authority = if to.port == default_port {
        to.host.to_string()
    } else {
        format!("{}:{}", to.host, to.port)
    };
    http::Uri::builder()
        .scheme(scheme)
        .authority(authority)
        .path_and_query(uri.path_and_query().map_or("/", |path| path.as_str()))
        .build()
}

/// The guest's error code for a failed exchange with the origin.
fn request_error(err: &hyper_util::client::legacy::Error) -> Error {
    let mut source = err.source();
    while let Some(cause) = source {
        if let Some(connect) = cause.downcast_ref::<ConnectError>() {
            return connect.code();
        }
        if let Some(hyper) = cause.downcast_ref::<hyper::Error>() {
            return response_error(hyper);
        }
        source = cause.source();
    }
    if err.is_connect() {
        return Error::DestinationUnavailable;
    }
    Error::HttpProtocolError
}

/// The guest's error code for a hyper error while the response arrives.
fn response_error(err: &hyper::Error) -> Error {
    if err.is_timeout() {
        Error::HttpResponseTimeout
    } else if err.is_incomplete_message() || err.is_closed() || err.is_canceled() {
        Error::HttpResponseIncomplete
    } else if err.is_parse_too_large() {
        Error::HttpResponseHeaderSectionSize(None)
    } else {
        Error::HttpProtocolError
    }
}

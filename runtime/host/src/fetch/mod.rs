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
mod body;
mod connect;

pub use address::{Host, PrivateAllowance, is_public};
pub use allow::{Destination, OutboundRule};

use crate::RequestId;
use body::UpstreamBody;
use connect::{
    CONNECT_SCOPE, ConnectError, ConnectProgress, ConnectScope, Connector, ConnectorConfig,
};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::error::Error as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Semaphore;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

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

/// An app's outbound policy, resolved when the app is loaded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FetchPolicy {
    /// Where its requests may go; empty: nowhere.
    pub allowed: Vec<OutboundRule>,
    /// What each of its requests may do.
    pub limits: FetchLimits,
}

impl FetchPolicy {
    fn allows(&self, destination: &Destination) -> bool {
        self.allowed.iter().any(|rule| rule.allows(destination))
    }
}

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
        Ok(Self {
            client,
            connector,
            stats: FetchStats::default(),
        })
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
    app: Arc<str>,
    request: Option<RequestId>,
    sent: u32,
    in_flight: Arc<Semaphore>,
    refusal_logged: bool,
}

impl FetchCtx {
    /// A context for an instance of `app`; [`FetchCtx::begin`] binds it to
    /// its request.
    pub fn new(service: Arc<FetchService>, policy: Arc<FetchPolicy>, app: Arc<str>) -> Self {
        let in_flight = Arc::new(Semaphore::new(policy.limits.concurrency as usize));
        Self {
            service,
            policy,
            app,
            request: None,
            sent: 0,
            in_flight,
            refusal_logged: false,
        }
    }

    /// Binds the context to the request the instance serves.
    pub fn begin(&mut self, request: RequestId) {
        self.request = Some(request);
    }

    /// Refuses a request: the guest gets `code`, the log one line per
    /// incoming request (a guest may try many times).
    fn refuse(&mut self, code: Error, destination: &dyn std::fmt::Display, why: &str) -> Error {
        self.service.stats.refused.fetch_add(1, Ordering::Relaxed);
        if !self.refusal_logged {
            self.refusal_logged = true;
            let request_id = self.request.map(|id| id.to_string()).unwrap_or_default();
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
        if !self.policy.allows(&destination) {
            let code = self.refuse(
                Error::HttpRequestDenied,
                &destination,
                "not in the app's allowed_outbound_hosts",
            );
            return Box::new(async move { Err(code) });
        }
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
        // The pool keys connections by scheme and authority: the normalised
        // one, so every spelling of an address shares its connections.
        if let Ok(uri) = normalised_uri(request.uri(), &destination) {
            *request.uri_mut() = uri;
        }
        let (connect, first_byte, between_bytes) = limits.timeouts(options.as_ref());
        let cap = limits.response_body;
        let in_flight = self.in_flight.clone();
        let service = self.service.clone();
        Box::new(async move {
            let permit = in_flight
                .acquire_owned()
                .await
                .expect("the in-flight semaphore is never closed");
            service.stats.sent.fetch_add(1, Ordering::Relaxed);
            let progress = Arc::new(ConnectProgress::default());
            let scope = ConnectScope {
                timeout: connect,
                progress: progress.clone(),
            };
            let send = CONNECT_SCOPE.scope(scope, service.client.request(request));
            let result = match until_first_byte(send, &progress, connect, first_byte).await {
                None => Err(Error::ConnectionReadTimeout),
                Some(Err(err)) => Err(request_error(&err)),
                Some(Ok(response)) => {
                    let declared = response
                        .headers()
                        .get(http::header::CONTENT_LENGTH)
                        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
                    match declared {
                        Some(length) if length > cap => Err(Error::HttpResponseBodySize(Some(cap))),
                        _ => Ok(response.map(|incoming| {
                            UpstreamBody::new(incoming, between_bytes, cap, permit).boxed_unsync()
                        })),
                    }
                }
            };
            if result.is_err() {
                service.stats.failed.fetch_add(1, Ordering::Relaxed);
            }
            let done: Box<dyn Future<Output = Result<(), Error>> + Send> =
                Box::new(async { Ok(()) });
            result.map(|response| (response, done))
        })
    }
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

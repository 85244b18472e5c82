//! Opening connections to origins: the host resolves names itself (with a
//! deadline), keeps only addresses the node permits, connects to one of
//! those (so DNS rebinding between check and connect cannot happen), sets
//! TCP_NODELAY, and speaks TLS with ALPN (HTTP/2 when the origin offers it).
//! The connection pool (hyper-util's) calls this when it has no idle
//! connection to reuse.

use super::address::{Host, PrivateAllowance};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

tokio::task_local! {
    /// The request on whose behalf the pool may open a connection: the pool
    /// hands the connector only the URI, but the connect timeout is per
    /// request (the app's limit, perhaps lowered by the guest), and the
    /// request's first-byte deadline starts once its connection is open.
    pub(crate) static CONNECT_SCOPE: ConnectScope;
}

/// A request's connect timeout, and how far its own connect got.
pub(crate) struct ConnectScope {
    pub(crate) timeout: Duration,
    pub(crate) progress: Arc<ConnectProgress>,
}

/// Whether a request made the pool open a connection, and when it opened.
#[derive(Default)]
pub(crate) struct ConnectProgress {
    started: std::sync::atomic::AtomicBool,
    opened: Mutex<Option<tokio::time::Instant>>,
}

impl ConnectProgress {
    /// When the request's first-byte deadline starts: when it was sent on
    /// a pooled connection (`sent`), when its new connection opened, or,
    /// while one is being opened, after the longest that may take.
    pub(crate) fn first_byte_from(
        &self,
        sent: tokio::time::Instant,
        connect_timeout: Duration,
    ) -> tokio::time::Instant {
        if !self.started.load(std::sync::atomic::Ordering::Relaxed) {
            return sent;
        }
        match *self.opened.lock().expect("connect progress lock") {
            Some(opened) => opened,
            None => sent + connect_timeout,
        }
    }
}

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("the URL has no host")]
    NoHost,
    #[error("{0}")]
    BadHost(String),
    #[error("DNS lookup of {0} took longer than {1:?}")]
    DnsTimeout(String, Duration),
    #[error("DNS lookup of {0} failed: {1}")]
    Dns(String, io::Error),
    #[error("{0} has no address")]
    NotFound(String),
    #[error(
        "{host} resolves only to addresses outbound requests may not reach ({addresses}); \
         the operator can open a range with [outbound] allow_private in node.toml"
    )]
    Prohibited { host: String, addresses: String },
    #[error("connecting to {0} took longer than {1:?}")]
    Timeout(String, Duration),
    #[error("connecting to {0} failed: {1}")]
    Io(String, io::Error),
    #[error("TLS with {0} failed: {1}")]
    Tls(String, io::Error),
    #[error("{0} already has {1} connections open from this node; waited {2:?} for one to close")]
    OriginBusy(String, usize, Duration),
}

impl ConnectError {
    /// The `wasi:http` error code the guest sees.
    pub(crate) fn code(&self) -> wasmtime_wasi_http::Error {
        use wasmtime_wasi_http::Error as E;
        match self {
            Self::NoHost | Self::BadHost(_) => E::HttpRequestUriInvalid,
            Self::DnsTimeout(..) => E::DnsTimeout,
            Self::Dns(..) => E::DnsError {
                rcode: None,
                info_code: None,
            },
            Self::NotFound(_) => E::DestinationNotFound,
            Self::Prohibited { .. } => E::DestinationIpProhibited,
            Self::Timeout(..) | Self::OriginBusy(..) => E::ConnectionTimeout,
            Self::Io(_, err) if err.kind() == io::ErrorKind::ConnectionRefused => {
                E::ConnectionRefused
            }
            Self::Io(..) => E::DestinationUnavailable,
            Self::Tls(_, err) => {
                let certificate = err
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                    .is_some_and(|err| {
                        matches!(
                            err,
                            rustls::Error::InvalidCertificate(_)
                                | rustls::Error::NoCertificatesPresented
                        )
                    });
                if certificate {
                    E::TlsCertificateError
                } else {
                    E::TlsProtocolError
                }
            }
        }
    }
}

/// Node-wide settings of the connector.
pub(crate) struct ConnectorConfig {
    pub(crate) allow_private: PrivateAllowance,
    pub(crate) tls: Arc<rustls::ClientConfig>,
    pub(crate) dns_timeout: Duration,
    pub(crate) default_connect_timeout: Duration,
    pub(crate) max_connections_per_origin: usize,
}

/// The pool's connector. Clones share everything.
#[derive(Clone)]
pub(crate) struct Connector {
    config: Arc<ConnectorConfig>,
    origins: Arc<OriginSlots>,
}

impl Connector {
    pub(crate) fn new(config: ConnectorConfig) -> Self {
        Self {
            config: Arc::new(config),
            origins: Arc::new(OriginSlots::default()),
        }
    }

    /// Connections open to origins right now, by `host:port`.
    pub(crate) fn open_connections(&self) -> Vec<(String, usize)> {
        self.origins.open(self.config.max_connections_per_origin)
    }
}

impl tower_service::Service<http::Uri> for Connector {
    type Response = Upstream;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Upstream, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        // Read here, in the requesting task: the pool may finish the
        // connection in a task of its own.
        let (timeout, progress) = CONNECT_SCOPE
            .try_with(|scope| (scope.timeout, Some(scope.progress.clone())))
            .unwrap_or((self.config.default_connect_timeout, None));
        if let Some(progress) = &progress {
            progress
                .started
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let connector = self.clone();
        Box::pin(async move {
            let upstream = connector.connect(uri, timeout).await?;
            if let Some(progress) = progress {
                *progress.opened.lock().expect("connect progress lock") =
                    Some(tokio::time::Instant::now());
            }
            Ok(upstream)
        })
    }
}

impl Connector {
    async fn connect(self, uri: http::Uri, timeout: Duration) -> Result<Upstream, ConnectError> {
        let authority = uri.authority().ok_or(ConnectError::NoHost)?;
        let https = uri.scheme_str() == Some("https");
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let host = Host::parse(authority.host()).map_err(ConnectError::BadHost)?;
        let origin = format!("{host}:{port}");
        let deadline = tokio::time::Instant::now() + timeout;

        let slot = self
            .origins
            .acquire(&origin, self.config.max_connections_per_origin, deadline)
            .await
            .ok_or_else(|| {
                ConnectError::OriginBusy(
                    origin.clone(),
                    self.config.max_connections_per_origin,
                    timeout,
                )
            })?;
        let addresses = self.resolve(&host, port).await?;
        let stream = connect_any(&origin, &addresses, deadline, timeout).await?;
        let _ = stream.set_nodelay(true);
        if !https {
            return Ok(Upstream {
                io: TokioIo::new(Stream::Plain(stream)),
                h2: false,
                _slot: slot,
            });
        }
        let name = match &host {
            Host::Name(name) => ServerName::try_from(name.clone())
                .map_err(|err| ConnectError::BadHost(err.to_string()))?,
            Host::Ip(ip) => ServerName::from(*ip),
        };
        let tls = TlsConnector::from(self.config.tls.clone());
        let stream = tokio::time::timeout_at(deadline, tls.connect(name, stream))
            .await
            .map_err(|_| ConnectError::Timeout(origin.clone(), timeout))?
            .map_err(|err| ConnectError::Tls(origin.clone(), err))?;
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        Ok(Upstream {
            io: TokioIo::new(Stream::Tls(Box::new(stream))),
            h2,
            _slot: slot,
        })
    }

    /// The addresses of `host` the node may connect to.
    async fn resolve(&self, host: &Host, port: u16) -> Result<Vec<SocketAddr>, ConnectError> {
        let found: Vec<SocketAddr> = match host {
            Host::Ip(ip) => vec![SocketAddr::new(*ip, port)],
            Host::Name(name) => {
                let lookup = tokio::net::lookup_host((name.as_str(), port));
                tokio::time::timeout(self.config.dns_timeout, lookup)
                    .await
                    .map_err(|_| ConnectError::DnsTimeout(name.clone(), self.config.dns_timeout))?
                    .map_err(|err| ConnectError::Dns(name.clone(), err))?
                    .collect()
            }
        };
        if found.is_empty() {
            return Err(ConnectError::NotFound(host.to_string()));
        }
        let permitted: Vec<SocketAddr> = found
            .iter()
            .filter(|address| self.config.allow_private.permits(address.ip()))
            // Connect to the address as checked: a mapped IPv6 address
            // becomes the IPv4 address it names.
            .map(|address| SocketAddr::new(address.ip().to_canonical(), address.port()))
            .collect();
        if permitted.is_empty() {
            let addresses = found
                .iter()
                .map(|address| address.ip().to_string())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(ConnectError::Prohibited {
                host: host.to_string(),
                addresses,
            });
        }
        Ok(permitted)
    }
}

/// Tries each address in turn until one connects or the deadline passes.
async fn connect_any(
    origin: &str,
    addresses: &[SocketAddr],
    deadline: tokio::time::Instant,
    timeout: Duration,
) -> Result<TcpStream, ConnectError> {
    let mut last_error = None;
    for address in addresses {
        match tokio::time::timeout_at(deadline, TcpStream::connect(address)).await {
            Err(_) => return Err(ConnectError::Timeout(origin.to_owned(), timeout)),
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(err)) => last_error = Some(err),
        }
    }
    Err(ConnectError::Io(
        origin.to_owned(),
        last_error.unwrap_or_else(|| io::Error::other("no address to connect to")),
    ))
}

/// Connections open per origin, bounded. A permit lives as long as its
/// connection.
#[derive(Default)]
struct OriginSlots {
    origins: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// Origins remembered before unused entries are swept.
const ORIGINS_KEPT: usize = 1024;

impl OriginSlots {
    async fn acquire(
        &self,
        origin: &str,
        max: usize,
        deadline: tokio::time::Instant,
    ) -> Option<OwnedSemaphorePermit> {
        let semaphore = {
            let mut origins = self.origins.lock().expect("origin slots lock");
            if origins.len() >= ORIGINS_KEPT {
                origins.retain(|_, slots| slots.available_permits() < max);
            }
            origins
                .entry(origin.to_owned())
                .or_insert_with(|| Arc::new(Semaphore::new(max)))
                .clone()
        };
        if let Ok(permit) = semaphore.clone().try_acquire_owned() {
            return Some(permit);
        }
        tokio::time::timeout_at(deadline, semaphore.acquire_owned())
            .await
            .ok()?
            .ok()
    }

    fn open(&self, max: usize) -> Vec<(String, usize)> {
        let origins = self.origins.lock().expect("origin slots lock");
        let mut open: Vec<_> = origins
            .iter()
            .map(|(origin, slots)| (origin.clone(), max - slots.available_permits()))
            .filter(|(_, open)| *open > 0)
            .collect();
        open.sort();
        open
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// One connection to an origin, as the pool holds it.
pub(crate) struct Upstream {
    io: TokioIo<Stream>,
    h2: bool,
    _slot: OwnedSemaphorePermit,
}

impl Connection for Upstream {
    fn connected(&self) -> Connected {
        let connected = Connected::new();
        if self.h2 {
            connected.negotiated_h2()
        } else {
            connected
        }
    }
}

impl hyper::rt::Read for Upstream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for Upstream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Self::Tls(stream) => Pin::new(stream).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Self::Tls(stream) => Pin::new(stream).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Self::Tls(stream) => Pin::new(stream).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Self::Tls(stream) => Pin::new(stream).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            Self::Tls(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(stream) => stream.is_write_vectored(),
            Self::Tls(stream) => stream.is_write_vectored(),
        }
    }
}

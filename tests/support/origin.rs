//! Origins for the upstream fetch tests: real hyper servers on loopback,
//! in a thread of their own, counting the connections they accept.
//!
//! | path | answer |
//! |---|---|
//! | `/hello` | 200 `hello from origin over HTTP/1.1` (or `HTTP/2.0`); counted |
//! | `/healthz` | 200 `healthy` |
//! | `/slow-head?ms=N` | the head after N ms |
//! | `/stall-body` | the head and one chunk, then nothing |
//! | `/big?mib=N` | N MiB, streamed in 64 KiB chunks |
//! | `/upload` | `got N` for an N-byte request body |
//! | `/concurrent` | waits 200 ms; the most requests in flight at once is counted |
//! | `/status?code=N` | status N |
//! | `/jwks` | the key set given to [`Origin::set_jwks`], `Cache-Control: max-age=300`; counted |
//! | `/cacheable?max_age=N` | `Cache-Control: max-age=N`, `ETag: "v1"`, `Cache-Tag: product`; `304` to `If-None-Match: "v1"`; counted |

use bytes::Bytes;
use http_body_util::{BodyExt, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A running origin. Stops when dropped.
pub struct Origin {
    addr: SocketAddr,
    counters: Arc<Counters>,
    /// The CA certificate (PEM) a TLS origin's certificate is signed by.
    pub ca_pem: Option<String>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct Counters {
    accepted: AtomicUsize,
    hellos: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    cacheables: AtomicUsize,
    jwks: std::sync::Mutex<String>,
    jwks_fetches: AtomicUsize,
}

impl Origin {
    /// A plain-HTTP origin (HTTP/1.1) on 127.0.0.1.
    pub fn http() -> Self {
        Self::start(None, None)
    }

    /// An HTTP origin on a given address (to bring one back on its port).
    pub fn http_on(addr: SocketAddr) -> Self {
        Self::start(Some(addr), None)
    }

    /// A TLS origin for `name` (HTTP/2 and HTTP/1.1 by ALPN), its
    /// certificate signed by a fresh test CA.
    pub fn https(name: &str) -> Self {
        let ca_key = rcgen::KeyPair::generate().expect("a CA key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "outpost test CA");
        let ca = ca_params.self_signed(&ca_key).expect("a CA certificate");
        let key = rcgen::KeyPair::generate().expect("a server key");
        let params = rcgen::CertificateParams::new(vec![name.to_owned()]).expect("server params");
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let certificate = params
            .signed_by(&key, &issuer)
            .expect("a server certificate");
        let tls = Tls {
            chain: vec![certificate.der().clone()],
            key: rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        };
        let mut origin = Self::start(None, Some(tls));
        origin.ca_pem = Some(ca.pem());
        origin
    }

    fn start(addr: Option<SocketAddr>, tls: Option<Tls>) -> Self {
        let listener = std::net::TcpListener::bind(addr.unwrap_or(([127, 0, 0, 1], 0).into()))
            .expect("the origin binds");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let counters = Arc::new(Counters::default());
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let acceptor = tls.map(|tls| {
            let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(tls.chain, tls.key)
            .expect("the test certificate is usable");
            config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            tokio_rustls::TlsAcceptor::from(Arc::new(config))
        });
        let thread_counters = counters.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(serve(listener, acceptor, thread_counters, stopped));
        });
        Self {
            addr,
            counters,
            ca_pem: None,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// From now on, `/jwks` answers `json`.
    pub fn set_jwks(&self, json: &str) {
        *self.counters.jwks.lock().unwrap() = json.to_owned();
    }

    /// Requests for `/jwks` so far.
    pub fn jwks_fetches(&self) -> usize {
        self.counters.jwks_fetches.load(Ordering::SeqCst)
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.counters.accepted.load(Ordering::SeqCst)
    }

    /// `/hello` requests answered so far.
    pub fn hellos(&self) -> usize {
        self.counters.hellos.load(Ordering::SeqCst)
    }

    /// `/cacheable` requests answered so far (conditional ones included).
    pub fn cacheables(&self) -> usize {
        self.counters.cacheables.load(Ordering::SeqCst)
    }

    /// The most `/concurrent` requests it had in flight at once.
    pub fn max_in_flight(&self) -> usize {
        self.counters.max_in_flight.load(Ordering::SeqCst)
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Tls {
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
}

async fn serve(
    listener: std::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    counters: Arc<Counters>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(_) => continue,
            },
            _ = &mut stopped => break,
        };
        counters.accepted.fetch_add(1, Ordering::SeqCst);
        let counters = counters.clone();
        let tls = tls.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let counters = counters.clone();
                async move { Ok::<_, Infallible>(answer(request, &counters).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            match tls {
                Some(tls) => {
                    if let Ok(stream) = tls.accept(stream).await {
                        let _ = builder
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    }
                }
                None => {
                    let _ = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                }
            }
        });
    }
    // Dropping the set aborts every connection: the origin is gone.
    connections.abort_all();
}

type Body = BoxBody<Bytes, Infallible>;

fn text(status: u16, body: impl Into<Bytes>) -> http::Response<Body> {
    http::Response::builder()
        .status(status)
        .body(http_body_util::Full::new(body.into()).boxed())
        .unwrap()
}

async fn answer(request: http::Request<Incoming>, counters: &Counters) -> http::Response<Body> {
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or_default().to_owned();
    let number = |key: &str| {
        query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k == key).then(|| v.parse::<u64>().ok())?
        })
    };
    match path.as_str() {
        "/hello" => {
            counters.hellos.fetch_add(1, Ordering::SeqCst);
            text(
                200,
                format!("hello from origin over {:?}", request.version()),
            )
        }
        "/healthz" => text(200, "healthy"),
        "/jwks" => {
            counters.jwks_fetches.fetch_add(1, Ordering::SeqCst);
            let mut response = text(200, counters.jwks.lock().unwrap().clone());
            let headers = response.headers_mut();
            headers.insert("content-type", "application/json".parse().unwrap());
            headers.insert("cache-control", "max-age=300".parse().unwrap());
            response
        }
        "/slow-head" => {
            tokio::time::sleep(Duration::from_millis(number("ms").unwrap_or(1000))).await;
            text(200, "late")
        }
        "/stall-body" => {
            let chunks = futures_stream(vec![Bytes::from_static(b"first chunk")], true);
            http::Response::new(chunks)
        }
        "/big" => {
            let mib = number("mib").unwrap_or(1) as usize;
            let chunk = Bytes::from(vec![b'b'; 64 << 10]);
            http::Response::new(futures_stream(vec![chunk; mib * 16], false))
        }
        "/upload" => {
            let mut body = request.into_body();
            let mut got = 0;
            while let Some(Ok(frame)) = body.frame().await {
                got += frame.data_ref().map_or(0, |data| data.len());
            }
            text(200, format!("got {got}"))
        }
        "/concurrent" => {
            let now = counters.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            counters.max_in_flight.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(200)).await;
            counters.in_flight.fetch_sub(1, Ordering::SeqCst);
            text(200, "done")
        }
        "/status" => text(number("code").unwrap_or(200) as u16, "status"),
        "/cacheable" => {
            counters.cacheables.fetch_add(1, Ordering::SeqCst);
            let matched = request
                .headers()
                .get("if-none-match")
                .is_some_and(|tags| tags.as_bytes() == b"\"v1\"");
            let (status, body) = if matched {
                (304, "")
            } else {
                (200, "cacheable v1")
            };
            let mut response = text(status, body);
            let headers = response.headers_mut();
            let max_age = number("max_age").unwrap_or(60);
            headers.insert(
                "cache-control",
                format!("max-age={max_age}").parse().unwrap(),
            );
            headers.insert("etag", http::HeaderValue::from_static("\"v1\""));
            headers.insert("cache-tag", http::HeaderValue::from_static("product"));
            response
        }
        _ => text(404, "no such origin path"),
    }
}

/// A body of `chunks`, then (if `stall`) nothing, forever.
fn futures_stream(chunks: Vec<Bytes>, stall: bool) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    tokio::spawn(async move {
        for chunk in chunks {
            if tx.send(chunk).await.is_err() {
                return;
            }
        }
        if stall {
            tx.closed().await;
        }
    });
    ChannelBody(rx).boxed()
}

struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|chunk| Ok(Frame::data(chunk))))
    }
}

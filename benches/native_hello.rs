//! The ceiling of the front end: a native hyper server answering the same
//! bytes as `examples/hello`, with the same hyper-util auto (HTTP/1.1 + h2c)
//! builder Outpost uses, on one current-thread runtime. Used by `load.py`,
//! also as the origin of its proxy scenario.
//!
//! `native-hello --listen 127.0.0.1:0 [--body-bytes N] [--cache-control V]
//! [--etag]` prints `listening on http://ADDR`. With `--body-bytes`, the
//! body is padded to N bytes; with `--cache-control`, responses carry
//! `Cache-Control: V`; with `--etag`, they carry `ETag: "v1"` and a request
//! with `If-None-Match: "v1"` gets `304` (the origin of the cache
//! scenarios). `GET /accepted` answers how many connections it accepted,
//! `GET /requests` how many requests it answered.

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

const BODY: &[u8] = b"Hello from Outpost!\n";

fn main() -> std::io::Result<()> {
    let arg = |name: &str| std::env::args().skip_while(|arg| arg != name).nth(1);
    let listen = arg("--listen").unwrap_or_else(|| "127.0.0.1:8081".into());
    let mut body = BODY.to_vec();
    if let Some(size) = arg("--body-bytes") {
        let size: usize = size.parse().expect("--body-bytes takes a number");
        body.resize(size.max(BODY.len()), b'x');
    }
    let body = Bytes::from(body);
    let cache_control = arg("--cache-control").map(|value| {
        hyper::header::HeaderValue::from_str(&value).expect("--cache-control takes a header value")
    });
    let etag = std::env::args().any(|arg| arg == "--etag");
    let accepted = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&listen).await?;
        println!("listening on http://{}", listener.local_addr()?);
        std::io::stdout().flush()?;
        let builder = auto::Builder::new(TokioExecutor::new());
        loop {
            let (stream, _) = listener.accept().await?;
            accepted.fetch_add(1, Ordering::Relaxed);
            stream.set_nodelay(true)?;
            let builder = builder.clone();
            let body = body.clone();
            let accepted = accepted.clone();
            let requests = requests.clone();
            let cache_control = cache_control.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: hyper::Request<_>| {
                    let body = match request.uri().path() {
                        "/accepted" => Bytes::from(accepted.load(Ordering::Relaxed).to_string()),
                        "/requests" => Bytes::from(requests.load(Ordering::Relaxed).to_string()),
                        _ => {
                            requests.fetch_add(1, Ordering::Relaxed);
                            body.clone()
                        }
                    };
                    let not_modified = etag
                        && request
                            .headers()
                            .get(hyper::header::IF_NONE_MATCH)
                            .is_some_and(|tags| tags.as_bytes() == b"\"v1\"");
                    let cache_control = cache_control.clone();
                    async move {
                        let mut response = if not_modified {
                            let mut response = hyper::Response::new(Full::new(Bytes::new()));
                            *response.status_mut() = hyper::StatusCode::NOT_MODIFIED;
                            response
                        } else {
                            hyper::Response::new(Full::new(body))
                        };
                        let headers = response.headers_mut();
                        headers.insert(
                            hyper::header::CONTENT_TYPE,
                            hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
                        );
                        if let Some(value) = cache_control {
                            headers.insert(hyper::header::CACHE_CONTROL, value);
                        }
                        if etag {
                            headers.insert(
                                hyper::header::ETAG,
                                hyper::header::HeaderValue::from_static("\"v1\""),
                            );
                        }
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

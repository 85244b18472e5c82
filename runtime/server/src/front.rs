//! The HTTP front end: accepts connections, speaks HTTP/1.1 or HTTP/2 (prior
//! knowledge, detected per connection), routes each request to its app and
//! adds `x-request-id` to every response.

use crate::table::AppTable;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use outpost_core::{RequestId, ResponseBody};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// How long a client may take to send a request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long in-flight requests may take to finish once shutdown starts.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Accepts connections until `shutdown` resolves, then lets in-flight
/// requests finish (up to [`DRAIN_TIMEOUT`]).
pub(crate) async fn serve(
    listener: TcpListener,
    table: Arc<AppTable>,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // A client gets HEADER_READ_TIMEOUT to send a request head; without it a
    // slow client could hold a connection open forever (slowloris).
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Typically out of file descriptors: back off instead of
                    // spinning, keep serving the connections we have.
                    tracing::warn!("accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Responses are written in one go; Nagle would only add latency.
        let _ = stream.set_nodelay(true);
        let table = table.clone();
        let service = service_fn(move |request| handle(table.clone(), request));
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection.into_owned());
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!("connection ended with an error: {err}");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections drained"),
        () = tokio::time::sleep(DRAIN_TIMEOUT) => {
            tracing::warn!("connections still open after {DRAIN_TIMEOUT:?}; closing them");
        }
    }
}

async fn handle(
    table: Arc<AppTable>,
    request: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    let request_id = RequestId::next();
    let Some(host) = host_of(&request) else {
        return Ok(host_response(
            StatusCode::BAD_REQUEST,
            "the request has no Host header",
            request_id,
        ));
    };
    // The router as of this request: a deploy swapping it meanwhile does
    // not affect a request already routed.
    let Some(app) = table
        .router()
        .route(Some(host), request.uri().path())
        .cloned()
    else {
        return Ok(host_response(
            StatusCode::NOT_FOUND,
            "no app is routed for this host and path",
            request_id,
        ));
    };
    Ok(match app.handle(request, request_id).await {
        Ok(mut response) => {
            response
                .headers_mut()
                .insert(X_REQUEST_ID, header_value(request_id));
            response
        }
        Err(failure) => host_response(failure.status(), &failure.public_reason(), request_id),
    })
}

/// The host a request is addressed to, without the port: the URI authority
/// (HTTP/2, absolute-form HTTP/1.1) or the Host header.
fn host_of<B>(request: &Request<B>) -> Option<&str> {
    if let Some(host) = request.uri().host() {
        return Some(host);
    }
    let host = request.headers().get(HOST)?.to_str().ok()?;
    Some(match host.rsplit_once(':') {
        // "[::1]:8080" and "example.com:8080" lose the port; "[::1]" stays.
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    })
}

/// A response made by the host itself (routing errors, guest failures): the
/// reason as plain text, with the request id to quote in a bug report.
fn host_response(
    status: StatusCode,
    reason: &str,
    request_id: RequestId,
) -> Response<ResponseBody> {
    let body = format!("{reason}\nrequest id: {request_id}\n");
    let mut response = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(X_REQUEST_ID, header_value(request_id));
    response
}

fn header_value(request_id: RequestId) -> HeaderValue {
    HeaderValue::from_str(&request_id.to_string()).expect("hex digits are a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(uri: &str, host: Option<&str>) -> Request<()> {
        let mut builder = Request::builder().uri(uri);
        if let Some(host) = host {
            builder = builder.header(HOST, host);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn host_comes_from_authority_or_host_header_without_port() {
        assert_eq!(
            host_of(&request("http://a.com:81/x", Some("b.com"))),
            Some("a.com")
        );
        assert_eq!(host_of(&request("/x", Some("b.com:8080"))), Some("b.com"));
        assert_eq!(host_of(&request("/x", Some("[::1]:8080"))), Some("[::1]"));
        assert_eq!(host_of(&request("/x", Some("b.com"))), Some("b.com"));
        assert_eq!(host_of(&request("/x", None)), None);
    }
}

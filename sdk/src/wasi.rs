//! The bridge between `wasi:http` resources and the SDK's plain types.

use crate::{Error, Request, Response};
use bindings::wasi::http::types::{
    ErrorCode, Fields, IncomingBody, IncomingRequest, Method as WasiMethod, OutgoingBody,
    OutgoingResponse, ResponseOutparam, Scheme, http_error_code,
};
use bindings::wasi::io::streams::{OutputStream, StreamError};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

/// Bindings generated from `wit/`, the same files the host implements.
#[expect(
    missing_docs,
    reason = "generated from WIT; the WIT files carry the docs"
)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "outpost:edge/handler",
        pub_export_macro: true,
        export_macro_name: "__export_handler",
        default_bindings_module: "::outpost_sdk::__private::bindings",
        generate_all,
    });
}

/// How much the SDK asks the host for in one read of the request body.
const READ_CHUNK: u64 = 64 * 1024;

/// Runs `handler` for one `wasi:http` request: reads the request, calls the
/// handler, writes its response (or its error as a response).
pub fn run(
    incoming: IncomingRequest,
    response_out: ResponseOutparam,
    handler: fn(Request) -> crate::Result<Response>,
) {
    let response = match read_request(incoming) {
        Ok(request) => handler(request),
        Err(err) => Err(err),
    };
    let response = response.unwrap_or_else(|err| {
        eprintln!("handler error: {err}");
        Response::new(err.status())
            .with_header("content-type", "text/plain; charset=utf-8")
            .with_body(format!("{err}\n"))
    });
    send_response(response, response_out);
}

fn read_request(incoming: IncomingRequest) -> crate::Result<Request> {
    let method = method_from_wasi(incoming.method())?;
    let path_with_query = incoming.path_with_query().unwrap_or_else(|| "/".to_owned());
    let authority = incoming.authority();
    let https = matches!(incoming.scheme(), Some(Scheme::Https));
    let headers = headers_from_wasi(&incoming.headers());
    let body = match incoming.consume() {
        Ok(body) => read_body(body)?,
        Err(()) => Vec::new(),
    };
    Ok(Request::from_parts(
        method,
        https,
        path_with_query,
        authority,
        headers,
        body,
    ))
}

fn method_from_wasi(method: WasiMethod) -> crate::Result<Method> {
    Ok(match method {
        WasiMethod::Get => Method::GET,
        WasiMethod::Head => Method::HEAD,
        WasiMethod::Post => Method::POST,
        WasiMethod::Put => Method::PUT,
        WasiMethod::Delete => Method::DELETE,
        WasiMethod::Connect => Method::CONNECT,
        WasiMethod::Options => Method::OPTIONS,
        WasiMethod::Trace => Method::TRACE,
        WasiMethod::Patch => Method::PATCH,
        WasiMethod::Other(other) => Method::from_bytes(other.as_bytes())
            .map_err(|_| Error::bad_request(format!("invalid method {other:?}")))?,
    })
}

pub(crate) fn headers_from_wasi(fields: &Fields) -> HeaderMap {
    let entries = fields.entries();
    let mut headers = HeaderMap::with_capacity(entries.len());
    for (name, value) in entries {
        // The host only hands over valid header names and values.
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            headers.append(name, value);
        }
    }
    headers
}

fn read_body(body: IncomingBody) -> crate::Result<Vec<u8>> {
    let stream = body.stream().map_err(|()| {
        Error::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "request body already taken",
        )
    })?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(READ_CHUNK) {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(err)) => {
                // The host says why: the client was too slow (408), or sent
                // more than the app's body limit (413).
                return Err(match http_error_code(&err) {
                    Some(ErrorCode::ConnectionReadTimeout) => Error::new(
                        StatusCode::REQUEST_TIMEOUT,
                        "the request body did not arrive in time",
                    ),
                    Some(ErrorCode::HttpRequestBodySize(_)) => Error::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "the request body is larger than this app accepts",
                    ),
                    _ => Error::bad_request(format!(
                        "reading the request body failed: {}",
                        err.to_debug_string()
                    )),
                });
            }
        }
    }
    // Dropping the body without `finish` skips a host call and a
    // future-trailers resource: the SDK does not expose request trailers.
    drop(stream);
    drop(body);
    Ok(bytes)
}

fn send_response(response: Response, response_out: ResponseOutparam) {
    let (status, mut headers, body) = response.into_parts();
    // The whole body is known: announcing its length spares HTTP/1.1 clients
    // chunked encoding, and the host checks the guest writes exactly that.
    headers
        .entry(http::header::CONTENT_LENGTH)
        .or_insert_with(|| http::HeaderValue::from(body.len()));
    let entries: Vec<(String, Vec<u8>)> = headers
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect();
    let fields = match Fields::from_list(&entries) {
        Ok(fields) => fields,
        Err(err) => {
            // A header the host forbids guests to set, such as `connection`.
            let message = format!("handler set a header the host does not allow: {err:?}");
            eprintln!("{message}");
            ResponseOutparam::set(response_out, Err(ErrorCode::InternalError(Some(message))));
            return;
        }
    };
    let outgoing = OutgoingResponse::new(fields);
    if status != StatusCode::OK {
        // Every u16 in 100..=999 is accepted; `StatusCode` guarantees that range.
        let _ = outgoing.set_status_code(status.as_u16());
    }
    let outgoing_body = outgoing
        .body()
        .expect("a new response's body is taken once");
    ResponseOutparam::set(response_out, Ok(outgoing));

    let stream = outgoing_body
        .write()
        .expect("a new body's stream is taken once");
    if let Err(err) = write_all(&stream, &body) {
        // The client went away; nothing left to tell it.
        eprintln!("writing the response body failed: {err}");
        return;
    }
    drop(stream);
    let _ = OutgoingBody::finish(outgoing_body, None);
}

/// The most `blocking-write-and-flush` takes in one call (WASI's limit).
const SMALL_WRITE: usize = 4096;

/// Writes all of `bytes`, as fast as the host's buffer allows.
pub(crate) fn write_all(stream: &OutputStream, mut bytes: &[u8]) -> Result<(), String> {
    let describe = |err: StreamError| match err {
        StreamError::Closed => "stream closed".to_owned(),
        StreamError::LastOperationFailed(err) => err.to_debug_string(),
    };
    if bytes.len() <= SMALL_WRITE {
        // One host call instead of check-write, write and blocking-flush.
        return stream.blocking_write_and_flush(bytes).map_err(describe);
    }
    while !bytes.is_empty() {
        let permitted = stream.check_write().map_err(describe)?;
        if permitted == 0 {
            stream.subscribe().block();
            continue;
        }
        let len = bytes
            .len()
            .min(usize::try_from(permitted).unwrap_or(usize::MAX));
        stream.write(&bytes[..len]).map_err(describe)?;
        bytes = &bytes[len..];
    }
    // With a Content-Length announced, the host closes the stream as soon
    // as it holds every byte: closed after the last write is success.
    match stream.blocking_flush() {
        Ok(()) | Err(StreamError::Closed) => Ok(()),
        Err(err) => Err(describe(err)),
    }
}

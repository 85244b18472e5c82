//! Requests from the handler to origins: `wasi:http/outgoing-handler`,
//! which Outpost sends through its pooled, policy-checked client.
//!
//! The host lets a request through only to hosts in the app's
//! `allowed_outbound_hosts` or to its named backends, and bounds every
//! request's time and size; each refusal and limit is a [`FetchError`].
//!
//! ```no_run
//! use outpost_sdk::{fetch, handler, Request, Response, Result};
//!
//! #[handler]
//! fn handle(_req: Request) -> Result<Response> {
//!     let user: serde_json::Value = fetch::Request::get("https://api.example.com/users/7")
//!         .header("accept", "application/json")
//!         .send()?
//!         .json()?;
//!     Response::json(&user)
//! }
//! ```

use crate::wasi::bindings::wasi::http::outgoing_handler;
use crate::wasi::bindings::wasi::http::types::{
    ErrorCode, Fields, FutureIncomingResponse, Method as WasiMethod, OutgoingBody, OutgoingRequest,
    RequestOptions, Scheme, http_error_code,
};
use crate::wasi::bindings::wasi::io::streams::StreamError;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt;
use std::time::Duration;

/// The host suffix that names a backend: backend `users` is
/// `http://users.backend.internal`.
pub const BACKEND_SUFFIX: &str = ".backend.internal";

/// Fields that describe one connection, not the message (RFC 9110
/// §7.6.1), plus those the host sets on each hop.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

/// `headers` without the hop-by-hop ones, and without those the
/// `Connection` field names.
fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    let named: Vec<String> = headers
        .get_all("connection")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .collect();
    let mut kept = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let name_text = name.as_str();
        if !HOP_BY_HOP.contains(&name_text) && !named.iter().any(|named| named == name_text) {
            kept.append(name.clone(), value.clone());
        }
    }
    kept
}

/// An outbound request, built and then [sent](Request::send).
///
/// ```
/// use outpost_sdk::fetch::Request;
/// use std::time::Duration;
///
/// let req = Request::post("https://api.example.com/orders")
///     .header("x-trace", "abc")
///     .json(&serde_json::json!({"item": 7}))?
///     .timeout(Duration::from_secs(2));
/// assert_eq!(req.url(), "https://api.example.com/orders");
/// # Ok::<(), outpost_sdk::fetch::FetchError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Request {
    method: Method,
    url: String,
    headers: HeaderMap,
    body: Vec<u8>,
    timeout: Option<Duration>,
    backend: Option<String>,
}

impl Request {
    /// A request with any method.
    ///
    /// ```
    /// use outpost_sdk::{fetch::Request, Method};
    /// let req = Request::new(Method::DELETE, "https://api.example.com/items/7");
    /// assert_eq!(req.method(), Method::DELETE);
    /// ```
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Self {
            method,
            url: url.into(),
            headers: HeaderMap::new(),
            body: Vec::new(),
            timeout: None,
            backend: None,
        }
    }

    /// A `GET` request.
    ///
    /// ```
    /// use outpost_sdk::fetch::Request;
    /// let req = Request::get("https://example.com/");
    /// assert_eq!(req.method(), "GET");
    /// ```
    pub fn get(url: impl Into<String>) -> Self {
        Self::new(Method::GET, url)
    }

    /// A `POST` request.
    ///
    /// ```
    /// use outpost_sdk::fetch::Request;
    /// let req = Request::post("https://example.com/").body("hello");
    /// assert_eq!(req.method(), "POST");
    /// ```
    pub fn post(url: impl Into<String>) -> Self {
        Self::new(Method::POST, url)
    }

    /// Its method.
    ///
    /// ```
    /// # use outpost_sdk::fetch::Request;
    /// assert_eq!(Request::get("https://example.com/").method(), "GET");
    /// ```
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// Its URL as given (with [`Request::backend`], a path).
    ///
    /// ```
    /// # use outpost_sdk::fetch::Request;
    /// assert_eq!(Request::get("/users/7").backend("users").url(), "/users/7");
    /// ```
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A request that forwards `incoming` to `url`, as a proxy does: the
    /// same method, body and headers, except those that describe one hop
    /// (`connection`, `transfer-encoding`, ...; `host` and
    /// `content-length`, which the host sets for the new hop).
    ///
    /// ```
    /// use outpost_sdk::{fetch, Method, Request};
    /// let incoming = Request::builder(Method::PUT, "/items/7?v=2")
    ///     .header("if-match", "\"v1\"")
    ///     .header("connection", "keep-alive")
    ///     .body("new");
    /// let upstream = fetch::Request::forward(incoming, "/items/7?v=2").backend("origin");
    /// assert_eq!(upstream.method(), Method::PUT);
    /// assert_eq!(upstream.headers()["if-match"], "\"v1\"");
    /// assert!(upstream.headers().get("connection").is_none());
    /// ```
    pub fn forward(incoming: crate::Request, url: impl Into<String>) -> Self {
        let mut forwarded = Self::new(incoming.method().clone(), url);
        forwarded.headers = end_to_end(incoming.headers());
        forwarded.body = incoming.into_body();
        forwarded
    }

    /// Appends a header. An invalid name or value is ignored, and logged
    /// to stderr.
    ///
    /// ```
    /// # use outpost_sdk::fetch::Request;
    /// let req = Request::get("https://example.com/").header("accept", "text/html");
    /// assert_eq!(req.headers()["accept"], "text/html");
    /// ```
    pub fn header(mut self, name: &str, value: &str) -> Self {
        match (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            (Ok(name), Ok(value)) => {
                self.headers.append(name, value);
            }
            _ => eprintln!("fetch: ignoring invalid header {name:?}: {value:?}"),
        }
        self
    }

    /// Its headers.
    ///
    /// ```
    /// # use outpost_sdk::fetch::Request;
    /// assert!(Request::get("https://example.com/").headers().is_empty());
    /// ```
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// Sets the body.
    ///
    /// ```
    /// # use outpost_sdk::fetch::Request;
    /// let req = Request::post("https://example.com/").body(vec![1, 2, 3]);
    /// # let _ = req;
    /// ```
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Sets the body to `value` as JSON, and `content-type` to
    /// `application/json`.
    ///
    /// ```
    /// # use outpost_sdk::fetch::Request;
    /// let req = Request::post("https://example.com/").json(&[1, 2])?;
    /// assert_eq!(req.headers()["content-type"], "application/json");
    /// # Ok::<(), outpost_sdk::fetch::FetchError>(())
    /// ```
    pub fn json<T: Serialize + ?Sized>(mut self, value: &T) -> Result<Self, FetchError> {
        self.body = serde_json::to_vec(value)
            .map_err(|err| FetchError::new(FetchErrorKind::Invalid, err.to_string()))?;
        self.headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        Ok(self)
    }

    /// Bounds the time to connect, to the response head, and between two
    /// chunks of the response body. The app's limits still apply: this can
    /// only make them shorter.
    ///
    /// ```
    /// # use outpost_sdk::fetch::Request;
    /// # use std::time::Duration;
    /// let req = Request::get("https://example.com/").timeout(Duration::from_millis(500));
    /// # let _ = req;
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sends the request to the app's backend `name` (a `[backends.NAME]`
    /// of its manifest); the URL is then the path and query.
    ///
    /// ```
    /// # use outpost_sdk::fetch::Request;
    /// let req = Request::get("/users/7?full=1").backend("users");
    /// # let _ = req;
    /// ```
    pub fn backend(mut self, name: impl Into<String>) -> Self {
        self.backend = Some(name.into());
        self
    }

    /// Reads the request through the app's edge cache (`true`), or not
    /// (`false`), whatever its backend's `cache` setting says: a fresh
    /// stored response answers it without a request to the origin, and a
    /// response the origin allows to be stored is kept (RFC 9111, the
    /// same rules as the cache in front of the handler). Only `GET` and
    /// `HEAD` are answered from the cache; other methods invalidate.
    ///
    /// ```
    /// # use outpost_sdk::fetch::Request;
    /// let req = Request::get("https://api.example.com/menu").cache(true);
    /// assert_eq!(req.headers()["outpost-cache"], "on");
    /// ```
    pub fn cache(mut self, on: bool) -> Self {
        self.headers.insert(
            "outpost-cache",
            HeaderValue::from_static(if on { "on" } else { "off" }),
        );
        self
    }

    /// Sends the request and reads the whole response.
    ///
    /// ```no_run
    /// # use outpost_sdk::fetch::Request;
    /// let res = Request::get("https://example.com/").send()?;
    /// println!("{} {}", res.status(), res.text()?);
    /// # Ok::<(), outpost_sdk::fetch::FetchError>(())
    /// ```
    pub fn send(self) -> Result<Response, FetchError> {
        let target = self.target()?;
        let request = OutgoingRequest::new(headers_to_wasi(&self.headers)?);
        let invalid = |what: &str| FetchError::new(FetchErrorKind::Invalid, what.to_owned());
        request
            .set_method(&method_to_wasi(&self.method))
            .map_err(|()| invalid("the method is not valid"))?;
        request
            .set_scheme(Some(&target.scheme))
            .map_err(|()| invalid("the scheme is not valid"))?;
        request
            .set_authority(Some(&target.authority))
            .map_err(|()| invalid("the host is not valid"))?;
        request
            .set_path_with_query(Some(&target.path_with_query))
            .map_err(|()| invalid("the path is not valid"))?;
        let body = request
            .body()
            .map_err(|()| invalid("the body was already taken"))?;
        let options = self.timeout.map(|timeout| {
            let nanos = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
            let options = RequestOptions::new();
            // Each is accepted by Outpost; a host that does not support one
            // just keeps its own.
            let _ = options.set_connect_timeout(Some(nanos));
            let _ = options.set_first_byte_timeout(Some(nanos));
            let _ = options.set_between_bytes_timeout(Some(nanos));
            options
        });
        let pending = outgoing_handler::handle(request, options).map_err(FetchError::from_code)?;
        if !self.body.is_empty() {
            let stream = body
                .write()
                .map_err(|()| invalid("the body stream was already taken"))?;
            crate::wasi::write_all(&stream, &self.body)
                .map_err(|message| FetchError::new(FetchErrorKind::Connection, message))?;
        }
        OutgoingBody::finish(body, None).map_err(FetchError::from_code)?;
        receive(pending)
    }

    fn target(&self) -> Result<Target, FetchError> {
        if let Some(backend) = &self.backend {
            let path = if self.url.starts_with('/') {
                self.url.clone()
            } else {
                format!("/{}", self.url)
            };
            return Ok(Target {
                scheme: Scheme::Http,
                authority: format!("{backend}{BACKEND_SUFFIX}"),
                path_with_query: path,
            });
        }
        let uri: http::Uri = self.url.parse().map_err(|_| {
            FetchError::new(
                FetchErrorKind::Invalid,
                format!("{:?} is not a URL", self.url),
            )
        })?;
        let scheme = match uri.scheme_str() {
            Some("https") => Scheme::Https,
            Some("http") => Scheme::Http,
            _ => {
                return Err(FetchError::new(
                    FetchErrorKind::Invalid,
                    format!(
                        "{:?} needs http:// or https:// (or .backend(NAME) for a path)",
                        self.url
                    ),
                ));
            }
        };
        let authority = uri
            .authority()
            .ok_or_else(|| {
                FetchError::new(
                    FetchErrorKind::Invalid,
                    format!("{:?} has no host", self.url),
                )
            })?
            .to_string();
        Ok(Target {
            scheme,
            authority,
            path_with_query: uri
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |path| path.to_string()),
        })
    }
}

struct Target {
    scheme: Scheme,
    authority: String,
    path_with_query: String,
}

/// An origin's response, read whole.
///
/// ```no_run
/// # use outpost_sdk::fetch::Request;
/// let res = Request::get("https://example.com/").send()?;
/// if res.status().is_success() {
///     let body: &[u8] = res.bytes();
///     # let _ = body;
/// }
/// # Ok::<(), outpost_sdk::fetch::FetchError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Response {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Response {
    /// Its status.
    ///
    /// ```no_run
    /// # let res = outpost_sdk::fetch::Request::get("https://example.com/").send()?;
    /// assert!(res.status().is_success());
    /// # Ok::<(), outpost_sdk::fetch::FetchError>(())
    /// ```
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Its headers.
    ///
    /// ```no_run
    /// # let res = outpost_sdk::fetch::Request::get("https://example.com/").send()?;
    /// let kind = res.headers().get("content-type");
    /// # let _ = kind;
    /// # Ok::<(), outpost_sdk::fetch::FetchError>(())
    /// ```
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// This response as the handler's own, as a proxy passes it on: its
    /// status, body and headers, except those that describe one hop.
    ///
    /// ```no_run
    /// use outpost_sdk::{fetch, handler, Request, Response, Result};
    ///
    /// #[handler]
    /// fn handle(req: Request) -> Result<Response> {
    ///     let path = req.uri().to_owned();
    ///     Ok(fetch::Request::forward(req, path).backend("origin").send()?.into_response())
    /// }
    /// ```
    pub fn into_response(self) -> crate::Response {
        let mut response = crate::Response::new(self.status).with_body(self.body);
        *response.headers_mut() = end_to_end(&self.headers);
        response
    }

    /// Its body.
    ///
    /// ```no_run
    /// # let res = outpost_sdk::fetch::Request::get("https://example.com/").send()?;
    /// println!("{} bytes", res.bytes().len());
    /// # Ok::<(), outpost_sdk::fetch::FetchError>(())
    /// ```
    pub fn bytes(&self) -> &[u8] {
        &self.body
    }

    /// Its body, taken.
    ///
    /// ```no_run
    /// # let res = outpost_sdk::fetch::Request::get("https://example.com/").send()?;
    /// let body: Vec<u8> = res.into_bytes();
    /// # let _ = body;
    /// # Ok::<(), outpost_sdk::fetch::FetchError>(())
    /// ```
    pub fn into_bytes(self) -> Vec<u8> {
        self.body
    }

    /// Its body as UTF-8 text.
    ///
    /// ```no_run
    /// # let res = outpost_sdk::fetch::Request::get("https://example.com/").send()?;
    /// println!("{}", res.text()?);
    /// # Ok::<(), outpost_sdk::fetch::FetchError>(())
    /// ```
    pub fn text(&self) -> Result<&str, FetchError> {
        std::str::from_utf8(&self.body).map_err(|err| {
            FetchError::new(
                FetchErrorKind::Invalid,
                format!("the response body is not UTF-8: {err}"),
            )
        })
    }

    /// Its body parsed as JSON.
    ///
    /// ```no_run
    /// # let res = outpost_sdk::fetch::Request::get("https://example.com/").send()?;
    /// let value: serde_json::Value = res.json()?;
    /// # let _ = value;
    /// # Ok::<(), outpost_sdk::fetch::FetchError>(())
    /// ```
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, FetchError> {
        serde_json::from_slice(&self.body).map_err(|err| {
            FetchError::new(
                FetchErrorKind::Invalid,
                format!("the response body is not the JSON expected: {err}"),
            )
        })
    }
}

/// What went wrong with an outbound request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FetchErrorKind {
    /// The host refused it: not in `allowed_outbound_hosts`, an undeclared
    /// backend, a private address, or the app's subrequest limit.
    Denied,
    /// Connecting, the response head, or the body took too long.
    Timeout,
    /// The name did not resolve.
    Dns,
    /// No connection could be made, or it broke (including every endpoint
    /// of a backend being down).
    Connection,
    /// The TLS handshake or the origin's certificate failed.
    Tls,
    /// The response (or the request body) was larger than allowed.
    TooLarge,
    /// The origin spoke HTTP wrongly.
    Protocol,
    /// The request could not be built (a bad URL or header), or the
    /// response did not parse as asked.
    Invalid,
}

/// The error of a failed fetch: its [kind](FetchError::kind) and a message.
///
/// With `?` in a handler it becomes a `502 Bad Gateway`, or a
/// `504 Gateway Timeout` for [`FetchErrorKind::Timeout`].
///
/// ```
/// use outpost_sdk::fetch::{FetchError, FetchErrorKind};
/// use outpost_sdk::{Error, StatusCode};
///
/// let err = FetchError::new(FetchErrorKind::Timeout, "no answer in 2 s");
/// assert_eq!(Error::from(err).status(), StatusCode::GATEWAY_TIMEOUT);
/// ```
#[derive(Debug, Clone)]
pub struct FetchError {
    kind: FetchErrorKind,
    message: String,
}

impl FetchError {
    /// An error of `kind`.
    ///
    /// ```
    /// # use outpost_sdk::fetch::{FetchError, FetchErrorKind};
    /// let err = FetchError::new(FetchErrorKind::Denied, "not allowed");
    /// assert_eq!(err.kind(), FetchErrorKind::Denied);
    /// ```
    pub fn new(kind: FetchErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// What went wrong.
    ///
    /// ```
    /// # use outpost_sdk::fetch::{FetchError, FetchErrorKind};
    /// # let err = FetchError::new(FetchErrorKind::Dns, "no such host");
    /// assert_eq!(err.kind(), FetchErrorKind::Dns);
    /// ```
    pub fn kind(&self) -> FetchErrorKind {
        self.kind
    }

    fn from_code(code: ErrorCode) -> Self {
        use FetchErrorKind as K;
        let kind = match &code {
            ErrorCode::HttpRequestDenied | ErrorCode::DestinationIpProhibited => K::Denied,
            ErrorCode::InternalError(Some(message)) if message.contains("outbound requests") => {
                K::Denied
            }
            ErrorCode::DnsTimeout
            | ErrorCode::ConnectionTimeout
            | ErrorCode::ConnectionReadTimeout
            | ErrorCode::ConnectionWriteTimeout
            | ErrorCode::HttpResponseTimeout => K::Timeout,
            ErrorCode::DnsError(_) | ErrorCode::DestinationNotFound => K::Dns,
            ErrorCode::DestinationUnavailable
            | ErrorCode::DestinationIpUnroutable
            | ErrorCode::ConnectionRefused
            | ErrorCode::ConnectionTerminated
            | ErrorCode::ConnectionLimitReached
            | ErrorCode::HttpResponseIncomplete => K::Connection,
            ErrorCode::TlsProtocolError
            | ErrorCode::TlsCertificateError
            | ErrorCode::TlsAlertReceived(_) => K::Tls,
            ErrorCode::HttpRequestBodySize(_)
            | ErrorCode::HttpResponseBodySize(_)
            | ErrorCode::HttpResponseHeaderSectionSize(_)
            | ErrorCode::HttpResponseHeaderSize(_) => K::TooLarge,
            ErrorCode::HttpRequestUriInvalid
            | ErrorCode::HttpRequestMethodInvalid
            | ErrorCode::HttpRequestHeaderSectionSize(_)
            | ErrorCode::HttpRequestHeaderSize(_) => K::Invalid,
            _ => K::Protocol,
        };
        Self::new(kind, format!("{code:?}"))
    }

    /// A body stream's failure: wasmtime gives no code for it, only text.
    fn from_stream(message: String) -> Self {
        let kind = if message.contains("timeout") {
            FetchErrorKind::Timeout
        } else if message.contains("size exceeds limit") {
            FetchErrorKind::TooLarge
        } else {
            FetchErrorKind::Connection
        };
        Self::new(kind, message)
    }
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "fetch failed ({:?}): {}", self.kind, self.message)
    }
}

/// `?` in a handler: 504 for timeouts, 502 otherwise.
impl From<FetchError> for crate::Error {
    fn from(err: FetchError) -> Self {
        let status = if err.kind == FetchErrorKind::Timeout {
            StatusCode::GATEWAY_TIMEOUT
        } else {
            StatusCode::BAD_GATEWAY
        };
        crate::Error::new(status, err.to_string())
    }
}

fn receive(pending: FutureIncomingResponse) -> Result<Response, FetchError> {
    pending.subscribe().block();
    let response = match pending.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return Err(FetchError::from_code(code)),
        Some(Err(())) | None => {
            return Err(FetchError::new(
                FetchErrorKind::Protocol,
                "the host gave no response",
            ));
        }
    };
    let status = StatusCode::from_u16(response.status())
        .map_err(|_| FetchError::new(FetchErrorKind::Protocol, "the status is not valid"))?;
    let headers = crate::wasi::headers_from_wasi(&response.headers());
    let body = response
        .consume()
        .map_err(|()| FetchError::new(FetchErrorKind::Protocol, "the body was already taken"))?;
    let stream = body
        .stream()
        .map_err(|()| FetchError::new(FetchErrorKind::Protocol, "the body was already taken"))?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(64 << 10) {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(err)) => {
                return Err(match http_error_code(&err) {
                    Some(code) => FetchError::from_code(code),
                    None => FetchError::from_stream(err.to_debug_string()),
                });
            }
        }
    }
    drop(stream);
    Ok(Response {
        status,
        headers,
        body: bytes,
    })
}

fn headers_to_wasi(headers: &HeaderMap) -> Result<Fields, FetchError> {
    let entries: Vec<(String, Vec<u8>)> = headers
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect();
    Fields::from_list(&entries).map_err(|err| {
        FetchError::new(
            FetchErrorKind::Invalid,
            format!("a header the host does not allow: {err:?}"),
        )
    })
}

fn method_to_wasi(method: &Method) -> WasiMethod {
    match *method {
        Method::GET => WasiMethod::Get,
        Method::HEAD => WasiMethod::Head,
        Method::POST => WasiMethod::Post,
        Method::PUT => WasiMethod::Put,
        Method::DELETE => WasiMethod::Delete,
        Method::CONNECT => WasiMethod::Connect,
        Method::OPTIONS => WasiMethod::Options,
        Method::TRACE => WasiMethod::Trace,
        Method::PATCH => WasiMethod::Patch,
        ref other => WasiMethod::Other(other.as_str().to_owned()),
    }
}

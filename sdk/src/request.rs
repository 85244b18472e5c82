use crate::{Error, Result};
use http::{HeaderMap, Method};
use serde::de::DeserializeOwned;

/// An incoming HTTP request, with its body already read.
///
/// ```
/// use outpost_sdk::{Method, Request};
///
/// let req = Request::builder(Method::POST, "/greet?name=ada")
///     .header("content-type", "application/json")
///     .body(r#"{"polite":true}"#);
/// assert_eq!(req.path(), "/greet");
/// assert_eq!(req.query(), Some("name=ada"));
/// assert_eq!(req.header("content-type"), Some("application/json"));
/// ```
#[derive(Debug, Clone)]
pub struct Request {
    method: Method,
    https: bool,
    path_with_query: String,
    authority: Option<String>,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Request {
    /// Starts a request by hand, for unit tests of a handler.
    ///
    /// ```
    /// use outpost_sdk::{Method, Request};
    /// let req = Request::builder(Method::GET, "/").build();
    /// assert!(req.body().is_empty());
    /// ```
    pub fn builder(method: Method, path_with_query: impl Into<String>) -> RequestBuilder {
        RequestBuilder(Request {
            method,
            https: false,
            path_with_query: path_with_query.into(),
            authority: None,
            headers: HeaderMap::new(),
            body: Vec::new(),
        })
    }

    pub(crate) fn from_parts(
        method: Method,
        https: bool,
        path_with_query: String,
        authority: Option<String>,
        headers: HeaderMap,
        body: Vec<u8>,
    ) -> Self {
        Self {
            method,
            https,
            path_with_query,
            authority,
            headers,
            body,
        }
    }

    /// The request method.
    ///
    /// ```
    /// # use outpost_sdk::{Method, Request};
    /// # let req = Request::builder(Method::PUT, "/").build();
    /// assert_eq!(req.method(), Method::PUT);
    /// ```
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The path and query exactly as the client sent them, e.g. `/a/b?c=d`.
    ///
    /// ```
    /// # use outpost_sdk::{Method, Request};
    /// # let req = Request::builder(Method::GET, "/a/b?c=d").build();
    /// assert_eq!(req.uri(), "/a/b?c=d");
    /// ```
    pub fn uri(&self) -> &str {
        &self.path_with_query
    }

    /// The path, without the query string.
    ///
    /// ```
    /// # use outpost_sdk::{Method, Request};
    /// # let req = Request::builder(Method::GET, "/a/b?c=d").build();
    /// assert_eq!(req.path(), "/a/b");
    /// ```
    pub fn path(&self) -> &str {
        match self.path_with_query.split_once('?') {
            Some((path, _)) => path,
            None => &self.path_with_query,
        }
    }

    /// The raw query string after `?`, if there is one.
    ///
    /// ```
    /// # use outpost_sdk::{Method, Request};
    /// # let req = Request::builder(Method::GET, "/?q=rust&page=2").build();
    /// assert_eq!(req.query(), Some("q=rust&page=2"));
    /// ```
    pub fn query(&self) -> Option<&str> {
        self.path_with_query.split_once('?').map(|(_, query)| query)
    }

    /// The value of query parameter `name`, percent-decoded (`+` is a space).
    ///
    /// ```
    /// # use outpost_sdk::{Method, Request};
    /// # let req = Request::builder(Method::GET, "/?q=hello+world%21&page=2").build();
    /// assert_eq!(req.query_param("q").as_deref(), Some("hello world!"));
    /// assert_eq!(req.query_param("missing"), None);
    /// ```
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query()?.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key) == name).then(|| percent_decode(value))
        })
    }

    /// The host the request was addressed to (`:authority` or `Host`).
    ///
    /// ```
    /// # use outpost_sdk::{Method, Request};
    /// # let req = Request::builder(Method::GET, "/").build();
    /// assert_eq!(req.authority(), None);
    /// ```
    pub fn authority(&self) -> Option<&str> {
        self.authority.as_deref()
    }

    /// The scheme the client used: `"https"` or `"http"`.
    ///
    /// ```
    /// # use outpost_sdk::{Method, Request};
    /// # let req = Request::builder(Method::GET, "/").build();
    /// assert_eq!(req.scheme(), "http");
    /// ```
    pub fn scheme(&self) -> &'static str {
        if self.https { "https" } else { "http" }
    }

    /// The whole URL the client asked for: scheme, authority (`localhost`
    /// if the request named none), path and query. The edge cache keys
    /// entries by it ([`crate::cache`]).
    ///
    /// ```
    /// # use outpost_sdk::{Method, Request};
    /// let req = Request::builder(Method::GET, "/a?b=1").header("host", "example.com").build();
    /// assert_eq!(req.url(), "http://localhost/a?b=1");
    /// ```
    pub fn url(&self) -> String {
        format!(
            "{}://{}{}",
            self.scheme(),
            self.authority().unwrap_or("localhost"),
            self.path_with_query
        )
    }

    /// All request headers.
    ///
    /// ```
    /// # use outpost_sdk::{Method, Request};
    /// # let req = Request::builder(Method::GET, "/").header("accept", "*/*").build();
    /// assert_eq!(req.headers().len(), 1);
    /// ```
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The first value of header `name` (case-insensitive), if it is valid
    /// UTF-8.
    ///
    /// ```
    /// # use outpost_sdk::{Method, Request};
    /// # let req = Request::builder(Method::GET, "/").header("X-Token", "abc").build();
    /// assert_eq!(req.header("x-token"), Some("abc"));
    /// ```
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }

    /// The body as bytes.
    ///
    /// ```
    /// # use outpost_sdk::{Method, Request};
    /// # let req = Request::builder(Method::POST, "/").body(vec![1, 2, 3]);
    /// assert_eq!(req.body(), &[1, 2, 3]);
    /// ```
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Takes the body out of the request without copying it.
    ///
    /// ```
    /// # use outpost_sdk::{Method, Request};
    /// # let req = Request::builder(Method::POST, "/").body("abc");
    /// assert_eq!(req.into_body(), b"abc");
    /// ```
    pub fn into_body(self) -> Vec<u8> {
        self.body
    }

    /// The body as UTF-8 text; a `400 Bad Request` error if it is not.
    ///
    /// ```
    /// # use outpost_sdk::{Method, Request};
    /// # let req = Request::builder(Method::POST, "/").body("hi");
    /// assert_eq!(req.text()?, "hi");
    /// # Ok::<(), outpost_sdk::Error>(())
    /// ```
    pub fn text(&self) -> Result<&str> {
        std::str::from_utf8(&self.body)
            .map_err(|err| Error::bad_request(format!("request body is not UTF-8: {err}")))
    }

    /// The body parsed as JSON; a `400 Bad Request` error saying what is
    /// wrong if it does not parse into `T`.
    ///
    /// ```
    /// # use outpost_sdk::{Method, Request};
    /// # let req = Request::builder(Method::POST, "/").body(r#"{"n": 3}"#);
    /// let value: serde_json::Value = req.json()?;
    /// assert_eq!(value["n"], 3);
    /// # Ok::<(), outpost_sdk::Error>(())
    /// ```
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body)
            .map_err(|err| Error::bad_request(format!("request body is not valid JSON: {err}")))
    }
}

/// Builds a [`Request`] by hand; see [`Request::builder`].
///
/// ```
/// use outpost_sdk::{Method, Request};
/// let req = Request::builder(Method::GET, "/").header("a", "b").build();
/// assert_eq!(req.header("a"), Some("b"));
/// ```
#[derive(Debug)]
pub struct RequestBuilder(Request);

impl RequestBuilder {
    /// Appends a header.
    ///
    /// # Panics
    ///
    /// If `name` or `value` is not a valid header name or value: this builder
    /// is for tests, where a bad literal is a bug in the test.
    ///
    /// ```
    /// # use outpost_sdk::{Method, Request};
    /// let req = Request::builder(Method::GET, "/").header("a", "1").header("a", "2").build();
    /// assert_eq!(req.headers().get_all("a").iter().count(), 2);
    /// ```
    pub fn header(mut self, name: &str, value: &str) -> Self {
        let name = http::HeaderName::try_from(name).expect("valid header name");
        let value = http::HeaderValue::try_from(value).expect("valid header value");
        self.0.headers.append(name, value);
        self
    }

    /// Finishes the request with `body`.
    ///
    /// ```
    /// # use outpost_sdk::{Method, Request};
    /// let req = Request::builder(Method::POST, "/").body("text");
    /// assert_eq!(req.text()?, "text");
    /// # Ok::<(), outpost_sdk::Error>(())
    /// ```
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.0.body = body.into();
        self.0
    }

    /// Finishes the request with an empty body.
    ///
    /// ```
    /// # use outpost_sdk::{Method, Request};
    /// assert!(Request::builder(Method::GET, "/").build().body().is_empty());
    /// ```
    pub fn build(self) -> Request {
        self.0
    }
}

fn percent_decode(input: &str) -> String {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(digit: u8) -> Option<u8> {
    (digit as char).to_digit(16).map(|value| value as u8)
}

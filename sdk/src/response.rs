use crate::Result;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde::Serialize;

/// An HTTP response for the handler to return.
///
/// ```
/// use outpost_sdk::{Response, StatusCode};
///
/// let res = Response::text("created\n")
///     .with_status(StatusCode::CREATED)
///     .with_header("location", "/items/7");
/// assert_eq!(res.status(), StatusCode::CREATED);
/// assert_eq!(res.headers()["location"], "/items/7");
/// assert_eq!(res.body(), b"created\n");
/// ```
#[derive(Debug, Clone)]
pub struct Response {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Response {
    /// An empty response with `status`.
    ///
    /// ```
    /// use outpost_sdk::{Response, StatusCode};
    /// let res = Response::new(StatusCode::NO_CONTENT);
    /// assert!(res.body().is_empty());
    /// ```
    pub fn new(status: StatusCode) -> Self {
        Self {
            status,
            headers: HeaderMap::new(),
            body: Vec::new(),
        }
    }

    /// A `200 OK` with a UTF-8 plain-text body.
    ///
    /// ```
    /// use outpost_sdk::Response;
    /// let res = Response::text("hi");
    /// assert_eq!(res.headers()["content-type"], "text/plain; charset=utf-8");
    /// ```
    pub fn text(body: impl Into<String>) -> Self {
        Self::new(StatusCode::OK)
            .with_header("content-type", "text/plain; charset=utf-8")
            .with_body(body.into())
    }

    /// A `200 OK` with `value` serialized as JSON.
    ///
    /// ```
    /// use outpost_sdk::Response;
    /// let res = Response::json(&serde_json::json!({"ok": true}))?;
    /// assert_eq!(res.body(), br#"{"ok":true}"#);
    /// assert_eq!(res.headers()["content-type"], "application/json");
    /// # Ok::<(), outpost_sdk::Error>(())
    /// ```
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Self> {
        Ok(Self::new(StatusCode::OK)
            .with_header("content-type", "application/json")
            .with_body(serde_json::to_vec(value)?))
    }

    /// Replaces the status.
    ///
    /// ```
    /// use outpost_sdk::{Response, StatusCode};
    /// let res = Response::text("gone").with_status(StatusCode::GONE);
    /// assert_eq!(res.status(), 410);
    /// ```
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// Appends a header.
    ///
    /// # Panics
    ///
    /// If `name` or `value` is not a valid header: use [`Response::headers_mut`]
    /// with checked conversions for values that come from input.
    ///
    /// ```
    /// use outpost_sdk::Response;
    /// let res = Response::text("").with_header("cache-control", "max-age=60");
    /// assert_eq!(res.headers()["cache-control"], "max-age=60");
    /// ```
    pub fn with_header(mut self, name: &'static str, value: impl AsRef<str>) -> Self {
        let value = HeaderValue::try_from(value.as_ref()).expect("valid header value");
        self.headers.append(HeaderName::from_static(name), value);
        self
    }

    /// Replaces the body.
    ///
    /// ```
    /// use outpost_sdk::{Response, StatusCode};
    /// let res = Response::new(StatusCode::OK).with_body(vec![0u8; 3]);
    /// assert_eq!(res.body().len(), 3);
    /// ```
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The status.
    ///
    /// ```
    /// # use outpost_sdk::Response;
    /// assert_eq!(Response::text("").status(), 200);
    /// ```
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The headers.
    ///
    /// ```
    /// # use outpost_sdk::Response;
    /// assert_eq!(Response::text("").headers().len(), 1);
    /// ```
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The headers, for changes beyond [`Response::with_header`].
    ///
    /// ```
    /// use outpost_sdk::{HeaderValue, Response};
    /// let mut res = Response::text("");
    /// res.headers_mut().insert("x-id", HeaderValue::from_static("7"));
    /// assert_eq!(res.headers()["x-id"], "7");
    /// ```
    pub fn headers_mut(&mut self) -> &mut HeaderMap {
        &mut self.headers
    }

    /// The body.
    ///
    /// ```
    /// # use outpost_sdk::Response;
    /// assert_eq!(Response::text("abc").body(), b"abc");
    /// ```
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    pub(crate) fn into_parts(self) -> (StatusCode, HeaderMap, Vec<u8>) {
        (self.status, self.headers, self.body)
    }
}

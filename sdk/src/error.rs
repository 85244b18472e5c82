use http::StatusCode;
use std::fmt;

/// The result a handler returns.
///
/// ```
/// use outpost_sdk::{Request, Response, Result};
///
/// fn handle(req: Request) -> Result<Response> {
///     let name: String = req.json()?;
///     Ok(Response::text(format!("hello {name}")))
/// }
/// ```
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error a handler returns instead of a response.
///
/// It becomes a response with [`Error::status`] (500 unless set) and the
/// message as a plain-text body; the message is also written to the guest's
/// stderr, which Outpost logs with the request id. Any standard error converts
/// into it with `?`.
///
/// ```
/// use outpost_sdk::{Error, StatusCode};
///
/// let err = Error::new(StatusCode::BAD_REQUEST, "missing ?name=");
/// assert_eq!(err.status(), StatusCode::BAD_REQUEST);
/// assert_eq!(err.to_string(), "missing ?name=");
/// ```
pub struct Error {
    status: StatusCode,
    message: String,
}

impl Error {
    /// An error answered with `status` and `message`.
    ///
    /// ```
    /// use outpost_sdk::{Error, StatusCode};
    /// let err = Error::new(StatusCode::NOT_FOUND, "no such user");
    /// # assert_eq!(err.status(), 404);
    /// ```
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// A `400 Bad Request` error.
    ///
    /// ```
    /// use outpost_sdk::Error;
    /// let err = Error::bad_request("body must be JSON");
    /// # assert_eq!(err.status(), 400);
    /// ```
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// The status the error is answered with.
    ///
    /// ```
    /// use outpost_sdk::Error;
    /// assert_eq!(Error::from(std::fmt::Error).status(), 500);
    /// ```
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

/// Any standard error becomes a 500 carrying its message, so `?` works on
/// everything.
impl<E: std::error::Error> From<E> for Error {
    fn from(err: E) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, err.to_string())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.message)
    }
}

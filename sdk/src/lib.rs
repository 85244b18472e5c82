//! Write Outpost edge handlers in Rust.
//!
//! A handler is a plain function from [`Request`] to [`Result<Response>`],
//! marked with [`handler`]. Built for `wasm32-wasip2`, it becomes a standard
//! `wasi:http` component that Outpost (or any other `wasi:http` host) runs
//! in a fresh, isolated instance per request.
//!
//! ```no_run
//! use outpost_sdk::{handler, Request, Response, Result};
//!
//! #[handler]
//! fn handle(req: Request) -> Result<Response> {
//!     Ok(Response::text(format!("hello from {}\n", req.path())))
//! }
//! ```
//!
//! The request body is read completely before the handler runs (the host
//! bounds its size), and the response body is written after it returns.
//! [`fetch`] sends requests to origins and named backends; [`cache`] looks
//! up, stores and purges responses in the app's edge cache; [`ratelimit`]
//! counts requests against the app's rate-limit policies; [`jwt`]
//! verifies tokens with its JWT policies; [`kv`] stores data in its
//! buckets; [`var`] and
//! [`secret`] read the app's variables and secrets; [`client`] says who
//! the client is.
#![deny(missing_docs)]

pub mod cache;
pub mod client;
mod error;
pub mod fetch;
pub mod jwt;
pub mod kv;
pub mod ratelimit;
mod request;
mod response;
mod vars;
mod wasi;

pub use error::{Error, Result};
pub use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
/// Marks the component's entry point: a plain function from [`Request`] to
/// [`Result<Response>`] becomes the component's `wasi:http/incoming-handler`
/// export. One per component.
///
/// ```no_run
/// use outpost_sdk::{handler, Request, Response, Result, StatusCode};
///
/// #[handler]
/// fn handle(req: Request) -> Result<Response> {
///     match req.path() {
///         "/" => Ok(Response::text("home\n")),
///         _ => Ok(Response::text("not here\n").with_status(StatusCode::NOT_FOUND)),
///     }
/// }
/// ```
pub use outpost_sdk_macro::handler;
pub use request::Request;
pub use response::Response;
pub use vars::{Secret, secret, var};

/// Glue used by the code that [`handler`] generates. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::wasi::bindings;
    pub use crate::wasi::bindings::exports::wasi::http::incoming_handler::Guest;
    pub use crate::wasi::bindings::wasi::http::types::{IncomingRequest, ResponseOutparam};
    pub use crate::wasi::run;
}

//! The client of the request being handled (`outpost:edge/client`).
//!
//! ```no_run
//! use outpost_sdk::{client, handler, Request, Response, Result};
//!
//! #[handler]
//! fn handle(_req: Request) -> Result<Response> {
//!     let who = client::ip().map_or("unknown".to_owned(), |ip| ip.to_string());
//!     Ok(Response::text(format!("hello, {who} (request {})\n", client::request_id())))
//! }
//! ```

use crate::wasi::bindings::outpost::edge::client as wit;
use std::net::IpAddr;

/// The client's address: the peer of the connection, or, behind a proxy
/// the node trusts (`[http] trusted_proxies` in node.toml), the address the
/// proxies forwarded. Never taken from a header a client could forge.
///
/// ```no_run
/// if let Some(ip) = outpost_sdk::client::ip() {
///     println!("from {ip}");
/// }
/// ```
pub fn ip() -> Option<IpAddr> {
    wit::ip()?.parse().ok()
}

/// The request's id: its `x-request-id`, and the id in the node's log
/// lines about it.
///
/// ```no_run
/// eprintln!("request {} failed", outpost_sdk::client::request_id());
/// ```
pub fn request_id() -> String {
    wit::request_id()
}

//! The client of the request being handled (`outpost:edge/client`): its
//! address, where it is, and the request's id.
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

/// Where the client is, as the node's MaxMind databases say (`[geo]
/// databases` in node.toml): `None` without databases, or for an address
/// none of them lists.
///
/// ```no_run
/// let country = outpost_sdk::client::geo().and_then(|geo| geo.country);
/// if country.as_deref() == Some("FR") {
///     // bonjour
/// }
/// ```
pub fn geo() -> Option<Geo> {
    let location = wit::geo()?;
    Some(Geo {
        country: location.country,
        continent: location.continent,
        city: location.city,
        asn: location.asn,
        as_org: location.as_org,
    })
}

/// Where a client is. Names are English.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Geo {
    /// ISO 3166-1 alpha-2 country code (`FR`).
    pub country: Option<String>,
    /// Continent code (`EU`).
    pub continent: Option<String>,
    /// City name.
    pub city: Option<String>,
    /// Autonomous system number.
    pub asn: Option<u32>,
    /// Autonomous system organization.
    pub as_org: Option<String>,
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

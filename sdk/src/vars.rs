//! The app's variables and secrets (`wasi:config/store`): `[variables]` in
//! outpost.toml, and secrets the node holds for the app, set with
//! `outpost secret put APP NAME`. A secret overrides a variable of the same
//! name. Both are read when asked, so a secret set on the node is seen from
//! the next request on, without a redeploy.
//!
//! ```toml
//! [variables]
//! api_url = "https://api.example.com"
//! ```
//!
//! ```no_run
//! use outpost_sdk::{handler, secret, var, Request, Response, Result};
//!
//! #[handler]
//! fn handle(_req: Request) -> Result<Response> {
//!     let api = var("api_url").unwrap_or_else(|| "https://fallback.example.com".into());
//!     let Some(key) = secret("api_key") else {
//!         return Ok(Response::text("not configured: outpost secret put APP api_key\n"));
//!     };
//!     let _authorization = format!("Bearer {}", key.expose());
//!     Ok(Response::text(format!("calling {api}\n")))
//! }
//! ```

use crate::wasi::bindings::wasi::config::store;
use std::fmt;

/// The value of variable (or secret) `name`, if the app has one.
///
/// ```no_run
/// let region = outpost_sdk::var("region").unwrap_or_else(|| "eu".into());
/// ```
pub fn var(name: &str) -> Option<String> {
    // Outpost holds every value in memory: its store never fails, and a
    // host that could not answer has no value to give either.
    store::get(name).ok().flatten()
}

/// The value of secret (or variable) `name`, if the app has one, wrapped
/// so that printing it by accident (`{:?}`, `{}`) shows no value.
///
/// ```no_run
/// if let Some(key) = outpost_sdk::secret("api_key") {
///     assert_eq!(format!("{key:?}"), "Secret(..)");
///     let _header = format!("Bearer {}", key.expose());
/// }
/// ```
pub fn secret(name: &str) -> Option<Secret> {
    var(name).map(Secret)
}

/// A secret's value: [`expose`](Secret::expose) it where it is used.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(secret)")
    }
}

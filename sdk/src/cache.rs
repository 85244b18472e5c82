//! The edge cache, from a handler (`outpost:edge/cache`): look up, store
//! and purge responses in the app's own cache, under the same keys and
//! HTTP caching rules (RFC 9111) as the cache in front of the handler.
//!
//! An entry stored here for a URL is the one the edge answers that URL's
//! requests with when the app's `[cache] enabled = true` puts the cache in
//! front of the handler; without it, only the handler reads its entries.
//! Either way the app's `[cache]` section bounds them (`memory_mib`,
//! `max_object_kib`) and shapes their keys (`[cache.key]`), and
//! `outpost purge` reaches them.
//!
//! ```no_run
//! use outpost_sdk::cache::{self, Freshness, Options};
//! use outpost_sdk::{handler, Request, Response, Result};
//! use std::time::Duration;
//!
//! #[handler]
//! fn handle(req: Request) -> Result<Response> {
//!     let url = req.url();
//!     if let Some(entry) = cache::lookup(&url, req.headers())? {
//!         let usable = entry.freshness() == Freshness::Fresh
//!             || (entry.freshness() == Freshness::StaleWhileRevalidate && !entry.should_refresh());
//!         if usable {
//!             return Ok(entry.into_response());
//!         }
//!     }
//!     let page = Response::text("an expensive page\n");
//!     let options = Options::new().ttl(Duration::from_secs(60)).tag("pages");
//!     cache::insert(&url, req.headers(), &page, &options)?;
//!     Ok(page)
//! }
//! ```

use crate::Response;
use crate::wasi::bindings::outpost::edge::cache as wit;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use std::fmt;
use std::time::Duration;

/// What a stored response is worth to the request that looked it up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Fresh: answer with it.
    Fresh,
    /// Stale within its `stale-while-revalidate` window: answer with it,
    /// and refresh it.
    StaleWhileRevalidate,
    /// Stale: revalidate it with the origin, but answer with it if the
    /// origin fails (`stale-if-error`).
    StaleIfError,
    /// Stale: revalidate it, or fetch the resource again, before
    /// answering.
    Stale,
}

/// A stored response, as [`lookup`] finds it.
#[derive(Debug, Clone)]
pub struct Entry {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
    age: Duration,
    ttl: Duration,
    freshness: Freshness,
    should_refresh: bool,
}

impl Entry {
    /// Its status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Its header fields as stored (without `Age`).
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// Its body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Its age (RFC 9111 §4.2.3).
    pub fn age(&self) -> Duration {
        self.age
    }

    /// How long until it goes stale; zero once it is.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// What it is worth to the request that looked it up.
    pub fn freshness(&self) -> Freshness {
        self.freshness
    }

    /// Whether this request should refresh it (render or fetch it again
    /// and [`insert`] it): true for one request at a time while it is
    /// [`Freshness::StaleWhileRevalidate`]; the others answer with it.
    pub fn should_refresh(&self) -> bool {
        self.should_refresh
    }

    /// The response to answer with: the stored one, with its `Age`.
    pub fn into_response(self) -> Response {
        let mut response = Response::new(self.status).with_body(self.body);
        *response.headers_mut() = self.headers;
        response
            .headers_mut()
            .insert("age", HeaderValue::from(self.age.as_secs()));
        response
    }
}

/// How [`insert`] stores a response, beyond what its own fields
/// (`Cache-Control`, `Expires`, `Cache-Tag`, `Surrogate-Key`) say.
///
/// ```
/// use outpost_sdk::cache::Options;
/// use std::time::Duration;
///
/// let options = Options::new()
///     .ttl(Duration::from_secs(300))
///     .stale_while_revalidate(Duration::from_secs(60))
///     .tag("product-7");
/// ```
#[derive(Debug, Clone, Default)]
pub struct Options {
    ttl: Option<Duration>,
    stale_while_revalidate: Option<Duration>,
    stale_if_error: Option<Duration>,
    tags: Vec<String>,
}

impl Options {
    /// Nothing beyond the response's own fields.
    pub fn new() -> Self {
        Self::default()
    }

    /// Fresh for `ttl` from now (whole seconds), whatever the response's
    /// fields say, and stored even if they give it no freshness.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Served stale for `window` past its freshness while it is refreshed.
    pub fn stale_while_revalidate(mut self, window: Duration) -> Self {
        self.stale_while_revalidate = Some(window);
        self
    }

    /// Served stale for `window` past its freshness when the origin fails.
    pub fn stale_if_error(mut self, window: Duration) -> Self {
        self.stale_if_error = Some(window);
        self
    }

    /// A purge tag, besides those of its `Cache-Tag` and `Surrogate-Key`
    /// fields (at most 64 in all, each at most 256 bytes).
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }
}

/// What [`purge`] and [`soft_purge`] select.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purge<'a> {
    /// One URL: absolute (`https://example.com/a?b=1`: that host only) or a
    /// path with its query (`/a?b=1`: every host of the app).
    Url(&'a str),
    /// Every URL starting with this prefix, absolute or a path.
    Prefix(&'a str),
    /// Every entry carrying this tag.
    Tag(&'a str),
    /// Every entry of the app.
    All,
}

/// The stored response a GET of `url` with `request_headers` would be
/// answered with, fresh or stale, or `None`. The headers select among
/// variants by `Vary`, join the key where `[cache.key]` says so, and their
/// `Cache-Control` (`max-age`, `max-stale`, `min-fresh`) weighs on the
/// entry's [`Freshness`].
///
/// Concurrent misses collapse: when nothing is stored, the first request
/// gets `None` at once and is expected to [`insert`]; the same lookup in
/// other requests waits (at most 10 s) for that insert, or for the first
/// request to end, and returns what is stored then.
///
/// ```no_run
/// use outpost_sdk::{cache, HeaderMap};
///
/// # fn main() -> Result<(), cache::CacheError> {
/// if let Some(entry) = cache::lookup("https://example.com/menu", &HeaderMap::new())? {
///     println!("{} bytes, {} s old", entry.body().len(), entry.age().as_secs());
/// }
/// # Ok(())
/// # }
/// ```
pub fn lookup(url: &str, request_headers: &HeaderMap) -> Result<Option<Entry>, CacheError> {
    let found = wit::lookup(url, &fields(request_headers)).map_err(CacheError::from_wit)?;
    Ok(found.map(|entry| Entry {
        status: StatusCode::from_u16(entry.status).unwrap_or(StatusCode::OK),
        headers: entry
            .headers
            .into_iter()
            .filter_map(|(name, value)| {
                Some((
                    HeaderName::from_bytes(name.as_bytes()).ok()?,
                    HeaderValue::from_bytes(&value).ok()?,
                ))
            })
            .collect(),
        body: entry.body,
        age: Duration::from_secs(entry.age),
        ttl: Duration::from_secs(entry.ttl),
        freshness: match entry.freshness {
            wit::Freshness::Fresh => Freshness::Fresh,
            wit::Freshness::StaleWhileRevalidate => Freshness::StaleWhileRevalidate,
            wit::Freshness::StaleIfError => Freshness::StaleIfError,
            wit::Freshness::Stale => Freshness::Stale,
        },
        should_refresh: entry.should_refresh,
    }))
}

/// Stores `response` as the answer to a GET of `url` with
/// `request_headers`, replacing the one stored for the same `Vary` fields.
/// Refused, with the reason, where a shared cache may not store it
/// (`no-store`, `private`, a `206`…), when it is larger than the app's
/// `max_object_kib`, or when the cache has no room.
///
/// ```no_run
/// use outpost_sdk::cache::{self, Options};
/// use outpost_sdk::{HeaderMap, Response};
///
/// # fn main() -> Result<(), cache::CacheError> {
/// let menu = Response::text("soup\n").with_header("cache-control", "max-age=600");
/// cache::insert("https://example.com/menu", &HeaderMap::new(), &menu, &Options::new())?;
/// # Ok(())
/// # }
/// ```
pub fn insert(
    url: &str,
    request_headers: &HeaderMap,
    response: &Response,
    options: &Options,
) -> Result<(), CacheError> {
    let seconds = |duration: Option<Duration>| {
        duration.map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
    };
    let options = wit::InsertOptions {
        ttl: seconds(options.ttl),
        stale_while_revalidate: seconds(options.stale_while_revalidate),
        stale_if_error: seconds(options.stale_if_error),
        tags: options.tags.clone(),
    };
    wit::insert(
        url,
        &fields(request_headers),
        response.status().as_u16(),
        &fields(response.headers()),
        response.body(),
        &options,
    )
    .map_err(CacheError::from_wit)
}

/// Drops the entries `target` selects; returns how many. At most 16
/// purges per request.
///
/// ```no_run
/// use outpost_sdk::cache::{self, Purge};
///
/// # fn main() -> Result<(), cache::CacheError> {
/// let purged = cache::purge(Purge::Tag("product-7"))?;
/// # Ok(())
/// # }
/// ```
pub fn purge(target: Purge<'_>) -> Result<u64, CacheError> {
    purge_with(target, false)
}

/// Marks the entries `target` selects stale instead of dropping them, so
/// that `stale-while-revalidate` and `stale-if-error` still apply; returns
/// how many.
///
/// ```no_run
/// use outpost_sdk::cache::{self, Purge};
///
/// # fn main() -> Result<(), cache::CacheError> {
/// cache::soft_purge(Purge::Prefix("/products/"))?;
/// # Ok(())
/// # }
/// ```
pub fn soft_purge(target: Purge<'_>) -> Result<u64, CacheError> {
    purge_with(target, true)
}

fn purge_with(target: Purge<'_>, soft: bool) -> Result<u64, CacheError> {
    let target = match target {
        Purge::Url(url) => wit::PurgeTarget::Url(url.to_owned()),
        Purge::Prefix(prefix) => wit::PurgeTarget::Prefix(prefix.to_owned()),
        Purge::Tag(tag) => wit::PurgeTarget::Tag(tag.to_owned()),
        Purge::All => wit::PurgeTarget::All,
    };
    wit::purge(&target, soft).map_err(CacheError::from_wit)
}

fn fields(headers: &HeaderMap) -> Vec<(String, Vec<u8>)> {
    headers
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect()
}

/// Why the cache refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CacheErrorKind {
    /// The URL is not an absolute `http(s)://` URL (for a purge: nor a
    /// path).
    InvalidUrl,
    /// A header field name or value is not valid.
    InvalidField,
    /// A shared cache may not store the response.
    NotStorable,
    /// The body is larger than the app's `max_object_kib`.
    TooLarge,
    /// The cache has no room for it now.
    NoRoom,
    /// A per-request bound (16 purges) was reached.
    Limit,
}

/// A refused cache call: its [kind](CacheError::kind) and the host's
/// reason. With `?` in a handler it becomes a 500.
///
/// ```
/// use outpost_sdk::cache::{CacheError, CacheErrorKind};
///
/// let err = CacheError::new(CacheErrorKind::NotStorable, "no-store");
/// assert_eq!(err.kind(), CacheErrorKind::NotStorable);
/// assert_eq!(err.to_string(), "cache refused (NotStorable): no-store");
/// ```
#[derive(Debug, Clone)]
pub struct CacheError {
    kind: CacheErrorKind,
    message: String,
}

impl CacheError {
    /// An error of `kind`.
    pub fn new(kind: CacheErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// Why the call was refused.
    pub fn kind(&self) -> CacheErrorKind {
        self.kind
    }

    fn from_wit(err: wit::Error) -> Self {
        use CacheErrorKind as K;
        match err {
            wit::Error::InvalidUrl(why) => Self::new(K::InvalidUrl, why),
            wit::Error::InvalidField(why) => Self::new(K::InvalidField, why),
            wit::Error::NotStorable(why) => Self::new(K::NotStorable, why),
            wit::Error::TooLarge(max) => {
                Self::new(K::TooLarge, format!("the body is over {max} bytes"))
            }
            wit::Error::NoRoom => Self::new(K::NoRoom, "the cache has no room for it now"),
            wit::Error::Limit(why) => Self::new(K::Limit, why),
        }
    }
}

impl fmt::Display for CacheError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cache refused ({:?}): {}", self.kind, self.message)
    }
}

impl std::error::Error for CacheError {}

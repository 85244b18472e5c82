//! Outpost's host services: what a handler reaches through the host.
//!
//! Each service has the same parts (ARCHITECTURE.md §4): a node-wide
//! service built once at start from node.toml, a per-app policy resolved
//! when the app is loaded (never parsed on the request path), and a
//! per-request context in the Store. Upstream fetch ([`fetch`]) is the
//! first; the cache, rate limits, JWT and KV follow its shape.
//!
//! The crate sits below `outpost-core`: core puts the contexts in each
//! request's Store, the server builds the services and the edge phase uses
//! them before any instance exists.

pub mod bindings;
pub mod cache;
pub mod client;
pub mod edge_rules;
mod escape;
pub mod fetch;
pub mod geo;
pub mod jwt;
pub mod kv;
mod meta;
pub mod ratelimit;
mod request_id;
pub mod vars;

pub use escape::{hex, printable, printable_capped};
pub use meta::RequestMeta;
pub use request_id::RequestId;

use std::sync::Arc;

/// The node's host services, built once at start and shared by every app.
#[derive(Clone, Debug)]
pub struct Services {
    /// Upstream fetch.
    pub fetch: Arc<fetch::FetchService>,
    /// The edge cache.
    pub cache: Arc<cache::CacheService>,
    /// Rate limiting.
    pub rate_limits: Arc<ratelimit::RateLimitService>,
    /// JWT policies' key sets.
    pub jwks: Arc<jwt::JwksCache>,
    /// Variables and secrets.
    pub vars: Arc<vars::VarsService>,
    /// Key-value storage.
    pub kv: Arc<kv::KvService>,
    /// Geo databases, if the operator gave any.
    pub geo: Option<Arc<geo::GeoDb>>,
}

impl Services {
    /// Services as `config` sets them up.
    pub fn new(
        fetch: &fetch::FetchConfig,
        cache: &cache::CacheConfig,
        rate_limits: &ratelimit::RateLimitConfig,
        kv: &kv::KvConfig,
        geo_databases: &[std::path::PathBuf],
    ) -> Result<Self, String> {
        let geo = if geo_databases.is_empty() {
            None
        } else {
            Some(Arc::new(geo::GeoDb::open(geo_databases)?))
        };
        let fetch = Arc::new(fetch::FetchService::new(fetch)?);
        Ok(Self {
            jwks: Arc::new(jwt::JwksCache::new(fetch.clone())),
            fetch,
            cache: Arc::new(cache::CacheService::new(cache)),
            rate_limits: Arc::new(ratelimit::RateLimitService::new(rate_limits)),
            vars: Arc::new(vars::VarsService::default()),
            kv: Arc::new(kv::KvService::new(kv.clone())),
            geo,
        })
    }
}

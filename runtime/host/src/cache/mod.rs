//! The edge cache's HTTP rules: RFC 9111 as a shared cache applies it,
//! plus RFC 5861's `stale-while-revalidate` and `stale-if-error`.
//!
//! This is the first part of the cache service (issue #10): the rules
//! alone, free of storage and I/O, so that the edge phase (a hit answered
//! before any instance exists), fetches from handlers and the
//! `outpost:edge/cache` interface all decide the same way. Directives are
//! parsed once when a response is stored ([`ResponseDirectives`],
//! [`Timing`]); a lookup is [`reuse`] on those and the request's
//! [`RequestDirectives`]. Entries are found by a primary key ([`KeyRules`])
//! and, among a resource's variants, by the secondary key its [`Vary`]
//! selects. A hit then answers a client's own conditional
//! ([`evaluate_conditional`]) and `Range` ([`answer_range`]) itself; a
//! `304` from the origin freshens the stored fields ([`selects`],
//! [`freshen`]); an unsafe request invalidates ([`invalidated`]).
//!
//! Why not `http-cache-semantics`: its `age()` ignores the response delay
//! and `Date` (§4.2.3), it knows nothing of `stale-while-revalidate` or
//! `stale-if-error`, and each lookup clones the stored header maps, which
//! a hit path aiming at native speed cannot afford.

mod answer;
mod directives;
mod entry;
mod flight;
mod freshness;
mod guest;
mod invalidate;
mod key;
mod origin;
mod purge;
mod range;
mod status;
mod store;
mod stored;
mod targeted;
mod validate;

pub use answer::{CACHE_STATUS, answer};
pub use directives::{Delta, FieldScope, RequestDirectives, ResponseDirectives};
pub use entry::Overrides;
pub use flight::{Flight, Follower, Leader, Refresh};
pub use freshness::{NotStorable, Reuse, Timing, fields_to_strip, reuse, storable};
pub use guest::CacheCtx;
pub use invalidate::invalidated;
pub use key::{KeyRules, Vary};
pub use origin::{CachedRequest, Miss, Origin};
pub use purge::Purge;
pub use range::{RangeAnswer, answer_range};
pub use status::CacheStatus;
pub use store::{CacheConfig, CachePolicy, CacheRules, CacheService, Lookup};
pub use stored::{CACHE_TAG, SURROGATE_KEY, Stored};
pub use targeted::CDN_CACHE_CONTROL;
pub use validate::{
    Conditional, evaluate_conditional, freshen, selects, strip_hop_by_hop, strong_eq, weak_eq,
};

/// The items of a list-valued field (RFC 9110 §5.6.1), across its lines,
/// trimmed, empty ones dropped. Only for fields whose items hold no
/// quoted commas (entity tags, field names).
fn list(headers: &http::HeaderMap, name: http::HeaderName) -> impl Iterator<Item = &str> {
    headers
        .get_all(name)
        .into_iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|item| !item.is_empty())
}

/// A header map of `lines`, for the tests of every rule.
#[cfg(test)]
fn test_headers(lines: &[(&'static str, &str)]) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    for (name, value) in lines {
        headers.append(*name, http::HeaderValue::from_str(value).unwrap());
    }
    headers
}

//! Whether a response is stored, and as what: the one decision for the
//! cache in front of a handler, for background refreshes and for the
//! `outpost:edge/cache` interface.

use super::directives::Delta;
use super::{
    CACHE_TAG, CachePolicy, NotStorable, RequestDirectives, ResponseDirectives, SURROGATE_KEY,
    Stored, storable,
};
use http::{HeaderMap, Method, StatusCode};
use std::time::{Duration, SystemTime};

/// What the one storing a response says about it beyond its own fields
/// (the `outpost:edge/cache` interface's insert options). The default
/// says nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    /// Fresh this long from when it is stored, whatever its fields say;
    /// a response whose fields give it no freshness is stored too.
    pub ttl: Option<Duration>,
    /// Its `stale-while-revalidate` window.
    pub stale_while_revalidate: Option<Duration>,
    /// Its `stale-if-error` window.
    pub stale_if_error: Option<Duration>,
    /// Purge tags besides its `Cache-Tag` and `Surrogate-Key` fields.
    pub tags: Vec<String>,
}

impl CachePolicy {
    /// The entry a response with `status` and `headers` to a `method`
    /// request with `request_headers` (sent at `requested_at`) makes,
    /// its body to come, or why it is not stored. `declared`: the body's
    /// length, if known.
    #[expect(
        clippy::too_many_arguments,
        reason = "the facts of one exchange; a struct of them would only rename them"
    )]
    pub fn entry_for(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        method: &Method,
        request_headers: &HeaderMap,
        requested_at: SystemTime,
        declared: Option<u64>,
        overrides: &Overrides,
    ) -> Result<Stored, &'static str> {
        let mut directives = ResponseDirectives::of(headers);
        match storable(
            method,
            request_headers,
            &RequestDirectives::of(request_headers),
            status,
            headers,
            &directives,
        ) {
            Ok(()) => {}
            Err(NotStorable::NoFreshness) if overrides.ttl.is_some() => {}
            Err(why) => return Err(why.as_str()),
        }
        if declared.is_some_and(|length| length > self.rules().max_object) {
            return Err("too-large");
        }
        let seconds = |window: Duration| Some(Delta::Seconds(window));
        if let Some(window) = overrides.stale_while_revalidate {
            directives.stale_while_revalidate = seconds(window);
        }
        if let Some(window) = overrides.stale_if_error {
            directives.stale_if_error = seconds(window);
        }
        let mut entry = Stored::new(
            status,
            headers.clone(),
            directives,
            request_headers,
            requested_at,
        );
        if let Some(ttl) = overrides.ttl {
            entry.timing.lifetime = entry.timing.age(SystemTime::now()) + ttl;
        }
        entry.add_tags(overrides.tags.iter().map(String::as_str));
        self.strip_tags(&mut entry.headers);
        if entry.worth_storing() {
            Ok(entry)
        } else {
            Err("not-reusable")
        }
    }

    /// Removes the purge tag fields, which are the edge's unless the app
    /// passes them on (`keep_tag_headers`).
    pub fn strip_tags(&self, headers: &mut HeaderMap) {
        if !self.rules().keep_tag_headers {
            headers.remove(CACHE_TAG);
            headers.remove(SURROGATE_KEY);
        }
    }
}

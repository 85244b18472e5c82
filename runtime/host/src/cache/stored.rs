//! A stored response: its head, body and everything the cache decides
//! with, parsed once when it is stored.

use super::{ResponseDirectives, Timing, Vary, freshen, strip_hop_by_hop};
use bytes::Bytes;
use http::header::{ETAG, HeaderName, LAST_MODIFIED};
use http::{HeaderMap, StatusCode};
use std::time::{Duration, SystemTime};

/// `Cache-Tag` (comma-separated tags), as Cloudflare and Fastly read it.
pub const CACHE_TAG: HeaderName = HeaderName::from_static("cache-tag");
/// `Surrogate-Key` (space-separated tags), as Fastly and Varnish read it.
pub const SURROGATE_KEY: HeaderName = HeaderName::from_static("surrogate-key");

/// Tags kept per response; more are ignored.
const MAX_TAGS: usize = 64;
/// The longest tag; longer ones are ignored.
const MAX_TAG_LEN: usize = 256;

/// What an entry costs beyond its key, headers and body (the entry, its
/// `Arc`s, moka's bookkeeping), so that a flood of empty responses is
/// still bounded.
const ENTRY_OVERHEAD: u64 = 512;

/// How long a stale response with validators is kept beyond its usable
/// life, to be revalidated with a conditional request instead of fetched
/// whole.
const KEEP_FOR_REVALIDATION: Duration = Duration::from_secs(600);

/// A stored response.
#[derive(Clone, Debug)]
pub struct Stored {
    pub status: StatusCode,
    /// Its header fields, hop-by-hop ones removed.
    pub headers: HeaderMap,
    pub body: Bytes,
    pub directives: ResponseDirectives,
    pub timing: Timing,
    pub vary: Vary,
    /// The secondary key of the request it answered (`None` under
    /// `Vary: *`: it matches no later request).
    pub secondary: Option<Vec<u8>>,
    /// Its purge tags, from `Cache-Tag` and `Surrogate-Key`.
    pub tags: Vec<Box<str>>,
}

impl Stored {
    /// The entry for a response with `status` and `headers` (its
    /// `directives` parsed from them) to a request with `request_headers`
    /// sent at `requested_at`, received now; its body comes later.
    pub fn new(
        status: StatusCode,
        mut headers: HeaderMap,
        directives: ResponseDirectives,
        request_headers: &HeaderMap,
        requested_at: SystemTime,
    ) -> Self {
        strip_hop_by_hop(&mut headers);
        let vary = Vary::of(&headers);
        let secondary = vary.secondary(request_headers);
        let tags = tags_of(&headers);
        let timing = Timing::of(
            status,
            &headers,
            &directives,
            requested_at,
            SystemTime::now(),
        );
        Self {
            status,
            headers,
            body: Bytes::new(),
            directives,
            timing,
            vary,
            secondary,
            tags,
        }
    }

    /// This entry freshened by a `304` with `not_modified` fields, to a
    /// request sent at `requested_at` (RFC 9111 §4.3.4).
    pub fn freshened(&self, not_modified: &HeaderMap, requested_at: SystemTime) -> Self {
        let mut fresh = self.clone();
        freshen(&mut fresh.headers, not_modified);
        fresh.directives = ResponseDirectives::of(&fresh.headers);
        fresh.timing = Timing::of(
            fresh.status,
            &fresh.headers,
            &fresh.directives,
            requested_at,
            SystemTime::now(),
        );
        fresh
    }

    /// Bytes it holds, roughly: what the budgets count.
    pub(super) fn weight(&self) -> u64 {
        let headers: usize = self
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 32)
            .sum();
        ENTRY_OVERHEAD
            + self.body.len() as u64
            + headers as u64
            + self.secondary.as_ref().map_or(0, Vec::len) as u64
            + self
                .tags
                .iter()
                .map(|tag| tag.len() as u64 + 16)
                .sum::<u64>()
    }

    /// Whether a conditional request can revalidate it.
    pub fn has_validator(&self) -> bool {
        self.headers.contains_key(ETAG) || self.headers.contains_key(LAST_MODIFIED)
    }

    /// How long from `now` a request could still use it.
    pub(super) fn usable_for(&self, now: SystemTime) -> Duration {
        let age = self.timing.age(now);
        let window = [
            self.directives.stale_while_revalidate,
            self.directives.stale_if_error,
        ]
        .into_iter()
        .flatten()
        .map(|delta| delta.or_zero())
        .max()
        .unwrap_or_default();
        let usable = (self.timing.lifetime + window).saturating_sub(age);
        if self.has_validator() {
            usable + KEEP_FOR_REVALIDATION
        } else {
            usable
        }
    }

    /// Whether storing it is of any use: something could reuse it.
    pub fn worth_storing(&self) -> bool {
        self.secondary.is_some() && !self.usable_for(SystemTime::now()).is_zero()
    }

    /// Adds purge tags besides those of its fields.
    pub fn add_tags<'a>(&mut self, tags: impl Iterator<Item = &'a str>) {
        push_tags(&mut self.tags, tags);
    }

    /// This entry made stale now (a soft purge): still usable where stale
    /// responses are (`stale-while-revalidate`, `stale-if-error`,
    /// `max-stale`), revalidated otherwise.
    pub fn stale_now(&self) -> Self {
        let mut stale = self.clone();
        stale.timing.lifetime = stale
            .timing
            .lifetime
            .min(self.timing.age(SystemTime::now()));
        stale
    }
}

/// The tags of a response: `Cache-Tag` items split at commas,
/// `Surrogate-Key` items at spaces, each line counted.
fn tags_of(headers: &HeaderMap) -> Vec<Box<str>> {
    let comma = headers
        .get_all(CACHE_TAG)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','));
    let space = headers
        .get_all(SURROGATE_KEY)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(' '));
    let mut tags = Vec::new();
    push_tags(&mut tags, comma.chain(space));
    tags
}

/// Adds `more` to `tags`: trimmed, empty, too long and repeated ones
/// left out, at most [`MAX_TAGS`] in all.
fn push_tags<'a>(tags: &mut Vec<Box<str>>, more: impl Iterator<Item = &'a str>) {
    for tag in more.map(str::trim) {
        if tag.is_empty() || tag.len() > MAX_TAG_LEN || tags.iter().any(|t| &**t == tag) {
            continue;
        }
        if tags.len() == MAX_TAGS {
            break;
        }
        tags.push(tag.into());
    }
}

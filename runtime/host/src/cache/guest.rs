//! The cache as handlers call it (`outpost:edge/cache`, `wit/cache.wit`):
//! lookups, inserts and purges on the app's own store, keyed and decided
//! as the cache in front of the handler keys and decides.

use super::{
    CachePolicy, Flight, Leader, Lookup, Overrides, Purge, Refresh, RequestDirectives, Reuse, reuse,
};
use crate::bindings::outpost::edge::cache::{
    Entry, Error, Fields, Freshness, Host, InsertOptions, PurgeTarget,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Purges one request may make: each walks the app's entries on a
/// blocking thread.
const MAX_PURGES: u32 = 16;

/// Misses and refreshes one request may claim at once.
const MAX_CLAIMS: usize = 16;

/// How long a lookup waits for another request's insert of its key.
const COLLAPSE_WAIT: Duration = Duration::from_secs(10);

/// Bytes of one header list a guest passes (names and values), as for
/// `wasi:http` fields.
const MAX_FIELDS_SIZE: usize = 64 << 10;

/// One request's view of its app's cache.
pub struct CacheCtx {
    policy: Arc<CachePolicy>,
    app: Arc<str>,
    purges: u32,
    /// Keys this request is expected to insert: lookups of them by other
    /// requests wait until it has, or until the request ends.
    claims: Vec<(Vec<u8>, Claim)>,
}

/// A key this request looked up and is the one to store.
enum Claim {
    /// Nothing was stored: the others wait for this request's insert.
    Miss(#[expect(dead_code, reason = "held until released, never read")] Leader),
    /// Stale within `stale-while-revalidate`: the others answer with it.
    Refresh(#[expect(dead_code, reason = "held until released, never read")] Refresh),
}

impl CacheCtx {
    /// The cache of `app` under `policy`, for one request.
    pub fn new(policy: Arc<CachePolicy>, app: Arc<str>) -> Self {
        Self {
            policy,
            app,
            purges: 0,
            claims: Vec::new(),
        }
    }

    /// Whether this request holds the claim on `key`: it did already, or
    /// `make` claims it now (unless the request holds as many claims as it
    /// may).
    fn claim(&mut self, key: &[u8], make: impl FnOnce() -> Option<Claim>) -> bool {
        if self.claims.iter().any(|(k, _)| k == key) {
            return true;
        }
        if self.claims.len() == MAX_CLAIMS {
            return false;
        }
        match make() {
            Some(claim) => {
                self.claims.push((key.to_vec(), claim));
                true
            }
            None => false,
        }
    }

    /// The primary key of a GET of `url` with `headers`.
    fn key(&self, url: &str, headers: &HeaderMap) -> Result<Vec<u8>, Error> {
        let uri = absolute_url(url)?;
        let https = uri.scheme_str() == Some("https");
        let host = uri.host().unwrap_or_default();
        Ok(self
            .policy
            .rules()
            .key
            .primary(&self.app, https, host, &uri, headers))
    }
}

impl Host for CacheCtx {
    async fn lookup(
        &mut self,
        url: String,
        request_headers: Fields,
    ) -> Result<Option<Entry>, Error> {
        let headers = header_map(request_headers)?;
        let key = self.key(&url, &headers)?;
        let mut found = self.policy.lookup(&key, &headers);
        if !matches!(found, Lookup::Found(_)) {
            let mut waiting = None;
            let policy = self.policy.clone();
            let guests = &policy.store.flights.guests;
            let led = self.claim(&key, || match guests.collapse(&key, None) {
                Flight::Lead(leader) => Some(Claim::Miss(leader)),
                Flight::Alone => None,
                Flight::Follow(follower) => {
                    waiting = Some(follower);
                    None
                }
            });
            if led {
                return Ok(None);
            }
            if let Some(follower) = waiting {
                follower.wait(COLLAPSE_WAIT).await;
                found = self.policy.lookup(&key, &headers);
            }
        }
        let Lookup::Found(stored) = found else {
            return Ok(None);
        };
        let now = SystemTime::now();
        let age = stored.timing.age(now);
        let freshness = match reuse(
            &stored.timing,
            &stored.directives,
            &RequestDirectives::of(&headers),
            now,
        ) {
            Reuse::Fresh | Reuse::StaleAccepted => Freshness::Fresh,
            Reuse::StaleWhileRevalidate => Freshness::StaleWhileRevalidate,
            Reuse::Revalidate { if_error: true } => Freshness::StaleIfError,
            Reuse::Revalidate { if_error: false } => Freshness::Stale,
        };
        let should_refresh = freshness == Freshness::StaleWhileRevalidate && {
            let policy = self.policy.clone();
            let guests = &policy.store.flights.guests;
            self.claim(&key, || guests.start_refresh(&key).map(Claim::Refresh))
        };
        Ok(Some(Entry {
            status: stored.status.as_u16(),
            headers: stored
                .headers
                .iter()
                .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
                .collect(),
            body: stored.body.to_vec(),
            age: age.as_secs(),
            ttl: stored.timing.lifetime.saturating_sub(age).as_secs(),
            freshness,
            should_refresh,
        }))
    }

    fn insert(
        &mut self,
        url: String,
        request_headers: Fields,
        status: u16,
        headers: Fields,
        body: Vec<u8>,
        options: InsertOptions,
    ) -> Result<(), Error> {
        let request_headers = header_map(request_headers)?;
        let key = self.key(&url, &request_headers)?;
        let headers = header_map(headers)?;
        let status = StatusCode::from_u16(status)
            .map_err(|_| Error::NotStorable(format!("{status} is not a status code")))?;
        let max_object = self.policy.rules().max_object;
        if body.len() as u64 > max_object {
            return Err(Error::TooLarge(max_object));
        }
        let seconds = |value: Option<u32>| value.map(|s| Duration::from_secs(s.into()));
        let overrides = Overrides {
            ttl: seconds(options.ttl),
            stale_while_revalidate: seconds(options.stale_while_revalidate),
            stale_if_error: seconds(options.stale_if_error),
            tags: options.tags,
        };
        let mut entry = self
            .policy
            .entry_for(
                status,
                &headers,
                &Method::GET,
                &request_headers,
                SystemTime::now(),
                Some(body.len() as u64),
                &overrides,
            )
            .map_err(|why| Error::NotStorable(why.to_owned()))?;
        entry.body = body.into();
        let stored = self.policy.insert(&key, entry);
        // Requests waiting for this key look again.
        self.claims.retain(|(claimed, _)| *claimed != key);
        if stored { Ok(()) } else { Err(Error::NoRoom) }
    }

    async fn purge(&mut self, target: PurgeTarget, soft: bool) -> Result<u64, Error> {
        if self.purges == MAX_PURGES {
            return Err(Error::Limit(format!(
                "a request may purge at most {MAX_PURGES} times"
            )));
        }
        self.purges += 1;
        let mut purge = Purge {
            soft,
            ..Purge::default()
        };
        match target {
            PurgeTarget::Url(url) => purge.urls.push(url),
            PurgeTarget::Prefix(prefix) => purge.prefixes.push(prefix),
            PurgeTarget::Tag(tag) => purge.tags.push(tag),
            PurgeTarget::All => purge.all = true,
        }
        let policy = self.policy.clone();
        // A purge walks the app's entries: not on the worker's thread.
        tokio::task::spawn_blocking(move || policy.purge(&purge))
            .await
            .map_err(|err| Error::Limit(format!("the purge did not finish: {err}")))?
            .map_err(Error::InvalidUrl)
    }
}

/// `url` if it is an absolute `http(s)` URL with a host.
fn absolute_url(url: &str) -> Result<Uri, Error> {
    let uri: Uri = url
        .parse()
        .map_err(|err| Error::InvalidUrl(format!("{url:?}: {err}")))?;
    match uri.scheme_str() {
        Some("http" | "https") if uri.host().is_some_and(|host| !host.is_empty()) => Ok(uri),
        _ => Err(Error::InvalidUrl(format!(
            "{url:?}: give an absolute http:// or https:// URL"
        ))),
    }
}

/// The guest's fields as a header map, each checked.
fn header_map(fields: Fields) -> Result<HeaderMap, Error> {
    let size: usize = fields
        .iter()
        .map(|(name, value)| name.len() + value.len())
        .sum();
    if size > MAX_FIELDS_SIZE {
        return Err(Error::InvalidField(format!(
            "the fields take {size} bytes; at most {MAX_FIELDS_SIZE}"
        )));
    }
    let mut headers = HeaderMap::with_capacity(fields.len());
    for (name, value) in fields {
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| Error::InvalidField(format!("{name:?} is not a field name")))?;
        let value = HeaderValue::from_bytes(&value).map_err(|_| {
            Error::InvalidField(format!("the value of {name:?} is not a valid field value"))
        })?;
        headers.append(header, value);
    }
    Ok(headers)
}

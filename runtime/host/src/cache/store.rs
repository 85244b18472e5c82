//! The L1 tier: stored responses in the node's memory, one `moka` cache
//! per app, each bounded in bytes (entries weighed by their size, TinyLFU
//! admission), and all of them together bounded by the node's budget.
//!
//! Each app has a cache of its own, so one app's traffic can never evict
//! another's entries, and no key of one app can name another's entry. The
//! node's budget is enforced at insertion: a response that would take the
//! node's total past it is not stored (the app's own budget, by contrast,
//! makes room by evicting that app's least useful entries). An app keeps
//! its cache across versions: a deploy does not empty it.
//!
//! A primary key holds the variants its responses' `Vary` selects (a few;
//! more replace the oldest). Bodies are `Bytes`: a hit clones a reference,
//! never the body.

use super::{KeyRules, ResponseDirectives, Timing, Vary, freshen, strip_hop_by_hop};
use bytes::Bytes;
use http::header::{ETAG, LAST_MODIFIED};
use http::{HeaderMap, StatusCode};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// The node's `[cache]` settings.
#[derive(Clone, Debug)]
pub struct CacheConfig {
    /// Bytes all apps' stored responses may take together.
    pub memory: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self { memory: 256 << 20 }
    }
}

/// An app's `[cache]` settings, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheRules {
    /// How requests map to entries.
    pub key: KeyRules,
    /// Bytes this app's stored responses may take.
    pub memory: u64,
    /// The largest response body stored; larger ones pass through.
    pub max_object: u64,
}

impl Default for CacheRules {
    fn default() -> Self {
        Self {
            key: KeyRules::default(),
            memory: 64 << 20,
            max_object: 8 << 20,
        }
    }
}

/// Variants kept per primary key: more `Vary` combinations than this
/// replace the oldest.
const MAX_VARIANTS: usize = 8;

/// What an entry costs beyond its key, headers and body (the entry, its
/// `Arc`s, moka's bookkeeping), so that a flood of empty responses is
/// still bounded.
const ENTRY_OVERHEAD: u64 = 512;

/// How long a stale response with validators is kept beyond its usable
/// life, to be revalidated with a conditional request instead of fetched
/// whole.
const KEEP_FOR_REVALIDATION: Duration = Duration::from_secs(600);

/// The node's cache: every app's L1 store.
#[derive(Debug)]
pub struct CacheService {
    memory: u64,
    apps: Mutex<HashMap<String, Arc<AppStore>>>,
}

impl CacheService {
    pub fn new(config: &CacheConfig) -> Self {
        Self {
            memory: config.memory,
            apps: Mutex::default(),
        }
    }

    /// The cache of app `name` under `rules`, made at load time. A new
    /// version of the app shares its predecessor's entries unless its
    /// memory budget changed.
    pub fn policy(self: &Arc<Self>, name: &str, rules: CacheRules) -> CachePolicy {
        let mut apps = self
            .apps
            .lock()
            .expect("the cache's app map is never poisoned");
        let store = match apps.get(name) {
            Some(store) if store.memory == rules.memory => store.clone(),
            _ => {
                let store = Arc::new(AppStore::new(rules.memory.min(self.memory)));
                apps.insert(name.to_owned(), store.clone());
                store
            }
        };
        CachePolicy {
            service: self.clone(),
            store,
            rules,
        }
    }

    /// Bytes held by all apps' entries.
    pub fn used(&self) -> u64 {
        let apps = self
            .apps
            .lock()
            .expect("the cache's app map is never poisoned");
        apps.values()
            .map(|store| store.entries.weighted_size())
            .sum()
    }
}

/// One app's entries.
struct AppStore {
    memory: u64,
    entries: moka::sync::Cache<Box<[u8]>, Arc<Resource>>,
    /// Keys being refreshed in the background: one refresh per key.
    refreshing: Arc<Mutex<HashSet<Box<[u8]>>>>,
}

impl std::fmt::Debug for AppStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppStore")
            .field("memory", &self.memory)
            .field("entries", &self.entries.entry_count())
            .finish()
    }
}

impl AppStore {
    fn new(memory: u64) -> Self {
        let entries = moka::sync::Cache::builder()
            .max_capacity(memory)
            .weigher(|key: &Box<[u8]>, resource: &Arc<Resource>| {
                u32::try_from(key.len() as u64 + resource.weight()).unwrap_or(u32::MAX)
            })
            .expire_after(UsableLife)
            .support_invalidation_closures()
            .build();
        Self {
            memory,
            entries,
            refreshing: Arc::default(),
        }
    }
}

/// The variants stored under one primary key, newest first.
#[derive(Debug)]
struct Resource {
    variants: Vec<Arc<Stored>>,
}

impl Resource {
    fn weight(&self) -> u64 {
        self.variants.iter().map(|stored| stored.weight()).sum()
    }
}

/// Entries leave the store once no request could use them: past their
/// freshness, their `stale-while-revalidate`/`stale-if-error` windows,
/// and (with validators) a while more for revalidation.
struct UsableLife;

impl moka::Expiry<Box<[u8]>, Arc<Resource>> for UsableLife {
    fn expire_after_create(
        &self,
        _key: &Box<[u8]>,
        resource: &Arc<Resource>,
        _now: std::time::Instant,
    ) -> Option<Duration> {
        let now = SystemTime::now();
        resource
            .variants
            .iter()
            .map(|stored| stored.usable_for(now))
            .max()
    }

    fn expire_after_update(
        &self,
        key: &Box<[u8]>,
        resource: &Arc<Resource>,
        now: std::time::Instant,
        _left: Option<Duration>,
    ) -> Option<Duration> {
        self.expire_after_create(key, resource, now)
    }
}

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
    fn weight(&self) -> u64 {
        let headers: usize = self
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 32)
            .sum();
        ENTRY_OVERHEAD
            + self.body.len() as u64
            + headers as u64
            + self.secondary.as_ref().map_or(0, Vec::len) as u64
    }

    /// Whether a conditional request can revalidate it.
    pub fn has_validator(&self) -> bool {
        self.headers.contains_key(ETAG) || self.headers.contains_key(LAST_MODIFIED)
    }

    /// How long from `now` a request could still use it.
    fn usable_for(&self, now: SystemTime) -> Duration {
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
}

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup {
    /// The variant the request selects.
    Found(Arc<Stored>),
    /// Nothing under the request's primary key.
    UriMiss,
    /// Responses under the key, none for the request's `Vary` fields.
    VaryMiss,
}

/// An app's cache as its requests use it: its store and its rules.
#[derive(Clone, Debug)]
pub struct CachePolicy {
    service: Arc<CacheService>,
    store: Arc<AppStore>,
    rules: CacheRules,
}

impl CachePolicy {
    /// The app's rules.
    pub fn rules(&self) -> &CacheRules {
        &self.rules
    }

    /// The variant stored under `key` that a request with `headers`
    /// selects.
    pub fn lookup(&self, key: &[u8], headers: &HeaderMap) -> Lookup {
        let Some(resource) = self.store.entries.get(key) else {
            return Lookup::UriMiss;
        };
        resource
            .variants
            .iter()
            .find(|stored| {
                stored.secondary.is_some() && stored.vary.secondary(headers) == stored.secondary
            })
            .map_or(Lookup::VaryMiss, |stored| Lookup::Found(stored.clone()))
    }

    /// Stores `stored` under `key`, replacing the variant with the same
    /// secondary key. Returns whether it was stored: not if it is larger
    /// than the app's largest object, or would take the node past its
    /// budget.
    pub fn insert(&self, key: &[u8], stored: Stored) -> bool {
        let weight = stored.weight();
        if stored.body.len() as u64 > self.rules.max_object
            || weight > self.store.memory
            || self.service.used() + weight > self.service.memory
        {
            return false;
        }
        let stored = Arc::new(stored);
        let mut variants = vec![stored.clone()];
        if let Some(resource) = self.store.entries.get(key) {
            variants.extend(
                resource
                    .variants
                    .iter()
                    .filter(|old| old.secondary != stored.secondary)
                    .take(MAX_VARIANTS - 1)
                    .cloned(),
            );
        }
        self.store
            .entries
            .insert(key.into(), Arc::new(Resource { variants }));
        true
    }

    /// Drops every entry of the resource at `uri_key` (a key made by
    /// [`KeyRules::uri_prefix`]), whatever the headers or cookie the
    /// app's key rules add.
    pub fn invalidate_uri(&self, uri_key: Vec<u8>) {
        let _ = self.store.entries.invalidate_entries_if(move |key, _| {
            key.strip_prefix(uri_key.as_slice())
                .is_some_and(|rest| rest.is_empty() || rest[0] == super::key::SEP)
        });
    }

    /// Claims the background refresh of `key` (`stale-while-revalidate`),
    /// or `None` if one is already running: until the returned guard is
    /// dropped, no other request starts one.
    pub fn start_refresh(&self, key: &[u8]) -> Option<Refresh> {
        let mut refreshing = self
            .store
            .refreshing
            .lock()
            .expect("the refresh set is never poisoned");
        refreshing.insert(key.into()).then(|| Refresh {
            set: self.store.refreshing.clone(),
            key: key.into(),
        })
    }

    /// Bytes this app's entries take.
    pub fn used(&self) -> u64 {
        self.store.entries.run_pending_tasks();
        self.store.entries.weighted_size()
    }

    /// Entries this app has stored.
    pub fn entries(&self) -> u64 {
        self.store.entries.run_pending_tasks();
        self.store.entries.entry_count()
    }
}

/// A background refresh in progress; dropping it ends the claim.
#[derive(Debug)]
pub struct Refresh {
    set: Arc<Mutex<HashSet<Box<[u8]>>>>,
    key: Box<[u8]>,
}

impl Drop for Refresh {
    fn drop(&mut self) {
        if let Ok(mut set) = self.set.lock() {
            set.remove(&self.key);
        }
    }
}

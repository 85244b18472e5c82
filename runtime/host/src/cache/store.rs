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

use super::flight::Flights;
use super::{KeyRules, Stored};
use http::HeaderMap;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
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

/// An app's `[cache]` settings, validated. Every app has a cache (handlers
/// reach it through `outpost:edge/cache`); `in_front` puts it in front of
/// the handler too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheRules {
    /// Requests are answered from the cache before the handler
    /// (`enabled = true`).
    pub in_front: bool,
    /// How requests map to entries.
    pub key: KeyRules,
    /// Bytes this app's stored responses may take.
    pub memory: u64,
    /// The largest response body stored; larger ones pass through.
    pub max_object: u64,
    /// Pass `Cache-Tag` and `Surrogate-Key` on to clients (by default the
    /// edge keeps them to itself).
    pub keep_tag_headers: bool,
}

impl Default for CacheRules {
    fn default() -> Self {
        Self {
            in_front: false,
            key: KeyRules::default(),
            memory: 64 << 20,
            max_object: 8 << 20,
            keep_tag_headers: false,
        }
    }
}

/// Variants kept per primary key: more `Vary` combinations than this
/// replace the oldest.
const MAX_VARIANTS: usize = 8;

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
            Some(store) if store.memory == rules.memory.min(self.memory) => store.clone(),
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

/// One app's entries, and what is in flight for them.
pub(super) struct AppStore {
    memory: u64,
    pub(super) entries: moka::sync::Cache<Box<[u8]>, Arc<Resource>>,
    /// Tag → the keys of the entries carrying it, each with the entry's
    /// generation. A superset (a purge checks each entry's own tags).
    pub(super) tags: Arc<Mutex<TagIndex>>,
    /// The generation of the next entry stored.
    generation: AtomicU64,
    pub(super) flights: Flights,
}

/// Tag → key → the generation of the entry stored under the key when it
/// was indexed. An entry leaving the store (evicted, expired, purged,
/// replaced) unindexes only what it indexed itself: its successor under
/// the same key, stored meanwhile, stays findable by its tags.
pub(super) type TagIndex = HashMap<Box<str>, HashMap<Box<[u8]>, u64>>;

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
        let tags: Arc<Mutex<TagIndex>> = Arc::default();
        let index = tags.clone();
        let entries = moka::sync::Cache::<Box<[u8]>, Arc<Resource>>::builder()
            .max_capacity(memory)
            .weigher(|key, resource| {
                u32::try_from(key.len() as u64 + resource.weight()).unwrap_or(u32::MAX)
            })
            .expire_after(UsableLife)
            .support_invalidation_closures()
            .eviction_listener(move |key, resource: Arc<Resource>, _cause| {
                let Ok(mut index) = index.lock() else {
                    return;
                };
                for tag in resource.variants.iter().flat_map(|stored| &stored.tags) {
                    let Some(keys) = index.get_mut(tag) else {
                        continue;
                    };
                    if keys.get(&**key) == Some(&resource.generation) {
                        keys.remove(&**key);
                        if keys.is_empty() {
                            index.remove(tag);
                        }
                    }
                }
            })
            .build();
        Self {
            memory,
            entries,
            tags,
            generation: AtomicU64::new(0),
            flights: Flights::default(),
        }
    }

    /// Stores `variants` under `key` as a new entry, indexed by its tags.
    pub(super) fn put(&self, key: Box<[u8]>, variants: Vec<Arc<Stored>>) {
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        let mut tags = variants.iter().flat_map(|stored| &stored.tags).peekable();
        if tags.peek().is_some() {
            let mut index = self.tags.lock().expect("the tag index is never poisoned");
            for tag in tags {
                index
                    .entry(tag.clone())
                    .or_default()
                    .insert(key.clone(), generation);
            }
        }
        self.entries.insert(
            key,
            Arc::new(Resource {
                variants,
                generation,
            }),
        );
    }
}

/// The variants stored under one primary key, newest first.
#[derive(Debug)]
pub(super) struct Resource {
    pub(super) variants: Vec<Arc<Stored>>,
    /// Which store of the key this is (see [`TagIndex`]).
    generation: u64,
}

impl Resource {
    fn weight(&self) -> u64 {
        self.variants.iter().map(|stored| stored.weight()).sum()
    }

    /// Whether any variant carries `tag`.
    pub(super) fn tagged(&self, tag: &str) -> bool {
        self.variants
            .iter()
            .any(|stored| stored.tags.iter().any(|t| &**t == tag))
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
    pub(super) store: Arc<AppStore>,
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
    pub fn insert(&self, key: &[u8], mut stored: Stored) -> bool {
        // Hits answer with the stored fields as they are: the length is
        // the stored body's (the origin may have sent none, or chunks).
        stored.headers.insert(
            http::header::CONTENT_LENGTH,
            super::answer::number(stored.body.len() as u64),
        );
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
        self.store.put(key.into(), variants);
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

//! A JSON Web Key Set, fetched through the upstream fetch path
//! (the node's private-range rule applies: a manifest cannot point the
//! node at an internal address), kept for as long as its `Cache-Control`
//! says (within bounds), and fetched again early when a token names a
//! `kid` it lacks — at most once per `jwks_refresh_min`, so a flood of
//! tokens with made-up `kid`s costs the identity provider one request per
//! interval, not one per token.
//!
//! Checks never wait on a fetch they did not ask for: the keys at hand are
//! read lock-free, a stale set is refreshed in the background while it is
//! still used, and only a request whose token needs a key the set lacks
//! waits for the one fetch in flight ([`Jwks::refresh`]).
//!
//! Sets are node-wide, one per URL ([`JwksCache`]): apps trusting the same
//! identity provider share its keys and its fetches, and a new version of
//! an app finds the keys its previous version fetched.

use super::VerifyingKey;
use crate::fetch::FetchService;
use arc_swap::ArcSwap;
use jsonwebtoken::Algorithm;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::time::Instant;

/// How long one fetch of a key set may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest key set read.
const MAX_JWKS_BYTES: usize = 256 << 10;
/// The most keys kept from one set.
const MAX_KEYS: usize = 64;
/// How long a set is used without a `max-age`.
const DEFAULT_FRESH: Duration = Duration::from_secs(600);
/// The longest a set is used before it is fetched again, whatever its
/// `max-age` says.
const MAX_FRESH: Duration = Duration::from_secs(24 * 3600);

/// The keys of one fetch.
#[derive(Debug, Default)]
pub(crate) struct KeySet {
    pub(crate) keys: Vec<VerifyingKey>,
    /// Counts completed fetches (successful or not).
    pub(crate) generation: u64,
    /// When the last successful fetch stops being fresh.
    fresh_until: Option<Instant>,
    /// Why the last fetch failed, if it did.
    pub(crate) error: Option<String>,
}

impl KeySet {
    /// Whether a fetch ever succeeded.
    pub(crate) fn fetched(&self) -> bool {
        self.fresh_until.is_some()
    }
}

/// Every algorithm a key of a set may be used with; a policy's own pins
/// are checked before any key is looked up.
const ALGORITHMS: [Algorithm; 12] = [
    Algorithm::HS256,
    Algorithm::HS384,
    Algorithm::HS512,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// The node's key sets, by URL, for as long as a policy uses them.
#[derive(Debug)]
pub struct JwksCache {
    fetch: Arc<FetchService>,
    sets: Mutex<HashMap<String, Weak<Jwks>>>,
}

impl JwksCache {
    /// Sets fetched through `fetch`.
    pub fn new(fetch: Arc<FetchService>) -> Self {
        Self {
            fetch,
            sets: Mutex::new(HashMap::new()),
        }
    }

    /// The set at `url`: the one in use if a policy uses it already (with
    /// that policy's `refresh_min`), else a new one, fetched when first
    /// needed.
    pub fn get(&self, url: &http::Uri, refresh_min: Duration) -> Arc<Jwks> {
        let mut sets = self.sets.lock().expect("jwks cache lock");
        if let Some(set) = sets.get(&url.to_string()).and_then(Weak::upgrade) {
            return set;
        }
        sets.retain(|_, set| set.strong_count() > 0);
        let set = Arc::new(Jwks::new(url.clone(), refresh_min, self.fetch.clone()));
        sets.insert(url.to_string(), Arc::downgrade(&set));
        set
    }
}

/// One key set.
pub struct Jwks {
    url: http::Uri,
    refresh_min: Duration,
    fetch: Arc<FetchService>,
    current: ArcSwap<KeySet>,
    /// When the last fetch started.
    last_attempt: Mutex<Option<Instant>>,
    /// One fetch at a time.
    fetching: tokio::sync::Mutex<()>,
    /// A background refresh is running.
    refreshing: AtomicBool,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Jwks {
    /// The set at `url`; not fetched until a token needs it.
    fn new(url: http::Uri, refresh_min: Duration, fetch: Arc<FetchService>) -> Self {
        Self {
            url,
            refresh_min,
            fetch,
            current: ArcSwap::from_pointee(KeySet::default()),
            last_attempt: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
            refreshing: AtomicBool::new(false),
        }
    }

    /// Where it is fetched from.
    pub fn url(&self) -> &http::Uri {
        &self.url
    }

    /// The keys at hand.
    pub(crate) fn current(&self) -> Arc<KeySet> {
        self.current.load_full()
    }

    /// Whether a token whose key the set lacks may have the set fetched
    /// now: never fetched, or not since `refresh_min`.
    pub fn due(&self) -> bool {
        let last = *self.last_attempt.lock().expect("jwks lock");
        last.is_none_or(|at| at.elapsed() >= self.refresh_min)
    }

    /// Fetches the set, unless a fetch completed since `generation` was
    /// read (then its result is the answer): concurrent callers share one
    /// fetch.
    pub async fn refresh(&self, generation: u64) {
        let _one = self.fetching.lock().await;
        if self.current.load().generation != generation {
            return;
        }
        *self.last_attempt.lock().expect("jwks lock") = Some(Instant::now());
        let previous = self.current.load_full();
        let next = match self.fetch_keys().await {
            Ok((keys, fresh_for)) => {
                tracing::info!(url = %self.url, keys = keys.len(), "fetched the JWKS");
                KeySet {
                    keys,
                    generation: generation + 1,
                    fresh_until: Some(Instant::now() + fresh_for),
                    error: None,
                }
            }
            Err(why) => {
                tracing::warn!(url = %self.url, "the JWKS could not be fetched: {why}");
                // The keys known so far stay in use.
                KeySet {
                    keys: previous.keys.clone(),
                    generation: generation + 1,
                    fresh_until: previous.fresh_until,
                    error: Some(why),
                }
            }
        };
        self.current.store(Arc::new(next));
    }

    /// Starts a background fetch if the set is past its freshness (and
    /// none is running); the stale keys stay in use meanwhile.
    pub(crate) fn refresh_if_stale(self: &Arc<Self>) {
        let set = self.current.load();
        let stale = set.fresh_until.is_some_and(|until| Instant::now() >= until);
        if !stale || !self.due() || self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.refreshing.store(false, Ordering::Release);
            return;
        };
        let generation = set.generation;
        let jwks = self.clone();
        runtime.spawn(async move {
            jwks.refresh(generation).await;
            jwks.refreshing.store(false, Ordering::Release);
        });
    }

    /// One fetch: the usable keys, and how long they are fresh.
    async fn fetch_keys(&self) -> Result<(Vec<VerifyingKey>, Duration), String> {
        let response = self
            .fetch
            .get_document(&self.url, FETCH_TIMEOUT, MAX_JWKS_BYTES)
            .await?;
        if response.status() != http::StatusCode::OK {
            return Err(format!("status {}", response.status()));
        }
        let fresh_for = freshness(response.headers(), self.refresh_min);
        let set: jsonwebtoken::jwk::JwkSet = serde_json::from_slice(response.body())
            .map_err(|err| format!("not a JWK set: {err}"))?;
        let mut keys = Vec::new();
        for jwk in set.keys.iter().take(MAX_KEYS) {
            match VerifyingKey::from_jwks_entry(jwk, &ALGORITHMS) {
                Ok(usable) => keys.extend(usable),
                Err(why) => tracing::debug!(
                    url = %self.url,
                    kid = jwk.common.key_id.as_deref().unwrap_or("-"),
                    "JWKS key skipped: {why}"
                ),
            }
        }
        Ok((keys, fresh_for))
    }
}

/// How long a response with these fields is fresh: its `max-age`, no less
/// than `floor` and no more than a day; `no-store`/`no-cache`: `floor`.
fn freshness(headers: &http::HeaderMap, floor: Duration) -> Duration {
    let mut max_age = None;
    for directive in headers
        .get_all(http::header::CACHE_CONTROL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
    {
        let directive = directive.trim();
        if directive.eq_ignore_ascii_case("no-store") || directive.eq_ignore_ascii_case("no-cache")
        {
            return floor;
        }
        if let Some((name, seconds)) = directive.split_once('=')
            && name.trim().eq_ignore_ascii_case("max-age")
        {
            max_age = seconds.trim().trim_matches('"').parse::<u64>().ok();
        }
    }
    max_age
        .map_or(DEFAULT_FRESH, Duration::from_secs)
        .clamp(floor, MAX_FRESH.max(floor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_naming_one_url_share_its_set_while_one_uses_it() {
        let fetch = Arc::new(FetchService::new(&crate::fetch::FetchConfig::default()).unwrap());
        let cache = JwksCache::new(fetch);
        let url: http::Uri = "https://idp.example/jwks".parse().unwrap();
        let first = cache.get(&url, Duration::from_secs(60));
        let second = cache.get(&url, Duration::from_secs(1));
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(
            second.refresh_min,
            Duration::from_secs(60),
            "the first policy's"
        );
        let other = cache.get(
            &"https://other.example/jwks".parse().unwrap(),
            Duration::from_secs(60),
        );
        assert!(!Arc::ptr_eq(&first, &other));
        drop((first, second));
        let fresh = cache.get(&url, Duration::from_secs(5));
        assert_eq!(
            fresh.refresh_min,
            Duration::from_secs(5),
            "unused sets are dropped"
        );
    }

    #[test]
    fn freshness_follows_max_age_within_bounds() {
        let floor = Duration::from_secs(30);
        let with = |value: &'static str| {
            let mut headers = http::HeaderMap::new();
            headers.insert("cache-control", http::HeaderValue::from_static(value));
            freshness(&headers, floor)
        };
        assert_eq!(with("public, max-age=3600"), Duration::from_secs(3600));
        assert_eq!(with("max-age=1"), floor);
        assert_eq!(with("max-age=99999999"), MAX_FRESH);
        assert_eq!(with("no-cache"), floor);
        assert_eq!(freshness(&http::HeaderMap::new(), floor), DEFAULT_FRESH);
    }
}

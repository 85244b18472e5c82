//! Where rate-limit counters live. The node keeps them in memory
//! ([`LocalStore`]); a shared backend (Redis, for several nodes) implements
//! the same traits, so the edge phase and the interface never change.

use super::gcra::{self, Decision, Quota};
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// A backend of rate-limit counters.
pub trait RateLimitStore: Send + Sync + std::fmt::Debug {
    /// The counters of policy `policy` of app `app`. Asking again for the
    /// same app, policy and quota (a new version of the app, deployed)
    /// gives the same counters, so a deploy does not reset its limits.
    fn counters(&self, app: &str, policy: &str, quota: Quota) -> Arc<dyn Counters>;
}

/// The counters of one policy: one schedule per key.
pub trait Counters: Send + Sync + std::fmt::Debug {
    /// Decides a request of `cost` (at most the burst) for `key`, and
    /// counts it if allowed.
    fn check(&self, key: &[u8], cost: u32) -> Decision;
    /// Keys tracked now.
    fn keys(&self) -> usize;
}

/// Shards per policy: checks of different keys rarely wait for each other.
const SHARDS: usize = 16;

/// Pruning a full shard walks all of it: not more often than this, so a
/// flood of new keys costs a walk per interval, not per request.
const PRUNE_SPACING: Duration = Duration::from_millis(100);

/// The node's own counters, in memory: one 16-byte entry per key (a keyed
/// hash of the key and its schedule), at most `max_keys` per policy. Keys
/// whose schedule is in the past are forgotten when a shard fills; if it is
/// still full, new keys share one overflow schedule per shard until room
/// frees up, so a flood of distinct keys is limited together instead of
/// growing memory or going unlimited.
#[derive(Debug)]
pub struct LocalStore {
    epoch: Instant,
    max_keys: usize,
    hasher: RandomState,
    live: Mutex<HashMap<(String, String, Quota), Weak<LocalCounters>>>,
}

impl LocalStore {
    /// A store keeping at most `max_keys` keys per policy.
    pub fn new(max_keys: usize) -> Self {
        Self {
            epoch: Instant::now(),
            max_keys: max_keys.max(SHARDS),
            hasher: RandomState::new(),
            live: Mutex::new(HashMap::new()),
        }
    }
}

impl RateLimitStore for LocalStore {
    fn counters(&self, app: &str, policy: &str, quota: Quota) -> Arc<dyn Counters> {
        let mut live = self.live.lock().expect("rate-limit registry lock");
        // Counters of apps (or versions) no longer served go with them.
        live.retain(|_, counters| counters.strong_count() > 0);
        let id = (app.to_owned(), policy.to_owned(), quota);
        if let Some(counters) = live.get(&id).and_then(Weak::upgrade) {
            return counters;
        }
        let counters = Arc::new(LocalCounters {
            quota,
            epoch: self.epoch,
            hasher: self.hasher.clone(),
            shard_cap: self.max_keys / SHARDS,
            shards: std::array::from_fn(|_| Mutex::default()),
        });
        live.insert(id, Arc::downgrade(&counters));
        counters
    }
}

/// One policy's keys, sharded by hash.
#[derive(Debug)]
pub(crate) struct LocalCounters {
    quota: Quota,
    epoch: Instant,
    hasher: RandomState,
    shard_cap: usize,
    shards: [Mutex<Shard>; SHARDS],
}

#[derive(Debug, Default)]
struct Shard {
    /// Schedules by the key's hash.
    schedules: HashMap<u64, u64, BuildHasherDefault<Prehashed>>,
    /// The schedule new keys share while the shard is full.
    overflow: Option<u64>,
    /// When the shard was last pruned (ns since the epoch).
    pruned_at: Option<u64>,
}

impl LocalCounters {
    /// [`Counters::check`] at `now` (nanoseconds since the store's epoch).
    pub(crate) fn check_at(&self, key: &[u8], cost: u32, now: u64) -> Decision {
        let hash = self.hasher.hash_one(key);
        let shard = &self.shards[(hash >> 60) as usize % SHARDS];
        let mut shard = shard.lock().expect("rate-limit shard lock");
        if let Some(&tat) = shard.schedules.get(&hash) {
            let (decision, new_tat) = gcra::check(self.quota, Some(tat), now, cost);
            if let Some(new_tat) = new_tat {
                shard.schedules.insert(hash, new_tat);
            }
            return decision;
        }
        if shard.schedules.len() >= self.shard_cap {
            shard.prune(now);
        }
        if shard.schedules.len() >= self.shard_cap {
            let (decision, new_tat) = gcra::check(self.quota, shard.overflow, now, cost);
            if new_tat.is_some() {
                shard.overflow = new_tat;
            }
            return decision;
        }
        let (decision, new_tat) = gcra::check(self.quota, None, now, cost);
        if let Some(new_tat) = new_tat {
            shard.schedules.insert(hash, new_tat);
        }
        decision
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

impl Shard {
    fn prune(&mut self, now: u64) {
        let spacing = u64::try_from(PRUNE_SPACING.as_nanos()).unwrap_or(u64::MAX);
        if self
            .pruned_at
            .is_some_and(|at| now.saturating_sub(at) < spacing)
        {
            return;
        }
        self.pruned_at = Some(now);
        self.schedules.retain(|_, tat| !gcra::idle(*tat, now));
        if self.overflow.is_some_and(|tat| gcra::idle(tat, now)) {
            self.overflow = None;
        }
    }
}

impl Counters for LocalCounters {
    fn check(&self, key: &[u8], cost: u32) -> Decision {
        self.check_at(key, cost, self.now())
    }

    fn keys(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.lock().expect("rate-limit shard lock").schedules.len())
            .sum()
    }
}

/// The map's keys are already keyed hashes: hashing them again buys
/// nothing.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(max_keys: usize, quota: Quota) -> LocalCounters {
        LocalCounters {
            quota,
            epoch: Instant::now(),
            hasher: RandomState::new(),
            shard_cap: max_keys / SHARDS,
            shards: std::array::from_fn(|_| Mutex::default()),
        }
    }

    #[test]
    fn keys_are_limited_apart() {
        let counters = counters(1024, Quota::new(1, Duration::from_secs(60), 2));
        assert!(counters.check_at(b"a", 1, 0).allowed);
        assert!(counters.check_at(b"a", 1, 0).allowed);
        assert!(!counters.check_at(b"a", 1, 0).allowed);
        assert!(counters.check_at(b"b", 1, 0).allowed, "b has its own burst");
        assert_eq!(counters.keys(), 2);
    }

    #[test]
    fn a_flood_of_distinct_keys_stays_within_the_cap_and_shares_a_schedule() {
        let quota = Quota::new(1, Duration::from_secs(60), 1);
        let counters = counters(16 * 8, quota);
        let mut allowed = 0;
        for n in 0..100_000u32 {
            if counters.check_at(&n.to_le_bytes(), 1, 0).allowed {
                allowed += 1;
            }
        }
        assert!(counters.keys() <= 16 * 8, "{} keys kept", counters.keys());
        // Every shard's own keys, then one overflow burst per shard.
        assert!(allowed <= 16 * 8 + 16, "{allowed} allowed");
        // Once their schedules are past, the keys are forgotten and new
        // ones are tracked again.
        let later = 61 * 1_000_000_000;
        assert!(counters.check_at(b"new", 1, later).allowed);
        assert!(counters.keys() <= 16 * 8);
    }

    #[test]
    fn the_same_app_policy_and_quota_get_the_same_counters() {
        let store = LocalStore::new(1000);
        let quota = Quota::new(1, Duration::from_secs(60), 1);
        let first = store.counters("app", "p", quota);
        assert!(first.check(b"k", 1).allowed);
        let again = store.counters("app", "p", quota);
        assert!(!again.check(b"k", 1).allowed, "a redeploy keeps the count");
        let other = store.counters("other", "p", quota);
        assert!(other.check(b"k", 1).allowed, "apps never share counters");
        drop((first, again));
        let fresh = store.counters("app", "p", quota);
        assert!(fresh.check(b"k", 1).allowed, "dropped counters are gone");
    }
}

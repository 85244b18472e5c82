//! The contract between KV and its backends ([`KvStore`]): the embedded
//! store on disk ([`super::RedbStore`]) now, Redis when hosts share state.
//! Writes go as batches of [`Op`]s, applied in order and atomically
//! together by backends that can (the embedded one commits each batch in
//! one transaction); reads are separate calls.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// A backend's answer, later.
pub type KvFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, KvError>> + Send + 'a>>;

/// One bucket of one app: the only keys a request of that app can reach.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Namespace {
    app: Arc<str>,
    bucket: Arc<str>,
    /// `app NUL bucket NUL`: names hold no NUL, so no namespace's keys
    /// are a prefix of another's.
    prefix: Arc<[u8]>,
}

impl Namespace {
    /// Bucket `bucket` of app `app` (both checked names: no NUL).
    pub fn new(app: &str, bucket: &str) -> Self {
        let mut prefix = Vec::with_capacity(app.len() + bucket.len() + 2);
        prefix.extend_from_slice(app.as_bytes());
        prefix.push(0);
        prefix.extend_from_slice(bucket.as_bytes());
        prefix.push(0);
        Self {
            app: app.into(),
            bucket: bucket.into(),
            prefix: prefix.into(),
        }
    }

    /// The app.
    pub fn app(&self) -> &str {
        &self.app
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// `key` as the backend stores it.
    pub fn full_key(&self, key: &str) -> Vec<u8> {
        let mut full = Vec::with_capacity(self.prefix.len() + key.len());
        full.extend_from_slice(&self.prefix);
        full.extend_from_slice(key.as_bytes());
        full
    }

    /// The namespace's own part of a stored key, if it is one of its keys.
    pub fn own_key<'k>(&self, full: &'k [u8]) -> Option<&'k [u8]> {
        full.strip_prefix(&*self.prefix)
    }
}

/// A value with the version of the write that stored it. Versions grow
/// with every write to the store, so a key deleted and written again never
/// comes back with a version a compare-and-swap saw before.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned {
    pub value: Vec<u8>,
    pub version: u64,
}

/// One page of a listing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyPage {
    /// Keys in byte order.
    pub keys: Vec<String>,
    /// Where the next page starts (the last key of this one), if there may
    /// be more.
    pub next: Option<String>,
}

/// A write.
#[derive(Clone, Debug)]
pub enum Op {
    /// Store `value` under `key`, for `ttl` if given.
    Set {
        key: String,
        value: Vec<u8>,
        ttl: Option<Duration>,
    },
    /// Remove `key` (nothing if absent).
    Delete { key: String },
    /// Add `delta` to the counter under `key` (absent: 0). Counters are
    /// 8-byte little-endian signed integers, as Spin stores them.
    Increment { key: String, delta: i64 },
    /// Store `value` under `key` if its version is still `version`
    /// (`None`: if it is still absent).
    Swap {
        key: String,
        version: Option<u64>,
        value: Vec<u8>,
    },
}

/// What a write did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Done {
    /// Set or deleted.
    Written,
    /// The counter's new value.
    Counter(i64),
    /// The swap was made.
    Swapped,
    /// The swap was not made: the key changed meanwhile; its current value.
    Changed(Option<Versioned>),
}

/// Why an operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvError {
    /// The app's data would exceed its quota (bytes).
    QuotaExceeded(u64),
    /// `increment` on a value that is not an 8-byte counter, or past the
    /// range of a counter.
    NotACounter,
    /// The backend failed (I/O, a timeout); the text says how.
    Backend(String),
}

impl std::fmt::Display for KvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::QuotaExceeded(bytes) => write!(
                f,
                "the app's KV data would exceed its quota of {} MiB; delete keys, or ask the operator to raise [kv] max_app_mib",
                bytes >> 20
            ),
            Self::NotACounter => f.write_str(
                "the value is not a counter (8 bytes, little-endian) or the counter would overflow",
            ),
            Self::Backend(why) => write!(f, "the KV store failed: {why}"),
        }
    }
}

/// A KV backend.
pub trait KvStore: Send + Sync + std::fmt::Debug {
    /// The current values of `keys` (none for absent or expired ones).
    fn get(&self, ns: &Namespace, keys: Vec<String>) -> KvFuture<'_, Vec<Option<Versioned>>>;

    /// Up to `limit` keys starting with `prefix`, after `after` if given.
    fn list(
        &self,
        ns: &Namespace,
        prefix: String,
        after: Option<String>,
        limit: usize,
    ) -> KvFuture<'_, KeyPage>;

    /// Applies `ops` in order; each has its own outcome (a quota or a
    /// counter error fails that op only), the backend failing fails all.
    fn write(&self, ns: &Namespace, ops: Vec<Op>) -> KvFuture<'_, Vec<Result<Done, KvError>>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_never_share_keys() {
        let a = Namespace::new("app", "b");
        let b = Namespace::new("app", "bx");
        let c = Namespace::new("appb", "");
        let key = a.full_key("k");
        assert_eq!(a.own_key(&key), Some(&b"k"[..]));
        assert_eq!(b.own_key(&key), None);
        assert_eq!(c.own_key(&key), None);
        assert!(!b.full_key("").starts_with(&a.full_key("")));
    }
}

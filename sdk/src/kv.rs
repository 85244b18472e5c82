//! Key-value storage (`wasi:keyvalue` and `outpost:edge/kv`): the app's
//! buckets, persistent on the node. Every app has the bucket `"default"`;
//! more are declared in the manifest:
//!
//! ```toml
//! [kv]
//! buckets = ["sessions"]
//! ```
//!
//! ```no_run
//! use outpost_sdk::{handler, kv, Request, Response, Result};
//!
//! #[handler]
//! fn handle(req: Request) -> Result<Response> {
//!     let store = kv::Store::open_default()?;
//!     let visits = store.increment("visits", 1)?;
//!     store.set(&format!("last/{}", req.path()), b"seen")?;
//!     Ok(Response::text(format!("visit number {visits}\n")))
//! }
//! ```
//!
//! Keys are strings of 1 to 512 bytes; values are bytes, up to the node's
//! limit (25 MiB by default). Writes are durable once they return. The
//! interfaces underneath are the standard ones (version 0.2.0-draft2, as
//! Spin links them), so a component using `wasi:keyvalue` directly works
//! too; counters are 8-byte little-endian integers, as in Spin.

use crate::wasi::bindings::outpost::edge::kv as outpost_kv;
use crate::wasi::bindings::wasi::keyvalue::{atomics, store};
use crate::wasi::bindings::wasi::random::random;
use std::fmt;
use std::time::Duration;

/// How many times [`Store::update`] tries when other requests keep
/// changing the value, and the longest it waits between two tries.
const UPDATE_ATTEMPTS: u32 = 32;
const UPDATE_MAX_BACKOFF: Duration = Duration::from_millis(50);

/// An open bucket.
pub struct Store {
    bucket: store::Bucket,
}

/// One page of keys, and where the next one starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPage {
    /// The keys, in byte order.
    pub keys: Vec<String>,
    /// Pass it to [`Store::list`] for the next page; `None`: no more.
    pub cursor: Option<String>,
}

impl Store {
    /// The app's bucket `name` (`"default"`, or one in `[kv] buckets`).
    pub fn open(name: &str) -> Result<Self, KvError> {
        Ok(Self {
            bucket: store::open(name).map_err(KvError)?,
        })
    }

    /// The app's `"default"` bucket.
    pub fn open_default() -> Result<Self, KvError> {
        Self::open("default")
    }

    /// The value of `key`, if it has one.
    ///
    /// ```no_run
    /// # fn run() -> Result<(), outpost_sdk::kv::KvError> {
    /// let store = outpost_sdk::kv::Store::open_default()?;
    /// if let Some(bytes) = store.get("greeting")? {
    ///     println!("{}", String::from_utf8_lossy(&bytes));
    /// }
    /// # Ok(()) }
    /// ```
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.bucket.get(key).map_err(KvError)
    }

    /// Sets `key` to `value`.
    pub fn set(&self, key: &str, value: impl AsRef<[u8]>) -> Result<(), KvError> {
        self.bucket.set(key, value.as_ref()).map_err(KvError)
    }

    /// Sets `key` to `value` for `ttl` (whole seconds, at least one); after
    /// that the key reads as absent.
    ///
    /// ```no_run
    /// # fn run() -> Result<(), outpost_sdk::kv::KvError> {
    /// use std::time::Duration;
    /// let sessions = outpost_sdk::kv::Store::open("sessions")?;
    /// sessions.set_with_ttl("s/3f9a", b"user-42", Duration::from_secs(3600))?;
    /// # Ok(()) }
    /// ```
    pub fn set_with_ttl(
        &self,
        key: &str,
        value: impl AsRef<[u8]>,
        ttl: Duration,
    ) -> Result<(), KvError> {
        let seconds = u32::try_from(ttl.as_secs().max(1)).unwrap_or(u32::MAX);
        outpost_kv::set_with_ttl(&self.bucket, key, value.as_ref(), seconds).map_err(KvError)
    }

    /// Removes `key` (nothing if it has no value).
    pub fn delete(&self, key: &str) -> Result<(), KvError> {
        self.bucket.delete(key).map_err(KvError)
    }

    /// Whether `key` has a value.
    pub fn exists(&self, key: &str) -> Result<bool, KvError> {
        self.bucket.exists(key).map_err(KvError)
    }

    /// The keys starting with `prefix`, up to 1000 at a time: pass the
    /// page's `cursor` for the next one.
    ///
    /// ```no_run
    /// # fn run() -> Result<(), outpost_sdk::kv::KvError> {
    /// let store = outpost_sdk::kv::Store::open_default()?;
    /// let mut cursor = None;
    /// loop {
    ///     let page = store.list("user/", cursor.as_deref())?;
    ///     for key in &page.keys {
    ///         println!("{key}");
    ///     }
    ///     match page.cursor {
    ///         Some(next) => cursor = Some(next),
    ///         None => break,
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn list(&self, prefix: &str, cursor: Option<&str>) -> Result<KeyPage, KvError> {
        let page = outpost_kv::list_prefix(&self.bucket, prefix, cursor).map_err(KvError)?;
        Ok(KeyPage {
            keys: page.keys,
            cursor: page.cursor,
        })
    }

    /// Adds `delta` to the counter `key` (a missing key counts as 0) and
    /// returns the new value, atomically: concurrent increments are never
    /// lost.
    pub fn increment(&self, key: &str, delta: i64) -> Result<i64, KvError> {
        atomics::increment(&self.bucket, key, delta).map_err(KvError)
    }

    /// Replaces the value of `key` with `change(current)`, atomically: if
    /// another request changes it meanwhile, `change` runs again on the new
    /// value, after a short random wait that grows with each try (up to 32
    /// tries), so that contending requests do not collide forever. Returns
    /// the value written.
    ///
    /// ```no_run
    /// # fn run() -> Result<(), outpost_sdk::kv::KvError> {
    /// let store = outpost_sdk::kv::Store::open_default()?;
    /// let tags = store.update("tags", |current| {
    ///     let mut tags = current.map(<[u8]>::to_vec).unwrap_or_default();
    ///     tags.extend_from_slice(b"new,");
    ///     tags
    /// })?;
    /// # Ok(()) }
    /// ```
    pub fn update(
        &self,
        key: &str,
        mut change: impl FnMut(Option<&[u8]>) -> Vec<u8>,
    ) -> Result<Vec<u8>, KvError> {
        let mut cas = atomics::Cas::new(&self.bucket, key).map_err(KvError)?;
        for attempt in 0..UPDATE_ATTEMPTS {
            let current = cas.current().map_err(KvError)?;
            let next = change(current.as_deref());
            match atomics::swap(cas, &next) {
                Ok(()) => return Ok(next),
                // Its fresh handle would be stale after the wait below.
                Err(atomics::CasError::CasFailed(_)) => {}
                Err(atomics::CasError::StoreError(err)) => return Err(KvError(err)),
            }
            // Full jitter: a random wait below a ceiling that doubles.
            let ceiling = Duration::from_millis(1 << attempt.min(6)).min(UPDATE_MAX_BACKOFF);
            let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
            std::thread::sleep(Duration::from_nanos(random::get_random_u64() % nanos));
            // The handle's value is as old as its read: read again.
            cas = atomics::Cas::new(&self.bucket, key).map_err(KvError)?;
        }
        Err(KvError(store::Error::Other(format!(
            "{key:?} kept changing: gave up after {UPDATE_ATTEMPTS} attempts"
        ))))
    }
}

/// A KV operation that failed: an unknown bucket, a key or value over its
/// limit, the app's quota, or the store itself. With `?` in a handler it
/// becomes a 500 naming the cause.
#[derive(Debug)]
pub struct KvError(store::Error);

impl fmt::Display for KvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            store::Error::NoSuchStore => f.write_str(
                "no such KV bucket: use \"default\" or declare it in outpost.toml's [kv] buckets",
            ),
            store::Error::AccessDenied => f.write_str("access to the KV bucket is denied"),
            store::Error::Other(why) => write!(f, "KV: {why}"),
        }
    }
}

impl std::error::Error for KvError {}

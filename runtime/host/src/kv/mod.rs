//! KV: per-app key-value storage, through the standard `wasi:keyvalue`
//! interfaces (0.2.0-draft2: `store`, `atomics`, `batch`, the version Spin
//! links, so components written for it run here) and Outpost's
//! `outpost:edge/kv` (writes that expire, listings by prefix).
//!
//! The shape of every host service: a node-wide [`KvService`] holding the
//! backend ([`KvStore`]: the embedded [`RedbStore`] on disk; Redis with
//! the scale-out issue), a per-app [`KvPolicy`] (its buckets and limits)
//! and a per-request [`KvCtx`]. An app reaches only its own buckets: the
//! backend's keys are namespaced by app and bucket.

mod guest;
mod redb_store;
mod store;

pub use guest::{Bucket, Cas, KvCtx, KvView};
pub use redb_store::RedbStore;
pub use store::{Done, KeyPage, KvError, KvFuture, KvStore, Namespace, Op, Versioned};

use std::path::PathBuf;
use std::sync::Arc;

/// The bucket every app has.
pub const DEFAULT_BUCKET: &str = "default";
/// The longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 512;
/// The most keys one listing page or one batch call holds.
pub const MAX_BATCH: usize = 1000;

/// Node-wide KV settings (`[kv]` in node.toml).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvConfig {
    /// The embedded store's file.
    pub path: PathBuf,
    /// The largest value, in bytes.
    pub max_value_bytes: u64,
    /// The most bytes (keys and values) one app may store.
    pub max_app_bytes: u64,
}

impl KvConfig {
    /// The defaults, the store at `path`: values up to 25 MiB, 1 GiB per
    /// app.
    pub fn at(path: PathBuf) -> Self {
        Self {
            path,
            max_value_bytes: 25 << 20,
            max_app_bytes: 1 << 30,
        }
    }
}

/// The node's KV backend. The embedded store is opened on first use, not
/// at start: a node whose apps use no KV never touches (or locks) its
/// file, so two `outpost serve app.wasm` can run side by side.
#[derive(Debug)]
pub struct KvService {
    config: KvConfig,
    store: std::sync::Mutex<Option<Arc<dyn KvStore>>>,
}

impl KvService {
    /// The service of `config`, its store not opened yet.
    pub fn new(config: KvConfig) -> Self {
        Self {
            config,
            store: std::sync::Mutex::new(None),
        }
    }

    /// A service over another backend, with `config`'s limits.
    pub fn with_store(config: KvConfig, store: Arc<dyn KvStore>) -> Self {
        Self {
            config,
            store: std::sync::Mutex::new(Some(store)),
        }
    }

    /// The backend, opened now if it is not yet (a failure is tried again
    /// at the next use: another process may have let the file go).
    pub fn store(&self) -> Result<Arc<dyn KvStore>, String> {
        let mut store = self.store.lock().expect("kv store lock");
        if let Some(store) = &*store {
            return Ok(store.clone());
        }
        let opened: Arc<dyn KvStore> = Arc::new(RedbStore::open(
            &self.config.path,
            self.config.max_app_bytes,
        )?);
        *store = Some(opened.clone());
        Ok(opened)
    }

    /// App `app`'s view: the default bucket and `buckets`.
    pub fn policy(self: &Arc<Self>, app: &str, buckets: &[String]) -> KvPolicy {
        let mut names = vec![DEFAULT_BUCKET.to_owned()];
        names.extend(
            buckets
                .iter()
                .filter(|name| *name != DEFAULT_BUCKET)
                .cloned(),
        );
        KvPolicy {
            app: app.to_owned(),
            buckets: names,
            service: self.clone(),
        }
    }
}

/// One app version's buckets and limits.
#[derive(Debug)]
pub struct KvPolicy {
    app: String,
    buckets: Vec<String>,
    service: Arc<KvService>,
}

impl KvPolicy {
    /// The largest value, in bytes.
    fn max_value_bytes(&self) -> u64 {
        self.service.config.max_value_bytes
    }

    /// Bucket `name` of the app, if it has one of that name.
    fn namespace(&self, name: &str) -> Option<Namespace> {
        self.buckets
            .iter()
            .any(|bucket| bucket == name)
            .then(|| Namespace::new(&self.app, name))
    }
}

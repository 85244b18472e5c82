//! KV as handlers call it: `wasi:keyvalue` (`store`, `atomics`, `batch`)
//! and `outpost:edge/kv`, on a [`KvView`] of the request's [`KvCtx`] and
//! its resource table (where the guest's buckets and CAS handles live).
//!
//! Every call is bounded: keys of 1 to 512 bytes, values up to the node's
//! `max_value_mib`, at most 1000 keys per batch or page, a write committed
//! within the store's timeout. What the guest got wrong is an `error`
//! result with a message, never a trap.

use super::store::{Done, KvError, KvStore, Namespace, Op, Versioned};
use super::{KvPolicy, MAX_BATCH, MAX_KEY_BYTES};
use crate::bindings::outpost::edge::kv as outpost_kv;
use crate::bindings::wasi::keyvalue::{atomics, batch, store};
use std::sync::Arc;
use std::time::Duration;
use store::{Error, KeyResponse};
use wasmtime::component::{Resource, ResourceTable};

/// An open bucket (`wasi:keyvalue/store.bucket`).
pub struct Bucket {
    ns: Namespace,
}

/// A compare-and-swap handle (`wasi:keyvalue/atomics.cas`): the key and
/// the version it had when the handle was made.
pub struct Cas {
    ns: Namespace,
    key: String,
    current: Option<Versioned>,
}

/// One request's view of its app's KV.
pub struct KvCtx {
    policy: Arc<KvPolicy>,
}

impl KvCtx {
    /// The KV of one app, for one request.
    pub fn new(policy: Arc<KvPolicy>) -> Self {
        Self { policy }
    }

    /// The backend (opened on the node's first use).
    fn store(&self) -> Result<Arc<dyn KvStore>, Error> {
        self.policy.service.store().map_err(other)
    }
}

/// What the KV host functions work on: the request's KV and its resource
/// table.
pub struct KvView<'a> {
    pub ctx: &'a KvCtx,
    pub table: &'a mut ResourceTable,
}

fn other(message: impl Into<String>) -> Error {
    Error::Other(message.into())
}

impl From<KvError> for Error {
    fn from(err: KvError) -> Self {
        other(err.to_string())
    }
}

impl KvView<'_> {
    fn bucket(&self, bucket: &Resource<Bucket>) -> Result<Namespace, Error> {
        self.table
            .get(bucket)
            .map(|bucket| bucket.ns.clone())
            .map_err(|_| other("not an open bucket"))
    }
}

// The checks and calls that wait on the store take the context alone, not
// the view: a future holding `&KvView` would hold `&ResourceTable`, which
// is not `Sync`.
impl KvCtx {
    fn check_key(&self, key: &str) -> Result<(), Error> {
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return Err(other(format!(
                "a key has 1 to {MAX_KEY_BYTES} bytes; this one has {}",
                key.len()
            )));
        }
        Ok(())
    }

    fn check_value(&self, len: usize) -> Result<(), Error> {
        let max = self.policy.max_value_bytes();
        if len as u64 > max {
            return Err(other(format!(
                "a value has at most {max} bytes ({} MiB, node.toml's [kv] max_value_mib); this one has {len}",
                max >> 20
            )));
        }
        Ok(())
    }

    fn check_batch(&self, count: usize) -> Result<(), Error> {
        if count > MAX_BATCH {
            return Err(other(format!(
                "at most {MAX_BATCH} keys per batch; split this one of {count}"
            )));
        }
        Ok(())
    }

    async fn get_one(&self, ns: &Namespace, key: String) -> Result<Option<Versioned>, Error> {
        self.check_key(&key)?;
        Ok(self.store()?.get(ns, vec![key]).await?.remove(0))
    }

    /// Writes `ops`, failing on the first op that failed.
    async fn write(&self, ns: &Namespace, ops: Vec<Op>) -> Result<Vec<Done>, Error> {
        let outcomes = self.store()?.write(ns, ops).await?;
        outcomes
            .into_iter()
            .map(|outcome| outcome.map_err(Error::from))
            .collect()
    }

    async fn list(
        &self,
        ns: &Namespace,
        prefix: String,
        cursor: Option<String>,
    ) -> Result<KeyResponse, Error> {
        if prefix.len() > MAX_KEY_BYTES || cursor.as_ref().is_some_and(|c| c.len() > MAX_KEY_BYTES)
        {
            return Err(other(format!(
                "a prefix or cursor has at most {MAX_KEY_BYTES} bytes"
            )));
        }
        let page = self.store()?.list(ns, prefix, cursor, MAX_BATCH).await?;
        Ok(KeyResponse {
            keys: page.keys,
            cursor: page.next,
        })
    }
}

impl store::Host for KvView<'_> {
    fn open(&mut self, identifier: String) -> Result<Resource<Bucket>, Error> {
        let ns = self
            .ctx
            .policy
            .namespace(&identifier)
            .ok_or(Error::NoSuchStore)?;
        // Opening a bucket opens the node's store if no one has yet, so a
        // store that cannot be opened is said here.
        self.ctx.store()?;
        self.table
            .push(Bucket { ns })
            .map_err(|_| other("too many open resources"))
    }
}

impl store::HostBucket for KvView<'_> {
    async fn get(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> Result<Option<Vec<u8>>, Error> {
        let ns = self.bucket(&bucket)?;
        Ok(self.ctx.get_one(&ns, key).await?.map(|found| found.value))
    }

    async fn set(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), Error> {
        let ns = self.bucket(&bucket)?;
        self.ctx.check_key(&key)?;
        self.ctx.check_value(value.len())?;
        self.ctx
            .write(
                &ns,
                vec![Op::Set {
                    key,
                    value,
                    ttl: None,
                }],
            )
            .await?;
        Ok(())
    }

    async fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> Result<(), Error> {
        let ns = self.bucket(&bucket)?;
        self.ctx.check_key(&key)?;
        self.ctx.write(&ns, vec![Op::Delete { key }]).await?;
        Ok(())
    }

    async fn exists(&mut self, bucket: Resource<Bucket>, key: String) -> Result<bool, Error> {
        let ns = self.bucket(&bucket)?;
        Ok(self.ctx.get_one(&ns, key).await?.is_some())
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<String>,
    ) -> Result<KeyResponse, Error> {
        let ns = self.bucket(&bucket)?;
        self.ctx.list(&ns, String::new(), cursor).await
    }

    fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for KvView<'_> {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: i64,
    ) -> Result<i64, Error> {
        let ns = self.bucket(&bucket)?;
        self.ctx.check_key(&key)?;
        match self
            .ctx
            .write(&ns, vec![Op::Increment { key, delta }])
            .await?
            .first()
        {
            Some(Done::Counter(value)) => Ok(*value),
            _ => Err(other("the store did not return the counter")),
        }
    }

    async fn swap(
        &mut self,
        cas: Resource<atomics::Cas>,
        value: Vec<u8>,
    ) -> Result<(), atomics::CasError> {
        let Cas { ns, key, current } = self
            .table
            .delete(cas)
            .map_err(|_| atomics::CasError::StoreError(other("not a CAS handle")))?;
        self.ctx
            .check_value(value.len())
            .map_err(atomics::CasError::StoreError)?;
        let op = Op::Swap {
            key: key.clone(),
            version: current.map(|current| current.version),
            value,
        };
        match self.ctx.write(&ns, vec![op]).await {
            Ok(done) => match done.into_iter().next() {
                Some(Done::Swapped) => Ok(()),
                Some(Done::Changed(current)) => {
                    let retry = self.table.push(Cas { ns, key, current }).map_err(|_| {
                        atomics::CasError::StoreError(other("too many open resources"))
                    })?;
                    Err(atomics::CasError::CasFailed(retry))
                }
                _ => Err(atomics::CasError::StoreError(other(
                    "the store did not answer the swap",
                ))),
            },
            Err(err) => Err(atomics::CasError::StoreError(err)),
        }
    }
}

impl atomics::HostCas for KvView<'_> {
    async fn new(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> Result<Resource<atomics::Cas>, Error> {
        let ns = self.bucket(&bucket)?;
        let current = self.ctx.get_one(&ns, key.clone()).await?;
        self.table
            .push(Cas { ns, key, current })
            .map_err(|_| other("too many open resources"))
    }

    fn current(&mut self, cas: Resource<atomics::Cas>) -> Result<Option<Vec<u8>>, Error> {
        let cas = self
            .table
            .get(&cas)
            .map_err(|_| other("not a CAS handle"))?;
        Ok(cas.current.as_ref().map(|current| current.value.clone()))
    }

    fn drop(&mut self, cas: Resource<atomics::Cas>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        Ok(())
    }
}

impl batch::Host for KvView<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Result<Vec<(String, Option<Vec<u8>>)>, Error> {
        let ns = self.bucket(&bucket)?;
        self.ctx.check_batch(keys.len())?;
        for key in &keys {
            self.ctx.check_key(key)?;
        }
        let values = self.ctx.store()?.get(&ns, keys.clone()).await?;
        Ok(keys
            .into_iter()
            .zip(values)
            .map(|(key, value)| (key, value.map(|found| found.value)))
            .collect())
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> Result<(), Error> {
        let ns = self.bucket(&bucket)?;
        self.ctx.check_batch(key_values.len())?;
        for (key, _) in &key_values {
            self.ctx.check_key(key)?;
        }
        self.ctx
            .check_value(key_values.iter().map(|(_, value)| value.len()).sum())?;
        let ops = key_values
            .into_iter()
            .map(|(key, value)| Op::Set {
                key,
                value,
                ttl: None,
            })
            .collect();
        self.ctx.write(&ns, ops).await?;
        Ok(())
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Result<(), Error> {
        let ns = self.bucket(&bucket)?;
        self.ctx.check_batch(keys.len())?;
        for key in &keys {
            self.ctx.check_key(key)?;
        }
        let ops = keys.into_iter().map(|key| Op::Delete { key }).collect();
        self.ctx.write(&ns, ops).await?;
        Ok(())
    }
}

impl outpost_kv::Host for KvView<'_> {
    async fn set_with_ttl(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
        ttl_s: u32,
    ) -> Result<(), Error> {
        let ns = self.bucket(&bucket)?;
        self.ctx.check_key(&key)?;
        self.ctx.check_value(value.len())?;
        if ttl_s == 0 {
            return Err(other("a TTL is at least 1 second"));
        }
        let ttl = Some(Duration::from_secs(u64::from(ttl_s)));
        self.ctx
            .write(&ns, vec![Op::Set { key, value, ttl }])
            .await?;
        Ok(())
    }

    async fn list_prefix(
        &mut self,
        bucket: Resource<Bucket>,
        prefix: String,
        cursor: Option<String>,
    ) -> Result<KeyResponse, Error> {
        let ns = self.bucket(&bucket)?;
        self.ctx.list(&ns, prefix, cursor).await
    }
}

//! The embedded KV backend: one `redb` file per node.
//!
//! - **Durability**: a write is acknowledged only after the transaction
//!   holding it is committed with redb's default durability (fsync), so an
//!   acknowledged write survives SIGKILL and power loss.
//! - **Group commit**: one writer thread takes every write waiting for it
//!   and commits them in one transaction (one fsync for many requests);
//!   reads run on Tokio's blocking pool, concurrently with it.
//! - **Expiry** (redb has no TTL): an entry stores its expiry time, reads
//!   treat an expired entry as absent, and an index by expiry time lets the
//!   writer remove expired entries in bounded batches when it is idle.
//! - **Quota**: the bytes each app stores (keys and values) are counted in
//!   the same transactions, so a write past the app's quota is refused.
//!
//! Tables: `entries` (namespaced key → expiry ms, version, value),
//! `expiry` (expiry ms, namespaced key → ()), `usage` (app → bytes),
//! `meta` (`version` → the last version given out).

#![expect(
    clippy::result_large_err,
    reason = "redb's own error type is large; it is turned into a KvError at the edge of this module"
)]

use super::store::{Done, KeyPage, KvError, KvFuture, KvStore, Namespace, Op, Versioned};
use redb::{Database, ReadableTable, TableDefinition, WriteTransaction};
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, mpsc};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const ENTRIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("entries");
const EXPIRY: TableDefinition<&[u8], ()> = TableDefinition::new("expiry");
const USAGE: TableDefinition<&str, u64> = TableDefinition::new("usage");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Jobs the writer commits together at most.
const MAX_GROUP: usize = 256;
/// How often an idle writer removes expired entries, and how many at once.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
const SWEEP_BATCH: usize = 1000;
/// Longer than this for a write (queue and commit) is an error.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes an entry costs besides its key and value.
const ENTRY_OVERHEAD: u64 = 16;

/// What the writer thread is asked to commit.
struct Job {
    ns: Namespace,
    ops: Vec<Op>,
    reply: tokio::sync::oneshot::Sender<Result<Vec<Result<Done, KvError>>, KvError>>,
}

/// The node's embedded KV store.
pub struct RedbStore {
    db: Arc<Database>,
    jobs: mpsc::SyncSender<Job>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Drop for RedbStore {
    /// Stops the writer after the writes queued so far and waits for it,
    /// so the file is closed (and can be opened again) once this returns.
    fn drop(&mut self) {
        let (closed, _) = mpsc::sync_channel(0);
        drop(std::mem::replace(&mut self.jobs, closed));
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore").finish_non_exhaustive()
    }
}

impl RedbStore {
    /// Opens (or creates) the store at `path`, each app's data within
    /// `max_app_bytes`.
    pub fn open(path: &Path, max_app_bytes: u64) -> Result<Self, String> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|err| format!("cannot create {}: {err}", dir.display()))?;
        }
        let db = Database::create(path).map_err(|err| {
            format!(
                "cannot open the KV store {}: {err} (is another outpost using it?)",
                path.display()
            )
        })?;
        let version = {
            let txn = db.begin_write().map_err(|err| err.to_string())?;
            let version = {
                txn.open_table(ENTRIES).map_err(|err| err.to_string())?;
                txn.open_table(EXPIRY).map_err(|err| err.to_string())?;
                txn.open_table(USAGE).map_err(|err| err.to_string())?;
                let meta = txn.open_table(META).map_err(|err| err.to_string())?;
                meta.get("version")
                    .map_err(|err| err.to_string())?
                    .map_or(0, |version| version.value())
            };
            txn.commit().map_err(|err| err.to_string())?;
            version
        };
        let db = Arc::new(db);
        // A bounded queue: when the disk cannot keep up, writers wait (up
        // to their timeout) instead of queueing without end.
        let (jobs, queue) = mpsc::sync_channel(4 * MAX_GROUP);
        let writer = Writer {
            db: db.clone(),
            version,
            max_app_bytes,
        };
        let writer = std::thread::Builder::new()
            .name("outpost-kv-writer".into())
            .spawn(move || writer.run(&queue))
            .map_err(|err| format!("cannot start the KV writer: {err}"))?;
        Ok(Self {
            db,
            jobs,
            writer: Some(writer),
        })
    }

    /// Runs `read` on the blocking pool with a read transaction.
    fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&redb::ReadOnlyTable<&'static [u8], &'static [u8]>) -> Result<T, redb::Error>
        + Send
        + 'static,
    ) -> KvFuture<'_, T> {
        let db = self.db.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let txn = db.begin_read()?;
                let table = txn.open_table(ENTRIES)?;
                read(&table)
            })
            .await
            .map_err(|err| KvError::Backend(err.to_string()))?
            .map_err(backend)
        })
    }
}

impl KvStore for RedbStore {
    fn get(&self, ns: &Namespace, keys: Vec<String>) -> KvFuture<'_, Vec<Option<Versioned>>> {
        let ns = ns.clone();
        self.read(move |table| {
            let now = now_ms();
            keys.iter()
                .map(|key| {
                    let stored = table.get(ns.full_key(key).as_slice())?;
                    Ok(stored.and_then(|stored| live(stored.value(), now)))
                })
                .collect()
        })
    }

    fn list(
        &self,
        ns: &Namespace,
        prefix: String,
        after: Option<String>,
        limit: usize,
    ) -> KvFuture<'_, KeyPage> {
        let ns = ns.clone();
        self.read(move |table| {
            let now = now_ms();
            let start_key = ns.full_key(&prefix);
            let after_key = after.map(|after| ns.full_key(&after));
            let start = match &after_key {
                Some(after) if *after >= start_key => Bound::Excluded(after.as_slice()),
                _ => Bound::Included(start_key.as_slice()),
            };
            let mut page = KeyPage::default();
            for item in table.range::<&[u8]>((start, Bound::Unbounded))? {
                let (key, stored) = item?;
                let key = key.value();
                if !key.starts_with(&start_key) {
                    break;
                }
                if live(stored.value(), now).is_none() {
                    continue;
                }
                if page.keys.len() == limit {
                    page.next = page.keys.last().cloned();
                    break;
                }
                let own = ns.own_key(key).unwrap_or_default();
                page.keys.push(String::from_utf8_lossy(own).into_owned());
            }
            Ok(page)
        })
    }

    fn write(&self, ns: &Namespace, ops: Vec<Op>) -> KvFuture<'_, Vec<Result<Done, KvError>>> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = Job {
            ns: ns.clone(),
            ops,
            reply,
        };
        let jobs = self.jobs.clone();
        Box::pin(async move {
            let queued = tokio::task::spawn_blocking(move || jobs.send(job));
            let wait = async {
                queued
                    .await
                    .map_err(|err| KvError::Backend(err.to_string()))?
                    .map_err(|_| KvError::Backend("the KV writer stopped".into()))?;
                answer
                    .await
                    .map_err(|_| KvError::Backend("the KV writer stopped".into()))?
            };
            tokio::time::timeout(WRITE_TIMEOUT, wait)
                .await
                .map_err(|_| {
                    KvError::Backend(format!(
                        "the write was not committed within {} s",
                        WRITE_TIMEOUT.as_secs()
                    ))
                })?
        })
    }
}

/// The writer thread's state.
struct Writer {
    db: Arc<Database>,
    /// The last version given out.
    version: u64,
    max_app_bytes: u64,
}

impl Writer {
    fn run(mut self, queue: &mpsc::Receiver<Job>) {
        loop {
            let first = match queue.recv_timeout(SWEEP_INTERVAL) {
                Ok(job) => job,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Err(err) = self.sweep() {
                        tracing::warn!("removing expired KV entries failed: {err}");
                    }
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            };
            let mut jobs = vec![first];
            while jobs.len() < MAX_GROUP {
                match queue.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            let committed = self.version;
            match self.commit(&jobs) {
                Ok(outcomes) => {
                    for (job, outcome) in jobs.into_iter().zip(outcomes) {
                        let _ = job.reply.send(Ok(outcome));
                    }
                }
                Err(err) => {
                    // Nothing of the group was written.
                    self.version = committed;
                    tracing::error!("a KV commit failed: {err}");
                    for job in jobs {
                        let _ = job.reply.send(Err(backend(&err)));
                    }
                }
            }
        }
    }

    /// Applies every job's ops in one transaction.
    fn commit(&mut self, jobs: &[Job]) -> Result<Vec<Vec<Result<Done, KvError>>>, redb::Error> {
        let txn = self.db.begin_write()?;
        let mut outcomes = Vec::with_capacity(jobs.len());
        let now = now_ms();
        for job in jobs {
            let mut results = Vec::with_capacity(job.ops.len());
            for op in &job.ops {
                results.push(self.apply(&txn, &job.ns, op, now)?);
            }
            outcomes.push(results);
        }
        txn.open_table(META)?.insert("version", self.version)?;
        txn.commit()?;
        Ok(outcomes)
    }

    /// One op: its outcome, or the storage error that fails the group.
    fn apply(
        &mut self,
        txn: &WriteTransaction,
        ns: &Namespace,
        op: &Op,
        now: u64,
    ) -> Result<Result<Done, KvError>, redb::Error> {
        let key = match op {
            Op::Set { key, .. }
            | Op::Delete { key }
            | Op::Increment { key, .. }
            | Op::Swap { key, .. } => ns.full_key(key),
        };
        let mut entries = txn.open_table(ENTRIES)?;
        let old = entries
            .get(key.as_slice())?
            .map(|stored| stored.value().to_vec());
        let current = old.as_deref().and_then(|stored| live(stored, now));
        let (value, expires) = match op {
            Op::Delete { .. } => {
                drop(entries);
                if let Some(old) = &old {
                    self.remove(txn, ns.app(), &key, old)?;
                }
                return Ok(Ok(Done::Written));
            }
            Op::Set { value, ttl, .. } => (
                value.clone(),
                ttl.map_or(0, |ttl| {
                    now + ttl.as_millis().min(u128::from(u64::MAX / 2)) as u64
                }),
            ),
            Op::Increment { delta, .. } => {
                let counter = match &current {
                    None => 0,
                    Some(current) => match <[u8; 8]>::try_from(current.value.as_slice()) {
                        Ok(bytes) => i64::from_le_bytes(bytes),
                        Err(_) => return Ok(Err(KvError::NotACounter)),
                    },
                };
                let Some(next) = counter.checked_add(*delta) else {
                    return Ok(Err(KvError::NotACounter));
                };
                // A counter keeps the expiry it had.
                let expires = old
                    .as_deref()
                    .filter(|_| current.is_some())
                    .map_or(0, expiry_of);
                (next.to_le_bytes().to_vec(), expires)
            }
            Op::Swap { version, value, .. } => {
                if current.as_ref().map(|current| current.version) != *version {
                    return Ok(Ok(Done::Changed(current)));
                }
                (value.clone(), 0)
            }
        };
        let old_size = old.as_ref().map_or(0, |old| entry_size(&key, old));
        let new_size = key.len() as u64 + value.len() as u64 + ENTRY_OVERHEAD;
        let mut usage = txn.open_table(USAGE)?;
        let used = usage.get(ns.app())?.map_or(0, |used| used.value());
        let after = used.saturating_sub(old_size) + new_size;
        if new_size > old_size && after > self.max_app_bytes {
            return Ok(Err(KvError::QuotaExceeded(self.max_app_bytes)));
        }
        usage.insert(ns.app(), after)?;
        let mut expiry = txn.open_table(EXPIRY)?;
        if let Some(old) = &old {
            let old_expires = expiry_of(old);
            if old_expires != 0 {
                expiry.remove(expiry_key(old_expires, &key).as_slice())?;
            }
        }
        if expires != 0 {
            expiry.insert(expiry_key(expires, &key).as_slice(), ())?;
        }
        self.version += 1;
        entries.insert(
            key.as_slice(),
            encode(expires, self.version, &value).as_slice(),
        )?;
        Ok(Ok(match op {
            Op::Increment { .. } => {
                Done::Counter(i64::from_le_bytes(value.try_into().unwrap_or_default()))
            }
            Op::Swap { .. } => Done::Swapped,
            _ => Done::Written,
        }))
    }

    /// Removes stored entry `key` (whose stored bytes are `old`), its
    /// expiry index entry and its bytes from the app's usage.
    fn remove(
        &self,
        txn: &WriteTransaction,
        app: &str,
        key: &[u8],
        old: &[u8],
    ) -> Result<(), redb::Error> {
        txn.open_table(ENTRIES)?.remove(key)?;
        let expires = expiry_of(old);
        if expires != 0 {
            txn.open_table(EXPIRY)?
                .remove(expiry_key(expires, key).as_slice())?;
        }
        let mut usage = txn.open_table(USAGE)?;
        let used = usage.get(app)?.map_or(0, |used| used.value());
        usage.insert(app, used.saturating_sub(entry_size(key, old)))?;
        Ok(())
    }

    /// Removes up to [`SWEEP_BATCH`] expired entries.
    fn sweep(&self) -> Result<(), redb::Error> {
        let now = now_ms();
        let expired: Vec<Vec<u8>> = {
            let txn = self.db.begin_read()?;
            let expiry = txn.open_table(EXPIRY)?;
            let end = now.to_be_bytes();
            expiry
                .range::<&[u8]>(..end.as_slice())?
                .take(SWEEP_BATCH)
                .map(|item| item.map(|(key, _)| key.value().to_vec()))
                .collect::<Result<_, _>>()?
        };
        if expired.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write()?;
        for index_key in &expired {
            let key = &index_key[8..];
            let stored = txn
                .open_table(ENTRIES)?
                .get(key)?
                .map(|stored| stored.value().to_vec());
            match stored {
                // Still the entry the index points at: it expired.
                Some(stored) if expiry_of(&stored) != 0 && expiry_of(&stored) <= now => {
                    // A stored key starts with its app's name and a NUL.
                    let app_len = key.iter().position(|b| *b == 0).unwrap_or(key.len());
                    let app = String::from_utf8_lossy(&key[..app_len]);
                    self.remove(&txn, &app, key, &stored)?;
                }
                _ => {
                    txn.open_table(EXPIRY)?.remove(index_key.as_slice())?;
                }
            }
        }
        txn.commit()?;
        Ok(())
    }
}

/// `expires` (ms since the epoch, 0: never), `version`, `value`.
fn encode(expires: u64, version: u64, value: &[u8]) -> Vec<u8> {
    let mut stored = Vec::with_capacity(16 + value.len());
    stored.extend_from_slice(&expires.to_be_bytes());
    stored.extend_from_slice(&version.to_be_bytes());
    stored.extend_from_slice(value);
    stored
}

fn expiry_of(stored: &[u8]) -> u64 {
    stored
        .get(..8)
        .and_then(|bytes| bytes.try_into().ok())
        .map_or(0, u64::from_be_bytes)
}

/// A stored entry, unless it expired by `now`.
fn live(stored: &[u8], now: u64) -> Option<Versioned> {
    let expires = expiry_of(stored);
    if expires != 0 && expires <= now {
        return None;
    }
    let version = stored
        .get(8..16)
        .and_then(|bytes| bytes.try_into().ok())
        .map_or(0, u64::from_be_bytes);
    Some(Versioned {
        value: stored.get(16..).unwrap_or_default().to_vec(),
        version,
    })
}

fn entry_size(key: &[u8], stored: &[u8]) -> u64 {
    key.len() as u64 + stored.len().saturating_sub(16) as u64 + ENTRY_OVERHEAD
}

fn expiry_key(expires: u64, key: &[u8]) -> Vec<u8> {
    let mut index = Vec::with_capacity(8 + key.len());
    index.extend_from_slice(&expires.to_be_bytes());
    index.extend_from_slice(key);
    index
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

fn backend(err: impl std::fmt::Display) -> KvError {
    KvError::Backend(err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &Path, quota: u64) -> RedbStore {
        RedbStore::open(&dir.join("kv.redb"), quota).unwrap()
    }

    fn set(key: &str, value: &[u8]) -> Op {
        Op::Set {
            key: key.into(),
            value: value.to_vec(),
            ttl: None,
        }
    }

    #[tokio::test]
    async fn writes_read_back_list_by_prefix_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let ns = Namespace::new("app", "default");
        {
            let kv = store(dir.path(), 1 << 20);
            let ops = ["a/1", "a/2", "a/3", "b/1"]
                .iter()
                .map(|key| set(key, key.as_bytes()))
                .collect();
            let done = kv.write(&ns, ops).await.unwrap();
            assert!(done.iter().all(|done| *done == Ok(Done::Written)));
            let page = kv.list(&ns, "a/".into(), None, 2).await.unwrap();
            assert_eq!(page.keys, ["a/1", "a/2"]);
            let rest = kv.list(&ns, "a/".into(), page.next, 2).await.unwrap();
            assert_eq!(
                (rest.keys.as_slice(), rest.next),
                (&["a/3".to_owned()][..], None)
            );
            let other = Namespace::new("other", "default");
            assert_eq!(kv.get(&other, vec!["a/1".into()]).await.unwrap(), [None]);
        }
        let kv = store(dir.path(), 1 << 20);
        let got = kv.get(&ns, vec!["b/1".into(), "c".into()]).await.unwrap();
        assert_eq!(got[0].as_ref().unwrap().value, b"b/1");
        assert_eq!(got[1], None);
    }

    #[tokio::test]
    async fn counters_swaps_expiry_and_quota() {
        let dir = tempfile::tempdir().unwrap();
        let kv = store(dir.path(), 200);
        let ns = Namespace::new("app", "default");
        let incr = |delta| Op::Increment {
            key: "n".into(),
            delta,
        };
        let done = kv.write(&ns, vec![incr(5), incr(-2)]).await.unwrap();
        assert_eq!(done, [Ok(Done::Counter(5)), Ok(Done::Counter(3))]);
        let max = Op::Increment {
            key: "n".into(),
            delta: i64::MAX,
        };
        assert_eq!(
            kv.write(&ns, vec![max]).await.unwrap(),
            [Err(KvError::NotACounter)]
        );

        let current = kv
            .get(&ns, vec!["n".into()])
            .await
            .unwrap()
            .remove(0)
            .unwrap();
        let swap = |version| Op::Swap {
            key: "n".into(),
            version,
            value: b"new".to_vec(),
        };
        let stale = kv
            .write(&ns, vec![swap(Some(current.version - 1))])
            .await
            .unwrap();
        assert_eq!(stale, [Ok(Done::Changed(Some(current.clone())))]);
        let fresh = kv
            .write(&ns, vec![swap(Some(current.version))])
            .await
            .unwrap();
        assert_eq!(fresh, [Ok(Done::Swapped)]);
        // Absent: a swap expecting absence creates it once.
        let create = Op::Swap {
            key: "c".into(),
            version: None,
            value: b"1".to_vec(),
        };
        let done = kv.write(&ns, vec![create.clone(), create]).await.unwrap();
        assert_eq!(done[0], Ok(Done::Swapped));
        assert!(matches!(done[1], Ok(Done::Changed(Some(_)))));

        let short = Op::Set {
            key: "t".into(),
            value: b"v".to_vec(),
            ttl: Some(Duration::from_millis(50)),
        };
        kv.write(&ns, vec![short]).await.unwrap();
        assert!(kv.get(&ns, vec!["t".into()]).await.unwrap()[0].is_some());
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(kv.get(&ns, vec!["t".into()]).await.unwrap(), [None]);
        assert!(
            !kv.list(&ns, "t".into(), None, 10)
                .await
                .unwrap()
                .keys
                .contains(&"t".into())
        );

        let big = set("big", &[0; 150]);
        assert_eq!(
            kv.write(&ns, vec![big]).await.unwrap(),
            [Err(KvError::QuotaExceeded(200))]
        );
        kv.write(
            &ns,
            vec![
                Op::Delete { key: "n".into() },
                Op::Delete { key: "c".into() },
            ],
        )
        .await
        .unwrap();
        // The deleted bytes are free again (the expired entry is swept or
        // counted until then: wait for the sweep).
        tokio::time::sleep(SWEEP_INTERVAL + Duration::from_millis(300)).await;
        let fits = set("big", &[0; 150]);
        assert_eq!(
            kv.write(&ns, vec![fits]).await.unwrap(),
            [Ok(Done::Written)]
        );
    }
}

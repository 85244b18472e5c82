//! The node's app store: content-addressed component blobs, numbered
//! versions per app, and each app's active pointer.
//!
//! ```text
//! ROOT/staging/                      uploads being validated (never referenced)
//! ROOT/blobs/<sha256>.wasm            component bytes, named by their hash
//! ROOT/apps/<app>/versions/<N>.json   version N: blob hash, manifest, who, when
//! ROOT/apps/<app>/active              the active version's number
//! ```
//!
//! Every file is written whole to a temporary name, fsynced, renamed into
//! place and its directory fsynced, in the order blob → version record →
//! active pointer. Each step is atomic and only refers to what earlier steps
//! made durable (an upload is written to `staging/`, fsynced and validated
//! before it is renamed into `blobs/`), so a crash at any point (SIGKILL, power loss) leaves the
//! previous active version intact; leftovers of an interrupted write are
//! removed by [`AppStore::open`].
//!
//! One writer at a time: the admin API serializes mutations.

mod crash;
mod secrets;
pub use secrets::VarName;

pub use crash::crash_point;

use outpost_host::hex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Versions kept per app for rollback; older ones are pruned (never the
/// active one).
pub const KEEP_VERSIONS: usize = 50;

/// One uploaded version of an app.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Version {
    /// 1, 2, 3… per app; never reused while the app exists (a deleted
    /// app starts again at 1).
    pub version: u64,
    /// sha256 of the component, hex.
    pub sha256: String,
    /// Component size in bytes.
    pub size: u64,
    /// The app manifest (`outpost.toml`) it was uploaded with, verbatim.
    pub manifest: String,
    /// Milliseconds since the Unix epoch.
    pub created_unix_ms: u64,
    /// Name of the admin token that uploaded it.
    pub created_by: String,
}

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such app or version.
    #[error("{0}")]
    NotFound(String),
    /// The request names something that cannot exist (a bad app name).
    #[error("{0}")]
    Invalid(String),
    /// The disk failed us.
    #[error("{context}: {source}")]
    Io {
        /// What the store was doing.
        context: String,
        /// Why it failed.
        source: io::Error,
    },
}

fn io_error(context: impl Into<String>) -> impl FnOnce(io::Error) -> StoreError {
    let context = context.into();
    move |source| StoreError::Io { context, source }
}

/// The store at one root directory, locked against other processes for
/// as long as it is open.
#[derive(Debug)]
pub struct AppStore {
    root: PathBuf,
    _lock: File,
}

impl AppStore {
    /// Opens (creating if needed) the store at `root` and removes what
    /// interrupted writes left behind.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        fs::create_dir_all(root).map_err(io_error(format!("cannot create {}", root.display())))?;
        // One process per store: a second node on the same state_dir would
        // remove the first one's uploads in progress as leftovers, and both
        // would number versions on their own.
        let lock_path = root.join("lock");
        let lock = File::create(&lock_path)
            .map_err(io_error(format!("cannot create {}", lock_path.display())))?;
        if let Err(err) = lock.try_lock() {
            return Err(StoreError::Invalid(format!(
                "{} is in use by another outpost process ({err}); give each node its own admin.state_dir",
                root.display()
            )));
        }
        let store = Self {
            root: root.to_owned(),
            _lock: lock,
        };
        for dir in [store.blobs_dir(), store.apps_dir(), store.staging_dir()] {
            fs::create_dir_all(&dir)
                .map_err(io_error(format!("cannot create {}", dir.display())))?;
        }
        store.remove_leftovers()?;
        Ok(store)
    }

    /// Starts writing an uploaded component aside, for validation, as its
    /// bytes arrive (an upload is never held in memory whole). Nothing
    /// refers to it: dropped (rejected) or left by a crash, it is removed.
    pub fn staging(&self) -> Result<Staging, StoreError> {
        let path = self
            .staging_dir()
            .join(format!("upload.{}.tmp", unique_suffix()));
        let file =
            File::create(&path).map_err(io_error(format!("cannot create {}", path.display())))?;
        Ok(Staging {
            file,
            path: Some(path),
            hasher: Sha256::new(),
            size: 0,
        })
    }

    /// Moves a validated component into the blob store, named by its
    /// sha256 (a no-op if those bytes are stored already); returns the hash.
    pub fn commit(&self, staged: Staged) -> Result<String, StoreError> {
        let target = self.blob_path(&staged.sha256);
        if !target.exists() {
            fs::rename(&staged.path, &target).map_err(io_error(format!(
                "cannot move {} into the store",
                staged.path.display()
            )))?;
            sync_dir(&self.blobs_dir())?;
            crash_point("blob-stored");
        }
        Ok(staged.sha256.clone())
    }

    /// Where a blob lives.
    pub fn blob_path(&self, sha256: &str) -> PathBuf {
        self.blobs_dir().join(format!("{sha256}.wasm"))
    }

    /// Records a new version of `app` (creating the app) for a stored blob.
    /// Does not activate it.
    pub fn record_version(
        &self,
        app: &AppName,
        sha256: &str,
        manifest: &str,
        created_by: &str,
    ) -> Result<Version, StoreError> {
        let blob = self.blob_path(sha256);
        let size = fs::metadata(&blob)
            .map_err(|_| StoreError::NotFound(format!("no stored component {sha256}")))?
            .len();
        let dir = self.versions_dir(app);
        if !dir.exists() {
            // A new app: its directories must survive a power cut as much
            // as the files in them.
            fs::create_dir_all(&dir)
                .map_err(io_error(format!("cannot create {}", dir.display())))?;
            sync_dir(&self.app_dir(app))?;
            sync_dir(&self.apps_dir())?;
        }
        let last = self.version_numbers(app)?.last().copied().unwrap_or(0);
        let version = Version {
            version: last + 1,
            sha256: sha256.to_owned(),
            size,
            manifest: manifest.to_owned(),
            created_unix_ms: now_unix_ms(),
            created_by: created_by.to_owned(),
        };
        let json = serde_json::to_vec_pretty(&version).expect("a version serializes");
        write_atomic(
            &dir.join(format!("{}.json", version.version)),
            &json,
            "version",
        )?;
        crash_point("version-recorded");
        self.prune(app)?;
        Ok(version)
    }

    /// Makes `version` the one `app` serves after a restart.
    pub fn activate(&self, app: &AppName, version: u64) -> Result<Version, StoreError> {
        let record = self
            .version(app, version)?
            .ok_or_else(|| StoreError::NotFound(format!("app {app} has no version {version}")))?;
        write_atomic(
            &self.app_dir(app).join("active"),
            version.to_string().as_bytes(),
            "active",
        )?;
        crash_point("activated");
        Ok(record)
    }

    /// The version `app` serves, if it has one.
    pub fn active(&self, app: &AppName) -> Result<Option<Version>, StoreError> {
        let path = self.app_dir(app).join("active");
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(io_error(format!("cannot read {}", path.display()))(err)),
        };
        let Ok(number) = text.trim().parse() else {
            return Err(StoreError::Invalid(format!(
                "{} holds {text:?}, not a version number",
                path.display()
            )));
        };
        self.version(app, number)
    }

    /// One version of `app`.
    pub fn version(&self, app: &AppName, version: u64) -> Result<Option<Version>, StoreError> {
        let path = self.versions_dir(app).join(format!("{version}.json"));
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(io_error(format!("cannot read {}", path.display()))(err)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|err| StoreError::Invalid(format!("{} is corrupt: {err}", path.display())))
    }

    /// Every kept version of `app`, oldest first.
    pub fn versions(&self, app: &AppName) -> Result<Vec<Version>, StoreError> {
        let mut versions = Vec::new();
        for number in self.version_numbers(app)? {
            if let Some(version) = self.version(app, number)? {
                versions.push(version);
            }
        }
        Ok(versions)
    }

    /// Names of the apps with at least one version, sorted.
    pub fn apps(&self) -> Result<Vec<AppName>, StoreError> {
        let mut apps = Vec::new();
        let dir = self.apps_dir();
        for entry in
            fs::read_dir(&dir).map_err(io_error(format!("cannot list {}", dir.display())))?
        {
            let entry = entry.map_err(io_error(format!("cannot list {}", dir.display())))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Ok(name) = AppName::parse(&name)
                && !self.version_numbers(&name)?.is_empty()
            {
                apps.push(name);
            }
        }
        apps.sort();
        Ok(apps)
    }

    /// Deletes an app and every version of it. False if there was none.
    pub fn delete_app(&self, app: &AppName) -> Result<bool, StoreError> {
        let dir = self.app_dir(app);
        if !dir.exists() {
            return Ok(false);
        }
        // Renaming first makes the deletion atomic: a crash halfway through
        // removing files leaves a `.deleted-` directory that open() clears,
        // never a half-deleted app.
        let doomed = self
            .apps_dir()
            .join(format!(".deleted-{app}-{}", unique_suffix()));
        fs::rename(&dir, &doomed).map_err(io_error(format!("cannot delete {}", dir.display())))?;
        sync_dir(&self.apps_dir())?;
        fs::remove_dir_all(&doomed)
            .map_err(io_error(format!("cannot remove {}", doomed.display())))?;
        self.delete_secrets(app)?;
        self.collect_garbage()?;
        Ok(true)
    }

    /// Keeps the newest [`KEEP_VERSIONS`] versions of `app` and its active
    /// one; removes blobs no version refers to.
    fn prune(&self, app: &AppName) -> Result<(), StoreError> {
        let numbers = self.version_numbers(app)?;
        if numbers.len() <= KEEP_VERSIONS {
            return Ok(());
        }
        let active = self.active(app)?.map(|version| version.version);
        for &number in &numbers[..numbers.len() - KEEP_VERSIONS] {
            if Some(number) != active {
                let path = self.versions_dir(app).join(format!("{number}.json"));
                fs::remove_file(&path)
                    .map_err(io_error(format!("cannot remove {}", path.display())))?;
            }
        }
        // The records go first, durably: a blob is never gone while a
        // version still names it.
        sync_dir(&self.versions_dir(app))?;
        self.collect_garbage()
    }

    /// Removes blobs that no version of any app refers to.
    fn collect_garbage(&self) -> Result<(), StoreError> {
        let mut referenced = std::collections::HashSet::new();
        for app in self.apps()? {
            for version in self.versions(&app)? {
                referenced.insert(version.sha256);
            }
        }
        let dir = self.blobs_dir();
        for entry in
            fs::read_dir(&dir).map_err(io_error(format!("cannot list {}", dir.display())))?
        {
            let path = entry
                .map_err(io_error(format!("cannot list {}", dir.display())))?
                .path();
            let Some(sha256) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".wasm"))
            else {
                continue;
            };
            if !referenced.contains(sha256) {
                fs::remove_file(&path)
                    .map_err(io_error(format!("cannot remove {}", path.display())))?;
            }
        }
        sync_dir(&dir)
    }

    fn version_numbers(&self, app: &str) -> Result<Vec<u64>, StoreError> {
        let dir = self.versions_dir(app);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(io_error(format!("cannot list {}", dir.display()))(err)),
        };
        let mut numbers: Vec<u64> = entries
            .filter_map(Result::ok)
            .filter_map(|entry| {
                entry
                    .file_name()
                    .to_str()?
                    .strip_suffix(".json")?
                    .parse()
                    .ok()
            })
            .collect();
        numbers.sort_unstable();
        Ok(numbers)
    }

    fn remove_leftovers(&self) -> Result<(), StoreError> {
        let mut dirs = vec![self.blobs_dir(), self.staging_dir()];
        let apps = self.apps_dir();
        for entry in
            fs::read_dir(&apps).map_err(io_error(format!("cannot list {}", apps.display())))?
        {
            let entry = entry.map_err(io_error(format!("cannot list {}", apps.display())))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".deleted-") {
                fs::remove_dir_all(entry.path()).map_err(io_error(format!(
                    "cannot remove {}",
                    entry.path().display()
                )))?;
            } else {
                dirs.push(entry.path());
                dirs.push(entry.path().join("versions"));
            }
        }
        for dir in dirs {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.filter_map(Result::ok) {
                if entry.file_name().to_string_lossy().ends_with(".tmp") {
                    tracing::info!(
                        "removing {} left by an interrupted write",
                        entry.path().display()
                    );
                    fs::remove_file(entry.path()).map_err(io_error(format!(
                        "cannot remove {}",
                        entry.path().display()
                    )))?;
                }
            }
        }
        Ok(())
    }

    fn staging_dir(&self) -> PathBuf {
        self.root.join("staging")
    }

    fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs")
    }

    fn apps_dir(&self) -> PathBuf {
        self.root.join("apps")
    }

    fn app_dir(&self, app: &str) -> PathBuf {
        self.apps_dir().join(app)
    }

    fn versions_dir(&self, app: &str) -> PathBuf {
        self.app_dir(app).join("versions")
    }
}

/// An upload being written aside: [`Staging::write`] its bytes as they
/// arrive, then [`Staging::finish`]. Removed when dropped unfinished.
pub struct Staging {
    file: File,
    /// `None` once finished.
    path: Option<PathBuf>,
    hasher: Sha256,
    size: u64,
}

impl Staging {
    /// Appends the next bytes of the upload.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.hasher.update(bytes);
        self.size += bytes.len() as u64;
        let path = self.path.as_deref().expect("not finished");
        self.file
            .write_all(bytes)
            .map_err(io_error(format!("cannot write {}", path.display())))
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Makes the upload durable and names it by its hash.
    pub fn finish(mut self) -> Result<Staged, StoreError> {
        let path = self.path.take().expect("finished once");
        let synced = self.file.sync_all();
        let staged = Staged {
            sha256: hex(&std::mem::take(&mut self.hasher).finalize()),
            path,
        };
        synced.map_err(io_error(format!("cannot sync {}", staged.path.display())))?;
        crash_point("blob-written");
        Ok(staged)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Some(path) = &self.path {
            let _ = fs::remove_file(path);
        }
    }
}

/// An uploaded component written aside until it is validated; removed when
/// dropped unless committed.
#[derive(Debug)]
pub struct Staged {
    path: PathBuf,
    sha256: String,
}

impl Staged {
    /// Where it is, for validation.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        // After a commit the file was renamed away; nothing to remove then.
        let _ = fs::remove_file(&self.path);
    }
}

/// An app's name, checked: app names become directory names and URL
/// segments, so they are 1 to 63 lowercase letters, digits and dashes, not
/// starting with a dash. Every store operation takes one: a name is checked
/// once, where it enters (a URL, a manifest, node.toml, the CLI).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct AppName(String);

/// As the string it is: `"hello"`.
impl std::fmt::Debug for AppName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.0, f)
    }
}

impl AppName {
    /// `name`, if it is a valid app name; the error says what one is.
    pub fn parse(name: &str) -> Result<Self, StoreError> {
        let valid = !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !name.starts_with('-');
        if valid {
            Ok(Self(name.to_owned()))
        } else {
            // Capped: a client-chosen name may be long.
            let shown: String = name.chars().take(80).collect();
            Err(StoreError::Invalid(format!(
                "{shown:?} is not a valid app name: use 1 to 63 lowercase letters, digits and dashes, not starting with a dash"
            )))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for AppName {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for AppName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for AppName {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for AppName {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// sha256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Writes `bytes` to `path` so that `path` holds either its old content or
/// all of the new, whatever happens: temp file, fsync, rename, fsync of the
/// directory. `what` names the write for crash points (`<what>-written` is
/// after the fsync, before the rename).
fn write_atomic(path: &Path, bytes: &[u8], what: &str) -> Result<(), StoreError> {
    write_atomic_mode(path, bytes, what, 0o666)
}

/// [`write_atomic`], the file created with permission bits `mode` (less
/// the umask) from its first byte.
fn write_atomic_mode(path: &Path, bytes: &[u8], what: &str, mode: u32) -> Result<(), StoreError> {
    let dir = path.parent().expect("store paths have a parent");
    let name = path
        .file_name()
        .expect("store paths have a file name")
        .to_string_lossy();
    let tmp = dir.join(format!(".{name}.{}.tmp", unique_suffix()));
    write_durably(&tmp, bytes, mode)
        .map_err(io_error(format!("cannot write {}", tmp.display())))?;
    crash_point(&format!("{what}-written"));
    fs::rename(&tmp, path).map_err(io_error(format!(
        "cannot rename {} into place",
        tmp.display()
    )))?;
    sync_dir(dir)
}

/// Writes a new file and fsyncs it; removes it again if that fails.
fn write_durably(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let write = || -> io::Result<()> {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)?;
        file.write_all(bytes)?;
        file.sync_all()
    };
    write().inspect_err(|_| {
        let _ = fs::remove_file(path);
    })
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(io_error(format!("cannot sync {}", dir.display())))
}

fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(name: &str) -> AppName {
        AppName::parse(name).unwrap()
    }

    impl AppStore {
        fn stage(&self, bytes: &[u8]) -> Result<Staged, StoreError> {
            let mut staging = self.staging()?;
            staging.write(bytes)?;
            staging.finish()
        }

        fn put_blob(&self, bytes: &[u8]) -> Result<String, StoreError> {
            self.commit(self.stage(bytes)?)
        }
    }

    #[test]
    fn versions_are_numbered_recorded_activated_and_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let store = AppStore::open(dir.path()).unwrap();
        let first = store.put_blob(b"component one").unwrap();
        assert_eq!(
            store.put_blob(b"component one").unwrap(),
            first,
            "same bytes, same blob"
        );
        let v1 = store
            .record_version(&app("hello"), &first, "name = \"hello\"", "ci")
            .unwrap();
        assert_eq!(v1.version, 1);
        assert_eq!(
            store.active(&app("hello")).unwrap(),
            None,
            "recording does not activate"
        );
        store.activate(&app("hello"), 1).unwrap();
        assert_eq!(store.active(&app("hello")).unwrap().unwrap().sha256, first);

        for n in 2..=(KEEP_VERSIONS as u64 + 5) {
            let sha = store.put_blob(format!("component {n}").as_bytes()).unwrap();
            assert_eq!(
                store
                    .record_version(&app("hello"), &sha, "", "ci")
                    .unwrap()
                    .version,
                n
            );
        }
        let kept: Vec<u64> = store
            .versions(&app("hello"))
            .unwrap()
            .iter()
            .map(|v| v.version)
            .collect();
        assert_eq!(
            kept.len(),
            KEEP_VERSIONS + 1,
            "the newest versions and the active one"
        );
        assert_eq!(kept[0], 1, "the active version is never pruned");
        assert_eq!(kept[1], 6);
        assert!(
            !store.blob_path(&sha256_hex(b"component 2")).exists(),
            "pruned blobs are removed"
        );
        assert!(store.blob_path(&first).exists());

        assert_eq!(store.apps().unwrap(), vec![app("hello")]);
        assert!(store.delete_app(&app("hello")).unwrap());
        assert!(store.apps().unwrap().is_empty());
        assert!(!store.blob_path(&first).exists());
        assert!(!store.delete_app(&app("hello")).unwrap());
    }

    #[test]
    fn leftovers_of_interrupted_writes_are_removed_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = AppStore::open(dir.path()).unwrap();
        let sha = store.put_blob(b"x").unwrap();
        store.record_version(&app("app"), &sha, "", "ci").unwrap();
        let tmp = dir.path().join("apps/app/versions/.2.json.1-1.tmp");
        fs::write(&tmp, b"{half").unwrap();
        fs::create_dir_all(dir.path().join("apps/.deleted-old-1-1")).unwrap();
        let staged = dir.path().join("staging/abc.1-1.tmp");
        fs::write(&staged, b"half a component").unwrap();
        drop(store);
        let store = AppStore::open(dir.path()).unwrap();
        assert!(!tmp.exists());
        assert!(!staged.exists());
        assert!(!dir.path().join("apps/.deleted-old-1-1").exists());
        assert_eq!(store.versions(&app("app")).unwrap().len(), 1);
    }

    #[test]
    fn a_rejected_upload_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store = AppStore::open(dir.path()).unwrap();
        let staged = store.stage(b"not a component").unwrap();
        assert!(staged.path().exists());
        drop(staged);
        assert_eq!(fs::read_dir(dir.path().join("staging")).unwrap().count(), 0);
        assert_eq!(fs::read_dir(dir.path().join("blobs")).unwrap().count(), 0);
    }

    #[test]
    fn one_process_per_store() {
        let dir = tempfile::tempdir().unwrap();
        let first = AppStore::open(dir.path()).unwrap();
        let err = AppStore::open(dir.path()).unwrap_err();
        assert!(
            err.to_string()
                .contains("in use by another outpost process"),
            "{err}"
        );
        drop(first);
        AppStore::open(dir.path()).unwrap();
    }

    #[test]
    fn bad_app_names_are_refused() {
        for name in ["", "../etc", "Hello", "-x", "a/b", &"a".repeat(64)] {
            assert!(AppName::parse(name).is_err(), "{name:?}");
        }
        for name in ["a", "hello-world", "api2"] {
            assert!(AppName::parse(name).is_ok(), "{name:?}");
        }
    }
}

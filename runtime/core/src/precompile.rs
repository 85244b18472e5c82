//! Components are compiled once and kept on disk as precompiled artifacts,
//! keyed by the component's sha256 and the engine's compatibility hash, so a
//! restart (or a second app with the same bytes) does not recompile.
//!
//! Artifacts are machine code that the node maps and runs, so the cache is
//! trusted like the binary: the directory is created `0700`, and the node
//! refuses a directory, an artifact or a parent directory that another user
//! could write (a world-writable parent is fine only with the sticky bit, as
//! `/tmp` has).

use crate::LoadError;
use outpost_host::hex;
use sha2::{Digest, Sha256};
use std::fs;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Where a loaded component came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provenance {
    /// Compiled now, and written to the cache.
    Compiled,
    /// Read from the precompiled cache without compiling.
    Cached,
    /// Found in the precompiled cache; mapped on its first request
    /// ([`crate::RuntimeConfig::lazy_load`]).
    Deferred,
}

pub(crate) struct PrecompileCache {
    dir: PathBuf,
    /// Part of every artifact name: artifacts of another wasmtime version or
    /// other engine settings are never even looked at.
    engine_key: String,
}

impl PrecompileCache {
    pub(crate) fn new(dir: PathBuf, engine: &Engine) -> Result<Self, LoadError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|source| LoadError::Cache {
                dir: dir.clone(),
                source,
            })?;
        check_trusted_dir(&dir)?;
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(Self {
            dir,
            engine_key: format!("{:016x}", hasher.finish()),
        })
    }

    /// Where the artifact of `bytes` lives, whether or not it exists yet,
    /// once `bytes` are known to be a component.
    pub(crate) fn artifact_for(&self, path: &Path, bytes: &[u8]) -> Result<PathBuf, LoadError> {
        check_is_component(path, bytes)?;
        let digest = hex(&Sha256::digest(bytes));
        Ok(self.dir.join(format!("{digest}-{}.cwasm", self.engine_key)))
    }

    /// Maps an artifact this cache wrote.
    pub(crate) fn load_artifact(
        &self,
        engine: &Engine,
        path: &Path,
        artifact: &Path,
    ) -> Result<Component, LoadError> {
        check_trusted_file(artifact)?;
        deserialize(engine, artifact).map_err(|err| load_error(path, artifact, &err))
    }

    /// The compiled component for `bytes`, from `artifact` when it is there
    /// and usable, else compiled now and written there.
    pub(crate) fn load(
        &self,
        engine: &Engine,
        path: &Path,
        bytes: &[u8],
        artifact: &Path,
    ) -> Result<(Component, Provenance), LoadError> {
        if artifact.exists() {
            check_trusted_file(artifact)?;
            match deserialize(engine, artifact) {
                Ok(component) => return Ok((component, Provenance::Cached)),
                // Compiling again would not make it fit.
                Err(err) if is_too_big(&err) => return Err(load_error(path, artifact, &err)),
                Err(err) => tracing::warn!(
                    artifact = %artifact.display(),
                    "precompiled artifact unusable, compiling again: {err:#}"
                ),
            }
        }
        let compiled = engine
            .precompile_component(bytes)
            .map_err(|err| LoadError::Invalid {
                path: path.to_owned(),
                reason: format!("{err:#}"),
            })?;
        self.store(artifact, &compiled)
            .map_err(|source| LoadError::Cache {
                dir: self.dir.clone(),
                source,
            })?;
        let component = self.load_artifact(engine, path, artifact)?;
        Ok((component, Provenance::Compiled))
    }

    /// Writes the artifact crash-safely: a temp file in the same directory,
    /// fsync, rename. A reader never sees a partial artifact.
    fn store(&self, artifact: &Path, compiled: &[u8]) -> std::io::Result<()> {
        let tmp = artifact.with_extension(format!("tmp.{}", std::process::id()));
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(compiled)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, artifact)?;
        // Make the rename itself durable.
        fs::File::open(&self.dir)?.sync_all()
    }
}

/// Whether a component failed to load because it contains more core
/// instances, memories or tables than a pool slot holds (wasmtime checks
/// this when it maps a component).
fn is_too_big(err: &wasmtime::Error) -> bool {
    format!("{err:#}").contains("in the pooling allocator")
}

fn load_error(path: &Path, artifact: &Path, err: &wasmtime::Error) -> LoadError {
    if is_too_big(err) {
        LoadError::TooBig {
            path: path.to_owned(),
            reason: format!("{err:#}"),
        }
    } else {
        LoadError::Invalid {
            path: path.to_owned(),
            reason: format!("precompiled artifact {}: {err:#}", artifact.display()),
        }
    }
}

/// The cache directory must belong to the node's user and be writable by
/// nobody else, and so must every directory above it (or carry the sticky
/// bit): anyone who can write there can make the node run their code.
fn check_trusted_dir(dir: &Path) -> Result<(), LoadError> {
    let dir = dir.canonicalize().map_err(|source| LoadError::Cache {
        dir: dir.to_owned(),
        source,
    })?;
    let untrusted = |reason: String| LoadError::UntrustedCache {
        path: dir.clone(),
        reason,
    };
    let metadata = fs::metadata(&dir).map_err(|source| LoadError::Cache {
        dir: dir.clone(),
        source,
    })?;
    let me = rustix::process::geteuid().as_raw();
    if metadata.uid() != me {
        return Err(untrusted(format!(
            "it belongs to uid {}, not to the node's user (uid {me}); `chown` it or pick another --cache-dir",
            metadata.uid()
        )));
    }
    if metadata.mode() & 0o022 != 0 {
        return Err(untrusted(format!(
            "other users may write it (mode {:o}); run `chmod go-w {}`",
            metadata.mode() & 0o7777,
            dir.display()
        )));
    }
    for parent in dir.ancestors().skip(1) {
        let Ok(metadata) = fs::metadata(parent) else {
            continue;
        };
        let owner_trusted = metadata.uid() == me || metadata.uid() == 0;
        let sticky = metadata.mode() & 0o1000 != 0;
        if !owner_trusted || (metadata.mode() & 0o022 != 0 && !sticky) {
            return Err(untrusted(format!(
                "its parent {} may be written by other users (owner uid {}, mode {:o}), who could replace the cache; \
                 put the cache under a directory only you and root can write",
                parent.display(),
                metadata.uid(),
                metadata.mode() & 0o7777
            )));
        }
    }
    Ok(())
}

/// An artifact must be a regular file of the node's user that nobody else
/// may write.
fn check_trusted_file(artifact: &Path) -> Result<(), LoadError> {
    let untrusted = |reason: String| LoadError::UntrustedCache {
        path: artifact.to_owned(),
        reason,
    };
    let metadata = fs::symlink_metadata(artifact).map_err(|source| LoadError::Cache {
        dir: artifact.to_owned(),
        source,
    })?;
    let me = rustix::process::geteuid().as_raw();
    if !metadata.is_file() {
        return Err(untrusted(
            "not a regular file; delete it and it is compiled again".into(),
        ));
    }
    if metadata.uid() != me || metadata.mode() & 0o022 != 0 {
        return Err(untrusted(format!(
            "owned by uid {} with mode {:o}, but only the node's user (uid {me}) may write artifacts; \
             delete it and it is compiled again",
            metadata.uid(),
            metadata.mode() & 0o7777
        )));
    }
    Ok(())
}

/// Loads an artifact this cache wrote.
#[expect(
    unsafe_code,
    reason = "deserializing runs precompiled machine code; it is sound because \
              only PrecompileCache::store writes into the cache directory, which \
              check_trusted_dir and check_trusted_file make sure no other user can write"
)]
fn deserialize(engine: &Engine, artifact: &Path) -> wasmtime::Result<Component> {
    // SAFETY: see the `expect` reason above; wasmtime also checks the
    // artifact's header and engine compatibility before using it.
    unsafe { Component::deserialize_file(engine, artifact) }
}

/// Tells apart the usual wrong inputs before handing bytes to the compiler,
/// whose messages for them are obscure.
fn check_is_component(path: &Path, bytes: &[u8]) -> Result<(), LoadError> {
    let not_a_component = |reason: &str| LoadError::NotAComponent {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    const MAGIC: &[u8] = b"\0asm";
    const CORE_MODULE: &[u8] = &[1, 0, 0, 0];
    const COMPONENT: &[u8] = &[0x0d, 0, 1, 0];
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        let looks_like_text = bytes
            .iter()
            .take(64)
            .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace());
        return Err(not_a_component(if looks_like_text && !bytes.is_empty() {
            "not a WebAssembly binary (it looks like text: WAT is not accepted; \
             build the handler with `cargo build --target wasm32-wasip2 --release`)"
        } else {
            "not a WebAssembly binary (no \\0asm header); point to the .wasm file \
             that `cargo build --target wasm32-wasip2 --release` writes"
        }));
    }
    match &bytes[4..8] {
        COMPONENT => Ok(()),
        CORE_MODULE => Err(not_a_component(
            "a core WebAssembly module, not a component; build for wasm32-wasip2 \
             (not wasm32-wasip1 or wasm32-unknown-unknown), or wrap the module with \
             `wasm-tools component new`",
        )),
        _ => Err(not_a_component(
            "a WebAssembly binary of an unknown version or layer; Outpost runs \
             components of the WebAssembly component model",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(bytes: &[u8]) -> String {
        check_is_component(Path::new("app.wasm"), bytes)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_cache_other_users_can_write_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cache");
        fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
        check_trusted_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        let err = check_trusted_dir(&dir).unwrap_err().to_string();
        assert!(err.contains("chmod go-w"), "{err}");

        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        let artifact = dir.join("a.cwasm");
        fs::write(&artifact, b"x").unwrap();
        fs::set_permissions(&artifact, fs::Permissions::from_mode(0o600)).unwrap();
        check_trusted_file(&artifact).unwrap();
        fs::set_permissions(&artifact, fs::Permissions::from_mode(0o666)).unwrap();
        let err = check_trusted_file(&artifact).unwrap_err().to_string();
        assert!(err.contains("delete it"), "{err}");

        // A parent others may write, without the sticky bit, is refused too.
        let shared = root.path().join("shared");
        fs::create_dir(&shared).unwrap();
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o777)).unwrap();
        let below = shared.join("cache");
        fs::DirBuilder::new().mode(0o700).create(&below).unwrap();
        let err = check_trusted_dir(&below).unwrap_err().to_string();
        assert!(err.contains("its parent"), "{err}");
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
        check_trusted_dir(&below).unwrap();
    }

    #[test]
    fn tells_wrong_inputs_apart() {
        assert!(reason(b"(component)").contains("looks like text"));
        assert!(reason(&[0x7f, b'E', b'L', b'F', 0, 0, 0, 0, 1]).contains("no \\0asm header"));
        assert!(reason(b"\0asm\x01\0\0\0").contains("core WebAssembly module"));
        assert!(reason(b"").starts_with("app.wasm: "));
        check_is_component(Path::new("c.wasm"), b"\0asm\x0d\0\x01\0").unwrap();
    }
}

//! Components are compiled once and kept on disk as precompiled artifacts,
//! keyed by the component's sha256 and the engine's compatibility hash, so a
//! restart (or a second app with the same bytes) does not recompile.

use crate::LoadError;
use sha2::{Digest, Sha256};
use std::fs;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
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
        fs::create_dir_all(&dir).map_err(|source| LoadError::Cache {
            dir: dir.clone(),
            source,
        })?;
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
        deserialize(engine, artifact).map_err(|err| LoadError::Invalid {
            path: path.to_owned(),
            reason: format!("precompiled artifact {}: {err:#}", artifact.display()),
        })
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
            match deserialize(engine, artifact) {
                Ok(component) => return Ok((component, Provenance::Cached)),
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
        let mut file = fs::File::create(&tmp)?;
        file.write_all(compiled)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, artifact)?;
        // Make the rename itself durable.
        fs::File::open(&self.dir)?.sync_all()
    }
}

/// Loads an artifact this cache wrote.
#[expect(
    unsafe_code,
    reason = "deserializing runs precompiled machine code; it is sound because \
              only PrecompileCache::store writes into the cache directory, which \
              the operator must keep as private as the binary itself"
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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
    fn tells_wrong_inputs_apart() {
        assert!(reason(b"(component)").contains("looks like text"));
        assert!(reason(&[0x7f, b'E', b'L', b'F', 0, 0, 0, 0, 1]).contains("no \\0asm header"));
        assert!(reason(b"\0asm\x01\0\0\0").contains("core WebAssembly module"));
        assert!(reason(b"").starts_with("app.wasm: "));
        check_is_component(Path::new("c.wasm"), b"\0asm\x0d\0\x01\0").unwrap();
    }
}

//! Handler projects: `outpost new` scaffolds one, `outpost build` compiles
//! it to a component.

use crate::exit;
use crate::style::{self, out};
use anyhow::Context as _;
use outpost_core::Limits;
use outpost_server::{AppManifest, MANIFEST_FILE};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The Rust target handlers build for.
const TARGET: &str = "wasm32-wasip2";

/// Where the SDK is when the project was not told otherwise: this
/// repository's sdk/ (the SDK is not on crates.io yet).
const BUNDLED_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../sdk");

#[derive(clap::Args)]
pub(crate) struct NewArgs {
    /// The app's name: lowercase letters, digits and dashes. Also the
    /// directory created.
    name: String,
    /// Path of the outpost-sdk crate the project depends on.
    #[arg(long, env = "OUTPOST_SDK_PATH")]
    sdk: Option<PathBuf>,
}

pub(crate) fn new(args: &NewArgs) -> anyhow::Result<()> {
    outpost_store::AppName::parse(&args.name).map_err(|err| exit::usage(err.to_string()))?;
    let dir = PathBuf::from(&args.name);
    if dir.exists() {
        return Err(exit::usage(format!(
            "{} already exists; pick another name or remove it",
            dir.display()
        )));
    }
    let sdk = args
        .sdk
        .clone()
        .unwrap_or_else(|| PathBuf::from(BUNDLED_SDK));
    let sdk = sdk.canonicalize().map_err(|_| {
        exit::usage(format!(
            "the outpost SDK is not at {}; pass --sdk PATH (or OUTPOST_SDK_PATH) to a checkout's sdk/ directory",
            sdk.display()
        ))
    })?;
    let name = &args.name;
    let files = [
        ("Cargo.toml", cargo_toml(name, &sdk)),
        ("src/lib.rs", LIB_RS.replace("{name}", name)),
        (MANIFEST_FILE, OUTPOST_TOML.replace("{name}", name)),
        (
            ".gitignore",
            "/target\n/.secrets.toml\n/.outpost\n".to_owned(),
        ),
    ];
    for (file, contents) in files {
        let path = dir.join(file);
        std::fs::create_dir_all(path.parent().expect("project files have a parent"))
            .and_then(|()| std::fs::write(&path, contents))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    out!(
        "{} handler project {}",
        style::ok("created"),
        style::bold(name)
    );
    out!("  cd {name}");
    out!("  outpost dev          # serve it on http://127.0.0.1:8787, rebuilding on change");
    out!("  cargo test           # run its tests");
    out!("  outpost deploy --remote http://NODE:8081");
    Ok(())
}

fn cargo_toml(name: &str, sdk: &Path) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
outpost-sdk = {{ path = {sdk:?} }}

[profile.release]
# Small, fast components: one codegen unit, link-time optimization.
codegen-units = 1
opt-level = "s"
lto = true
strip = "debuginfo"
"#,
        sdk = sdk.display().to_string()
    )
}

const LIB_RS: &str = r#"//! The {name} handler. `outpost dev` serves it locally; `cargo test` runs
//! the tests below on your machine.

use outpost_sdk::{Request, Response, Result, handler};

#[handler]
fn handle(req: Request) -> Result<Response> {
    Ok(Response::text(format!("Hello from {name} at {}!\n", req.path())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_sdk::Method;

    #[test]
    fn greets_with_the_path() {
        let response = handle(Request::builder(Method::GET, "/there").build()).unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.body(), b"Hello from {name} at /there!\n");
    }
}
"#;

const OUTPOST_TOML: &str = r#"# The app manifest. Reference: "App manifest" in Outpost's README.
schema = 1
name = "{name}"
# Which requests the app serves: "/path", "host/path" or "*.host/path".
routes = ["/"]

[limits]
cpu_ms = 50          # CPU time per request
wall_ms = 30000      # wall-clock time per request
memory_mib = 128     # linear memory
request_body_kib = 1024
"#;

/// A handler project: a directory with Cargo.toml and outpost.toml.
pub(crate) struct Project {
    pub(crate) dir: PathBuf,
}

impl Project {
    pub(crate) fn open(dir: &Path) -> anyhow::Result<Self> {
        if !dir.join("Cargo.toml").is_file() {
            return Err(exit::usage(format!(
                "{} has no Cargo.toml; run this in a handler project (`outpost new NAME` makes one)",
                dir.display()
            )));
        }
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    /// Reads and validates the project's outpost.toml, with its limits
    /// checked against a node's `maxima` (`Limits::unbounded()` when the
    /// node will check them itself).
    pub(crate) fn manifest(&self, maxima: &Limits) -> anyhow::Result<AppManifest> {
        Ok(AppManifest::load(&self.dir, maxima)?)
    }

    /// `cargo build --release --target wasm32-wasip2`, with the compiler's
    /// messages on stderr; returns the component's path.
    pub(crate) fn build(&self) -> anyhow::Result<PathBuf> {
        ensure_target()?;
        let started = std::time::Instant::now();
        eprintln!(
            "{} {} (release, {TARGET})",
            style::ok("building"),
            self.dir.display()
        );
        let output = Command::new(cargo())
            .args([
                "build",
                "--release",
                "--target",
                TARGET,
                "--message-format=json-render-diagnostics",
                "--manifest-path",
            ])
            .arg(self.dir.join("Cargo.toml"))
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .context("cannot run cargo; is Rust installed (https://rustup.rs)?")?;
        if !output.status.success() {
            anyhow::bail!("the build failed; the compiler's messages are above");
        }
        let component = component_of(&String::from_utf8_lossy(&output.stdout)).ok_or_else(|| {
            anyhow::anyhow!(
                "the build produced no .wasm; set `crate-type = [\"cdylib\"]` under [lib] in {}",
                self.dir.join("Cargo.toml").display()
            )
        })?;
        eprintln!(
            "{} {} in {:.1} s",
            style::ok("built"),
            component.display(),
            started.elapsed().as_secs_f64()
        );
        Ok(component)
    }
}

/// The last .wasm among cargo's compiler-artifact messages.
fn component_of(messages: &str) -> Option<PathBuf> {
    messages
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| message["reason"] == "compiler-artifact")
        .flat_map(|message| {
            message["filenames"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|name| name.as_str().map(PathBuf::from))
                .collect::<Vec<_>>()
        })
        .rfind(|path| path.extension().is_some_and(|ext| ext == "wasm"))
}

fn cargo() -> std::ffi::OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// Installs the wasm32-wasip2 target with rustup if it is missing.
fn ensure_target() -> anyhow::Result<()> {
    let Ok(installed) = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
    else {
        // No rustup: a toolchain managed otherwise; cargo will say if the
        // target is missing.
        return Ok(());
    };
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|line| line.trim() == TARGET)
    {
        return Ok(());
    }
    eprintln!(
        "{} the {TARGET} target with rustup",
        style::warn("installing")
    );
    let status = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status()
        .context("cannot run rustup")?;
    anyhow::ensure!(status.success(), "`rustup target add {TARGET}` failed");
    Ok(())
}

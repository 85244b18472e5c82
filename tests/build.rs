//! Builds every guest crate (examples and test fixtures) for wasm32-wasip2 and
//! writes `artifacts.rs` with one path constant per component, e.g.
//! `pub const HELLO: &str = "/…/hello.wasm";`.

use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

/// The guest workspaces, relative to the repository root, and their members.
const WORKSPACES: &[(&str, &[&str])] = &[
    (
        "examples",
        &[
            "hello",
            "echo",
            "raw-wasi-http",
            "api-gateway",
            "cache-proxy",
            "page-cache",
            "ab-test",
            "geo-block",
            "shortener",
        ],
    ),
    (
        "tests/fixtures",
        &[
            "trap",
            "cpu-loop",
            "memory-bomb",
            "no-response",
            "imports-unknown",
            "hog",
            "fetcher",
            "cache-origin",
            "cache-api",
            "ratelimit-api",
            "config-api",
            "jwt-api",
            "kv-api",
        ],
    ),
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir
        .parent()
        .expect("tests/ sits in the repository root");
    // Guests get their own target dir: the outer cargo holds the lock on the
    // host one, and guest artifacts never mix with host artifacts.
    let target_dir = root.join("target").join("guests");

    for dir in ["sdk", "wit", "examples", "tests/fixtures"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    ensure_target_installed();

    let mut constants = String::new();
    for (workspace, members) in WORKSPACES {
        build_workspace(&root.join(workspace), &target_dir);
        for member in *members {
            let wasm = target_dir
                .join(TARGET)
                .join("release")
                .join(format!("{}.wasm", member.replace('-', "_")));
            assert!(wasm.exists(), "{} was not built", wasm.display());
            let name = member.replace('-', "_").to_uppercase();
            constants.push_str(&format!(
                "/// `{workspace}/{member}`, built for {TARGET}.\npub const {name}: &str = {:?};\n",
                wasm.display().to_string()
            ));
        }
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("artifacts.rs");
    std::fs::write(out, constants).unwrap();
}

fn build_workspace(workspace: &Path, target_dir: &Path) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args(["build", "--release", "--target", TARGET, "--manifest-path"])
        .arg(workspace.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(workspace);
    // Settings of the outer (host) build must not leak into the guest build.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        command.env_remove(var);
    }
    let status = command.status().expect("cargo runs");
    assert!(
        status.success(),
        "building the guest workspace {} for {TARGET} failed (see the cargo output above)",
        workspace.display()
    );
}

/// The one toolchain addition the guests need; installed here so a fresh
/// machine needs nothing but `cargo test`.
fn ensure_target_installed() {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.trim() == TARGET)
        })
        .unwrap_or(false);
    if !installed {
        let status = Command::new("rustup")
            .args(["target", "add", TARGET])
            .status()
            .expect("rustup runs");
        assert!(status.success(), "`rustup target add {TARGET}` failed");
    }
}

//! Tokens and keys made by PyJWT (`tests/jose/mint.py`), an implementation
//! independent of the Rust crate the node verifies with: a test that only
//! checked Rust-minted tokens with the same Rust crate could share its
//! mistakes.
//!
//! The first use makes a Python virtualenv under `target/` and installs
//! PyJWT into it from PyPI (pinned below); later uses reuse it.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// What the virtualenv holds.
const PACKAGES: &[&str] = &["PyJWT==2.10.1", "cryptography==46.0.3"];

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// The virtualenv's python, made on first use (once per process; a venv
/// half-made by a killed run is made again).
fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let venv = repo().join("target/jose-venv");
        let python = venv.join("bin/python");
        let ready = venv.join(PACKAGES.join(" ").replace(['=', ' '], "_"));
        if ready.exists() {
            return python;
        }
        let _ = std::fs::remove_dir_all(&venv);
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 runs (the JOSE tests need it)");
        assert!(made.success(), "python3 -m venv failed");
        let installed = Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(PACKAGES)
            .status()
            .expect("pip runs");
        assert!(installed.success(), "pip install {PACKAGES:?} failed");
        std::fs::write(&ready, "").expect("the venv is marked ready");
        python
    })
}

/// Runs `mint.py` on `jobs` (see its docstring): one string per job.
pub fn mint(jobs: &Value) -> Vec<String> {
    let mut child = Command::new(python())
        .arg(repo().join("tests/jose/mint.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("mint.py starts");
    serde_json::to_writer(child.stdin.take().unwrap(), jobs).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "mint.py failed on {jobs}");
    serde_json::from_slice(&output.stdout).expect("mint.py prints a JSON list of strings")
}

/// One token or key.
pub fn mint_one(job: Value) -> String {
    mint(&Value::Array(vec![job])).remove(0)
}

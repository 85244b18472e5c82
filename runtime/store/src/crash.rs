//! Crash points, for testing crash safety with a real SIGKILL.
//!
//! With `OUTPOST_CRASH_POINT=NAME` in its environment, the process stops at
//! the step called NAME, logs `crash point NAME reached` and waits to be
//! killed. Without the variable a crash point costs one comparison. Points,
//! in the order of an upload and activation: `blob-written` (the upload is
//! staged, not validated), `blob-stored`, `version-written` (the record's
//! temp file is durable, not renamed), `version-recorded`, `active-written`,
//! `activated`.

use std::sync::OnceLock;

/// Stops here forever if `OUTPOST_CRASH_POINT` names this point.
pub fn crash_point(name: &str) {
    static CHOSEN: OnceLock<Option<String>> = OnceLock::new();
    let chosen = CHOSEN.get_or_init(|| std::env::var("OUTPOST_CRASH_POINT").ok());
    if chosen.as_deref() == Some(name) {
        tracing::warn!("crash point {name} reached; waiting to be killed");
        loop {
            std::thread::park();
        }
    }
}

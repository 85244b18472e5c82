//! Where the CLI keeps its files: the XDG base directories.

use std::path::PathBuf;

/// `$VAR/outpost`, else `~/FALLBACK/outpost` (XDG base directories: `VAR`
/// is e.g. `XDG_CACHE_HOME`, `FALLBACK` `.cache`). Empty variables count as
/// unset. `None` when neither is set: never a directory relative to where
/// the command runs.
pub(crate) fn xdg(var: &str, fallback: &str) -> Option<PathBuf> {
    let set = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
    set(var)
        .map(PathBuf::from)
        .or_else(|| set("HOME").map(|home| PathBuf::from(home).join(fallback)))
        .map(|base| base.join("outpost"))
}

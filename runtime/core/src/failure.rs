//! Why loading an app or serving a request failed, and the one place where a
//! request failure becomes an HTTP status.

use crate::Saturated;
use http::StatusCode;
use std::path::PathBuf;
use std::time::Duration;

/// Loading a component into an [`crate::App`] failed. Every variant names the
/// file and says what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file could not be read.
    #[error("{path}: cannot read component: {source}")]
    Read {
        /// The component file.
        path: PathBuf,
        /// Why reading failed.
        source: std::io::Error,
    },
    /// The file is larger than the runtime accepts.
    #[error("{path}: component is {size} bytes, more than the limit of {limit} bytes")]
    TooLarge {
        /// The component file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The file is not a WebAssembly component.
    #[error("{path}: {reason}")]
    NotAComponent {
        /// The component file.
        path: PathBuf,
        /// What it is instead, and how to get a component.
        reason: String,
    },
    /// The component failed validation or compilation.
    #[error("{path}: not a valid WebAssembly component: {reason}")]
    Invalid {
        /// The component file.
        path: PathBuf,
        /// The validator's or compiler's message.
        reason: String,
    },
    /// The component imports something the host does not provide.
    #[error(
        "{path}: {reason}\n  a handler may import only the outpost:edge/handler world \
         (wasi:http/proxy plus the wasi:cli imports of Rust's std); see wit/world.wit"
    )]
    Imports {
        /// The component file.
        path: PathBuf,
        /// The linker's message, naming the import.
        reason: String,
    },
    /// The component does not export `wasi:http/incoming-handler`.
    #[error(
        "{path}: {reason}\n  a handler must export wasi:http/incoming-handler@0.2.x: \
         build it with outpost-sdk's #[handler] or any wasi:http proxy toolchain"
    )]
    Exports {
        /// The component file.
        path: PathBuf,
        /// The type checker's message.
        reason: String,
    },
    /// The component contains more than one instance of it may (core
    /// instances, memories, tables).
    #[error(
        "{path}: {reason}\n  a component may contain at most {} core instances, {} memories \
         and {} tables; the app's memory limit applies to all its memories together",
        crate::limits::MAX_CORE_INSTANCES_PER_COMPONENT,
        crate::limits::MAX_MEMORIES_PER_COMPONENT,
        crate::limits::MAX_TABLES_PER_COMPONENT
    )]
    TooBig {
        /// The component file.
        path: PathBuf,
        /// What it contains too much of.
        reason: String,
    },
    /// The precompiled cache (or an artifact in it) could be written by
    /// another user; its files are run as machine code.
    #[error("precompiled cache {path}: {reason}")]
    UntrustedCache {
        /// The directory or file.
        path: PathBuf,
        /// Who else can write it, and how to fix it.
        reason: String,
    },
    /// The precompiled-artifact cache could not be written.
    #[error(
        "precompiled cache {dir}: {source}; make the directory writable or pick another with --cache-dir"
    )]
    Cache {
        /// The cache directory.
        dir: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Serving one request failed. [`Failure::status`] maps each cause to the
/// status the client sees; the cause itself goes to the log.
#[derive(Debug)]
#[non_exhaustive]
pub enum Failure {
    /// No instance could be had within the node's `instance_wait`.
    Overloaded {
        /// Which bound was saturated.
        saturated: Saturated,
        /// How long the request waited.
        waited: Duration,
    },
    /// The guest trapped (a Rust panic, an out-of-bounds access, ...).
    Trap(String),
    /// The guest executed for longer than its CPU-time limit.
    CpuTime {
        /// The app's limit.
        limit: Duration,
        /// What it had used when it was stopped.
        used: Duration,
    },
    /// The guest tried to grow its memory past its limit and then trapped.
    Memory(u64),
    /// The guest held more host resources (fields, streams, pollables)
    /// than a guest may.
    Resources(usize),
    /// The guest did not finish within its wall-clock limit.
    WallTime(Duration),
    /// The guest returned without setting a response.
    NoResponse,
    /// The guest answered the request with a `wasi:http` error code: as a
    /// gateway does, usually passing on a failed upstream request.
    Upstream {
        /// The code, as text (capped).
        code: String,
        /// Whether it is a timeout code (504 rather than 502).
        timed_out: bool,
    },
    /// Something went wrong in the host.
    Internal(String),
}

impl Failure {
    /// The status the client receives.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Overloaded { .. }
            | Self::CpuTime { .. }
            | Self::Memory(_)
            | Self::Resources(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::WallTime(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::Upstream {
                timed_out: true, ..
            } => StatusCode::GATEWAY_TIMEOUT,
            Self::Upstream { .. } => StatusCode::BAD_GATEWAY,
            Self::Trap(_) | Self::NoResponse | Self::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// Seconds after which the client may try again (`Retry-After`), for
    /// failures that are about load rather than the request.
    pub fn retry_after(&self) -> Option<u32> {
        matches!(self, Self::Overloaded { .. }).then_some(1)
    }

    /// A one-line reason safe to show the client: it names the limit or the
    /// kind of failure, never guest or host internals.
    pub fn public_reason(&self) -> String {
        match self {
            Self::Overloaded { saturated, waited } => format!(
                "{} after waiting {} ms; try again shortly",
                match saturated {
                    Saturated::App(cap) => {
                        format!("the app is busy ({cap} instances at once)")
                    }
                    Saturated::Node => "the node is at capacity".to_owned(),
                },
                waited.as_millis()
            ),
            Self::Trap(_) => "the handler crashed (trapped)".to_owned(),
            Self::CpuTime { limit, .. } => format!(
                "the handler exceeded its CPU time limit of {} ms",
                limit.as_millis()
            ),
            Self::Memory(limit) => format!(
                "the handler exceeded its memory limit of {} MiB",
                limit >> 20
            ),
            Self::Resources(limit) => {
                format!("the handler exceeded the limit of {limit} open host resources")
            }
            Self::WallTime(limit) => {
                format!("the handler did not finish within {} ms", limit.as_millis())
            }
            Self::NoResponse => "the handler returned without setting a response".to_owned(),
            Self::Upstream {
                timed_out: true, ..
            } => "the handler's upstream request timed out".to_owned(),
            Self::Upstream { .. } => "the handler failed with an upstream error".to_owned(),
            Self::Internal(_) => "internal error".to_owned(),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Trap(detail) => write!(f, "guest trapped: {detail}"),
            Self::Upstream { code, .. } => write!(f, "guest answered with error code {code}"),
            Self::Internal(detail) => write!(f, "host error: {detail}"),
            Self::CpuTime { limit, used } => write!(
                f,
                "the handler exceeded its CPU time limit of {} ms (stopped after {} ms)",
                limit.as_millis(),
                used.as_millis()
            ),
            _ => f.write_str(&self.public_reason()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_is_a_5xx_and_only_overload_says_retry() {
        let failures = [
            Failure::Trap("unreachable".into()),
            Failure::CpuTime {
                limit: Duration::from_millis(50),
                used: Duration::from_millis(51),
            },
            Failure::Memory(128 << 20),
            Failure::Resources(2048),
            Failure::WallTime(Duration::from_secs(30)),
            Failure::NoResponse,
            Failure::Upstream {
                code: "internal-error".into(),
                timed_out: false,
            },
        ];
        for failure in failures {
            assert!(failure.status().is_server_error(), "{failure}");
            assert_eq!(failure.retry_after(), None);
        }
        let overloaded = Failure::Overloaded {
            saturated: Saturated::App(8),
            waited: Duration::from_secs(2),
        };
        assert_eq!(overloaded.status(), 503);
        assert_eq!(overloaded.retry_after(), Some(1));
        assert!(overloaded.public_reason().contains("8 instances"));
        let timed_out = Failure::Upstream {
            code: "ConnectionReadTimeout".into(),
            timed_out: true,
        };
        assert_eq!(timed_out.status(), 504);
    }
}

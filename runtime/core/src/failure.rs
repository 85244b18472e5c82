//! Why loading an app or serving a request failed, and the one place where a
//! request failure becomes an HTTP status.

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
    /// `Content-Length` announced a body larger than the app allows.
    BodyTooLarge {
        /// The app's limit, in bytes.
        limit: u64,
    },
    /// The guest trapped (a Rust panic, an out-of-bounds access, ...).
    Trap(String),
    /// The guest ran Wasm for longer than its CPU-time limit.
    CpuTime(Duration),
    /// The guest tried to grow its memory past its limit and then trapped.
    Memory(u64),
    /// The guest did not finish within its wall-clock limit.
    WallTime(Duration),
    /// The guest returned without setting a response.
    NoResponse,
    /// The guest answered the request with a `wasi:http` error code.
    Guest(String),
    /// Something went wrong in the host.
    Internal(String),
}

impl Failure {
    /// The status the client receives.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::CpuTime(_) | Self::Memory(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::WallTime(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::Guest(_) => StatusCode::BAD_GATEWAY,
            Self::Trap(_) | Self::NoResponse | Self::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// A one-line reason safe to show the client: it names the limit or the
    /// kind of failure, never guest or host internals.
    pub fn public_reason(&self) -> String {
        match self {
            Self::BodyTooLarge { limit } => {
                format!("request body exceeds the limit of {limit} bytes")
            }
            Self::Trap(_) => "the handler crashed (trapped)".to_owned(),
            Self::CpuTime(limit) => format!(
                "the handler exceeded its CPU time limit of {} ms",
                limit.as_millis()
            ),
            Self::Memory(limit) => format!(
                "the handler exceeded its memory limit of {} MiB",
                limit >> 20
            ),
            Self::WallTime(limit) => {
                format!("the handler did not finish within {} ms", limit.as_millis())
            }
            Self::NoResponse => "the handler returned without setting a response".to_owned(),
            Self::Guest(_) => "the handler failed with an error".to_owned(),
            Self::Internal(_) => "internal error".to_owned(),
        }
    }

    /// Whether the request failed because of the guest (as opposed to the
    /// client or the host).
    pub fn is_guest_fault(&self) -> bool {
        !matches!(self, Self::BodyTooLarge { .. } | Self::Internal(_))
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Trap(detail) => write!(f, "guest trapped: {detail}"),
            Self::Guest(code) => write!(f, "guest answered with error code {code}"),
            Self::Internal(detail) => write!(f, "host error: {detail}"),
            _ => f.write_str(&self.public_reason()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_guest_failure_is_a_5xx() {
        let failures = [
            Failure::Trap("unreachable".into()),
            Failure::CpuTime(Duration::from_millis(50)),
            Failure::Memory(128 << 20),
            Failure::WallTime(Duration::from_secs(30)),
            Failure::NoResponse,
            Failure::Guest("internal-error".into()),
        ];
        for failure in failures {
            assert!(failure.status().is_server_error(), "{failure}");
            assert!(failure.is_guest_fault());
        }
        assert_eq!(Failure::BodyTooLarge { limit: 1 }.status(), 413);
    }
}

//! Exit codes (documented in main.rs and the README).

use outpost_server::ConfigError;

/// A failure that carries its own exit code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct CliError {
    pub(crate) code: u8,
    pub(crate) message: String,
}

/// Bad flags, bad manifest or config.
pub(crate) const USAGE: u8 = 2;
/// The node refused the token.
pub(crate) const AUTH: u8 = 3;

pub(crate) fn usage(message: impl Into<String>) -> anyhow::Error {
    CliError {
        code: USAGE,
        message: message.into(),
    }
    .into()
}

pub(crate) fn code_of(err: &anyhow::Error) -> u8 {
    if let Some(err) = err.downcast_ref::<CliError>() {
        err.code
    } else if err.downcast_ref::<ConfigError>().is_some() {
        USAGE
    } else {
        1
    }
}

//! Bearer tokens with scopes, and the audit log of mutations.

use super::ApiError;
use crate::config::{AdminToken, Scope};
use http::{HeaderMap, StatusCode, header};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// The configured tokens, by the sha256 of their secret.
pub(crate) struct Tokens(Vec<AdminToken>);

/// Who made an authorized request.
#[derive(Debug)]
pub(crate) struct Authorized {
    pub(crate) name: String,
}

impl Tokens {
    pub(crate) fn new(tokens: Vec<AdminToken>) -> Self {
        Self(tokens)
    }

    /// Checks the request's bearer token, then its scope.
    pub(crate) fn authorize(
        &self,
        headers: &HeaderMap,
        scope: Scope,
    ) -> Result<Authorized, ApiError> {
        self.identify(headers)?.allowed(scope)
    }

    /// Finds the request's bearer token among the configured ones,
    /// comparing with all of them, in constant time each, so that timing
    /// tells nothing about which or how much matched.
    pub(crate) fn identify(&self, headers: &HeaderMap) -> Result<Identified<'_>, ApiError> {
        let unauthorized = |message: &str| ApiError::new(StatusCode::UNAUTHORIZED, message);
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err(unauthorized(
                "missing token: send `Authorization: Bearer TOKEN` (the CLI takes --token or OUTPOST_TOKEN)",
            ));
        };
        let Some(secret) = value
            .to_str()
            .ok()
            .and_then(|value| value.strip_prefix("Bearer "))
        else {
            return Err(unauthorized(
                "malformed Authorization header: expected `Bearer TOKEN`",
            ));
        };
        let presented: [u8; 32] = Sha256::digest(secret.trim().as_bytes()).into();
        let mut matched = None;
        for token in &self.0 {
            if constant_time_eq(&token.sha256, &presented) {
                matched = Some(token);
            }
        }
        matched
            .map(Identified)
            .ok_or_else(|| unauthorized("token not recognized by this node"))
    }
}

/// A known token, its scopes not checked yet.
pub(crate) struct Identified<'a>(&'a AdminToken);

impl Identified<'_> {
    pub(crate) fn name(&self) -> &str {
        &self.0.name
    }

    pub(crate) fn allowed(&self, scope: Scope) -> Result<Authorized, ApiError> {
        if !self.0.scopes.contains(&scope) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "token {:?} lacks the {scope} scope; add \"{scope}\" to its scopes in node.toml or use another token",
                    self.0.name
                ),
            ));
        }
        Ok(Authorized {
            name: self.0.name.clone(),
        })
    }
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(difference) == 0
}

/// Append-only JSON lines, one per mutation attempt, fsynced.
pub(crate) struct Audit(Mutex<File>);

impl Audit {
    pub(crate) fn open(path: &Path) -> anyhow::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|err| {
                anyhow::anyhow!("cannot open the audit log {}: {err}", path.display())
            })?;
        Ok(Self(Mutex::new(file)))
    }

    pub(crate) fn record(
        &self,
        who: Option<&str>,
        action: &str,
        app: &str,
        status: StatusCode,
        outcome: &Value,
    ) {
        let time_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_millis());
        let mut line = json!({
            "time_unix_ms": time_unix_ms,
            "token": who,
            "action": action,
            "app": app,
            "status": status.as_u16(),
            "outcome": outcome,
        })
        .to_string();
        line.push('\n');
        let mut file = self.0.lock().expect("audit log lock");
        if let Err(err) = file
            .write_all(line.as_bytes())
            .and_then(|()| file.sync_data())
        {
            tracing::error!("cannot write the audit log: {err}");
        }
    }
}

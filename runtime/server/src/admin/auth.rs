//! Bearer tokens with scopes, and the audit log of mutations.

use super::ApiError;
use crate::config::{AdminToken, Scope};
use http::{HeaderMap, StatusCode, header};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

/// Append-only JSON lines, fsynced: two per authorized mutation (the
/// attempt, written before anything changes, and its outcome), and a sample
/// of refused attempts (unknown token or missing scope): at most one line
/// per `REFUSED_SAMPLE_INTERVAL`, counting the others, so a flood of bad
/// requests neither fills the disk nor costs an fsync each.
pub(crate) struct Audit {
    file: Mutex<File>,
    refused: AtomicU64,
    sampled: Mutex<RefusedSample>,
}

/// Refused attempts since the last sampled line.
struct RefusedSample {
    last_line: Option<Instant>,
    since_last_line: u64,
}

const REFUSED_SAMPLE_INTERVAL: Duration = Duration::from_secs(10);

impl Audit {
    pub(crate) fn open(path: &Path) -> anyhow::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|err| {
                anyhow::anyhow!("cannot open the audit log {}: {err}", path.display())
            })?;
        Ok(Self {
            file: Mutex::new(file),
            refused: AtomicU64::new(0),
            sampled: Mutex::new(RefusedSample {
                last_line: None,
                since_last_line: 0,
            }),
        })
    }

    /// Records a mutation by `who`: its attempt (`status` None), or its
    /// outcome. An error means nothing was recorded.
    pub(crate) fn record(
        &self,
        who: Option<&str>,
        action: &str,
        app: &str,
        status: Option<StatusCode>,
        outcome: &Value,
    ) -> std::io::Result<()> {
        let mut line = json!({
            "time_unix_ms": now_unix_ms(),
            "token": who,
            "action": action,
            "app": app,
        });
        match status {
            None => line["phase"] = json!("attempt"),
            Some(status) => {
                line["phase"] = json!("outcome");
                line["status"] = json!(status.as_u16());
                line["outcome"] = outcome.clone();
            }
        }
        self.append(&line)
    }

    /// Counts a refused mutation attempt; writes one line for it if none
    /// was written for `REFUSED_SAMPLE_INTERVAL`, with how many were
    /// refused meanwhile.
    pub(crate) fn refused(&self, peer: SocketAddr, action: &str, app: &str, status: StatusCode) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        let mut sample = self.sampled.lock().expect("audit sample lock");
        let now = Instant::now();
        if sample
            .last_line
            .is_some_and(|at| now.duration_since(at) < REFUSED_SAMPLE_INTERVAL)
        {
            sample.since_last_line += 1;
            return;
        }
        let unsampled = std::mem::take(&mut sample.since_last_line);
        sample.last_line = Some(now);
        drop(sample);
        let line = json!({
            "time_unix_ms": now_unix_ms(),
            "phase": "refused",
            "action": action,
            "app": app,
            "status": status.as_u16(),
            "client": peer.ip().to_string(),
            "refused_since_last_sample": unsampled,
        });
        if let Err(err) = self.append(&line) {
            tracing::error!("cannot write the audit log: {err}");
        }
    }

    /// Refused mutation attempts since the node started.
    pub(crate) fn refused_count(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    fn append(&self, line: &Value) -> std::io::Result<()> {
        let mut text = line.to_string();
        text.push('\n');
        let mut file = self.file.lock().expect("audit log lock");
        file.write_all(text.as_bytes())?;
        file.sync_data()
    }
}

fn now_unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis())
}

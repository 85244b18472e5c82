//! Rate limiting, from a handler (`outpost:edge/ratelimit`): count
//! requests against one of the app's `[rate_limits.NAME]` policies by a
//! key the handler chooses (an API key, a user id, a tenant).
//!
//! Only policies declared with `key = "guest"` are checked here; policies
//! keyed by the client's address or a header are applied by `[[edge]]`
//! rules before the handler runs.
//!
//! ```toml
//! [rate_limits.per_tenant]
//! requests = 100
//! period_s = 60
//! burst = 20
//! key = "guest"
//! ```
//!
//! ```no_run
//! use outpost_sdk::{handler, ratelimit, Request, Response, Result, StatusCode};
//!
//! #[handler]
//! fn handle(req: Request) -> Result<Response> {
//!     let tenant = req.header("x-tenant").unwrap_or("anonymous").to_owned();
//!     let decision = ratelimit::check("per_tenant", &tenant, 1)?;
//!     if !decision.allowed() {
//!         return Ok(Response::text("slow down\n")
//!             .with_status(StatusCode::TOO_MANY_REQUESTS)
//!             .with_header("retry-after", decision.retry_after().as_secs().to_string()));
//!     }
//!     Ok(Response::text(format!("{} left\n", decision.remaining())))
//! }
//! ```

use crate::wasi::bindings::outpost::edge::ratelimit as wit;
use std::fmt;
use std::time::Duration;

/// What a policy decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    allowed: bool,
    limit: u32,
    remaining: u32,
    reset: Duration,
    retry_after: Duration,
}

impl Decision {
    /// Whether the request fits the policy (and was counted). A policy in
    /// `mode = "shadow"` always allows.
    pub fn allowed(&self) -> bool {
        self.allowed
    }

    /// The policy's burst: requests allowed at once.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Requests that would be allowed right after this one.
    pub fn remaining(&self) -> u32 {
        self.remaining
    }

    /// Until the full burst is available again (whole seconds).
    pub fn reset(&self) -> Duration {
        self.reset
    }

    /// Until this request would be allowed (whole seconds, for
    /// `Retry-After`); zero when it was.
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }
}

/// Counts a request of `cost` (usually 1) for `key` against the app's
/// policy `policy`.
///
/// ```no_run
/// use outpost_sdk::ratelimit;
///
/// # fn run() -> Result<(), ratelimit::RateLimitError> {
/// let decision = ratelimit::check("per_user", "user-42", 1)?;
/// if decision.allowed() {
///     // do the work
/// }
/// # Ok(()) }
/// ```
pub fn check(policy: &str, key: &str, cost: u32) -> Result<Decision, RateLimitError> {
    let decision = wit::check(policy, key, cost).map_err(RateLimitError)?;
    Ok(Decision {
        allowed: decision.allowed,
        limit: decision.limit,
        remaining: decision.remaining,
        reset: Duration::from_secs(u64::from(decision.reset)),
        retry_after: Duration::from_secs(u64::from(decision.retry_after)),
    })
}

/// A check the host could not make: an unknown policy, one not keyed by
/// the handler, a cost above the policy's burst, or a key over 1024 bytes.
/// With `?` in a handler it becomes a 500.
#[derive(Debug, Clone)]
pub struct RateLimitError(wit::Error);

impl fmt::Display for RateLimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            wit::Error::UnknownPolicy(name) => {
                write!(f, "the app declares no rate-limit policy {name:?}")
            }
            wit::Error::NotAGuestPolicy(name) => write!(
                f,
                "rate-limit policy {name:?} is not keyed by the handler (declare key = \"guest\")"
            ),
            wit::Error::CostExceedsBurst(burst) => {
                write!(f, "the cost is more than the policy's burst of {burst}")
            }
            wit::Error::KeyTooLong => write!(f, "the rate-limit key is longer than 1024 bytes"),
        }
    }
}

impl std::error::Error for RateLimitError {}

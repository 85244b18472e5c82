//! Rate limits as handlers call them (`outpost:edge/ratelimit`,
//! `wit/ratelimit.wit`): the app's `guest`-keyed policies, by a key the
//! handler chooses.

use super::{KeySource, RateLimitPolicy, whole_seconds};
use crate::bindings::outpost::edge::ratelimit::{Decision, Error, Host};
use std::sync::Arc;

/// The longest key a handler may pass.
const MAX_KEY_BYTES: usize = 1024;

/// One request's view of its app's rate-limit policies.
pub struct RateLimitCtx {
    policy: Arc<RateLimitPolicy>,
}

impl RateLimitCtx {
    /// The policies of one app, for one request.
    pub fn new(policy: Arc<RateLimitPolicy>) -> Self {
        Self { policy }
    }
}

impl Host for RateLimitCtx {
    fn check(&mut self, policy: String, key: String, cost: u32) -> Result<Decision, Error> {
        let limiter = self
            .policy
            .get(&policy)
            .ok_or_else(|| Error::UnknownPolicy(policy.clone()))?;
        if limiter.spec().key != KeySource::Guest {
            return Err(Error::NotAGuestPolicy(policy));
        }
        if cost > limiter.max_cost() {
            return Err(Error::CostExceedsBurst(limiter.max_cost()));
        }
        if key.len() > MAX_KEY_BYTES {
            return Err(Error::KeyTooLong);
        }
        let decision = limiter.check(key.as_bytes(), cost);
        let seconds = |duration| u32::try_from(whole_seconds(duration)).unwrap_or(u32::MAX);
        Ok(Decision {
            allowed: decision.allowed,
            limit: decision.limit,
            remaining: decision.remaining,
            reset: seconds(decision.reset),
            retry_after: seconds(decision.retry_after),
        })
    }
}

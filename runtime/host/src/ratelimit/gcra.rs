//! The generic cell rate algorithm (GCRA), on one number per key: the
//! key's theoretical arrival time (TAT), the instant by which its requests
//! so far would have been spread out at the policy's rate. A request fits
//! if, added to that schedule, it runs no further ahead of now than the
//! burst allows. Times are nanoseconds on the caller's clock, passed in, so
//! tests drive the algorithm with a clock of their own.

use std::time::Duration;

/// A policy's rate: `burst` requests at once, then one more every
/// `interval`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Quota {
    /// Nanoseconds between two requests at the sustained rate.
    pub interval: u64,
    /// Requests allowed at once after an idle period.
    pub burst: u32,
}

impl Quota {
    /// `requests` per `period`, at most `burst` at once.
    pub fn new(requests: u32, period: Duration, burst: u32) -> Self {
        let period = u64::try_from(period.as_nanos()).unwrap_or(u64::MAX);
        Self {
            interval: (period / u64::from(requests.max(1))).max(1),
            burst: burst.max(1),
        }
    }

    /// How far ahead of now a key's schedule may run: the burst, less the
    /// request being decided.
    fn tolerance(self) -> u64 {
        self.interval.saturating_mul(u64::from(self.burst))
    }
}

/// The answer to one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request fits the policy.
    pub allowed: bool,
    /// The policy's burst.
    pub limit: u32,
    /// Requests that would be allowed right after this one.
    pub remaining: u32,
    /// Until the full burst is available again.
    pub reset: Duration,
    /// Until this request would be allowed; zero when it is.
    pub retry_after: Duration,
}

/// Decides a request of `cost` against a key whose schedule is `tat`
/// (`None`: a key never seen, or idle long enough to be forgotten) at
/// `now`; returns the decision and, when allowed, the key's new schedule.
/// A cost above the burst is never allowed; callers refuse it first.
pub fn check(quota: Quota, tat: Option<u64>, now: u64, cost: u32) -> (Decision, Option<u64>) {
    let tolerance = quota.tolerance();
    let tat = tat.unwrap_or(now).max(now);
    let new_tat = tat.saturating_add(quota.interval.saturating_mul(u64::from(cost)));
    let allowed_at = new_tat.saturating_sub(tolerance);
    let remaining_after = |schedule: u64| {
        let ahead = schedule - now;
        u32::try_from(tolerance.saturating_sub(ahead) / quota.interval).unwrap_or(u32::MAX)
    };
    if now < allowed_at {
        let decision = Decision {
            allowed: false,
            limit: quota.burst,
            remaining: remaining_after(tat),
            reset: Duration::from_nanos(tat - now),
            retry_after: Duration::from_nanos(allowed_at - now),
        };
        return (decision, None);
    }
    let decision = Decision {
        allowed: true,
        limit: quota.burst,
        remaining: remaining_after(new_tat),
        reset: Duration::from_nanos(new_tat - now),
        retry_after: Duration::ZERO,
    };
    (decision, (cost > 0).then_some(new_tat))
}

/// Whether a key with schedule `tat` is indistinguishable from a new one
/// at `now`, so that forgetting it changes no decision.
pub fn idle(tat: u64, now: u64) -> bool {
    tat <= now
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECOND: u64 = 1_000_000_000;

    /// Runs requests of cost 1 at the given gaps (ns) against one key;
    /// returns the instants of those allowed.
    fn run(quota: Quota, gaps: &[u64]) -> Vec<u64> {
        let mut tat = None;
        let mut now = 0;
        let mut allowed = Vec::new();
        for gap in gaps {
            now += gap;
            let (decision, new_tat) = check(quota, tat, now, 1);
            if decision.allowed {
                allowed.push(now);
                tat = new_tat;
            }
        }
        allowed
    }

    #[test]
    fn a_fresh_key_gets_exactly_the_burst_at_once_then_the_rate() {
        // 100 per minute, 20 at once: one more every 600 ms.
        let quota = Quota::new(100, Duration::from_secs(60), 20);
        let mut tat = None;
        for n in 0..20 {
            let (decision, new_tat) = check(quota, tat, 0, 1);
            assert!(decision.allowed, "request {n} of the burst");
            assert_eq!(decision.remaining, 19 - n);
            tat = new_tat;
        }
        let (refused, none) = check(quota, tat, 0, 1);
        assert!(!refused.allowed);
        assert_eq!(none, None);
        assert_eq!(refused.remaining, 0);
        assert_eq!(refused.retry_after, Duration::from_millis(600));
        assert_eq!(refused.reset, Duration::from_secs(12));
        let (later, _) = check(quota, tat, 600_000_000, 1);
        assert!(later.allowed, "one interval later one more fits");
    }

    #[test]
    fn a_cost_counts_as_that_many_requests_and_zero_only_asks() {
        let quota = Quota::new(10, Duration::from_secs(10), 10);
        let (decision, tat) = check(quota, None, 0, 7);
        assert!(decision.allowed);
        assert_eq!(decision.remaining, 3);
        let (asked, unchanged) = check(quota, tat, 0, 0);
        assert!(asked.allowed);
        assert_eq!(asked.remaining, 3);
        assert_eq!(unchanged, None, "a zero cost changes nothing");
        let (refused, _) = check(quota, tat, 0, 4);
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after, Duration::from_secs(1));
    }

    proptest! {
        /// In any window of length t, at most burst + t / interval requests
        /// are allowed.
        #[test]
        fn no_window_allows_more_than_burst_plus_rate_times_its_length(
            burst in 1u32..20,
            interval in 1u64..(2 * SECOND),
            gaps in prop::collection::vec(0u64..SECOND, 1..400),
        ) {
            let quota = Quota { interval, burst };
            let allowed = run(quota, &gaps);
            for (i, start) in allowed.iter().enumerate() {
                for (j, end) in allowed.iter().enumerate().skip(i) {
                    let count = (j - i + 1) as u64;
                    let bound = u64::from(burst) + (end - start) / interval;
                    prop_assert!(count <= bound,
                        "{count} allowed in {} ns with burst {burst}, interval {interval}", end - start);
                }
            }
        }

        /// After an idle period, no more than the burst at once, and the
        /// whole burst.
        #[test]
        fn after_any_idle_period_exactly_the_burst_fits_at_once(
            burst in 1u32..50,
            interval in 1u64..SECOND,
            gaps in prop::collection::vec(0u64..SECOND, 0..100),
            idle in 0u64..(100 * SECOND),
        ) {
            let quota = Quota { interval, burst };
            let mut tat = None;
            let mut now = 0;
            for gap in &gaps {
                now += gap;
                if let (decision, Some(new_tat)) = check(quota, tat, now, 1) {
                    prop_assert!(decision.allowed);
                    tat = Some(new_tat);
                }
            }
            let quiet = tat.unwrap_or(0).saturating_sub(now);
            now += quiet + idle;
            let mut at_once = 0;
            while check(quota, tat, now, 1).0.allowed {
                tat = check(quota, tat, now, 1).1;
                at_once += 1;
                prop_assert!(at_once <= burst);
            }
            prop_assert_eq!(at_once, burst);
        }
    }
}

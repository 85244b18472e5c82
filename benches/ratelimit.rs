//! Per-call cost of a rate-limit check, in-process: what the edge phase
//! adds to a request an `[[edge]]` rule matches, and what a handler's
//! `outpost:edge/ratelimit` call costs the host (the Wasm call's own
//! overhead comes on top: see the instantiate benchmark for host calls).
//!
//!     cargo bench -p outpost-benches --bench ratelimit
//!
//! Cases: one key (a hot client), 100,000 keys in turn (a crowd: each check
//! a cache miss in the map), and the edge rule itself (path match, key
//! from the client address, the check, the `RateLimit` fields).

use http::{HeaderMap, Method};
use outpost_host::edge_rules::{EdgeRuleSpec, EdgeRules};
use outpost_host::jwt::JwtPolicies;
use outpost_host::ratelimit::{KeySource, Mode, RateLimitConfig, RateLimitService, RateLimitSpec};
use std::hint::black_box;
use std::net::IpAddr;
use std::time::{Duration, Instant};

const CALLS: u32 = 2_000_000;
const RUNS: usize = 5;

fn main() {
    let service = RateLimitService::new(&RateLimitConfig::default());
    let spec = RateLimitSpec {
        name: "bench".into(),
        // Never refuses within the run: the cost measured is a counted check.
        requests: u32::MAX,
        period: Duration::from_secs(1),
        burst: u32::MAX,
        key: KeySource::ClientIp,
        mode: Mode::Enforce,
    };
    let policy = service.policy("bench", &[spec]);
    let limiter = policy.get("bench").expect("declared").clone();
    let rules = EdgeRules::resolve(
        &[EdgeRuleSpec {
            path: "/api".into(),
            methods: Vec::new(),
            jwt: None,
            rate_limit: Some("bench".into()),
        }],
        &JwtPolicies::default(),
        &policy,
    );
    let keys: Vec<[u8; 8]> = (0..100_000u64).map(u64::to_le_bytes).collect();
    let mut headers = HeaderMap::new();
    let client: IpAddr = "203.0.113.7".parse().unwrap();

    println!("{:<34}{:>12}", "case", "ns per call");
    report("check, one key", || {
        for _ in 0..CALLS {
            black_box(limiter.check(black_box(b"client"), 1));
        }
    });
    report("check, 100,000 keys in turn", || {
        for n in 0..CALLS {
            black_box(limiter.check(&keys[n as usize % keys.len()], 1));
        }
    });
    report("edge rule (match + check + fields)", || {
        for _ in 0..CALLS {
            black_box(rules.check(&Method::GET, "/api/items", &mut headers, Some(client)));
        }
    });
}

/// Runs `calls` RUNS times; prints the median time per call.
fn report(case: &str, mut calls: impl FnMut()) {
    calls();
    let mut runs: Vec<f64> = (0..RUNS)
        .map(|_| {
            let started = Instant::now();
            calls();
            started.elapsed().as_nanos() as f64 / f64::from(CALLS)
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    println!("{case:<34}{:>12.1}", runs[RUNS / 2]);
}

//! Rate limiting: named policies of an app (`[rate_limits.NAME]`), checked
//! by the edge phase for the requests an `[[edge]]` rule names
//! ([`crate::edge_rules`]) and by handlers through `outpost:edge/ratelimit`.
//!
//! The shape of every host service: a node-wide [`RateLimitService`] holding
//! the counters' backend ([`RateLimitStore`]), a per-app [`RateLimitPolicy`]
//! resolved when the app is loaded, and a per-request [`RateLimitCtx`].
//! Decisions are GCRA ([`gcra`]): `burst` requests at once, then the
//! policy's rate, one number per key.
//!
//! Responses describe the limits with the fields of the IETF draft
//! `draft-ietf-httpapi-ratelimit-headers-09` (structured fields:
//! `RateLimit-Policy: "name";q=100;w=60`, `RateLimit: "name";r=42;t=17`).

pub mod gcra;
mod guest;
mod store;

pub use gcra::{Decision, Quota};
pub use guest::RateLimitCtx;
pub use store::{Counters, LocalStore, RateLimitStore};

use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// `RateLimit-Policy`: the quota of each policy applied to a request.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`: what is left of each policy applied to a request.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// node.toml's `[rate_limit]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Keys one policy tracks at most (`max_keys`): about 20 bytes each.
    pub max_keys: usize,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            max_keys: 1_000_000,
        }
    }
}

/// The node's rate limiting: where every app's counters live.
#[derive(Debug)]
pub struct RateLimitService {
    store: Arc<dyn RateLimitStore>,
}

impl RateLimitService {
    /// Counters kept in this process, as `config` bounds them.
    pub fn new(config: &RateLimitConfig) -> Self {
        Self::with_store(Arc::new(LocalStore::new(config.max_keys)))
    }

    /// Counters kept by `store`.
    pub fn with_store(store: Arc<dyn RateLimitStore>) -> Self {
        Self { store }
    }

    /// App `app`'s policies, with their counters.
    pub fn policy(&self, app: &str, specs: &[RateLimitSpec]) -> RateLimitPolicy {
        let limiters = specs
            .iter()
            .map(|spec| {
                let quota = spec.quota();
                let limiter = Limiter {
                    counters: self.store.counters(app, &spec.name, quota),
                    policy_field: spec.policy_field(),
                    app: app.into(),
                    spec: spec.clone(),
                    quota,
                    counts: LimiterCounts::default(),
                };
                (spec.name.clone(), Arc::new(limiter))
            })
            .collect();
        RateLimitPolicy { limiters }
    }
}

/// `[rate_limits.NAME]`, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimitSpec {
    /// Its name: lowercase letters, digits, `-` and `_`.
    pub name: String,
    /// Requests per `period`, sustained.
    pub requests: u32,
    /// The period `requests` are counted over.
    pub period: Duration,
    /// Requests allowed at once.
    pub burst: u32,
    /// What a request is counted by.
    pub key: KeySource,
    /// Enforced, or only counted.
    pub mode: Mode,
}

impl RateLimitSpec {
    fn quota(&self) -> Quota {
        Quota::new(self.requests, self.period, self.burst)
    }

    /// `"name";q=REQUESTS;w=SECONDS`.
    fn policy_field(&self) -> HeaderValue {
        let value = format!(
            "\"{}\";q={};w={}",
            self.name,
            self.requests,
            self.period.as_secs()
        );
        HeaderValue::try_from(value).expect("policy names are header-safe")
    }
}

/// What a policy counts requests by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// The client's address (`client-ip`); IPv6 clients by their /64, the
    /// block one subscriber usually holds.
    ClientIp,
    /// A request header's value (`header:NAME`); requests without it share
    /// one key.
    Header(HeaderName),
    /// A claim of the token the same `[[edge]]` rule verified
    /// (`jwt:CLAIM`); tokens without it share one key.
    Claim(String),
    /// A key the handler passes to `outpost:edge/ratelimit` (`guest`).
    Guest,
}

impl KeySource {
    /// Parses `client-ip`, `header:NAME`, `jwt:CLAIM` or `guest`.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "client-ip" => Ok(Self::ClientIp),
            "guest" => Ok(Self::Guest),
            _ => match text.strip_prefix("header:") {
                Some(name) => HeaderName::from_bytes(name.as_bytes())
                    .map(Self::Header)
                    .map_err(|_| format!("{name:?} is not a header name")),
                None => match text.strip_prefix("jwt:") {
                    Some(claim) if !claim.is_empty() => Ok(Self::Claim(claim.to_owned())),
                    _ => Err(format!(
                        "{text:?} is not a key; use \"client-ip\", \"header:NAME\", \"jwt:CLAIM\" or \"guest\""
                    )),
                },
            },
        }
    }
}

/// Whether a policy refuses requests over its rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Requests over the rate are refused (429).
    Enforce,
    /// Requests over the rate are counted and logged, never refused: to
    /// try a policy on real traffic first.
    Shadow,
}

/// An app's rate-limit policies, by name.
#[derive(Debug, Default)]
pub struct RateLimitPolicy {
    limiters: BTreeMap<String, Arc<Limiter>>,
}

impl RateLimitPolicy {
    /// The policy named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Limiter>> {
        self.limiters.get(name)
    }

    /// Every policy, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Limiter>> {
        self.limiters.values()
    }
}

/// One policy of one app, with its counters.
#[derive(Debug)]
pub struct Limiter {
    spec: RateLimitSpec,
    quota: Quota,
    app: Arc<str>,
    counters: Arc<dyn Counters>,
    policy_field: HeaderValue,
    counts: LimiterCounts,
}

/// What a policy decided since its app version was loaded.
#[derive(Debug, Default)]
struct LimiterCounts {
    allowed: AtomicU64,
    limited: AtomicU64,
    /// Over the rate in shadow mode: counted, let through.
    shadowed: AtomicU64,
    /// Shadowed requests not yet in a log line.
    unlogged: AtomicU64,
    /// When the last shadow log line was written (s since `LOG_EPOCH`).
    logged_at: AtomicU64,
}

/// A shadow policy logs one line per this interval at most, however many
/// requests it would have refused: log lines are a resource clients could
/// otherwise make the node spend.
const SHADOW_LOG_INTERVAL: Duration = Duration::from_secs(10);

impl Limiter {
    /// The policy as declared.
    pub fn spec(&self) -> &RateLimitSpec {
        &self.spec
    }

    /// Decides a request of `cost` for `key` (a cost above the burst is
    /// refused by callers first). A shadow policy answers `allowed` after
    /// counting what it would have decided.
    pub fn check(&self, key: &[u8], cost: u32) -> Decision {
        let mut decision = self.counters.check(key, cost);
        if decision.allowed {
            self.counts.allowed.fetch_add(1, Ordering::Relaxed);
        } else if self.spec.mode == Mode::Shadow {
            self.counts.shadowed.fetch_add(1, Ordering::Relaxed);
            self.log_shadowed();
            decision.allowed = true;
            decision.retry_after = Duration::ZERO;
        } else {
            self.counts.limited.fetch_add(1, Ordering::Relaxed);
        }
        decision
    }

    /// Decides `request` by the key this policy takes from requests, and
    /// the `claims` its rule verified (a `guest` policy never is: its key
    /// comes from the handler).
    pub fn check_request(
        &self,
        headers: &HeaderMap,
        client: Option<IpAddr>,
        claims: Option<&Map<String, Value>>,
    ) -> Decision {
        match &self.spec.key {
            KeySource::Claim(claim) => match claims.and_then(|claims| claims.get(claim)) {
                Some(Value::String(text)) => self.check(text.as_bytes(), 1),
                Some(other) => self.check(other.to_string().as_bytes(), 1),
                None => self.check(b"", 1),
            },
            KeySource::ClientIp => self.check(client_key(client).bytes(), 1),
            KeySource::Header(name) => {
                let value = headers.get(name).map_or(&b""[..], HeaderValue::as_bytes);
                self.check(value, 1)
            }
            KeySource::Guest => self.check(b"", 1),
        }
    }

    /// The largest cost a request may have: the burst.
    pub fn max_cost(&self) -> u32 {
        self.quota.burst
    }

    /// Whether over-the-rate requests are only counted.
    pub fn shadow(&self) -> bool {
        self.spec.mode == Mode::Shadow
    }

    /// Adds `RateLimit-Policy` and `RateLimit` for `decision` to `headers`.
    pub fn describe(&self, decision: &Decision, headers: &mut HeaderMap) {
        headers.append(RATELIMIT_POLICY, self.policy_field.clone());
        let current = format!(
            "\"{}\";r={};t={}",
            self.spec.name,
            decision.remaining,
            whole_seconds(decision.reset)
        );
        headers.append(
            RATELIMIT,
            HeaderValue::try_from(current).expect("policy names are header-safe"),
        );
    }

    /// The policy's counts, for the admin API.
    pub fn stats(&self) -> LimiterStats {
        LimiterStats {
            name: self.spec.name.clone(),
            mode: match self.spec.mode {
                Mode::Enforce => "enforce",
                Mode::Shadow => "shadow",
            },
            allowed: self.counts.allowed.load(Ordering::Relaxed),
            limited: self.counts.limited.load(Ordering::Relaxed),
            shadow_limited: self.counts.shadowed.load(Ordering::Relaxed),
            keys: self.counters.keys(),
        }
    }

    fn log_shadowed(&self) {
        static LOG_EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        let unlogged = self.counts.unlogged.fetch_add(1, Ordering::Relaxed) + 1;
        let now = LOG_EPOCH.get_or_init(Instant::now).elapsed().as_secs() + 1;
        let last = self.counts.logged_at.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= SHADOW_LOG_INTERVAL.as_secs();
        if due
            && self
                .counts
                .logged_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.counts.unlogged.fetch_sub(unlogged, Ordering::Relaxed);
            tracing::warn!(
                app = %self.app,
                policy = %self.spec.name,
                "rate limit {} (shadow mode) would have refused {unlogged} requests since its last report; \
                 set mode = \"enforce\" to refuse them",
                self.spec.name
            );
        }
    }
}

/// A policy's counts since its app version was loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimiterStats {
    pub name: String,
    pub mode: &'static str,
    pub allowed: u64,
    pub limited: u64,
    pub shadow_limited: u64,
    /// Keys tracked now (shared with other versions of the app).
    pub keys: usize,
}

/// Whole seconds, rounded up: a client waiting this long is never early.
pub fn whole_seconds(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// A client's key: IPv4 addresses whole, IPv6 ones by their /64 (an
/// IPv4-mapped one as the IPv4 address).
struct ClientKey {
    bytes: [u8; 8],
    len: usize,
}

impl ClientKey {
    fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

fn client_key(client: Option<IpAddr>) -> ClientKey {
    let mut bytes = [0; 8];
    let ip = client.map(|client| client.to_canonical());
    let len = match ip {
        None => 0,
        Some(IpAddr::V4(v4)) => {
            bytes[..4].copy_from_slice(&v4.octets());
            4
        }
        Some(IpAddr::V6(v6)) => {
            bytes.copy_from_slice(&v6.octets()[..8]);
            8
        }
    };
    ClientKey { bytes, len }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_share_their_64_and_mapped_ipv4_is_ipv4() {
        let key = |addr: &str| client_key(Some(addr.parse().unwrap())).bytes().to_vec();
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:10.0.0.1"), key("10.0.0.1"));
    }

    #[test]
    fn keys_parse_with_errors_that_say_the_fix() {
        assert_eq!(KeySource::parse("client-ip"), Ok(KeySource::ClientIp));
        assert_eq!(
            KeySource::parse("header:X-Api-Key"),
            Ok(KeySource::Header(HeaderName::from_static("x-api-key")))
        );
        assert_eq!(
            KeySource::parse("jwt:sub"),
            Ok(KeySource::Claim("sub".into()))
        );
        assert!(KeySource::parse("jwt:").is_err());
        assert!(
            KeySource::parse("ip")
                .unwrap_err()
                .contains("\"client-ip\"")
        );
    }

    #[test]
    fn shadow_policies_count_what_they_would_refuse_and_let_it_through() {
        let service = RateLimitService::new(&RateLimitConfig::default());
        let spec = RateLimitSpec {
            name: "try".into(),
            requests: 1,
            period: Duration::from_secs(60),
            burst: 1,
            key: KeySource::ClientIp,
            mode: Mode::Shadow,
        };
        let policy = service.policy("app", &[spec]);
        let limiter = policy.get("try").unwrap();
        for _ in 0..3 {
            assert!(limiter.check(b"k", 1).allowed);
        }
        let stats = limiter.stats();
        assert_eq!(
            (stats.allowed, stats.limited, stats.shadow_limited),
            (1, 0, 2)
        );
    }

    #[test]
    fn fields_follow_the_draft() {
        let service = RateLimitService::new(&RateLimitConfig::default());
        let spec = RateLimitSpec {
            name: "per_key".into(),
            requests: 100,
            period: Duration::from_secs(60),
            burst: 20,
            key: KeySource::ClientIp,
            mode: Mode::Enforce,
        };
        let policy = service.policy("app", &[spec]);
        let limiter = policy.get("per_key").unwrap();
        let decision = limiter.check(b"k", 1);
        let mut headers = HeaderMap::new();
        limiter.describe(&decision, &mut headers);
        assert_eq!(headers[RATELIMIT_POLICY], "\"per_key\";q=100;w=60");
        assert_eq!(headers[RATELIMIT], "\"per_key\";r=19;t=1");
    }
}

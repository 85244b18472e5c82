//! Named backends: a pool of endpoints behind one name, balanced, checked
//! by the node (active health checks) and by the traffic itself (passive
//! ejection after consecutive failures).
//!
//! A guest addresses backend `users` as `http://users.backend.internal/...`
//! (`.internal` is reserved for private use and never resolves publicly);
//! the path and query go to the chosen endpoint.

use super::allow::Destination;
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The host suffix that names a backend.
pub const BACKEND_SUFFIX: &str = ".backend.internal";

/// How a backend picks an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Balance {
    /// In turn, each endpoint as often as its weight says.
    RoundRobin,
    /// The endpoint with the fewest requests in flight for its weight.
    LeastConnections,
    /// At random, by weight.
    Random,
    /// The same key (client IP or a header) to the same endpoint while it
    /// is up (rendezvous hashing: a lost endpoint moves only its keys).
    ConsistentHash,
}

impl Balance {
    /// Parses `balance`.
    pub fn parse(value: &str) -> Result<Self, String> {
        Ok(match value {
            "round-robin" => Self::RoundRobin,
            "least-connections" => Self::LeastConnections,
            "random" => Self::Random,
            "consistent-hash" => Self::ConsistentHash,
            other => {
                return Err(format!(
                    "{other:?} is not a balancing method (round-robin, least-connections, random, consistent-hash)"
                ));
            }
        })
    }
}

/// What consistent hashing hashes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HashKey {
    /// The client's IP address.
    ClientIp,
    /// A request header's value (requests without it hash as empty).
    Header(http::HeaderName),
}

impl HashKey {
    /// Parses `hash_key`: `client-ip` or `header:NAME`.
    pub fn parse(value: &str) -> Result<Self, String> {
        if value == "client-ip" {
            return Ok(Self::ClientIp);
        }
        if let Some(name) = value.strip_prefix("header:") {
            return http::HeaderName::try_from(name)
                .map(Self::Header)
                .map_err(|_| format!("{name:?} is not a header name"));
        }
        Err(format!(
            "{value:?} is not a hash key (client-ip, or header:NAME)"
        ))
    }
}

/// Active health checks of a backend's endpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    /// Path and query requested with GET.
    pub path: String,
    /// Time between checks of one endpoint.
    pub interval: Duration,
    /// How long one check may take.
    pub timeout: Duration,
    /// The status a healthy endpoint answers.
    pub expect_status: u16,
    /// Good checks in a row that bring an endpoint back.
    pub rise: u32,
    /// Failed checks in a row that take an endpoint out.
    pub fall: u32,
}

/// A backend as configured, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendSpec {
    /// Its name (`[backends.NAME]`).
    pub name: String,
    /// Its endpoints: scheme, host and port.
    pub endpoints: Vec<Destination>,
    /// Their weights (all 1 unless given).
    pub weights: Vec<u32>,
    /// How requests are spread.
    pub balance: Balance,
    /// The key of consistent hashing.
    pub hash_key: HashKey,
    /// Active checks, if any.
    pub health: Option<HealthCheck>,
    /// Connect errors or 5xx answers in a row that eject an endpoint...
    pub eject_after: u32,
    /// ...for this long.
    pub eject_for: Duration,
    /// Its GET and HEAD requests read through the app's cache.
    pub cache: bool,
}

/// One endpoint of a backend, with its state and counters.
pub struct Endpoint {
    /// Where it is.
    pub destination: Destination,
    weight: u32,
    /// As the last active checks said (true until they say otherwise).
    healthy: AtomicBool,
    checks_in_a_row: AtomicU32,
    /// Failures of real requests in a row.
    failures_in_a_row: AtomicU32,
    /// Ejected until this many milliseconds after `epoch`; 0: not ejected.
    ejected_until_ms: AtomicU64,
    in_flight: AtomicUsize,
    requests: AtomicU64,
    errors: AtomicU64,
    latency: Histogram,
}

/// A configured backend, shared by every request of its app version.
pub struct Backend {
    /// As configured.
    pub spec: BackendSpec,
    /// One per configured endpoint, in order.
    pub endpoints: Vec<Arc<Endpoint>>,
    /// Smooth weighted round-robin order of endpoint indices.
    schedule: Vec<usize>,
    next: AtomicUsize,
    epoch: Instant,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("name", &self.spec.name)
            .finish_non_exhaustive()
    }
}

impl Backend {
    /// A backend in its starting state: every endpoint up.
    pub fn new(spec: BackendSpec) -> Self {
        let endpoints = spec
            .endpoints
            .iter()
            .zip(spec.weights.iter().copied().chain(std::iter::repeat(1)))
            .map(|(destination, weight)| {
                Arc::new(Endpoint {
                    destination: destination.clone(),
                    weight: weight.max(1),
                    healthy: AtomicBool::new(true),
                    checks_in_a_row: AtomicU32::new(0),
                    failures_in_a_row: AtomicU32::new(0),
                    ejected_until_ms: AtomicU64::new(0),
                    in_flight: AtomicUsize::new(0),
                    requests: AtomicU64::new(0),
                    errors: AtomicU64::new(0),
                    latency: Histogram::default(),
                })
            })
            .collect::<Vec<_>>();
        let weights: Vec<u32> = endpoints.iter().map(|endpoint| endpoint.weight).collect();
        Self {
            schedule: smooth_weighted_order(&weights),
            endpoints,
            spec,
            next: AtomicUsize::new(0),
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether endpoint `i` may take requests now.
    pub fn available(&self, i: usize) -> bool {
        let endpoint = &self.endpoints[i];
        endpoint.healthy.load(Ordering::Relaxed)
            && endpoint.ejected_until_ms.load(Ordering::Relaxed) <= self.now_ms()
    }

    /// Picks an endpoint for a request, other than `exclude`: `None` when
    /// none is available.
    pub fn pick(&self, key: &[u8], exclude: Option<usize>) -> Option<usize> {
        let usable = |i: usize| Some(i) != exclude && self.available(i);
        let count = self.endpoints.len();
        match self.spec.balance {
            Balance::RoundRobin => {
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                (0..self.schedule.len())
                    .map(|step| self.schedule[(start + step) % self.schedule.len()])
                    .find(|&i| usable(i))
            }
            Balance::LeastConnections => {
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                (0..count)
                    .map(|step| (start + step) % count)
                    .filter(|&i| usable(i))
                    // Fewest in flight per unit of weight; ties go in turn.
                    .min_by(|&a, &b| {
                        let load = |i: usize| {
                            let endpoint = &self.endpoints[i];
                            (endpoint.in_flight.load(Ordering::Relaxed) as u64 + 1) * 1_000_000
                                / u64::from(endpoint.weight)
                        };
                        load(a).cmp(&load(b))
                    })
            }
            Balance::Random => {
                let total: u64 = (0..count)
                    .filter(|&i| usable(i))
                    .map(|i| u64::from(self.endpoints[i].weight))
                    .sum();
                if total == 0 {
                    return None;
                }
                let mut ticket = random_u64() % total;
                (0..count).filter(|&i| usable(i)).find(|&i| {
                    let weight = u64::from(self.endpoints[i].weight);
                    if ticket < weight {
                        return true;
                    }
                    ticket -= weight;
                    false
                })
            }
            Balance::ConsistentHash => (0..count).filter(|&i| usable(i)).max_by(|&a, &b| {
                let score = |i: usize| {
                    // Weighted rendezvous hashing: -w / ln(u), u in (0, 1).
                    let u = (hash_of(key, i) >> 11) as f64 / (1u64 << 53) as f64;
                    let u = u.max(f64::MIN_POSITIVE);
                    -f64::from(self.endpoints[i].weight) / u.ln()
                };
                score(a).total_cmp(&score(b))
            }),
        }
    }

    /// The hash key of a request, as `hash_key` says.
    pub fn key_of(&self, client: Option<IpAddr>, headers: &http::HeaderMap) -> Vec<u8> {
        match &self.spec.hash_key {
            HashKey::ClientIp => client
                .map(|ip| ip.to_string())
                .unwrap_or_default()
                .into_bytes(),
            HashKey::Header(name) => headers
                .get(name)
                .map(|value| value.as_bytes().to_vec())
                .unwrap_or_default(),
        }
    }

    /// Counts a request on endpoint `i` until the returned guard is
    /// dropped.
    pub fn start(self: &Arc<Self>, i: usize) -> InFlight {
        let endpoint = self.endpoints[i].clone();
        endpoint.in_flight.fetch_add(1, Ordering::Relaxed);
        endpoint.requests.fetch_add(1, Ordering::Relaxed);
        InFlight {
            endpoint,
            started: Instant::now(),
        }
    }

    /// Records how a request on endpoint `i` went: a failure (connect error
    /// or 5xx) counts toward ejection, a success resets the count.
    pub fn record(&self, i: usize, failed: bool) {
        let endpoint = &self.endpoints[i];
        if !failed {
            endpoint.failures_in_a_row.store(0, Ordering::Relaxed);
            return;
        }
        endpoint.errors.fetch_add(1, Ordering::Relaxed);
        let in_a_row = endpoint.failures_in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
        if in_a_row >= self.spec.eject_after {
            endpoint.failures_in_a_row.store(0, Ordering::Relaxed);
            let until =
                self.now_ms() + u64::try_from(self.spec.eject_for.as_millis()).unwrap_or(u64::MAX);
            endpoint.ejected_until_ms.store(until, Ordering::Relaxed);
            tracing::warn!(
                backend = %self.spec.name,
                endpoint = %endpoint.destination,
                "endpoint ejected for {:?} after {in_a_row} failures in a row",
                self.spec.eject_for
            );
        }
    }

    /// Records an active health check of endpoint `i`.
    pub fn record_check(&self, i: usize, passed: bool) {
        let Some(health) = &self.spec.health else {
            return;
        };
        let endpoint = &self.endpoints[i];
        if passed == self.available(i) {
            endpoint.checks_in_a_row.store(0, Ordering::Relaxed);
            return;
        }
        let in_a_row = endpoint.checks_in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
        let needed = if passed { health.rise } else { health.fall };
        if in_a_row >= needed {
            endpoint.checks_in_a_row.store(0, Ordering::Relaxed);
            endpoint.healthy.store(passed, Ordering::Relaxed);
            if passed {
                // Back by the checks: a passive ejection ends too.
                endpoint.ejected_until_ms.store(0, Ordering::Relaxed);
                endpoint.failures_in_a_row.store(0, Ordering::Relaxed);
            }
            tracing::warn!(
                backend = %self.spec.name,
                endpoint = %endpoint.destination,
                "endpoint is {} after {in_a_row} health checks in a row",
                if passed { "up" } else { "down" }
            );
        }
    }

    /// A snapshot of every endpoint, for the admin API.
    pub fn stats(&self) -> Vec<EndpointStats> {
        self.endpoints
            .iter()
            .enumerate()
            .map(|(i, endpoint)| EndpointStats {
                endpoint: endpoint.destination.to_string(),
                state: if !endpoint.healthy.load(Ordering::Relaxed) {
                    "down"
                } else if !self.available(i) {
                    "ejected"
                } else {
                    "up"
                },
                requests: endpoint.requests.load(Ordering::Relaxed),
                errors: endpoint.errors.load(Ordering::Relaxed),
                in_flight: endpoint.in_flight.load(Ordering::Relaxed),
                latency_p50_us: endpoint.latency.percentile(0.50),
                latency_p99_us: endpoint.latency.percentile(0.99),
            })
            .collect()
    }
}

/// One endpoint's counters, for the admin API.
#[derive(Clone, Debug)]
pub struct EndpointStats {
    /// `scheme://host:port`.
    pub endpoint: String,
    /// `up`, `down` (active checks) or `ejected` (passive).
    pub state: &'static str,
    /// Requests sent to it.
    pub requests: u64,
    /// Connect errors and 5xx answers.
    pub errors: u64,
    /// Requests in flight now.
    pub in_flight: usize,
    /// Median time to the response head, in microseconds (0: no data).
    pub latency_p50_us: u64,
    /// 99th percentile of the same.
    pub latency_p99_us: u64,
}

/// A request in flight on an endpoint; records its latency when the
/// response head arrived ([`InFlight::answered`]) and stops counting it
/// when dropped.
pub struct InFlight {
    endpoint: Arc<Endpoint>,
    started: Instant,
}

impl InFlight {
    /// The response head arrived.
    pub fn answered(&self) {
        self.endpoint.latency.record(self.started.elapsed());
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.endpoint.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Endpoint indices in smooth weighted round-robin order (nginx's): for
/// weights 3 and 1, `0 0 1 0` rather than `0 0 0 1`.
fn smooth_weighted_order(weights: &[u32]) -> Vec<usize> {
    let total: i64 = weights.iter().map(|&w| i64::from(w)).sum();
    let mut current = vec![0i64; weights.len()];
    let mut order = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for _ in 0..total {
        for (value, &weight) in current.iter_mut().zip(weights) {
            *value += i64::from(weight);
        }
        let (best, _) = current
            .iter()
            .enumerate()
            .max_by_key(|&(i, &value)| (value, std::cmp::Reverse(i)))
            .expect("a backend has endpoints");
        current[best] -= total;
        order.push(best);
    }
    order
}

fn hash_of(key: &[u8], endpoint: usize) -> u64 {
    // Fixed keys: the same key maps to the same endpoint on every node and
    // after restarts.
    let mut hasher =
        std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
            .build_hasher();
    key.hash(&mut hasher);
    endpoint.hash(&mut hasher);
    hasher.finish()
}

fn random_u64() -> u64 {
    thread_local! {
        static STATE: std::cell::Cell<u64> = std::cell::Cell::new(
            std::hash::RandomState::new().hash_one(0u8) | 1,
        );
    }
    STATE.with(|state| {
        // xorshift64*
        let mut x = state.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        state.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    })
}

/// Latencies in buckets of a quarter power of two (about ±10 %), from 1 µs
/// to over an hour.
struct Histogram {
    buckets: Vec<AtomicU64>,
}

const SUB_BUCKETS: u32 = 4;

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: (0..(64 * SUB_BUCKETS)).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl Histogram {
    fn record(&self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        self.buckets[bucket_of(micros)].fetch_add(1, Ordering::Relaxed);
    }

    /// The upper bound of the bucket holding quantile `q`; 0 if empty.
    fn percentile(&self, q: f64) -> u64 {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0;
        }
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, count) in counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return upper_bound_of(i);
            }
        }
        upper_bound_of(counts.len() - 1)
    }
}

fn bucket_of(micros: u64) -> usize {
    let power = 63 - micros.leading_zeros();
    let fraction = if power >= 2 {
        (micros >> (power - 2)) & 0b11
    } else {
        0
    };
    (power * SUB_BUCKETS) as usize + fraction as usize
}

fn upper_bound_of(bucket: usize) -> u64 {
    let power = bucket as u32 / SUB_BUCKETS;
    let fraction = u64::from(bucket as u32 % SUB_BUCKETS);
    if power < 2 {
        return (1u64 << (power + 1)) - 1;
    }
    ((4 + fraction + 1) << (power - 2)) - 1
}

/// Where a guest's request to a backend goes: the host before
/// [`BACKEND_SUFFIX`], if it has it.
pub(crate) fn backend_name(host: &super::address::Host) -> Option<&str> {
    match host {
        super::address::Host::Name(name) => name.strip_suffix(BACKEND_SUFFIX),
        super::address::Host::Ip(_) => None,
    }
}

/// Health checking: one task per backend on the node's health thread,
/// which ends once the backend's app version is gone.
pub(crate) struct HealthChecker {
    tasks: tokio::sync::mpsc::UnboundedSender<std::sync::Weak<Backend>>,
}

impl HealthChecker {
    /// Starts the health thread; `check` runs one check of one endpoint.
    pub(crate) fn start<F, Fut>(check: F) -> Result<Self, String>
    where
        F: Fn(Destination, HealthCheck) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = bool> + Send + 'static,
    {
        let (tasks, mut incoming) =
            tokio::sync::mpsc::unbounded_channel::<std::sync::Weak<Backend>>();
        let check = Arc::new(check);
        std::thread::Builder::new()
            .name("outpost-health".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("the health thread's runtime starts");
                runtime.block_on(async move {
                    while let Some(backend) = incoming.recv().await {
                        tokio::spawn(watch(backend, check.clone()));
                    }
                });
            })
            .map_err(|err| format!("cannot start the health check thread: {err}"))?;
        Ok(Self { tasks })
    }

    pub(crate) fn watch(&self, backend: &Arc<Backend>) {
        if backend.spec.health.is_some() {
            let _ = self.tasks.send(Arc::downgrade(backend));
        }
    }
}

async fn watch<F, Fut>(backend: std::sync::Weak<Backend>, check: Arc<F>)
where
    F: Fn(Destination, HealthCheck) -> Fut,
    Fut: Future<Output = bool>,
{
    loop {
        let (interval, checks) = {
            let Some(backend) = backend.upgrade() else {
                return;
            };
            let health = backend
                .spec
                .health
                .clone()
                .expect("watched backends have checks");
            let checks: Vec<_> = backend
                .endpoints
                .iter()
                .map(|endpoint| check(endpoint.destination.clone(), health.clone()))
                .collect();
            (health.interval, checks)
        };
        let mut results = Vec::with_capacity(checks.len());
        for check in checks {
            results.push(check.await);
        }
        let Some(backend) = backend.upgrade() else {
            return;
        };
        for (i, passed) in results.into_iter().enumerate() {
            backend.record_check(i, passed);
        }
        drop(backend);
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(balance: Balance, weights: Vec<u32>, n: usize) -> Backend {
        let endpoints = (0..n)
            .map(|i| Destination::of(&format!("http://10.0.0.{i}:80").parse().unwrap()).unwrap())
            .collect();
        Backend::new(BackendSpec {
            name: "b".into(),
            endpoints,
            weights,
            balance,
            hash_key: HashKey::ClientIp,
            health: None,
            eject_after: 3,
            eject_for: Duration::from_secs(10),
            cache: false,
        })
    }

    fn spread(backend: &Backend, picks: usize, key: impl Fn(usize) -> Vec<u8>) -> Vec<usize> {
        let mut counts = vec![0; backend.endpoints.len()];
        for n in 0..picks {
            counts[backend.pick(&key(n), None).unwrap()] += 1;
        }
        counts
    }

    #[test]
    fn round_robin_follows_the_weights_smoothly() {
        assert_eq!(smooth_weighted_order(&[3, 1]), vec![0, 0, 1, 0]);
        let b = backend(Balance::RoundRobin, vec![3, 1], 2);
        assert_eq!(spread(&b, 400, |_| Vec::new()), vec![300, 100]);
    }

    #[test]
    fn random_and_hashing_spread_within_bounds() {
        let b = backend(Balance::Random, vec![], 4);
        for count in spread(&b, 8000, |_| Vec::new()) {
            assert!((1700..2300).contains(&count), "{count}");
        }
        let b = backend(Balance::ConsistentHash, vec![], 4);
        let counts = spread(&b, 8000, |n| n.to_string().into_bytes());
        for count in counts {
            assert!((1600..2400).contains(&count), "{count}");
        }
        // The same key, the same endpoint; a lost endpoint moves only its keys.
        let before: Vec<_> = (0..1000)
            .map(|n| b.pick(n.to_string().as_bytes(), None).unwrap())
            .collect();
        b.endpoints[1].healthy.store(false, Ordering::Relaxed);
        for (n, was) in before.iter().enumerate() {
            let now = b.pick(n.to_string().as_bytes(), None).unwrap();
            if *was != 1 {
                assert_eq!(now, *was);
            } else {
                assert_ne!(now, 1);
            }
        }
    }

    #[test]
    fn least_connections_prefers_the_idle_endpoint() {
        let b = Arc::new(backend(Balance::LeastConnections, vec![], 3));
        let _busy = [b.start(0), b.start(0), b.start(1)];
        assert_eq!(b.pick(b"", None), Some(2));
        assert_eq!(b.pick(b"", Some(2)), Some(1));
    }

    #[test]
    fn failures_eject_and_checks_bring_back() {
        let mut b = backend(Balance::RoundRobin, vec![], 2);
        b.spec.health = Some(HealthCheck {
            path: "/".into(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            expect_status: 200,
            rise: 2,
            fall: 2,
        });
        for _ in 0..3 {
            b.record(0, true);
        }
        assert!(!b.available(0));
        assert_eq!(spread(&b, 10, |_| Vec::new()), vec![0, 10]);
        b.record_check(1, false);
        assert!(b.available(1));
        b.record_check(1, false);
        assert!(!b.available(1));
        assert_eq!(b.pick(b"", None), None);
        b.record_check(0, true);
        b.record_check(0, true);
        assert!(b.available(0), "two good checks end the ejection");
    }

    #[test]
    fn histogram_percentiles_are_within_a_bucket() {
        let h = Histogram::default();
        for micros in 1..=1000u64 {
            h.record(Duration::from_micros(micros));
        }
        let p50 = h.percentile(0.5);
        assert!((500..=640).contains(&p50), "{p50}");
        let p99 = h.percentile(0.99);
        assert!((990..=1280).contains(&p99), "{p99}");
    }
}

//! Caps on open connections, per node and per client IP, and the counters
//! that say what the front end refused or cut (for `/v1/stats`).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Open connections of one listener (the front end, or the admin API),
/// shared by all its workers.
pub(crate) struct ConnectionCaps {
    /// Lowered once at start if the file descriptors do not allow more.
    max_total: AtomicUsize,
    max_per_ip: usize,
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpKey, usize>>,
    pub(crate) counters: Counters,
    refusals_log: RateLimitedLog,
}

/// A client's address as far as caps go: IPv4 addresses one by one, IPv6
/// by /64 (what one subscriber typically gets), IPv4-mapped IPv6 as IPv4.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum IpKey {
    V4(u32),
    V6Prefix(u64),
}

impl From<IpAddr> for IpKey {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::V4(v4.into()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::V4(v4.into()),
                None => Self::V6Prefix((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    Node,
    Ip,
}

/// Held while a connection is open; gives its place back when dropped.
pub(crate) struct Admitted {
    caps: Arc<ConnectionCaps>,
    ip: IpKey,
}

impl ConnectionCaps {
    pub(crate) fn new(max_total: usize, max_per_ip: usize) -> Self {
        Self {
            max_total: AtomicUsize::new(max_total),
            max_per_ip,
            total: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
            counters: Counters::default(),
            refusals_log: RateLimitedLog::new(Duration::from_secs(10)),
        }
    }

    /// Takes a place for a connection from `peer`, unless the node or the
    /// client's address is at its cap. A refusal is counted, and logged at
    /// most once per 10 s with how many were refused meanwhile.
    pub(crate) fn admit(self: &Arc<Self>, peer: SocketAddr) -> Result<Admitted, Refused> {
        let ip = IpKey::from(peer.ip());
        let max_total = self.max_total.load(Ordering::Relaxed);
        let refused = if self.total.fetch_add(1, Ordering::Relaxed) >= max_total {
            self.total.fetch_sub(1, Ordering::Relaxed);
            Some(Refused::Node)
        } else {
            let mut per_ip = self.per_ip.lock().expect("per-ip lock");
            let open = per_ip.entry(ip).or_insert(0);
            if *open >= self.max_per_ip {
                drop(per_ip);
                self.total.fetch_sub(1, Ordering::Relaxed);
                Some(Refused::Ip)
            } else {
                *open += 1;
                None
            }
        };
        match refused {
            None => {
                self.counters.accepted.fetch_add(1, Ordering::Relaxed);
                Ok(Admitted {
                    caps: self.clone(),
                    ip,
                })
            }
            Some(why) => {
                let counter = match why {
                    Refused::Node => &self.counters.refused_node_cap,
                    Refused::Ip => &self.counters.refused_ip_cap,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                self.refusals_log.warn(|suppressed| match why {
                    Refused::Node => format!(
                        "connection from {} refused: {} connections open, the node's cap (http.max_connections); {suppressed} more refused since the last such line",
                        peer.ip(),
                        max_total
                    ),
                    Refused::Ip => format!(
                        "connection from {} refused: it has {} connections open, the cap per client (http.max_connections_per_ip); {suppressed} more refused since the last such line",
                        peer.ip(),
                        self.max_per_ip
                    ),
                });
                Err(why)
            }
        }
    }

    /// Lowers the cap on open connections to `max` (never raises it);
    /// returns the cap it lowered, if it did.
    pub(crate) fn lower_max_total(&self, max: usize) -> Option<usize> {
        let was = self.max_total.fetch_min(max, Ordering::Relaxed);
        (was > max).then_some(was)
    }

    /// Connections open now.
    pub(crate) fn open(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut per_ip = self.caps.per_ip.lock().expect("per-ip lock");
        if let Some(open) = per_ip.get_mut(&self.ip) {
            *open -= 1;
            if *open == 0 {
                per_ip.remove(&self.ip);
            }
        }
        drop(per_ip);
        self.caps.total.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What the front end refused or cut, since the node started. Every
/// counter only grows: scrape it, diff it.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) accepted: AtomicU64,
    pub(crate) refused_node_cap: AtomicU64,
    pub(crate) refused_ip_cap: AtomicU64,
    pub(crate) accept_errors: AtomicU64,
    pub(crate) handshake_timeouts: AtomicU64,
    pub(crate) idle_closed: AtomicU64,
    pub(crate) send_timeouts: AtomicU64,
}

impl Counters {
    pub(crate) fn to_json(&self, open: usize) -> serde_json::Value {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        serde_json::json!({
            "open": open,
            "accepted": get(&self.accepted),
            "refused_node_cap": get(&self.refused_node_cap),
            "refused_ip_cap": get(&self.refused_ip_cap),
            "accept_errors": get(&self.accept_errors),
            "handshake_timeouts": get(&self.handshake_timeouts),
            "idle_closed": get(&self.idle_closed),
            "send_timeouts": get(&self.send_timeouts),
        })
    }
}

/// A warning that an attacker could trigger per connection, logged at most
/// once per interval, saying how many were left out.
pub(crate) struct RateLimitedLog {
    interval: Duration,
    last: Mutex<Option<Instant>>,
    suppressed: AtomicU64,
}

impl RateLimitedLog {
    pub(crate) fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: Mutex::new(None),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Logs `message(suppressed)` if the last line was long enough ago.
    pub(crate) fn warn(&self, message: impl FnOnce(u64) -> String) {
        let mut last = self.last.lock().expect("log limiter lock");
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < self.interval) {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        *last = Some(now);
        drop(last);
        let suppressed = self.suppressed.swap(0, Ordering::Relaxed);
        tracing::warn!("{}", message(suppressed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), 40000)
    }

    #[test]
    fn caps_per_ip_and_per_node_and_gives_places_back() {
        let caps = Arc::new(ConnectionCaps::new(3, 2));
        let a1 = caps.admit(peer("10.0.0.1")).unwrap();
        let _a2 = caps.admit(peer("10.0.0.1")).unwrap();
        assert_eq!(caps.admit(peer("10.0.0.1")).err(), Some(Refused::Ip));
        let _b = caps.admit(peer("10.0.0.2")).unwrap();
        assert_eq!(caps.admit(peer("10.0.0.3")).err(), Some(Refused::Node));
        assert_eq!(caps.open(), 3);
        drop(a1);
        assert_eq!(caps.open(), 2);
        let _a3 = caps.admit(peer("10.0.0.1")).unwrap();
        let counters = caps.counters.to_json(caps.open());
        assert_eq!(counters["refused_ip_cap"], 1);
        assert_eq!(counters["refused_node_cap"], 1);
        assert_eq!(counters["accepted"], 4);
    }

    #[test]
    fn ipv6_clients_are_counted_per_64_and_mapped_v4_as_v4() {
        let caps = Arc::new(ConnectionCaps::new(100, 1));
        let _a = caps.admit(peer("2001:db8:1:2::1")).unwrap();
        assert_eq!(
            caps.admit(peer("2001:db8:1:2::ffff")).err(),
            Some(Refused::Ip)
        );
        let _b = caps.admit(peer("2001:db8:1:3::1")).unwrap();
        let _c = caps.admit(peer("192.0.2.1")).unwrap();
        assert_eq!(
            caps.admit(peer("::ffff:192.0.2.1")).err(),
            Some(Refused::Ip)
        );
    }
}

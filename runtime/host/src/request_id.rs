use std::fmt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Identifies one request in responses (`x-request-id`) and logs.
///
/// Unique within a process and hard to guess across processes: a per-process
/// random base plus a counter, scrambled so consecutive ids do not look
/// consecutive. Costs one atomic increment.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestId(u64);

impl RequestId {
    /// The next id.
    pub fn next() -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        static BASE: OnceLock<u64> = OnceLock::new();
        let base = *BASE.get_or_init(process_seed);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        Self(scramble(base.wrapping_add(n)))
    }

    /// The id as a number, to keep in an atomic.
    pub fn as_u64(self) -> u64 {
        self.0
    }

    /// The id [`RequestId::as_u64`] gave.
    pub fn from_u64(id: u64) -> Self {
        Self(id)
    }

    /// The id as it is shown: 16 lowercase hex digits, without the
    /// allocation of formatting (it goes into every response).
    pub fn hex(self) -> [u8; 16] {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut hex = [0u8; 16];
        for (i, digit) in hex.iter_mut().enumerate() {
            *digit = DIGITS[((self.0 >> (60 - 4 * i)) & 0xf) as usize];
        }
        hex
    }
}

/// A seed that differs between processes without a random-number dependency:
/// std's `RandomState` is seeded from the OS.
fn process_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::process::id())
}

/// A bijection on u64 (SplitMix64's finalizer): distinct inputs give distinct
/// ids.
fn scramble(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = self.hex();
        f.write_str(std::str::from_utf8(&hex).expect("hex digits are ASCII"))
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_unique_and_sixteen_hex_digits() {
        let ids: HashSet<String> = (0..10_000).map(|_| RequestId::next().to_string()).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(
            ids.iter()
                .all(|id| id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        );
    }
}

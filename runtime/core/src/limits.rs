use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use outpost_host::fetch::FetchLimits;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// What one component may contain (each is a per-slot maximum of the pooling
/// allocator; a component over one is refused at load). Rust std components
/// (see tests/fixtures) have one memory, one or two tables and a handful of
/// core instances (main module, adapter shims, fixups): these leave room for
/// components made of a few modules, and stop one that instantiates a module
/// many times from taking many pool slots' worth of memory.
pub const MAX_CORE_INSTANCES_PER_COMPONENT: u32 = 16;
/// See [`MAX_CORE_INSTANCES_PER_COMPONENT`].
pub const MAX_MEMORIES_PER_COMPONENT: u32 = 2;
/// See [`MAX_CORE_INSTANCES_PER_COMPONENT`].
pub const MAX_TABLES_PER_COMPONENT: u32 = 8;

/// What one request of an app may use. Defaults follow the platforms handler
/// authors know (Cloudflare Workers, Fastly Compute); a node's maxima (see
/// [`Limits::node_maxima`]) bound what an app may ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Time the guest may spend executing (Wasm and the host calls it
    /// makes), measured around each slice of its execution: waiting for I/O
    /// does not count.
    pub cpu_time: Duration,
    /// Time from instantiation until the guest finishes, response body
    /// included.
    pub wall_time: Duration,
    /// Linear memory of one instance, all its memories together, in bytes.
    pub memory: u64,
    /// Request body size, in bytes: larger bodies get 413.
    pub request_body: u64,
    /// Instances of the app alive at once (serving, warm or being torn
    /// down): one app cannot take the whole pool.
    pub instances: u32,
    /// What the app's outbound requests may do.
    pub fetch: FetchLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            cpu_time: Duration::from_millis(50),
            wall_time: Duration::from_secs(30),
            memory: 128 << 20,
            request_body: 16 << 20,
            instances: 250,
            fetch: FetchLimits::default(),
        }
    }
}

impl Limits {
    /// The default maxima of a node: what an app may ask for at most unless
    /// the operator says otherwise.
    pub fn node_maxima() -> Self {
        Self {
            cpu_time: Duration::from_secs(1),
            wall_time: Duration::from_secs(120),
            memory: 1 << 30,
            request_body: 128 << 20,
            instances: 250,
            fetch: FetchLimits::node_maxima(),
        }
    }

    /// No maxima: for checking a manifest's form without a node in mind.
    pub fn unbounded() -> Self {
        Self {
            cpu_time: Duration::MAX,
            wall_time: Duration::MAX,
            memory: u64::MAX,
            request_body: u64::MAX,
            instances: u32::MAX,
            fetch: FetchLimits::unbounded(),
        }
    }

    /// The defaults, lowered where the node's maxima are lower: what an app
    /// that sets nothing gets.
    pub fn defaults_within(maxima: &Self) -> Self {
        let defaults = Self::default();
        Self {
            cpu_time: defaults.cpu_time.min(maxima.cpu_time),
            wall_time: defaults.wall_time.min(maxima.wall_time),
            memory: defaults.memory.min(maxima.memory),
            request_body: defaults.request_body.min(maxima.request_body),
            // How many instances one app may hold is the operator's call,
            // not the author's: an app gets the node's per-app maximum.
            instances: maxima.instances,
            fetch: FetchLimits::defaults_within(&maxima.fetch),
        }
    }
}

/// Caps the linear memory of one instance, all its memories together (a
/// component may define several), and remembers whether the cap was hit, so
/// a trap that follows can be reported as a memory-limit kill.
pub(crate) struct MemoryLimiter {
    limit: usize,
    /// Bytes of all memories of the instance, as approved so far.
    used: usize,
    /// The last approved growth, taken back if the growth then fails.
    last_growth: usize,
    pub(crate) hit: bool,
}

impl MemoryLimiter {
    pub(crate) fn new(limit: u64) -> Self {
        Self {
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            used: 0,
            last_growth: 0,
            hit: false,
        }
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Called with current = 0 when a memory is created, so `used` counts
        // every memory from its first page.
        let growth = desired.saturating_sub(current);
        let total = self.used.saturating_add(growth);
        let allowed = total <= self.limit;
        if allowed {
            self.used = total;
            self.last_growth = growth;
        } else {
            self.hit = true;
        }
        Ok(allowed)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.used -= self.last_growth;
        self.last_growth = 0;
        Ok(())
    }

    fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // The pooling allocator bounds table size per slot.
        Ok(true)
    }
}

/// A request body that fails once more than `remaining` bytes arrive, so a
/// client that lies about (or omits) `Content-Length` still cannot push more
/// than the app's limit into the guest.
pub(crate) struct LimitedBody<B> {
    inner: B,
    remaining: u64,
    limit: u64,
}

impl<B> LimitedBody<B> {
    pub(crate) fn new(inner: B, limit: u64) -> Self {
        Self {
            inner,
            remaining: limit,
            limit,
        }
    }
}

impl<B> Body for LimitedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let len = frame.data_ref().map_or(0, |data| data.len() as u64);
                match this.remaining.checked_sub(len) {
                    Some(remaining) => {
                        this.remaining = remaining;
                        Poll::Ready(Some(Ok(frame)))
                    }
                    None => Poll::Ready(Some(Err(wasmtime_wasi_http::Error::HttpRequestBodySize(
                        Some(this.limit),
                    )))),
                }
            }
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(err.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};
    use wasmtime::ResourceLimiter;

    fn body_of(len: usize) -> impl Body<Data = Bytes, Error = wasmtime_wasi_http::Error> + Unpin {
        Full::new(Bytes::from(vec![7u8; len])).map_err(|never| match never {})
    }

    #[tokio::test]
    async fn limited_body_passes_bodies_up_to_the_limit() {
        let collected = LimitedBody::new(body_of(100), 100).collect().await.unwrap();
        assert_eq!(collected.to_bytes().len(), 100);
    }

    #[tokio::test]
    async fn limited_body_fails_past_the_limit() {
        let err = LimitedBody::new(body_of(101), 100)
            .collect()
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            wasmtime_wasi_http::Error::HttpRequestBodySize(Some(100))
        ));
    }

    #[test]
    fn memory_limit_applies_to_all_memories_of_an_instance_together() {
        let mut limiter = MemoryLimiter::new(4 << 20);
        // Two memories created with 2 MiB each: the limit is reached.
        assert!(limiter.memory_growing(0, 2 << 20, None).unwrap());
        assert!(limiter.memory_growing(0, 2 << 20, None).unwrap());
        // A third memory, or growing either, is refused.
        assert!(!limiter.memory_growing(0, 64 << 10, None).unwrap());
        assert!(
            !limiter
                .memory_growing(2 << 20, (2 << 20) + (64 << 10), None)
                .unwrap()
        );
        assert!(limiter.hit);
    }

    #[test]
    fn memory_limiter_refuses_growth_past_the_limit_and_remembers() {
        let mut limiter = MemoryLimiter::new(1 << 20);
        assert!(limiter.memory_growing(0, 1 << 20, None).unwrap());
        assert!(!limiter.hit);
        assert!(
            !limiter
                .memory_growing(1 << 20, (1 << 20) + 65536, None)
                .unwrap()
        );
        assert!(limiter.hit);
    }
}

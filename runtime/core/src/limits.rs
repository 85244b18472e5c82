use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// What one request of an app may use. Defaults follow the platforms handler
/// authors know (Cloudflare Workers, Fastly Compute).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Time the guest may spend executing Wasm, counted in epoch ticks
    /// (see [`crate::Runtime`]): waiting for I/O does not count.
    pub cpu_time: Duration,
    /// Time from instantiation until the guest finishes, response body
    /// included.
    pub wall_time: Duration,
    /// Linear memory of one instance, in bytes.
    pub memory: u64,
    /// Request body size, in bytes: larger bodies get 413.
    pub request_body: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            cpu_time: Duration::from_millis(50),
            wall_time: Duration::from_secs(30),
            memory: 128 << 20,
            request_body: 16 << 20,
        }
    }
}

/// Reads and drops a refused request body, like a web server's lingering
/// close: a client still sending would otherwise have its connection reset
/// under it and might never read the 413. Bounded: four times the limit
/// (at least 1 MiB), for at most 5 s; past that the connection just closes.
pub(crate) async fn drain<B: Body<Data = Bytes> + Unpin>(mut body: B, limit: u64) {
    use http_body_util::BodyExt as _;
    let max = limit.saturating_mul(4).max(1 << 20);
    let read = async {
        let mut seen: u64 = 0;
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, |data| data.len() as u64);
            if seen > max {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), read).await;
}

/// Caps linear-memory growth of one instance and remembers whether the cap
/// was hit, so a trap that follows can be reported as a memory-limit kill.
pub(crate) struct MemoryLimiter {
    limit: usize,
    pub(crate) hit: bool,
}

impl MemoryLimiter {
    pub(crate) fn new(limit: u64) -> Self {
        Self {
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            hit: false,
        }
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= self.limit;
        self.hit |= !allowed;
        Ok(allowed)
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

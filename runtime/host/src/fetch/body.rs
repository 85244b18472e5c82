//! An origin's response body as the guest reads it: streamed, never
//! buffered whole, under the between-bytes deadline and the size cap, and
//! holding the request's concurrency permit until it ends.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep};
use wasmtime_wasi_http::Error;

pub(crate) struct UpstreamBody {
    incoming: hyper::body::Incoming,
    between_bytes: Duration,
    idle: Pin<Box<Sleep>>,
    /// Bytes the guest may still receive.
    remaining: u64,
    cap: u64,
    /// Released when the body is dropped: finished, or abandoned by the
    /// guest.
    _permit: OwnedSemaphorePermit,
}

impl UpstreamBody {
    pub(crate) fn new(
        incoming: hyper::body::Incoming,
        between_bytes: Duration,
        cap: u64,
        permit: OwnedSemaphorePermit,
    ) -> Self {
        Self {
            incoming,
            between_bytes,
            idle: Box::pin(tokio::time::sleep(between_bytes)),
            remaining: cap,
            cap,
            _permit: permit,
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.incoming).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let deadline = Instant::now() + this.between_bytes;
                this.idle.as_mut().reset(deadline);
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > this.remaining {
                        this.remaining = 0;
                        return Poll::Ready(Some(Err(Error::HttpResponseBodySize(Some(this.cap)))));
                    }
                    this.remaining -= len;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(super::response_error(&err)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                ready!(this.idle.as_mut().poll(cx));
                Poll::Ready(Some(Err(Error::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}

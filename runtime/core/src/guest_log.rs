//! Guest stdout and stderr, turned into log lines tagged with the app and the
//! request id.

use crate::RequestId;
use crate::tail::Tail;
use bytes::Bytes;
use outpost_host::printable;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi_io::poll::Pollable;
use wasmtime_wasi_io::streams::{OutputStream, StreamResult};

/// How much one request may log, stdout and stderr together, however many
/// handles the guest opens. Past it, output is accepted and dropped (a
/// guest's `println!` must never fail and trap), and one line says so. Bytes
/// count when the guest writes them, so unfinished lines held in buffers are
/// bounded too.
const LOG_BUDGET: usize = 64 * 1024;

/// A line longer than this is logged in pieces.
const MAX_LINE: usize = 4 * 1024;

/// What the output streams of one instance share: the request it serves
/// (an instance may be made before its request arrives) and how much of
/// that request's log budget is spent.
#[derive(Default)]
pub(crate) struct GuestOutput {
    request: AtomicU64,
    logged: AtomicUsize,
}

impl GuestOutput {
    /// Output from now on belongs to `request`, with a full budget.
    pub(crate) fn begin(&self, request: RequestId) {
        self.request.store(request.as_u64(), Ordering::Relaxed);
        self.logged.store(0, Ordering::Relaxed);
    }

    fn request(&self) -> RequestId {
        RequestId::from_u64(self.request.load(Ordering::Relaxed))
    }

    /// Takes up to `wanted` bytes from the budget; returns how many, and
    /// whether this call spent the last of it.
    fn take(&self, wanted: usize) -> (usize, bool) {
        let before = self
            .logged
            .fetch_add(wanted, Ordering::Relaxed)
            .min(LOG_BUDGET);
        let granted = wanted.min(LOG_BUDGET - before);
        (granted, granted > 0 && before + granted == LOG_BUDGET)
    }
}

/// One of the guest's output streams.
#[derive(Clone)]
pub(crate) struct GuestLog {
    app: Arc<str>,
    output: Arc<GuestOutput>,
    stream: &'static str,
    tail: Tail,
}

impl GuestLog {
    pub(crate) fn new(
        app: Arc<str>,
        output: Arc<GuestOutput>,
        stream: &'static str,
        tail: Tail,
    ) -> Self {
        Self {
            app,
            output,
            stream,
            tail,
        }
    }

    fn writer(&self) -> GuestLogWriter {
        GuestLogWriter {
            log: self.clone(),
            line: Vec::new(),
        }
    }
}

impl IsTerminal for GuestLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestLog {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.writer())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.writer())
    }
}

/// Splits what the guest writes into lines. Writes never block and never
/// fail: logging is synchronous and cheap, so no helper task is needed.
struct GuestLogWriter {
    log: GuestLog,
    line: Vec<u8>,
}

impl GuestLogWriter {
    fn accept(&mut self, bytes: &[u8]) {
        let (granted, exhausted) = self.log.output.take(bytes.len());
        let mut bytes = &bytes[..granted];
        while !bytes.is_empty() {
            match bytes.iter().position(|&b| b == b'\n') {
                Some(end) => {
                    self.push(&bytes[..end]);
                    self.emit();
                    bytes = &bytes[end + 1..];
                }
                None => {
                    self.push(bytes);
                    bytes = &[];
                }
            }
        }
        if exhausted {
            self.say_budget_spent();
        }
    }

    fn push(&mut self, mut bytes: &[u8]) {
        while self.line.len() + bytes.len() > MAX_LINE {
            let room = MAX_LINE - self.line.len();
            self.line.extend_from_slice(&bytes[..room]);
            self.emit();
            bytes = &bytes[room..];
        }
        self.line.extend_from_slice(bytes);
    }

    fn emit(&mut self) {
        let text = String::from_utf8_lossy(&self.line);
        let text = printable(&text);
        let GuestLog {
            app,
            output,
            stream,
            tail,
        } = &self.log;
        let request_id = output.request();
        tracing::info!(target: "guest", app = &**app, request_id = %request_id, stream, "{text}");
        tail.guest_line(request_id, stream, &text);
        self.line.clear();
    }

    fn say_budget_spent(&mut self) {
        if !self.line.is_empty() {
            self.emit();
        }
        let GuestLog {
            app,
            output,
            stream,
            ..
        } = &self.log;
        tracing::warn!(target: "guest", app = &**app, request_id = %output.request(), stream,
            "guest output past {LOG_BUDGET} bytes for this request is dropped");
    }
}

impl Drop for GuestLogWriter {
    fn drop(&mut self) {
        if !self.line.is_empty() {
            self.emit();
        }
    }
}

#[wasmtime_wasi_io::async_trait]
impl Pollable for GuestLogWriter {
    async fn ready(&mut self) {}
}

impl OutputStream for GuestLogWriter {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.accept(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(MAX_LINE)
    }
}

impl tokio::io::AsyncWrite for GuestLogWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().accept(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_per_request_across_handles_and_streams() {
        let output = Arc::new(GuestOutput::default());
        output.begin(RequestId::next());
        let log = |stream| GuestLog::new("app".into(), output.clone(), stream, Tail::default());
        // Every new handle (a guest calling get-stdout again) shares it.
        let mut total = 0;
        for round in 0..100 {
            let mut writer = log(if round % 2 == 0 { "stdout" } else { "stderr" }).writer();
            let before = output.logged.load(Ordering::Relaxed).min(LOG_BUDGET);
            writer.accept(&[b'x'; 4096]);
            total += output.logged.load(Ordering::Relaxed).min(LOG_BUDGET) - before;
        }
        assert_eq!(total, LOG_BUDGET);
        // The next request starts with a full budget.
        output.begin(RequestId::next());
        assert_eq!(output.take(10), (10, false));
    }
}

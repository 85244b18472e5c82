//! Guest stdout and stderr, turned into log lines tagged with the app and the
//! request id.

use crate::request_id::CurrentRequest;
use crate::tail::Tail;
use bytes::Bytes;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi_io::poll::Pollable;
use wasmtime_wasi_io::streams::{OutputStream, StreamResult};

/// How much one stream of one request may log. Past it, output is accepted
/// and dropped (a guest's `println!` must never fail and trap), and one line
/// says so.
const LOG_BUDGET: usize = 64 * 1024;

/// A line longer than this is logged in pieces.
const MAX_LINE: usize = 4 * 1024;

/// One of the guest's output streams for one request.
#[derive(Clone)]
pub(crate) struct GuestLog {
    app: Arc<str>,
    request: CurrentRequest,
    stream: &'static str,
    tail: Tail,
}

impl GuestLog {
    pub(crate) fn new(
        app: Arc<str>,
        request: CurrentRequest,
        stream: &'static str,
        tail: Tail,
    ) -> Self {
        Self {
            app,
            request,
            stream,
            tail,
        }
    }

    fn writer(&self) -> GuestLogWriter {
        GuestLogWriter {
            log: self.clone(),
            line: Vec::new(),
            logged: 0,
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
    logged: usize,
}

impl GuestLogWriter {
    fn accept(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.logged >= LOG_BUDGET {
                return;
            }
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
        if self.logged >= LOG_BUDGET {
            self.line.clear();
            return;
        }
        self.logged += self.line.len() + 1;
        let text = String::from_utf8_lossy(&self.line);
        let GuestLog {
            app,
            request,
            stream,
            tail,
        } = &self.log;
        let request_id = request.get();
        tracing::info!(target: "guest", app = &**app, request_id = %request_id, stream, "{text}");
        tail.guest_line(request_id, stream, &text);
        if self.logged >= LOG_BUDGET {
            tracing::warn!(target: "guest", app = &**app, request_id = %request_id, stream,
                "guest output past {LOG_BUDGET} bytes for this request is dropped");
        }
        self.line.clear();
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

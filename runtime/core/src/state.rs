//! What a Store holds for one request: the WASI and wasi:http contexts, the
//! resource table, the memory limiter and the CPU meter.

use crate::guest_log::GuestLog;
use crate::limits::MemoryLimiter;
use crate::request_id::CurrentRequest;
use crate::tail::Tail;
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

pub(crate) struct RequestState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    outbound: NoOutbound,
    pub(crate) memory: MemoryLimiter,
    pub(crate) cpu: CpuMeter,
    pub(crate) request: CurrentRequest,
}

impl RequestState {
    pub(crate) fn new(app: &Arc<str>, tail: &Tail, memory: u64, cpu_ticks: u64) -> Self {
        let request = CurrentRequest::default();
        // Defaults of WasiCtxBuilder: no preopens, no env, no args, stdin
        // closed, every socket address denied, no name lookup. TCP and UDP
        // are switched off on top, so `wasi:sockets` exists only to link.
        let wasi = WasiCtx::builder()
            .stdout(GuestLog::new(
                app.clone(),
                request.clone(),
                "stdout",
                tail.clone(),
            ))
            .stderr(GuestLog::new(
                app.clone(),
                request.clone(),
                "stderr",
                tail.clone(),
            ))
            .allow_tcp(false)
            .allow_udp(false)
            .build();
        Self {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            outbound: NoOutbound,
            memory: MemoryLimiter::new(memory),
            cpu: CpuMeter {
                used_ticks: 0,
                budget_ticks: cpu_ticks,
            },
            request,
        }
    }
}

impl WasiView for RequestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for RequestState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

/// Epoch ticks during which the guest was seen executing Wasm.
///
/// The epoch deadline is always one tick ahead, so the deadline callback runs
/// at most once per tick while Wasm runs; a guest parked on I/O is not
/// executing Wasm and is not charged (beyond the one tick in which it
/// resumes).
pub(crate) struct CpuMeter {
    pub(crate) used_ticks: u64,
    pub(crate) budget_ticks: u64,
}

impl CpuMeter {
    /// Charges one tick; false once the budget is spent.
    pub(crate) fn charge(&mut self) -> bool {
        self.used_ticks += 1;
        self.used_ticks < self.budget_ticks
    }
}

/// Outbound `wasi:http/outgoing-handler` requests are refused until the
/// policy-checked upstream fetch exists: no guest reaches the network by
/// default.
struct NoOutbound;

impl wasmtime_wasi_http::WasiHttpHooks for NoOutbound {
    fn send_request(
        &mut self,
        _request: http::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<wasmtime_wasi_http::WasiBody>,
                        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}

//! What a Store holds for one request: the WASI and wasi:http contexts, the
//! resource table, the memory limiter and the CPU meter, the bounds on what
//! a guest can make the host allocate, and the request's view of each host
//! service (outbound fetch is wasi:http's hooks; the cache is
//! `outpost:edge/cache`, rate limits `outpost:edge/ratelimit`, variables
//! and secrets `wasi:config/store`, the client `outpost:edge/client`).

use crate::cpu::CpuMeter;
use crate::guest_log::{GuestLog, GuestOutput};
use crate::limits::MemoryLimiter;
use crate::tail::Tail;
use outpost_host::cache::CacheCtx;
use outpost_host::client::ClientCtx;
use outpost_host::fetch::FetchCtx;
use outpost_host::jwt::JwtCtx;
use outpost_host::kv::KvCtx;
use outpost_host::ratelimit::RateLimitCtx;
use outpost_host::vars::VarsCtx;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Resources (fields, streams, bodies, pollables...) a guest may hold at
/// once. With [`MAX_FIELDS_SIZE`] this bounds the header data a guest can
/// make the host hold to 128 MiB, the size of the default memory limit;
/// a handler needs a few dozen. Past it, creating one more traps.
pub(crate) const MAX_RESOURCES: usize = 2048;

/// Bytes of one header (or trailer) list a guest builds, in the host's
/// in-memory representation.
const MAX_FIELDS_SIZE: usize = 64 << 10;

/// The largest `get-random-bytes` a guest may ask for in one call: one call
/// takes about a millisecond. wasmtime's default, 64 MiB, took a tenth of a
/// second of host time in one call. Larger requests trap.
const MAX_RANDOM_BYTES: u64 = 1 << 20;

/// One request's view of each host service.
pub(crate) struct HostCtxs {
    pub(crate) fetch: FetchCtx,
    pub(crate) cache: CacheCtx,
    pub(crate) rate_limits: RateLimitCtx,
    pub(crate) jwt: JwtCtx,
    pub(crate) kv: KvCtx,
    pub(crate) vars: VarsCtx,
    pub(crate) client: ClientCtx,
}

pub(crate) struct RequestState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    pub(crate) fetch: FetchCtx,
    pub(crate) cache: CacheCtx,
    pub(crate) rate_limits: RateLimitCtx,
    pub(crate) jwt: JwtCtx,
    pub(crate) kv: KvCtx,
    pub(crate) vars: VarsCtx,
    pub(crate) client: ClientCtx,
    pub(crate) memory: MemoryLimiter,
    pub(crate) cpu: Arc<CpuMeter>,
    pub(crate) cpu_budget: Duration,
    pub(crate) output: Arc<GuestOutput>,
}

impl RequestState {
    pub(crate) fn new(
        app: &Arc<str>,
        tail: &Tail,
        memory: u64,
        cpu_budget: Duration,
        host: HostCtxs,
    ) -> Self {
        let HostCtxs {
            fetch,
            cache,
            rate_limits,
            jwt,
            kv,
            vars,
            client,
        } = host;
        let output = Arc::new(GuestOutput::default());
        // Defaults of WasiCtxBuilder: no preopens, no env, no args, stdin
        // closed, every socket address denied, no name lookup. TCP and UDP
        // are switched off on top, so `wasi:sockets` exists only to link.
        let wasi = WasiCtx::builder()
            .stdout(GuestLog::new(
                app.clone(),
                output.clone(),
                "stdout",
                tail.clone(),
            ))
            .stderr(GuestLog::new(
                app.clone(),
                output.clone(),
                "stderr",
                tail.clone(),
            ))
            .allow_tcp(false)
            .allow_udp(false)
            .max_random_size(MAX_RANDOM_BYTES)
            .build();
        let mut http = WasiHttpCtx::new();
        http.set_field_size_limit(MAX_FIELDS_SIZE);
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        Self {
            wasi,
            http,
            table,
            fetch,
            cache,
            rate_limits,
            jwt,
            kv,
            vars,
            client,
            memory: MemoryLimiter::new(memory),
            cpu: Arc::new(CpuMeter::default()),
            cpu_budget,
            output,
        }
    }
}

impl RequestState {
    /// The request's KV context and its resource table, where the guest's
    /// buckets live.
    pub(crate) fn kv_and_table(&mut self) -> (&KvCtx, &mut ResourceTable) {
        (&self.kv, &mut self.table)
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
            hooks: &mut self.fetch,
        }
    }
}

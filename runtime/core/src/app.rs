use crate::cpu::Metered;
use crate::deadline::within;
use crate::instance::{Instance, InstancePool, Slots, Warm};
use crate::limits::LimitedBody;
use crate::state::{HostCtxs, MAX_RESOURCES, RequestState};
use crate::tail::{RequestSummary, Tail};
use crate::{Failure, Limits, LoadError, RequestId, RequestMeta};
use bytes::Bytes;
use http_body::Body;
use outpost_host::bindings::HandlerPre;
use outpost_host::cache::{CacheCtx, CachePolicy};
use outpost_host::client::ClientCtx;
use outpost_host::edge_rules::EdgeRules;
use outpost_host::fetch::{FetchCtx, FetchPolicy, FetchService};
use outpost_host::geo::GeoDb;
use outpost_host::jwt::{JwtCtx, JwtPolicies};
use outpost_host::kv::{KvCtx, KvPolicy};
use outpost_host::printable_capped;
use outpost_host::ratelimit::{RateLimitCtx, RateLimitPolicy};
use outpost_host::vars::{VarsCtx, VarsPolicy};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::Poll;
use std::time::Instant;
use tokio::sync::oneshot;
use tracing::Instrument as _;
use wasmtime::component::ResourceTableError;
use wasmtime::{Store, Trap, UpdateDeadline};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;

/// The body of a response produced by a guest, streamed as the guest writes
/// it. Host-made responses use the same type.
pub type ResponseBody = wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// One app: a pre-instantiated component and its limits. Cloning is cheap;
/// clones share everything.
#[derive(Clone)]
pub struct App {
    inner: Arc<AppInner>,
}

/// Counters of one app version, since it was loaded.
#[derive(Debug, Default)]
pub struct AppStats {
    requests: AtomicU64,
    failures: AtomicU64,
}

impl AppStats {
    /// Requests answered, by the guest or with a failure status.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Requests that failed (trap, limit, no response, body too large…).
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
}

/// Loads an app's code on its first request (see [`crate::RuntimeConfig::lazy_load`]).
pub(crate) type Loader = Box<dyn Fn() -> Result<HandlerPre<RequestState>, LoadError> + Send + Sync>;

struct AppInner {
    name: Arc<str>,
    pre: OnceLock<HandlerPre<RequestState>>,
    /// Set when `pre` is filled on first use instead of at load.
    loader: Option<Loader>,
    limits: Limits,
    /// Where and how its guests may fetch, shared by its requests.
    fetch: (Arc<FetchService>, Arc<FetchPolicy>),
    /// Its edge cache, shared by its requests.
    cache: Arc<CachePolicy>,
    /// Its rate-limit policies, shared by its requests.
    rate_limits: Arc<RateLimitPolicy>,
    /// Its JWT policies, shared by its requests.
    jwt: Arc<JwtPolicies>,
    /// Its KV buckets, shared by its requests.
    kv: Arc<KvPolicy>,
    /// Its `[[edge]]` rules.
    edge: EdgeRules,
    /// Its variables and secrets.
    vars: Arc<VarsPolicy>,
    /// The node's geo databases, if any.
    geo: Option<Arc<GeoDb>>,
    slots: Slots,
    tail: Tail,
    stats: AppStats,
    /// Instances made ahead of their requests, at most [`WARM_PER_APP`].
    warm: Mutex<Vec<Warm>>,
    /// An instance whose request is answered, waiting for its teardown
    /// task.
    retired: Mutex<Option<Instance>>,
    /// Set once a request of this app used a millisecond of CPU: its
    /// requests are measured on the thread's CPU clock from their start
    /// (see cpu.rs).
    heavy: AtomicBool,
}

/// An app's view of the node's host services, resolved when it is loaded.
pub(crate) struct AppServices {
    pub(crate) fetch: (Arc<FetchService>, Arc<FetchPolicy>),
    pub(crate) cache: Arc<CachePolicy>,
    pub(crate) rate_limits: Arc<RateLimitPolicy>,
    pub(crate) jwt: Arc<JwtPolicies>,
    pub(crate) kv: Arc<KvPolicy>,
    pub(crate) edge: EdgeRules,
    pub(crate) vars: Arc<VarsPolicy>,
    pub(crate) geo: Option<Arc<GeoDb>>,
}

/// Warm instances kept per app: one per busy worker thread of a small node.
/// More would hold pool slots and resident memory for little gain.
const WARM_PER_APP: usize = 2;

impl App {
    /// An app whose code is loaded: `Ok(pre)`, or loaded by `Err(loader)` on
    /// its first request.
    pub(crate) fn new(
        name: &str,
        code: Result<HandlerPre<RequestState>, Loader>,
        limits: Limits,
        services: AppServices,
        pool: InstancePool,
        tail: Tail,
    ) -> Self {
        let AppServices {
            fetch,
            cache,
            rate_limits,
            jwt,
            kv,
            edge,
            vars,
            geo,
        } = services;
        let (pre, loader) = match code {
            Ok(pre) => (OnceLock::from(pre), None),
            Err(loader) => (OnceLock::new(), Some(loader)),
        };
        Self {
            inner: Arc::new(AppInner {
                name: name.into(),
                pre,
                loader,
                slots: Slots::new(pool, limits.instances),
                limits,
                fetch,
                cache,
                rate_limits,
                jwt,
                kv,
                edge,
                vars,
                geo,
                tail,
                stats: AppStats::default(),
                warm: Mutex::new(Vec::new()),
                retired: Mutex::new(None),
                heavy: AtomicBool::new(false),
            }),
        }
    }

    /// The app's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The app's per-request limits.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// The app's outbound policy (its backends' state, for the admin API).
    pub fn fetch_policy(&self) -> &FetchPolicy {
        &self.inner.fetch.1
    }

    /// The app's edge cache (in front of its handler if
    /// `rules().in_front`).
    pub fn cache(&self) -> &CachePolicy {
        &self.inner.cache
    }

    /// The app's rate-limit policies.
    pub fn rate_limits(&self) -> &RateLimitPolicy {
        &self.inner.rate_limits
    }

    /// The app's `[[edge]]` rules, checked before any instance exists.
    pub fn edge_rules(&self) -> &EdgeRules {
        &self.inner.edge
    }

    /// Requests served and failed by this app (this version of it).
    pub fn stats(&self) -> &AppStats {
        &self.inner.stats
    }

    /// Serves one request in a fresh instance.
    ///
    /// Resolves once the guest has set its response; the body then streams
    /// while the guest keeps running, still under its limits. A failure is
    /// logged with the app name and request id before it is returned.
    pub async fn handle<B>(
        &self,
        request: http::Request<B>,
        meta: RequestMeta,
    ) -> Result<http::Response<ResponseBody>, Failure>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let request_id = meta.id;
        let tail = &self.inner.tail;
        let watched = tail.is_watched().then(|| {
            let summary = RequestSummary {
                id: request_id,
                method: request.method().clone(),
                path: request.uri().path().to_owned(),
            };
            (summary, Instant::now())
        });
        // One span per request (debug level: free unless enabled), entered
        // whenever the guest runs, and so around every host call it makes.
        let span = tracing::debug_span!("request", id = %request_id, app = &*self.inner.name);
        let result = self.serve(request, meta).instrument(span).await;
        let stats = &self.inner.stats;
        stats.requests.fetch_add(1, Ordering::Relaxed);
        if result.is_err() {
            stats.failures.fetch_add(1, Ordering::Relaxed);
        }
        if let Some((summary, started)) = watched {
            let status = match &result {
                Ok(response) => response.status(),
                Err(failure) => failure.status(),
            };
            tail.request(&summary, status.as_u16(), started.elapsed().as_micros());
        }
        result
    }

    async fn serve<B>(
        &self,
        request: http::Request<B>,
        meta: RequestMeta,
    ) -> Result<http::Response<ResponseBody>, Failure>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let request_id = meta.id;
        let inner = &self.inner;
        inner.ensure_loaded()?;
        let limit = inner.limits.request_body;
        let request = request.map(|body| LimitedBody::new(body, limit));
        inner.tear_down_spent();
        let mut instance = match inner.take_warm() {
            Some(instance) => instance,
            None => {
                let slot = inner.slots.acquire().await.map_err(|(saturated, waited)| {
                    let failure = Failure::Overloaded { saturated, waited };
                    inner.log_failure(request_id, &failure);
                    failure
                })?;
                Instance::cold(inner.new_store(), slot)
            }
        };
        instance.begin(meta, inner.heavy.load(Ordering::Relaxed));

        let (response_tx, mut response_rx) = oneshot::channel();
        let inner = inner.clone();
        let meter = instance.store.data().cpu.clone();
        // Every poll of the guest is charged to its CPU time: see cpu.rs.
        let mut guest = Metered::new(
            async move {
                let pre = inner.pre.get().expect("ensure_loaded filled it");
                let scheme = if meta.https {
                    Scheme::Https
                } else {
                    Scheme::Http
                };
                let run = run_guest(&mut instance, pre, request, scheme, response_tx);
                let failure = match within(inner.limits.wall_time, run).await {
                    Some(Ok(())) => None,
                    Some(Err(err)) => Some(inner.classify(&err, instance.store.data())),
                    None => Some(Failure::WallTime(inner.limits.wall_time)),
                };
                if let Some(failure) = &failure {
                    inner.log_failure(request_id, failure);
                }
                (failure, instance)
            },
            meter,
        );

        // Drive the guest on this task until it answers. Usually it has also
        // finished by then (a small body fits the body buffer), and no other
        // task is needed; a guest still streaming its body goes on in a task
        // of its own, still under its limits.
        let answer = std::future::poll_fn(|cx| {
            if let Poll::Ready((failure, spent)) = Pin::new(&mut guest).poll(cx) {
                self.inner.retire(spent);
                return Poll::Ready(Answer::Finished(failure));
            }
            Pin::new(&mut response_rx).poll(cx).map(Answer::Sent)
        })
        .await;
        let response = match answer {
            Answer::Sent(Ok(response)) => {
                let inner = self.inner.clone();
                let finish = async move {
                    let (_, spent) = guest.await;
                    inner.retire(spent);
                };
                tokio::spawn(finish.instrument(tracing::Span::current()));
                Ok(response)
            }
            // The guest dropped the response outparam without answering;
            // its outcome says why.
            Answer::Sent(Err(_closed)) => {
                let (failure, spent) = guest.await;
                self.inner.retire(spent);
                Err(failure)
            }
            // Finished, perhaps after answering (a trap after the response
            // head was sent reaches the client as a cut-short body).
            Answer::Finished(failure) => response_rx.try_recv().map_err(|_| failure),
        };
        match response {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(code)) => {
                use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;
                let timed_out = matches!(
                    code,
                    ErrorCode::DnsTimeout
                        | ErrorCode::ConnectionTimeout
                        | ErrorCode::ConnectionReadTimeout
                        | ErrorCode::ConnectionWriteTimeout
                        | ErrorCode::HttpResponseTimeout
                );
                // The code may carry a guest-chosen message of any length.
                let failure = Failure::Upstream {
                    code: printable_capped(format_args!("{code:?}"), 512),
                    timed_out,
                };
                self.inner.log_failure(request_id, &failure);
                Err(failure)
            }
            Err(Some(failure)) => Err(failure),
            Err(None) => {
                let failure = Failure::NoResponse;
                self.inner.log_failure(request_id, &failure);
                Err(failure)
            }
        }
    }
}

type GuestResponse =
    Result<http::Response<ResponseBody>, wasmtime_wasi_http::p2::bindings::http::types::ErrorCode>;

/// What happened first while driving a guest.
enum Answer {
    /// The guest set its response outparam (or dropped it: `Err`).
    Sent(Result<GuestResponse, oneshot::error::RecvError>),
    /// The guest finished, with the failure if it failed.
    Finished(Option<Failure>),
}

impl AppInner {
    /// Loads a lazily loaded app's code, once. A failure (the cache entry
    /// vanished, say) fails this request and is tried again on the next.
    fn ensure_loaded(&self) -> Result<(), Failure> {
        if self.pre.get().is_some() {
            return Ok(());
        }
        let loader = self
            .loader
            .as_ref()
            .expect("an app without a loader is loaded");
        let started = Instant::now();
        match loader() {
            Ok(pre) => {
                // Two first requests may race to load; either result is fine.
                let _ = self.pre.set(pre);
                tracing::info!(
                    "app {}: loaded from the precompiled cache on its first request in {} ms",
                    self.name,
                    started.elapsed().as_millis()
                );
                Ok(())
            }
            Err(err) => {
                tracing::error!(app = &*self.name, "cannot load the app: {err}");
                Err(Failure::Internal(format!(
                    "cannot load app {}: {err}",
                    self.name
                )))
            }
        }
    }

    /// A warm instance of this app, if one is ready.
    fn take_warm(&self) -> Option<Instance> {
        self.warm
            .lock()
            .expect("warm list lock")
            .pop()
            .map(Warm::take)
    }

    /// Tears a finished instance down after the response is out, when the
    /// worker has time for it. An instance retired while no teardown is
    /// pending is handed to a task that tears it down and makes the app's
    /// next instance ahead of its request: on a front-end worker that task
    /// runs once the connection's task has written the response and
    /// yielded, so neither the memory reset (a `PAGEMAP_SCAN` plus copying
    /// dirty pages back from the image) nor the next instantiation delays a
    /// client. An instance retired while that task is still pending means a
    /// burst of requests: it is torn down at once, as the deferred work
    /// would only pile up (HTTP/2 with 640 streams served 8 % fewer
    /// requests when every teardown waited).
    fn retire(self: &Arc<Self>, spent: Instance) {
        if spent.store.data().cpu.ran_long() && !self.heavy.swap(true, Ordering::Relaxed) {
            tracing::info!(
                app = &*self.name,
                "a request ran for more than a millisecond of CPU: this app's requests are timed \
                 on the thread's CPU clock from now on"
            );
        }
        let mut retired = self.retired.lock().expect("retired lock");
        if retired.is_some() {
            drop(retired);
            drop(spent);
        } else {
            *retired = Some(spent);
            drop(retired);
            tokio::spawn(self.clone().recycle());
        }
    }

    /// Tears down the retired instance now. A request calls this before it
    /// takes an instance: under load, requests follow each other before the
    /// teardown task runs, and an instance freed right before the next one
    /// is made lets that one reuse its pool slot while it is still in the
    /// CPU's caches (HTTP/2 with many streams served 30 % fewer requests
    /// when every teardown waited for the task).
    fn tear_down_spent(&self) {
        let spent = self.retired.lock().expect("retired lock").take();
        drop(spent);
    }

    async fn recycle(self: Arc<Self>) {
        self.tear_down_spent();
        if self.warm.lock().expect("warm list lock").len() >= WARM_PER_APP {
            return;
        }
        let pre = self
            .pre
            .get()
            .expect("an app that served a request is loaded");
        let Some(warm) =
            Warm::make(&self.slots, self.new_store(), pre, self.limits.wall_time).await
        else {
            return;
        };
        // A request that started waiting while this one was made gets its
        // permit instead: it is not looking at the warm list any more.
        if self.slots.contended() {
            return;
        }
        let mut ready = self.warm.lock().expect("warm list lock");
        if ready.len() < WARM_PER_APP {
            ready.push(warm);
        }
    }

    fn new_store(&self) -> Store<RequestState> {
        let state = RequestState::new(
            &self.name,
            &self.tail,
            self.limits.memory,
            self.limits.cpu_time,
            HostCtxs {
                fetch: FetchCtx::new(
                    self.fetch.0.clone(),
                    self.fetch.1.clone(),
                    self.cache.clone(),
                    self.name.clone(),
                ),
                cache: CacheCtx::new(self.cache.clone(), self.name.clone()),
                rate_limits: RateLimitCtx::new(self.rate_limits.clone()),
                jwt: JwtCtx::new(self.jwt.clone()),
                kv: KvCtx::new(self.kv.clone()),
                vars: VarsCtx::new(self.vars.clone()),
                client: ClientCtx::new(self.geo.clone()),
            },
        );
        let pre = self
            .pre
            .get()
            .expect("ensure_loaded runs before any store is made");
        let mut store = Store::new(pre.engine(), state);
        store.limiter(|state| &mut state.memory);
        // Deadline one tick ahead: the callback runs once per tick in which
        // Wasm executes, stops a guest past its CPU budget (which counts
        // every slice in full, see cpu.rs), and otherwise yields so other
        // requests on this worker thread make progress.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|ctx| {
            let state = ctx.data();
            Ok(if state.cpu.used_at_tick() < state.cpu_budget {
                UpdateDeadline::Yield(1)
            } else {
                UpdateDeadline::Interrupt
            })
        });
        store
    }

    /// Names the cause of a guest error: a limit the host enforced, or the
    /// guest's own trap.
    fn classify(&self, err: &wasmtime::Error, state: &RequestState) -> Failure {
        if matches!(err.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
            Failure::CpuTime {
                limit: self.limits.cpu_time,
                used: state.cpu.used(),
            }
        } else if state.memory.hit {
            Failure::Memory(self.limits.memory)
        } else if matches!(
            err.downcast_ref::<ResourceTableError>(),
            Some(ResourceTableError::Full)
        ) {
            Failure::Resources(MAX_RESOURCES)
        } else {
            // One line for the log: the trap itself. The Wasm backtrace
            // (with guest-chosen function names) is multi-line and goes to
            // the debug log.
            tracing::debug!(
                app = &*self.name,
                "guest error with backtrace: {}",
                printable_capped(format_args!("{err:?}"), 16 << 10)
            );
            Failure::Trap(printable_capped(format_args!("{}", err.root_cause()), 512))
        }
    }

    fn log_failure(&self, request_id: RequestId, failure: &Failure) {
        tracing::warn!(
            app = &*self.name,
            request_id = %request_id,
            status = failure.status().as_u16(),
            "request failed: {failure}"
        );
    }
}

async fn run_guest<B>(
    instance: &mut Instance,
    pre: &HandlerPre<RequestState>,
    request: http::Request<LimitedBody<B>>,
    scheme: Scheme,
    response_tx: oneshot::Sender<GuestResponse>,
) -> wasmtime::Result<()>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    let handler = instance.handler(pre).await?;
    let store = &mut instance.store;
    let mut http = store.data_mut().http();
    let request = http.new_incoming_request(scheme, request)?;
    let response_out = http.new_response_outparam(response_tx)?;
    handler
        .wasi_http_incoming_handler()
        .call_handle(&mut *store, request, response_out)
        .await
}

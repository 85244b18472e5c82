use crate::app::{App, AppServices};
use crate::instance::InstancePool;
use crate::limits::{
    MAX_CORE_INSTANCES_PER_COMPONENT, MAX_MEMORIES_PER_COMPONENT, MAX_TABLES_PER_COMPONENT,
};
use crate::precompile::{PrecompileCache, Provenance};
use crate::state::RequestState;
use crate::tail::{TailEvent, Tails};
use crate::{Limits, LoadError};
use outpost_host::Services;
use outpost_host::bindings::HandlerPre;
use outpost_host::cache::{CacheCtx, CacheRules};
use outpost_host::client::ClientCtx;
use outpost_host::edge_rules::{EdgeRuleSpec, EdgeRules};
use outpost_host::fetch::{BackendSpec, OutboundRule};
use outpost_host::jwt::{JwtCtx, JwtPolicies, JwtSpec};
use outpost_host::kv::KvView;
use outpost_host::ratelimit::{RateLimitCtx, RateLimitSpec};
use outpost_host::vars::VarsCtx;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::component::{Component, HasData, HasSelf, Linker};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often a running guest's CPU budget is checked and the guest yields to
/// other requests on its worker thread: one engine-wide ticker thread
/// advances the epoch this often.
const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Dirty linear-memory bytes per pool slot reset in place (and kept
/// resident) after a request, instead of decommitted.
const KEEP_RESIDENT_MEMORY: usize = 1 << 20;

/// Table bytes per pool slot reset in place after a request.
const KEEP_RESIDENT_TABLES: usize = 64 << 10;

/// Settings of the process-wide runtime, chosen by the operator.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Instances that may exist at once across all apps. Sizes the pooling
    /// allocator; requests beyond it wait for a free slot.
    pub max_instances: u32,
    /// How long a request may wait for an instance (its app's cap or the
    /// pool) before it is refused with 503.
    pub instance_wait: Duration,
    /// The largest memory limit any app may be given, in bytes.
    pub max_memory: u64,
    /// The largest component file accepted, in bytes.
    pub max_component_size: u64,
    /// Where precompiled artifacts are kept.
    pub cache_dir: PathBuf,
    /// Apps already in the precompiled cache are mapped on their first
    /// request instead of at load: start-up and memory stay small on a node
    /// with many apps. Apps not in the cache are still compiled and checked
    /// at load.
    pub lazy_load: bool,
}

impl RuntimeConfig {
    /// Defaults with the given cache directory.
    pub fn new(cache_dir: PathBuf) -> Self {
        Self {
            max_instances: 1000,
            instance_wait: Duration::from_secs(2),
            max_memory: 1 << 30,
            max_component_size: 64 << 20,
            cache_dir,
            lazy_load: false,
        }
    }
}

/// What to load as one app.
#[derive(Clone, Debug)]
pub struct AppSpec {
    /// The app's name, used in logs.
    pub name: String,
    /// The component file.
    pub component: PathBuf,
    /// Per-request limits.
    pub limits: Limits,
    /// Where its handlers may send requests (`allowed_outbound_hosts`).
    pub outbound: Vec<OutboundRule>,
    /// Its named backends.
    pub backends: Vec<BackendSpec>,
    /// Its edge cache (`[cache]`).
    pub cache: CacheRules,
    /// Its rate-limit policies (`[rate_limits.NAME]`).
    pub rate_limits: Vec<RateLimitSpec>,
    /// Its JWT policies (`[jwt.NAME]`).
    pub jwt: Vec<JwtSpec>,
    /// Its KV buckets besides `default` (`[kv] buckets`).
    pub kv_buckets: Vec<String>,
    /// Its `[[edge]]` rules.
    pub edge: Vec<EdgeRuleSpec>,
    /// Its `[variables]`.
    pub variables: BTreeMap<String, String>,
}

/// The process-wide execution environment: engine, linker, epoch ticker and
/// precompiled cache.
pub struct Runtime {
    shared: Arc<Shared>,
    pool: InstancePool,
    tails: Tails,
    services: Services,
    config: RuntimeConfig,
    ticker_stop: Arc<AtomicBool>,
}

/// What lazily loaded apps need from the runtime on their first request.
struct Shared {
    engine: Engine,
    linker: Linker<RequestState>,
    cache: PrecompileCache,
}

impl Runtime {
    /// Builds the engine and starts the epoch ticker. Apps reach the
    /// node's host `services` through their policies.
    pub fn new(config: RuntimeConfig, services: Services) -> anyhow::Result<Self> {
        let engine = Engine::new(&engine_config(&config))
            .map_err(|err| anyhow::anyhow!("cannot create the wasmtime engine: {err:#}"))?;
        let mut linker = Linker::new(&engine);
        link_world(&mut linker)?;
        let cache = PrecompileCache::new(config.cache_dir.clone(), &engine)?;
        let ticker_stop = Arc::new(AtomicBool::new(false));
        spawn_epoch_ticker(engine.clone(), ticker_stop.clone())?;
        Ok(Self {
            shared: Arc::new(Shared {
                engine,
                linker,
                cache,
            }),
            pool: InstancePool::new(config.max_instances as usize, config.instance_wait),
            tails: Tails::default(),
            services,
            config,
            ticker_stop,
        })
    }

    /// The node's host services.
    pub fn services(&self) -> &Services {
        &self.services
    }

    /// A live stream of `app`'s request lines and guest output (JSON
    /// events), across its versions. Events are dropped, not queued, for a
    /// listener that falls far behind.
    pub fn tail(&self, app: &str) -> tokio::sync::broadcast::Receiver<TailEvent> {
        self.tails.of(app).subscribe()
    }

    /// Compiles (or finds in the cache), links and type-checks a component.
    /// Nothing here happens again per request.
    pub fn load_app(&self, spec: &AppSpec) -> Result<(App, Provenance), LoadError> {
        let path = &spec.component;
        let bytes = self.read_component(path)?;
        let mut limits = spec.limits.clone();
        limits.memory = limits.memory.min(self.config.max_memory);
        let pool = self.pool.clone();
        let tail = self.tails.of(&spec.name);
        let fetch = (
            self.services.fetch.clone(),
            Arc::new(self.services.fetch.policy(
                spec.outbound.clone(),
                limits.fetch.clone(),
                &spec.backends,
            )),
        );

        let cache = Arc::new(self.services.cache.policy(&spec.name, spec.cache.clone()));
        let rate_limits = Arc::new(
            self.services
                .rate_limits
                .policy(&spec.name, &spec.rate_limits),
        );
        let vars = Arc::new(
            self.services
                .vars
                .policy(&spec.name, spec.variables.clone()),
        );
        let jwt = Arc::new(JwtPolicies::new(&spec.jwt, &self.services.jwks, &vars));
        let services = AppServices {
            edge: EdgeRules::resolve(&spec.edge, &jwt, &rate_limits),
            fetch,
            cache,
            rate_limits,
            jwt,
            kv: Arc::new(self.services.kv.policy(&spec.name, &spec.kv_buckets)),
            vars,
            geo: self.services.geo.clone(),
        };
        let artifact = self.shared.cache.artifact_for(path, &bytes)?;
        if self.config.lazy_load && artifact.exists() {
            let shared = self.shared.clone();
            let path = path.clone();
            let loader = Box::new(move || {
                let component = shared
                    .cache
                    .load_artifact(&shared.engine, &path, &artifact)?;
                shared.link(&path, &component)
            });
            let app = App::new(&spec.name, Err(loader), limits, services, pool, tail);
            return Ok((app, Provenance::Deferred));
        }
        let (component, provenance) =
            self.shared
                .cache
                .load(&self.shared.engine, path, &bytes, &artifact)?;
        let pre = self.shared.link(path, &component)?;
        Ok((
            App::new(&spec.name, Ok(pre), limits, services, pool, tail),
            provenance,
        ))
    }
}

impl Runtime {
    /// Checks that a component would load: size, compilation (cached like
    /// any other), imports within the handler world, the handler export.
    /// Always all of it, whatever `lazy_load` says: this is how uploads are
    /// validated before they are stored.
    pub fn validate(&self, path: &Path) -> Result<(), LoadError> {
        let bytes = self.read_component(path)?;
        let artifact = self.shared.cache.artifact_for(path, &bytes)?;
        let (component, _) =
            self.shared
                .cache
                .load(&self.shared.engine, path, &bytes, &artifact)?;
        self.shared.link(path, &component).map(drop)
    }

    fn read_component(&self, path: &Path) -> Result<Vec<u8>, LoadError> {
        let read_error = |source| LoadError::Read {
            path: path.to_owned(),
            source,
        };
        let size = std::fs::metadata(path).map_err(read_error)?.len();
        if size > self.config.max_component_size {
            return Err(LoadError::TooLarge {
                path: path.to_owned(),
                size,
                limit: self.config.max_component_size,
            });
        }
        std::fs::read(path).map_err(read_error)
    }
}

impl Shared {
    /// Resolves the component's imports against the host and checks that it
    /// is a `wasi:http` handler.
    fn link(
        &self,
        path: &Path,
        component: &Component,
    ) -> Result<HandlerPre<RequestState>, LoadError> {
        let instance_pre =
            self.linker
                .instantiate_pre(component)
                .map_err(|err| LoadError::Imports {
                    path: path.to_owned(),
                    reason: format!("{err:#}"),
                })?;
        HandlerPre::new(instance_pre).map_err(|err| LoadError::Exports {
            path: path.to_owned(),
            reason: format!("{err:#}"),
        })
    }
}

/// Links every interface the `outpost:edge/handler` world imports: WASI p2
/// (sockets linked but denied, no preopens: see [`RequestState`]) and
/// `wasi:http`, whose outgoing requests go to the app's fetch context.
fn link_world(linker: &mut Linker<RequestState>) -> anyhow::Result<()> {
    use outpost_host::bindings::outpost::edge;
    use outpost_host::bindings::wasi::config;
    wasmtime_wasi::p2::add_to_linker_async(linker)
        .and_then(|()| wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker))
        .and_then(|()| {
            edge::cache::add_to_linker::<_, HasSelf<CacheCtx>>(linker, |state| &mut state.cache)
        })
        .and_then(|()| {
            edge::ratelimit::add_to_linker::<_, HasSelf<RateLimitCtx>>(linker, |state| {
                &mut state.rate_limits
            })
        })
        .and_then(|()| {
            edge::jwt::add_to_linker::<_, HasSelf<JwtCtx>>(linker, |state| &mut state.jwt)
        })
        .and_then(|()| link_kv(linker))
        .and_then(|()| {
            config::store::add_to_linker::<_, HasSelf<VarsCtx>>(linker, |state| &mut state.vars)
        })
        .and_then(|()| {
            edge::client::add_to_linker::<_, HasSelf<ClientCtx>>(linker, |state| &mut state.client)
        })
        .map_err(|err| anyhow::anyhow!("cannot link host interfaces: {err:#}"))
}

/// What KV host functions get from the request's state: its KV context
/// and its resource table (buckets and CAS handles are resources).
struct KvData;

impl HasData for KvData {
    type Data<'a> = KvView<'a>;
}

fn kv_view(state: &mut RequestState) -> KvView<'_> {
    let (kv, table) = state.kv_and_table();
    KvView { ctx: kv, table }
}

/// Links `wasi:keyvalue` (store, atomics, batch) and `outpost:edge/kv`.
fn link_kv(linker: &mut Linker<RequestState>) -> wasmtime::Result<()> {
    use outpost_host::bindings::outpost::edge;
    use outpost_host::bindings::wasi::keyvalue;
    keyvalue::store::add_to_linker::<_, KvData>(linker, kv_view)?;
    keyvalue::atomics::add_to_linker::<_, KvData>(linker, kv_view)?;
    keyvalue::batch::add_to_linker::<_, KvData>(linker, kv_view)?;
    edge::kv::add_to_linker::<_, KvData>(linker, kv_view)?;
    Ok(())
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

fn engine_config(config: &RuntimeConfig) -> Config {
    let slots = config.max_instances;
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(slots)
        .max_core_instances_per_component(MAX_CORE_INSTANCES_PER_COMPONENT)
        .max_memories_per_component(MAX_MEMORIES_PER_COMPONENT)
        .max_tables_per_component(MAX_TABLES_PER_COMPONENT)
        // Totals for typical components (a handful of core instances, one
        // memory, a few tables); a pool of larger ones fills sooner.
        .total_core_instances(slots.saturating_mul(8))
        .total_memories(slots.saturating_mul(2))
        .total_tables(slots.saturating_mul(4))
        .total_stacks(slots)
        .max_unused_warm_slots(slots)
        .max_memory_size(usize::try_from(config.max_memory).unwrap_or(usize::MAX));
    // Resetting an instance's memory for the next request is the largest
    // per-request cost. With PAGEMAP_SCAN (Linux 6.7+) wasmtime finds the
    // pages the guest dirtied and copies their original contents back, keeping
    // them mapped: no madvise, no TLB shootdown, no page faults on reuse. The
    // budget caps how much stays resident per slot; dirtier instances are
    // decommitted as before. See BENCHMARKS.md for what each setting bought.
    pool.pagemap_scan(Enabled::Auto)
        .linear_memory_keep_resident(KEEP_RESIDENT_MEMORY)
        .table_keep_resident(KEEP_RESIDENT_TABLES);

    let mut engine = Config::new();
    engine
        .epoch_interruption(true)
        .memory_init_cow(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    engine
}

/// One thread for the whole engine. It holds an `Engine` clone (cheap, an
/// `Arc`) and stops when the runtime is dropped.
fn spawn_epoch_ticker(engine: Engine, stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    std::thread::Builder::new()
        .name("outpost-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                engine.increment_epoch();
            }
        })?;
    Ok(())
}

use crate::admin::{self, Admin};
use crate::config::NodeConfig;
use crate::front::{self, Front};
use crate::table::{AppTable, Origin, Served};
use anyhow::Context as _;
use outpost_core::{Provenance, Runtime};
use outpost_host::Services;
use socket2::{Domain, Protocol, Socket, Type};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

/// Pending connections the kernel queues per worker's listener.
const LISTEN_BACKLOG: i32 = 1024;

/// A node ready to serve: its runtime, its loaded apps, one bound listener
/// per worker, and the admin API's listener if it has one.
pub struct Node {
    runtime: Arc<Runtime>,
    table: Arc<AppTable>,
    front: Arc<Front>,
    listeners: Vec<std::net::TcpListener>,
    addr: SocketAddr,
    admin: Option<(Arc<Admin>, std::net::TcpListener)>,
}

impl Node {
    /// Builds the runtime, loads every app (compiling only what the
    /// precompiled cache lacks) and binds one listener per worker. Any bad app
    /// fails the whole start: a node never serves half its config.
    pub fn start(config: NodeConfig, workers: usize) -> anyhow::Result<Self> {
        let services = Services::new(
            &config.outbound,
            &config.cache,
            &config.rate_limit,
            &config.kv,
            &config.geo_databases,
        )
        .map_err(|err| anyhow::anyhow!(err))?;
        let runtime = Arc::new(Runtime::new(config.runtime.clone(), services)?);
        let mut apps = Vec::with_capacity(config.apps.len());
        for app_config in &config.apps {
            let started = Instant::now();
            let (app, provenance) = runtime.load_app(&app_config.spec())?;
            let how = match provenance {
                Provenance::Compiled => "compiled",
                Provenance::Cached => "loaded from the precompiled cache",
                Provenance::Deferred => "found in the precompiled cache, loads on first request",
            };
            tracing::info!(
                "app {}: {} {how} in {} ms",
                app_config.manifest.name,
                app_config.component.display(),
                started.elapsed().as_millis()
            );
            apps.push(Served {
                app,
                routes: app_config.manifest.routes.clone(),
                version: None,
                origin: Origin::Config,
            });
        }
        let table = Arc::new(AppTable::default());
        table
            .install_all(apps)
            .map_err(|conflict| anyhow::anyhow!(conflict))?;
        let listeners = bind_workers(config.listen, workers.max(1))
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listeners[0].local_addr()?;
        let admin_connections = config
            .admin
            .as_ref()
            .map_or(0, |admin| admin.max_connections);
        let front = Arc::new(Front::new(table.clone(), &config.http, admin_connections));
        let admin = match &config.admin {
            Some(admin_config) => {
                let admin = Admin::open(
                    admin_config,
                    &config.maxima,
                    runtime.clone(),
                    table.clone(),
                    front.clone(),
                )?;
                let listener =
                    std::net::TcpListener::bind(admin_config.listen).with_context(|| {
                        format!("cannot listen for the admin API on {}", admin_config.listen)
                    })?;
                listener.set_nonblocking(true)?;
                Some((Arc::new(admin), listener))
            }
            None => None,
        };
        // Deployed apps are in the table now: all of them count.
        front.fit_descriptors()?;
        Ok(Self {
            runtime,
            table,
            front,
            listeners,
            addr,
            admin,
        })
    }

    /// The apps this node serves. Installing into it swaps what requests
    /// reach, without dropping any (what `outpost dev` does on a rebuild).
    pub fn table(&self) -> Arc<AppTable> {
        self.table.clone()
    }

    /// The runtime that loads apps for this node.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.clone()
    }

    /// Where the admin API listens, if the node has one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
            .as_ref()
            .and_then(|(_, listener)| listener.local_addr().ok())
    }

    /// The address the listeners are bound to (with the real port when the
    /// config asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves on one thread per worker, each with its own single-threaded
    /// async runtime and its own `SO_REUSEPORT` listener: the kernel spreads
    /// connections over the workers, and a request never leaves the thread
    /// that accepted it. Returns once `shutdown` resolves and every worker has
    /// drained its in-flight requests.
    pub fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut threads = Vec::with_capacity(self.listeners.len());
        if let Some((admin, listener)) = self.admin {
            // Not joined: open event streams end with the process.
            spawn_serving(
                "outpost-admin".into(),
                listener,
                stop_rx.clone(),
                |listener, stopped| admin::serve(listener, admin, stopped),
            )?;
        }
        for (index, listener) in self.listeners.into_iter().enumerate() {
            let front = self.front.clone();
            threads.push(spawn_serving(
                format!("outpost-worker-{index}"),
                listener,
                stop_rx.clone(),
                |listener, stopped| front::serve(listener, front, stopped),
            )?);
        }
        let signals = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        signals.block_on(shutdown);
        let _ = stop_tx.send(true);
        for thread in threads {
            match thread.join() {
                Ok(result) => result?,
                Err(_) => anyhow::bail!("a worker thread panicked"),
            }
        }
        Ok(())
    }
}

/// A thread with its own single-threaded async runtime, running `serve` on
/// `listener` until `stop` turns true.
fn spawn_serving<F, Fut>(
    name: String,
    listener: std::net::TcpListener,
    mut stop: tokio::sync::watch::Receiver<bool>,
    serve: F,
) -> std::io::Result<std::thread::JoinHandle<anyhow::Result<()>>>
where
    F: FnOnce(tokio::net::TcpListener, Pin<Box<dyn Future<Output = ()>>>) -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    std::thread::Builder::new().name(name).spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            let stopped = Box::pin(async move {
                let _ = stop.wait_for(|stopped| *stopped).await;
            });
            serve(listener, stopped).await;
            anyhow::Ok(())
        })
    })
}

/// Binds `workers` listeners to one address with `SO_REUSEPORT`. A port in
/// use by anyone else is refused first: `SO_REUSEPORT` alone would let a
/// second node on the same port silently share (and steal) its traffic.
fn bind_workers(addr: SocketAddr, workers: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    if addr.port() != 0 {
        drop(std::net::TcpListener::bind(addr)?);
    }
    let first = bind_reuseport(addr)?;
    let addr = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..workers {
        listeners.push(bind_reuseport(addr)?);
    }
    Ok(listeners)
}

fn bind_reuseport(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

use crate::config::NodeConfig;
use crate::front;
use crate::router::Router;
use anyhow::Context as _;
use outpost_core::{App, AppSpec, Provenance, Runtime};
use socket2::{Domain, Protocol, Socket, Type};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// Pending connections the kernel queues per worker's listener.
const LISTEN_BACKLOG: i32 = 1024;

/// A node ready to serve: its runtime, its loaded apps and one bound
/// listener per worker.
pub struct Node {
    // Kept alive for the epoch ticker; apps hold the engine themselves.
    _runtime: Runtime,
    router: Arc<Router<App>>,
    listeners: Vec<std::net::TcpListener>,
    addr: SocketAddr,
}

impl Node {
    /// Builds the runtime, loads every app (compiling only what the
    /// precompiled cache lacks) and binds one listener per worker. Any bad app
    /// fails the whole start: a node never serves half its config.
    pub fn start(config: NodeConfig, workers: usize) -> anyhow::Result<Self> {
        let runtime = Runtime::new(config.runtime.clone())?;
        let mut routes = Vec::new();
        for app_config in &config.apps {
            let started = Instant::now();
            let spec = AppSpec {
                name: app_config.name.clone(),
                component: app_config.component.clone(),
                limits: app_config.limits.clone(),
            };
            let (app, provenance) = runtime.load_app(&spec)?;
            let how = match provenance {
                Provenance::Compiled => "compiled",
                Provenance::Cached => "loaded from the precompiled cache",
                Provenance::Deferred => "found in the precompiled cache, loads on first request",
            };
            tracing::info!(
                "app {}: {} {how} in {} ms",
                app_config.name,
                app_config.component.display(),
                started.elapsed().as_millis()
            );
            for route in &app_config.routes {
                routes.push((route.clone(), app.clone()));
            }
        }
        let listeners = bind_workers(config.listen, workers.max(1))
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listeners[0].local_addr()?;
        Ok(Self {
            _runtime: runtime,
            router: Arc::new(Router::new(routes)),
            listeners,
            addr,
        })
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
        for (index, listener) in self.listeners.into_iter().enumerate() {
            let router = self.router.clone();
            let mut stop = stop_rx.clone();
            let thread = std::thread::Builder::new()
                .name(format!("outpost-worker-{index}"))
                .spawn(move || -> anyhow::Result<()> {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    runtime.block_on(async move {
                        let listener = tokio::net::TcpListener::from_std(listener)?;
                        let stopped = async move {
                            let _ = stop.wait_for(|stopped| *stopped).await;
                        };
                        front::serve(listener, router, stopped).await;
                        anyhow::Ok(())
                    })
                })?;
            threads.push(thread);
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

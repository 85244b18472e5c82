use crate::config::NodeConfig;
use crate::front;
use crate::router::Router;
use anyhow::Context as _;
use outpost_core::{AppSpec, Provenance, Runtime};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpListener;

/// A running node: its runtime, its loaded apps and its bound listener.
pub struct Node {
    // Kept alive for the epoch ticker; apps hold the engine themselves.
    _runtime: Runtime,
    router: Arc<Router<outpost_core::App>>,
    listener: TcpListener,
}

impl Node {
    /// Builds the runtime, loads every app (compiling only what the
    /// precompiled cache lacks) and binds the listener. Any bad app fails the
    /// whole start: a node never serves half its config.
    pub async fn start(config: NodeConfig) -> anyhow::Result<Self> {
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
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        Ok(Self {
            _runtime: runtime,
            router: Arc::new(Router::new(routes)),
            listener,
        })
    }

    /// The address the listener is bound to (with the real port when the
    /// config asked for port 0).
    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        front::serve(self.listener, self.router, shutdown).await;
    }
}

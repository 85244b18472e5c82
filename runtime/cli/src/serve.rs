//! `outpost serve`: the node daemon.

use crate::style::out;
use outpost_host::fetch::{OutboundRule, PrivateAllowance};
use outpost_server::{Node, NodeConfig};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(clap::Args)]
pub(crate) struct ServeArgs {
    /// A wasi:http component to serve on every host and path.
    #[arg(required_unless_present = "config", conflicts_with = "config")]
    component: Option<PathBuf>,

    /// A node config (node.toml) with several apps and their routes, and
    /// the admin API.
    #[arg(long, env = "OUTPOST_CONFIG")]
    config: Option<PathBuf>,

    /// Address to listen on (port 0 picks a free port). Overrides `listen`
    /// in the config. [default: 127.0.0.1:8080]
    #[arg(long, env = "OUTPOST_LISTEN")]
    listen: Option<SocketAddr>,

    /// Address of the admin API. Overrides `admin.listen` in the config.
    #[arg(long, env = "OUTPOST_ADMIN_LISTEN", requires = "config")]
    admin_listen: Option<SocketAddr>,

    /// Worker threads, each with its own event loop and listener
    /// (SO_REUSEPORT). [default: the number of CPUs this process may use]
    #[arg(long, env = "OUTPOST_WORKERS", value_parser = clap::value_parser!(u16).range(1..))]
    workers: Option<u16>,

    /// Directory of precompiled components. Overrides `cache_dir` in the
    /// config. [default: $XDG_CACHE_HOME/outpost or ~/.cache/outpost]
    #[arg(long, env = "OUTPOST_CACHE_DIR")]
    cache_dir: Option<PathBuf>,

    /// Lets the component send requests to this origin
    /// (`scheme://host[:port]`, `*.` for subdomains, `:*` for any port);
    /// repeatable. Apps in a config say it with `allowed_outbound_hosts`.
    #[arg(long, value_name = "URL", value_parser = OutboundRule::parse, conflicts_with = "config")]
    allow_outbound: Vec<OutboundRule>,

    /// Lets outbound requests reach this private range (CIDR, e.g.
    /// 127.0.0.0/8); repeatable. A config says it with
    /// `[outbound] allow_private`.
    #[arg(long, value_name = "CIDR", value_parser = parse_range, conflicts_with = "config")]
    allow_private: Vec<PrivateAllowance>,
}

/// One `--allow-private` range.
pub(crate) fn parse_range(range: &str) -> Result<PrivateAllowance, String> {
    PrivateAllowance::parse(&[range])
}

pub(crate) fn run(args: ServeArgs) -> anyhow::Result<()> {
    let cache_dir = match args.cache_dir.clone() {
        Some(dir) => dir,
        None => default_cache_dir()?,
    };
    let mut config = match (&args.component, &args.config) {
        (Some(component), _) => {
            let mut config = NodeConfig::single(
                component.clone(),
                outpost_server::DEFAULT_LISTEN_ADDR,
                cache_dir,
                default_kv_path()?,
            );
            config.apps[0].manifest.outbound = args.allow_outbound;
            for range in args.allow_private {
                config.outbound.allow_private.extend(range);
            }
            config
        }
        (None, Some(path)) => {
            let mut config = NodeConfig::load(path, cache_dir)?;
            if let Some(dir) = args.cache_dir {
                config.runtime.cache_dir = dir;
            }
            config
        }
        (None, None) => unreachable!("clap requires a component or --config"),
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let (Some(listen), Some(admin)) = (args.admin_listen, config.admin.as_mut()) {
        admin.listen = listen;
    }
    let node = Node::start(config, workers(args.workers))?;
    // Scripts and tests wait for exactly these lines; `listening on` comes
    // last, when everything is up.
    if let Some(admin) = node.admin_addr() {
        out!("admin API on http://{admin}");
    }
    out!("listening on http://{}", node.local_addr());
    node.run(shutdown_signal())
}

pub(crate) fn workers(requested: Option<u16>) -> usize {
    requested.map_or_else(
        || std::thread::available_parallelism().map_or(1, usize::from),
        usize::from,
    )
}

/// Resolves on SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("installing a SIGTERM handler succeeds on Unix");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutting down");
}

/// `$XDG_CACHE_HOME/outpost`, else `~/.cache/outpost`. Never a directory
/// relative to wherever the node was started: the cache holds machine code
/// the node runs.
/// Where `outpost serve app.wasm` keeps its KV data: `$XDG_DATA_HOME/outpost`
/// (data, not cache: deleting a cache must not lose it).
fn default_kv_path() -> anyhow::Result<PathBuf> {
    let dir = crate::dirs::xdg("XDG_DATA_HOME", ".local/share").ok_or_else(|| {
        crate::exit::usage(
            "no directory for KV data: neither XDG_DATA_HOME nor HOME is set; \
             serve with --config and a node.toml whose [kv] path says where",
        )
    })?;
    Ok(dir.join("kv.redb"))
}

pub(crate) fn default_cache_dir() -> anyhow::Result<PathBuf> {
    crate::dirs::xdg("XDG_CACHE_HOME", ".cache").ok_or_else(|| {
        crate::exit::usage(
            "no directory for precompiled components: neither XDG_CACHE_HOME nor HOME is set; \
             give one with --cache-dir or OUTPOST_CACHE_DIR (or cache_dir in node.toml)",
        )
    })
}

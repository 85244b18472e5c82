//! The `outpost` command: a thin layer of clap commands over the runtime
//! libraries.

use clap::{Parser, Subcommand};
use outpost_server::{Node, NodeConfig};
use std::io::{IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// Outpost: serve WebAssembly HTTP handlers at the edge.
#[derive(Parser)]
#[command(name = "outpost", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve one component on every route, or the apps of a node config.
    Serve(ServeArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// A wasi:http component to serve on every host and path.
    #[arg(required_unless_present = "config", conflicts_with = "config")]
    component: Option<PathBuf>,

    /// A node config (node.toml) with several apps and their routes.
    #[arg(long, env = "OUTPOST_CONFIG")]
    config: Option<PathBuf>,

    /// Address to listen on (port 0 picks a free port). Overrides `listen`
    /// in the config. [default: 127.0.0.1:8080]
    #[arg(long, env = "OUTPOST_LISTEN")]
    listen: Option<SocketAddr>,

    /// Worker threads, each with its own event loop and listener
    /// (SO_REUSEPORT). [default: the number of CPUs this process may use]
    #[arg(long, env = "OUTPOST_WORKERS", value_parser = clap::value_parser!(u16).range(1..))]
    workers: Option<u16>,

    /// Directory of precompiled components. Overrides `cache_dir` in the
    /// config. [default: $XDG_CACHE_HOME/outpost or ~/.cache/outpost]
    #[arg(long, env = "OUTPOST_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let cache_dir = args.cache_dir.clone().unwrap_or_else(default_cache_dir);
    let mut config = match (&args.component, &args.config) {
        (Some(component), _) => NodeConfig::single(
            component.clone(),
            outpost_server::DEFAULT_LISTEN_ADDR,
            cache_dir,
        ),
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
    let workers = args.workers.map_or_else(
        || std::thread::available_parallelism().map_or(1, usize::from),
        usize::from,
    );
    let node = Node::start(config, workers)?;
    // Scripts and tests wait for exactly this line.
    println!("listening on http://{}", node.local_addr());
    std::io::stdout().flush()?;
    node.run(shutdown_signal())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
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

fn default_cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("outpost")
}

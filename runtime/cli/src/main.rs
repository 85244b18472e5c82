//! The `outpost` command: clap commands over the runtime libraries, for
//! handler authors (new, build, dev, deploy, versions, rollback, tail,
//! purge, secret) and operators (serve, token).
//!
//! Exit codes: 0 success; 1 the operation failed (build error, upload
//! rejected, node unreachable); 2 usage or configuration error (bad flags,
//! bad outpost.toml or node.toml); 3 the node refused the token (401/403).

mod dev;
mod dirs;
mod exit;
mod project;
mod remote;
mod serve;
mod style;

use clap::{Parser, Subcommand};
use std::io::IsTerminal as _;
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
    /// Create a handler project: Cargo.toml, src/lib.rs with a test,
    /// outpost.toml, .gitignore.
    New(project::NewArgs),
    /// Build the project's component (release, wasm32-wasip2).
    Build {
        /// The project directory.
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Build and serve the project locally with the production host code;
    /// rebuild and swap on every change.
    Dev(dev::DevArgs),
    /// Build, upload and activate the project on a node.
    Deploy(remote::DeployArgs),
    /// List an app's versions on a node.
    Versions(remote::VersionsArgs),
    /// Serve an earlier version of an app again.
    Rollback(remote::RollbackArgs),
    /// Stream an app's request log and guest output from a node.
    Tail(remote::TailArgs),
    /// Drop (or mark stale) an app's cached responses on a node.
    Purge(remote::PurgeArgs),
    /// Run a node: serve one component, or the apps of a node config.
    Serve(serve::ServeArgs),
    /// Admin tokens for node.toml.
    #[command(subcommand)]
    Token(TokenCommand),
    /// An app's secrets on a node (read by its handlers like variables).
    #[command(subcommand)]
    Secret(SecretCommand),
}

#[derive(Subcommand)]
enum SecretCommand {
    /// Set a secret: its value is read from stdin (never the command
    /// line), one trailing newline dropped. Handlers see it at their next
    /// request.
    Put(remote::SecretArgs),
    /// List an app's secrets, by name.
    List(remote::SecretListArgs),
    /// Delete a secret.
    Delete(remote::SecretArgs),
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Make a new random token: prints the secret (for the CLI) and the
    /// node.toml entry holding only its hash.
    New(remote::TokenArgs),
}

fn main() -> ExitCode {
    disable_error_backtraces();
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
        Command::New(args) => project::new(&args),
        Command::Build { dir } => project::Project::open(&dir)
            .and_then(|project| project.build())
            // The path alone on stdout, for scripts: `$(outpost build)`.
            .map(|component| style::out!("{}", component.display())),
        Command::Dev(args) => dev::run(&args),
        Command::Deploy(args) => remote::deploy(&args),
        Command::Versions(args) => remote::versions(&args),
        Command::Rollback(args) => remote::rollback(&args),
        Command::Tail(args) => remote::tail(&args),
        Command::Purge(args) => remote::purge(&args),
        Command::Serve(args) => serve::run(args),
        Command::Token(TokenCommand::New(args)) => remote::token_new(&args),
        Command::Secret(SecretCommand::Put(args)) => remote::secret_put(&args),
        Command::Secret(SecretCommand::List(args)) => remote::secret_list(&args),
        Command::Secret(SecretCommand::Delete(args)) => remote::secret_delete(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{} {err:#}", style::error("error:"));
            ExitCode::from(exit::code_of(&err))
        }
    }
}

/// With `RUST_BACKTRACE` set, anyhow (and so wasmtime) captures a backtrace
/// with every error, and printing one with `{:?}` resolves it: up to a
/// second of CPU in a debug build. A guest can make the host print errors
/// at will (wasi:io's `to-debug-string`), so errors carry no backtraces
/// unless the operator asks with `RUST_LIB_BACKTRACE`; panics keep theirs.
#[expect(
    unsafe_code,
    reason = "set_var runs first in main, before any other thread exists that could read the environment"
)]
fn disable_error_backtraces() {
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        // SAFETY: see the reason above.
        unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    }
}

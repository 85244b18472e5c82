//! Commands that talk to a node's admin API: deploy, versions, rollback,
//! tail, purge, secret; and `token new`, which makes tokens for it.

use crate::exit::{self, AUTH, CliError};
use crate::project::Project;
use crate::style::{self, out};
use anyhow::Context as _;
use base64::Engine as _;
use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body::{Body, Frame};
use http_body_util::{BodyExt as _, Empty, Full, combinators::BoxBody};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use outpost_core::{Limits, printable};
use outpost_server::MANIFEST_HEADER;
use outpost_store::AppName;
use serde_json::Value;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

/// Where a node is and how to get in.
#[derive(clap::Args)]
pub(crate) struct RemoteArgs {
    /// The node's admin API, e.g. http://127.0.0.1:8081. [default: `remote`
    /// in the CLI config file]
    #[arg(long, env = "OUTPOST_REMOTE")]
    remote: Option<String>,
    /// An admin token. [default: `token` in the CLI config file,
    /// $XDG_CONFIG_HOME/outpost/config.toml or ~/.config/outpost/config.toml]
    #[arg(long, env = "OUTPOST_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(clap::Args)]
pub(crate) struct DeployArgs {
    /// The project directory.
    #[arg(default_value = ".")]
    dir: PathBuf,
    #[command(flatten)]
    remote: RemoteArgs,
}

#[derive(clap::Args)]
pub(crate) struct VersionsArgs {
    /// The app. [default: the name in ./outpost.toml]
    app: Option<String>,
    #[command(flatten)]
    remote: RemoteArgs,
    /// Print the node's JSON answer.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub(crate) struct RollbackArgs {
    /// The app. [default: the name in ./outpost.toml]
    app: Option<String>,
    /// The version to serve. [default: the one before the active one]
    #[arg(long)]
    to: Option<u64>,
    #[command(flatten)]
    remote: RemoteArgs,
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("selector").required(true).multiple(true).args(["url", "tag", "prefix", "all"])))]
pub(crate) struct PurgeArgs {
    /// The app. [default: the name in ./outpost.toml]
    app: Option<String>,
    /// An exact URL: absolute (that host only) or a path with its query
    /// (every host of the app). Repeatable.
    #[arg(long)]
    url: Vec<String>,
    /// A tag from the responses' Cache-Tag or Surrogate-Key. Repeatable.
    #[arg(long)]
    tag: Vec<String>,
    /// A URL prefix, absolute or a path. Repeatable.
    #[arg(long)]
    prefix: Vec<String>,
    /// Everything the app has stored.
    #[arg(long)]
    all: bool,
    /// Mark stale instead of dropping: stale-while-revalidate and
    /// stale-if-error still apply.
    #[arg(long)]
    soft: bool,
    #[command(flatten)]
    remote: RemoteArgs,
}

#[derive(clap::Args)]
pub(crate) struct TailArgs {
    /// The app. [default: the name in ./outpost.toml]
    app: Option<String>,
    #[command(flatten)]
    remote: RemoteArgs,
    /// Print each event as a JSON line.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub(crate) struct SecretArgs {
    /// The app.
    app: String,
    /// The secret's name: lowercase letters, digits and underscores.
    name: String,
    #[command(flatten)]
    remote: RemoteArgs,
}

#[derive(clap::Args)]
pub(crate) struct SecretListArgs {
    /// The app. [default: the name in ./outpost.toml]
    app: Option<String>,
    #[command(flatten)]
    remote: RemoteArgs,
}

#[derive(clap::Args)]
pub(crate) struct TokenArgs {
    /// A name for the token, shown in the audit log.
    #[arg(long)]
    name: String,
    /// What it may do: read, deploy, purge.
    #[arg(long, value_delimiter = ',', default_value = "read,deploy")]
    scopes: Vec<String>,
}

pub(crate) fn deploy(args: &DeployArgs) -> anyhow::Result<()> {
    let project = Project::open(&args.dir)?;
    // The node checks the limits against its own maxima.
    let manifest = project.manifest(&Limits::unbounded())?;
    let manifest_text = std::fs::read_to_string(project.dir.join(outpost_server::MANIFEST_FILE))?;
    let node = Node::connect(&args.remote)?;
    let component = project.build()?;
    let bytes = Bytes::from(
        std::fs::read(&component)
            .with_context(|| format!("cannot read {}", component.display()))?,
    );
    let size = bytes.len();
    let request = node
        .request(
            Method::POST,
            &format!("/v1/apps/{}/versions", manifest.name),
        )
        .header(
            MANIFEST_HEADER,
            base64::engine::general_purpose::STANDARD.encode(manifest_text),
        )
        .header(header::CONTENT_TYPE, "application/wasm")
        .header(header::CONTENT_LENGTH, size)
        .body(BoxBody::new(Upload::new(bytes)))?;
    let uploaded = node.send(request)?;
    let version = uploaded["version"]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("the node's answer has no version number: {uploaded}"))?;
    let activated = node
        .send(
            node.request(
                Method::POST,
                &format!("/v1/apps/{}/versions/{version}/activate", manifest.name),
            )
            .body(empty())?,
        )
        .map_err(|err| {
            err.context(format!(
                "version {version} of {} is uploaded but not active; `outpost rollback --to {version}` activates it",
                manifest.name
            ))
        })?;
    let previous = activated["previous"]
        .as_u64()
        .map_or_else(|| "none".to_owned(), |previous| previous.to_string());
    out!(
        "{} {} version {} ({} bytes, sha256 {}) to {}; previous version {previous}",
        style::ok("deployed"),
        style::bold(&manifest.name),
        style::bold(&version.to_string()),
        size,
        short_sha(&uploaded["sha256"]),
        node.base
    );
    Ok(())
}

pub(crate) fn versions(args: &VersionsArgs) -> anyhow::Result<()> {
    let app = app_name(args.app.as_deref())?;
    let node = Node::connect(&args.remote)?;
    let answer = node.send(
        node.request(Method::GET, &format!("/v1/apps/{app}/versions"))
            .body(empty())?,
    )?;
    if args.json {
        out!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    out!(
        "{}",
        style::bold(&format!(
            "{:>8}  {:<14}  {:>10}  {:<20}  {}",
            "VERSION", "SHA256", "SIZE", "CREATED (UTC)", "BY"
        ))
    );
    for version in answer["versions"].as_array().into_iter().flatten() {
        let marker = if version["active"] == true {
            style::ok(" active")
        } else {
            String::new()
        };
        out!(
            "{:>8}  {:<14}  {:>10}  {:<20}  {}{marker}",
            version["version"].as_u64().unwrap_or_default(),
            short_sha(&version["sha256"]),
            version["size"].as_u64().unwrap_or_default(),
            format_time(version["created_unix_ms"].as_u64().unwrap_or_default()),
            version["created_by"].as_str().unwrap_or_default(),
        );
    }
    Ok(())
}

pub(crate) fn rollback(args: &RollbackArgs) -> anyhow::Result<()> {
    let app = app_name(args.app.as_deref())?;
    let node = Node::connect(&args.remote)?;
    let path = match args.to {
        Some(to) => format!("/v1/apps/{app}/rollback?to={to}"),
        None => format!("/v1/apps/{app}/rollback"),
    };
    let answer = node.send(node.request(Method::POST, &path).body(empty())?)?;
    out!(
        "{} {} to version {} (was {})",
        style::ok("rolled back"),
        style::bold(&app),
        answer["version"],
        answer["previous"]
    );
    Ok(())
}

pub(crate) fn purge(args: &PurgeArgs) -> anyhow::Result<()> {
    let app = app_name(args.app.as_deref())?;
    let node = Node::connect(&args.remote)?;
    let body = serde_json::json!({
        "urls": args.url,
        "tags": args.tag,
        "prefixes": args.prefix,
        "all": args.all,
        "soft": args.soft,
    });
    let request = node
        .request(Method::POST, &format!("/v1/apps/{app}/purge"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(full(body.to_string()))?;
    let answer = node.send(request)?;
    out!(
        "{} {} entries of {}{}",
        style::ok("purged"),
        answer["purged"],
        style::bold(&app),
        if args.soft {
            " (soft: marked stale)"
        } else {
            ""
        }
    );
    Ok(())
}

pub(crate) fn secret_put(args: &SecretArgs) -> anyhow::Result<()> {
    let app = app_name(Some(&args.app))?;
    secret_name(&args.name)?;
    let node = Node::connect(&args.remote)?;
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("value of secret {} (end with Enter):", args.name);
    }
    let mut value = String::new();
    if stdin.is_terminal() {
        stdin.read_line(&mut value)?;
    } else {
        std::io::Read::read_to_string(&mut stdin.lock(), &mut value)
            .context("the secret's value on stdin is not UTF-8 text")?;
    }
    let value = value.strip_suffix('\n').map_or(value.as_str(), |value| {
        value.strip_suffix('\r').unwrap_or(value)
    });
    let request = node
        .request(
            Method::PUT,
            &format!("/v1/apps/{app}/secrets/{}", args.name),
        )
        .body(full(value.to_owned()))?;
    node.send(request)?;
    out!(
        "{} secret {} of {}",
        style::ok("set"),
        style::bold(&args.name),
        style::bold(&app)
    );
    Ok(())
}

pub(crate) fn secret_list(args: &SecretListArgs) -> anyhow::Result<()> {
    let app = app_name(args.app.as_deref())?;
    let node = Node::connect(&args.remote)?;
    let answer = node.send(
        node.request(Method::GET, &format!("/v1/apps/{app}/secrets"))
            .body(empty())?,
    )?;
    for name in answer["secrets"].as_array().into_iter().flatten() {
        out!("{}", name.as_str().unwrap_or_default());
    }
    Ok(())
}

pub(crate) fn secret_delete(args: &SecretArgs) -> anyhow::Result<()> {
    let app = app_name(Some(&args.app))?;
    secret_name(&args.name)?;
    let node = Node::connect(&args.remote)?;
    let request = node
        .request(
            Method::DELETE,
            &format!("/v1/apps/{app}/secrets/{}", args.name),
        )
        .body(empty())?;
    node.send(request)?;
    out!(
        "{} secret {} of {}",
        style::ok("deleted"),
        style::bold(&args.name),
        style::bold(&app)
    );
    Ok(())
}

/// Checks a secret's name before it goes into a URL.
fn secret_name(name: &str) -> anyhow::Result<()> {
    outpost_store::VarName::parse(name)
        .map(drop)
        .map_err(|err| exit::usage(err.to_string()))
}

pub(crate) fn tail(args: &TailArgs) -> anyhow::Result<()> {
    let app = app_name(args.app.as_deref())?;
    let node = Node::connect(&args.remote)?;
    let request = node
        .request(Method::GET, &format!("/v1/apps/{app}/tail"))
        .body(empty())?;
    node.runtime.block_on(async {
        let response = node
            .client
            .request(request)
            .await
            .map_err(|err| node.unreachable(&err))?;
        if !response.status().is_success() {
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            return Err(node.refused(status, &body));
        }
        eprintln!(
            "{} {app} on {} (Ctrl-C to stop)",
            style::ok("tailing"),
            node.base
        );
        let mut body = response.into_body();
        let mut pending = String::new();
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame?.into_data() else {
                continue;
            };
            pending.push_str(&String::from_utf8_lossy(&data));
            while let Some(end) = pending.find("\n\n") {
                let event: String = pending.drain(..end + 2).collect();
                for line in event.lines() {
                    if let Some(data) = line.strip_prefix("data: ") {
                        print_event(data, args.json);
                    }
                }
            }
        }
        anyhow::Ok(())
    })
}

fn print_event(data: &str, json: bool) {
    if json {
        out!("{data}");
    } else if let Ok(event) = serde_json::from_str::<Value>(data) {
        let id = event["request_id"].as_str().unwrap_or_default();
        match event["type"].as_str() {
            Some("request") => {
                let status = event["status"].as_u64().unwrap_or_default();
                let status = if status >= 500 {
                    style::error(&status.to_string())
                } else {
                    style::ok(&status.to_string())
                };
                out!(
                    "{} {} {} {status} {:.2} ms",
                    style::dim(&printable(id)),
                    printable(event["method"].as_str().unwrap_or_default()),
                    printable(event["path"].as_str().unwrap_or_default()),
                    event["duration_us"].as_f64().unwrap_or_default() / 1000.0
                );
            }
            // Escaped again here: whatever the node sends, a guest's output
            // never reaches the terminal as control sequences.
            Some("log") => out!(
                "{} {}: {}",
                style::dim(&printable(id)),
                printable(event["stream"].as_str().unwrap_or_default()),
                printable(event["line"].as_str().unwrap_or_default())
            ),
            _ => out!("{}", printable(data)),
        }
    } else {
        out!("{}", printable(data));
    }
}

pub(crate) fn token_new(args: &TokenArgs) -> anyhow::Result<()> {
    for scope in &args.scopes {
        if !["read", "deploy", "purge"].contains(&scope.as_str()) {
            return Err(exit::usage(format!(
                "unknown scope {scope:?}; use read, deploy or purge"
            )));
        }
    }
    let mut secret = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| std::io::Read::read_exact(&mut random, &mut secret))
        .context("cannot read /dev/urandom")?;
    let token = format!("op_{}", outpost_host::hex(&secret));
    let hash = outpost_store::sha256_hex(token.as_bytes());
    let scopes: Vec<String> = args
        .scopes
        .iter()
        .map(|scope| format!("{scope:?}"))
        .collect();
    out!("token (give it to the CLI as --token or OUTPOST_TOKEN; it is not stored anywhere):");
    out!("  {token}");
    out!("");
    out!("node.toml entry (only the hash):");
    out!("  [[admin.tokens]]");
    out!("  name = {:?}", args.name);
    out!("  sha256 = \"{hash}\"");
    out!("  scopes = [{}]", scopes.join(", "));
    Ok(())
}

/// The first 12 hex digits of a sha256 in a node's answer, as git shows
/// commits.
fn short_sha(sha256: &Value) -> &str {
    let sha256 = sha256.as_str().unwrap_or_default();
    sha256.get(..12).unwrap_or(sha256)
}

/// The app named on the command line, or the one of ./outpost.toml.
fn app_name(app: Option<&str>) -> anyhow::Result<AppName> {
    match app {
        Some(app) => Ok(AppName::parse(app).map_err(|err| exit::usage(err.to_string()))?),
        None => Ok(Project::open(Path::new("."))
            .map_err(|_| exit::usage("name the app, or run this in its project directory"))?
            .manifest(&Limits::unbounded())?
            .name),
    }
}

/// `remote` and `token` from the CLI config file.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CliConfig {
    remote: Option<String>,
    token: Option<String>,
}

fn cli_config() -> anyhow::Result<CliConfig> {
    let Some(dir) = crate::dirs::xdg("XDG_CONFIG_HOME", ".config") else {
        return Ok(CliConfig::default());
    };
    let path = dir.join("config.toml");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            toml::from_str(&text).map_err(|err| exit::usage(format!("{}: {err}", path.display())))
        }
        Err(_) => Ok(CliConfig::default()),
    }
}

/// A connection to one node's admin API.
struct Node {
    base: String,
    token: Option<String>,
    client: Client<HttpConnector, BoxBody<Bytes, std::io::Error>>,
    runtime: tokio::runtime::Runtime,
}

fn empty() -> BoxBody<Bytes, std::io::Error> {
    BoxBody::new(Empty::new().map_err(|never| match never {}))
}

fn full(bytes: impl Into<Bytes>) -> BoxBody<Bytes, std::io::Error> {
    BoxBody::new(Full::new(bytes.into()).map_err(|never| match never {}))
}

impl Node {
    fn connect(args: &RemoteArgs) -> anyhow::Result<Self> {
        let config = cli_config()?;
        let base = args.remote.clone().or(config.remote).ok_or_else(|| {
            exit::usage("which node? pass --remote http://HOST:8081 (or OUTPOST_REMOTE, or `remote` in ~/.config/outpost/config.toml)")
        })?;
        let base = base.trim_end_matches('/').to_owned();
        if !base.starts_with("http://") {
            return Err(exit::usage(format!(
                "--remote {base}: give an http:// URL of the admin API (it listens on loopback; reach remote nodes through an SSH tunnel)"
            )));
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let client = Client::builder(TokioExecutor::new()).build_http();
        Ok(Self {
            base,
            token: args.token.clone().or(config.token),
            client,
            runtime,
        })
    }

    fn request(&self, method: Method, path: &str) -> http::request::Builder {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        request
    }

    /// Sends a request and returns the JSON answer of a 2xx response.
    fn send(&self, request: Request<BoxBody<Bytes, std::io::Error>>) -> anyhow::Result<Value> {
        self.runtime.block_on(async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|err| self.unreachable(&err))?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            if !status.is_success() {
                return Err(self.refused(status, &body));
            }
            serde_json::from_slice(&body).context("the node's answer is not JSON")
        })
    }

    fn unreachable(&self, err: &dyn std::error::Error) -> anyhow::Error {
        let mut message = format!("cannot reach the node at {}", self.base);
        let mut source = err.source();
        while let Some(cause) = source {
            message = format!("{message}: {cause}");
            source = cause.source();
        }
        anyhow::anyhow!(message)
    }

    fn refused(&self, status: StatusCode, body: &[u8]) -> anyhow::Error {
        let reason = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|value| value["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
        let message = format!("the node answered {status}: {reason}");
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            CliError {
                code: AUTH,
                message,
            }
            .into()
        } else {
            anyhow::anyhow!(message)
        }
    }
}

/// An upload body that reports progress as hyper takes its chunks.
struct Upload {
    data: Bytes,
    sent: usize,
    progress: bool,
}

/// Upload chunk size: small enough for a smooth progress bar.
const CHUNK: usize = 64 * 1024;

impl Upload {
    fn new(data: Bytes) -> Self {
        Self {
            data,
            sent: 0,
            progress: std::io::stderr().is_terminal(),
        }
    }

    fn draw(&self) {
        let total = self.data.len().max(1);
        let width = 30;
        let done = self.sent * width / total;
        eprint!(
            "\ruploading [{}{}] {:>3}% {:.1}/{:.1} MiB",
            "=".repeat(done),
            " ".repeat(width - done),
            self.sent * 100 / total,
            self.sent as f64 / 1048576.0,
            total as f64 / 1048576.0
        );
        if self.sent == self.data.len() {
            eprintln!();
        }
    }
}

impl Body for Upload {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if self.sent == self.data.len() {
            return Poll::Ready(None);
        }
        let end = (self.sent + CHUNK).min(self.data.len());
        let chunk = self.data.slice(self.sent..end);
        self.sent = end;
        if self.progress {
            self.draw();
        } else if self.sent == self.data.len() {
            eprintln!("uploaded {} bytes", self.data.len());
        }
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.sent == self.data.len()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact((self.data.len() - self.sent) as u64)
    }
}

fn format_time(unix_ms: u64) -> String {
    // Civil date from days since the epoch (Howard Hinnant's algorithm):
    // no date crate for one column.
    let secs = unix_ms / 1000;
    let days = (secs / 86_400) as i64;
    let (hour, minute, second) = ((secs % 86_400) / 3600, (secs % 3600) / 60, secs % 60);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}:{second:02}")
}

//! The operator's `node.toml`: parsed into validated types, with errors that
//! name the file, the line and the key.

use crate::manifest::{AppManifest, RawApp};
use crate::router::Route;
use outpost_core::{AppSpec, Limits, RuntimeConfig};
use outpost_host::cache::{CacheConfig, CacheRules};
use outpost_host::client::TrustedProxies;
use outpost_host::fetch::{FetchConfig, FetchLimits, PrivateAllowance};
use outpost_host::kv::KvConfig;
use outpost_host::ratelimit::RateLimitConfig;
use outpost_store::AppName;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// A validated node configuration.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Where the HTTP front end listens.
    pub listen: SocketAddr,
    /// Deadlines and caps of client connections and request bodies.
    pub http: HttpConfig,
    /// Outbound requests: private ranges, trusted CAs, the pool.
    pub outbound: FetchConfig,
    /// The edge cache's node-wide budget.
    pub cache: CacheConfig,
    /// Rate limiting's node-wide bounds.
    pub rate_limit: RateLimitConfig,
    /// The KV store's file and bounds.
    pub kv: KvConfig,
    /// MaxMind databases for geo lookups (`[geo] databases`).
    pub geo_databases: Vec<PathBuf>,
    /// Settings of the process-wide runtime.
    pub runtime: RuntimeConfig,
    /// The most an app may ask for: a manifest above one is refused.
    pub maxima: Limits,
    /// The apps, sorted by name.
    pub apps: Vec<AppConfig>,
    /// The admin API and the app store behind it, if enabled.
    pub admin: Option<AdminConfig>,
}

/// The `[http]` section: every phase of a client connection has a deadline,
/// and connections and buffered bodies have caps. See the README's "Limits
/// and defaults" for what each defends.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// Open client connections per node; more are closed at once.
    pub max_connections: usize,
    /// Open client connections per client IP (IPv6: per /64).
    pub max_connections_per_ip: usize,
    /// From accept to the first bytes that tell HTTP/1.1 from HTTP/2.
    pub handshake_timeout: Duration,
    /// For a complete HTTP/1.1 request head, from when the connection is
    /// ready for it (detected, or the previous response sent).
    pub header_timeout: Duration,
    /// An HTTP/1.1 connection between requests, without a byte.
    pub keepalive_timeout: Duration,
    /// An HTTP/2 connection without an open stream; then GOAWAY.
    pub http2_idle_timeout: Duration,
    /// How often an HTTP/2 peer is pinged...
    pub http2_ping_interval: Duration,
    /// ...and how long it has to answer before the connection is closed.
    pub http2_ping_timeout: Duration,
    /// A response the client does not read for this long closes the
    /// connection (also the grace given a connection being closed).
    pub send_timeout: Duration,
    /// A request body with no bytes for this long gets 408; also the
    /// grace before `body_min_rate` applies.
    pub body_timeout: Duration,
    /// Bytes per second a request body must average after `body_timeout`
    /// (0: no minimum).
    pub body_min_rate: u64,
    /// Bodies up to this size are read before an instance is taken, so a
    /// client trickling one holds no instance.
    pub body_prebuffer: u64,
    /// Bytes of such bodies held at once across the node; past it,
    /// requests get 503.
    pub body_buffer_total: u64,
    /// After SIGTERM, how long in-flight requests have to finish.
    pub shutdown_timeout: Duration,
    /// Proxies whose `Forwarded` / `X-Forwarded-For` name the client.
    pub trusted_proxies: TrustedProxies,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_connections_per_ip: 1024,
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(15),
            http2_idle_timeout: Duration::from_secs(60),
            http2_ping_interval: Duration::from_secs(20),
            http2_ping_timeout: Duration::from_secs(10),
            send_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(10),
            body_min_rate: 1024,
            body_prebuffer: 64 << 10,
            body_buffer_total: 256 << 20,
            shutdown_timeout: Duration::from_secs(30),
            trusted_proxies: TrustedProxies::default(),
        }
    }
}

/// The `[admin]` section: where the admin API listens, who may use it, and
/// where deployed apps are stored.
#[derive(Clone, Debug)]
pub struct AdminConfig {
    /// Where the admin API listens (loopback by default).
    pub listen: SocketAddr,
    /// The app store's directory.
    pub state_dir: PathBuf,
    /// The largest component an upload may carry, in bytes.
    pub max_upload: u64,
    /// Who may call the API.
    pub tokens: Vec<AdminToken>,
    /// Open connections to the admin API; more are closed at once. The node
    /// keeps file descriptors in reserve for them.
    pub max_connections: usize,
    /// Uploads validated at once; more get 429.
    pub max_uploads: usize,
    /// How long validating (compiling) an upload may take before it is
    /// refused (422). wasmtime cannot stop a compile: one that runs past it
    /// keeps the compile lock until it ends, so later uploads wait (503).
    pub compile_timeout: Duration,
}

/// One admin token: stored as the sha256 of the secret, never the secret.
#[derive(Clone, Debug)]
pub struct AdminToken {
    /// A name for logs and the audit log (`ci`, `alice`).
    pub name: String,
    /// sha256 of the token, 32 bytes.
    pub sha256: [u8; 32],
    /// What it may do.
    pub scopes: Vec<Scope>,
}

/// What an admin token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// List apps, versions and stats; tail logs.
    Read,
    /// Upload, activate, roll back and delete apps.
    Deploy,
    /// Purge cached responses (the cache arrives with its own issue).
    Purge,
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Read => "read",
            Self::Deploy => "deploy",
            Self::Purge => "purge",
        })
    }
}

/// The default admin listener.
pub const DEFAULT_ADMIN_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8081);

/// The default and largest cap on uploaded components: the runtime's
/// component size cap.
const DEFAULT_MAX_UPLOAD_MIB: u64 = 64;

/// Default `admin.max_connections`.
pub const DEFAULT_ADMIN_MAX_CONNECTIONS: usize = 64;

/// One app of a node: its component and the same sections a manifest has
/// (its name is the key under `[apps]`).
#[derive(Clone, Debug)]
pub struct AppConfig {
    /// The component file, absolute or relative to the working directory.
    pub component: PathBuf,
    /// Its name, routes, limits and policies.
    pub manifest: AppManifest,
}

impl AppConfig {
    /// What the runtime loads for this app.
    pub fn spec(&self) -> AppSpec {
        self.manifest.spec(self.component.clone())
    }
}

/// The default listen address of `outpost serve`.
pub const DEFAULT_LISTEN_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8080);

impl NodeConfig {
    /// A node serving one component on every host and path: what
    /// `outpost serve app.wasm` runs, its KV store at `kv_path`.
    pub fn single(
        component: PathBuf,
        listen: SocketAddr,
        cache_dir: PathBuf,
        kv_path: PathBuf,
    ) -> Self {
        // The file's stem, made a valid app name (`raw_wasi_http.wasm`
        // serves as app `raw-wasi-http`).
        let stem = component
            .file_stem()
            .map(|stem| stem.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        let stem: String = stem
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(63)
            .collect();
        let name = AppName::parse(stem.trim_start_matches('-'))
            .unwrap_or_else(|_| AppName::parse("app").expect("\"app\" is a valid app name"));
        let maxima = Limits::node_maxima();
        Self {
            listen,
            http: HttpConfig::default(),
            outbound: FetchConfig::default(),
            cache: CacheConfig::default(),
            rate_limit: RateLimitConfig::default(),
            kv: KvConfig::at(kv_path),
            geo_databases: Vec::new(),
            runtime: RuntimeConfig::new(cache_dir),
            apps: vec![AppConfig {
                component,
                manifest: AppManifest {
                    name,
                    routes: vec![Route::parse("/").expect("\"/\" is a valid route")],
                    limits: Limits::defaults_within(&maxima),
                    outbound: Vec::new(),
                    backends: Vec::new(),
                    cache: CacheRules::default(),
                    rate_limits: Vec::new(),
                    jwt: Vec::new(),
                    kv_buckets: Vec::new(),
                    edge: Vec::new(),
                    variables: BTreeMap::new(),
                },
            }],
            maxima,
            admin: None,
        }
    }

    /// Reads and validates a node config file. `default_cache_dir` is used
    /// when the file does not set `cache_dir`.
    pub fn load(path: &Path, default_cache_dir: PathBuf) -> Result<Self, ConfigError> {
        let source = std::fs::read_to_string(path).map_err(|err| ConfigError {
            file: path.to_owned(),
            line: None,
            key: None,
            message: format!("cannot read: {err}"),
        })?;
        Self::parse(path, &source, default_cache_dir)
    }

    /// Validates a node config given as text; `path` is used in errors and to
    /// resolve relative paths.
    pub fn parse(
        path: &Path,
        source: &str,
        default_cache_dir: PathBuf,
    ) -> Result<Self, ConfigError> {
        let at = |span: std::ops::Range<usize>, key: String, message: String| ConfigError {
            file: path.to_owned(),
            line: Some(line_of(source, span.start)),
            key: Some(key),
            message,
        };
        let raw: RawNode = toml::from_str(source).map_err(|err| ConfigError {
            file: path.to_owned(),
            line: err.span().map(|span| line_of(source, span.start)),
            key: None,
            message: err.message().trim().to_owned(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));

        let listen = match &raw.listen {
            Some(listen) => listen.get_ref().parse().map_err(|_| {
                at(
                    listen.span(),
                    "listen".into(),
                    format!(
                        "{:?} is not an address; write it as \"127.0.0.1:8080\" or \"[::]:80\"",
                        listen.get_ref()
                    ),
                )
            })?,
            None => DEFAULT_LISTEN_ADDR,
        };

        let mut runtime = RuntimeConfig::new(match raw.cache_dir {
            Some(dir) => base.join(dir),
            None => default_cache_dir,
        });
        if let Some(max) = positive(&raw.max_instances, "max_instances", &at)? {
            runtime.max_instances = u32::try_from(max).unwrap_or(u32::MAX);
        }
        if let Some(wait) = positive(&raw.instance_wait_ms, "instance_wait_ms", &at)? {
            runtime.instance_wait = Duration::from_millis(wait);
        }
        let mut maxima = Limits::node_maxima();
        maxima.instances = (runtime.max_instances / 4).max(1);
        if let Some(max) = positive(&raw.max_instances_per_app, "max_instances_per_app", &at)? {
            if max > u64::from(runtime.max_instances) {
                let span = raw.max_instances_per_app.as_ref().expect("set").span();
                return Err(at(
                    span,
                    "max_instances_per_app".into(),
                    format!(
                        "{max} is more than max_instances ({}); an app cannot have more instances than the node",
                        runtime.max_instances
                    ),
                ));
            }
            maxima.instances = u32::try_from(max).unwrap_or(u32::MAX);
        }
        if let Some(max) = positive(&raw.max_cpu_ms, "max_cpu_ms", &at)? {
            maxima.cpu_time = Duration::from_millis(max);
        }
        if let Some(max) = positive(&raw.max_wall_ms, "max_wall_ms", &at)? {
            maxima.wall_time = Duration::from_millis(max);
        }
        if let Some(max) = positive(&raw.max_memory_mib, "max_memory_mib", &at)? {
            maxima.memory = max.saturating_mul(1 << 20);
        }
        if let Some(max) = positive(&raw.max_request_body_kib, "max_request_body_kib", &at)? {
            maxima.request_body = max.saturating_mul(1024);
        }
        runtime.max_memory = maxima.memory;
        let outbound = raw
            .outbound
            .map(|outbound| outbound.validate(base, &mut maxima.fetch, &at))
            .transpose()?
            .unwrap_or_default();
        let mut cache = CacheConfig::default();
        if let Some(raw_cache) = &raw.cache
            && let Some(mib) = positive(&raw_cache.memory_mib, "cache.memory_mib", &at)?
        {
            cache.memory = mib.saturating_mul(1 << 20);
        }
        let mut geo_databases = Vec::new();
        for database in raw.geo.iter().flat_map(|geo| &geo.databases) {
            let path = base.join(database.get_ref());
            if !path.is_file() {
                return Err(at(
                    database.span(),
                    "geo.databases".into(),
                    format!(
                        "{} is not a file; give the path of a .mmdb database (relative to this file)",
                        path.display()
                    ),
                ));
            }
            geo_databases.push(path);
        }
        let kv = raw
            .kv
            .map(|kv| kv.validate(base, &at))
            .transpose()?
            .unwrap_or_else(|| KvConfig::at(base.join("kv.redb")));
        let mut rate_limit = RateLimitConfig::default();
        if let Some(raw_rate_limit) = &raw.rate_limit
            && let Some(max) = positive(&raw_rate_limit.max_keys, "rate_limit.max_keys", &at)?
        {
            rate_limit.max_keys = usize::try_from(max).unwrap_or(usize::MAX);
        }
        let http = raw
            .http
            .map(|http| http.validate(&at))
            .transpose()?
            .unwrap_or_default();

        runtime.lazy_load = raw.lazy_load;
        let admin = raw
            .admin
            .map(|admin| admin.validate(base, &at))
            .transpose()?;
        if raw.apps.is_empty() && admin.is_none() {
            return Err(ConfigError {
                file: path.to_owned(),
                line: None,
                key: Some("apps".into()),
                message: "no apps configured and no [admin] to deploy them; add one:\n  [apps.hello]\n  component = \"hello.wasm\"\n  routes = [\"/\"]".into(),
            });
        }
        let mut apps = Vec::with_capacity(raw.apps.len());
        for (name, mut app) in raw.apps {
            let prefix = format!("apps.{name}.");
            for (field, span) in [
                ("schema", app.schema.take().map(|s| s.span())),
                ("name", app.name.take().map(|s| s.span())),
            ] {
                if let Some(span) = span {
                    return Err(at(
                        span,
                        format!("{prefix}{field}"),
                        format!(
                            "is for manifests (outpost.toml); an app here is named by its table, [apps.{name}]"
                        ),
                    ));
                }
            }
            let Some(component) = app.component.take() else {
                return Err(ConfigError {
                    file: path.to_owned(),
                    line: None,
                    key: Some(format!("{prefix}component")),
                    message: "missing; give the app's .wasm file, e.g. component = \"hello.wasm\""
                        .into(),
                });
            };
            let component_path = base.join(component.get_ref());
            if !component_path.is_file() {
                return Err(at(
                    component.span(),
                    format!("{prefix}component"),
                    format!(
                        "no such file {} (paths are relative to the config file)",
                        component_path.display()
                    ),
                ));
            }
            let checked = AppName::parse(&name).map_err(|err| ConfigError {
                file: path.to_owned(),
                line: None,
                key: Some(format!("apps.{name}")),
                message: err.to_string(),
            })?;
            let sections = app.sections(&prefix, &maxima, &at, || path.to_owned())?;
            apps.push(AppConfig {
                component: component_path,
                manifest: sections.named(checked),
            });
        }
        check_duplicate_routes(path, &apps)?;
        Ok(Self {
            listen,
            http,
            outbound,
            cache,
            rate_limit,
            kv,
            geo_databases,
            runtime,
            maxima,
            apps,
            admin,
        })
    }
}

fn check_duplicate_routes(path: &Path, apps: &[AppConfig]) -> Result<(), ConfigError> {
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    for app in apps.iter().map(|app| &app.manifest) {
        for route in &app.routes {
            if let Some(other) = seen.insert(route.to_string(), &app.name) {
                return Err(ConfigError {
                    file: path.to_owned(),
                    line: None,
                    key: Some(format!("apps.{}.routes", app.name)),
                    message: format!(
                        "route {route:?} is also claimed by app {other:?}; each route belongs to one app"
                    ),
                });
            }
        }
    }
    Ok(())
}

/// A config file is wrong. Displays as `FILE:LINE: KEY: what is wrong`.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub(crate) file: PathBuf,
    pub(crate) line: Option<usize>,
    pub(crate) key: Option<String>,
    pub(crate) message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": {key}")?;
        }
        write!(f, ": {}", self.message)
    }
}

pub(crate) fn line_of(source: &str, offset: usize) -> usize {
    source[..offset.min(source.len())].matches('\n').count() + 1
}

/// The value of an optional key that must be at least 1.
pub(crate) fn positive<T: Copy + Default + PartialEq>(
    value: &Option<Spanned<T>>,
    key: &str,
    at: &impl Fn(std::ops::Range<usize>, String, String) -> ConfigError,
) -> Result<Option<T>, ConfigError> {
    match value {
        Some(value) if *value.get_ref() == T::default() => {
            Err(at(value.span(), key.into(), "must be at least 1".into()))
        }
        Some(value) => Ok(Some(*value.get_ref())),
        None => Ok(None),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    /// Address of the HTTP front end.
    listen: Option<Spanned<String>>,
    /// Directory of precompiled artifacts.
    cache_dir: Option<PathBuf>,
    /// Instances that may exist at once (sizes the pooling allocator).
    max_instances: Option<Spanned<u64>>,
    /// How long a request may wait for an instance.
    instance_wait_ms: Option<Spanned<u64>>,
    /// The largest `limits.instances` of an app.
    max_instances_per_app: Option<Spanned<u64>>,
    /// The largest `limits.cpu_ms` of an app.
    max_cpu_ms: Option<Spanned<u64>>,
    /// The largest `limits.wall_ms` of an app.
    max_wall_ms: Option<Spanned<u64>>,
    /// The largest memory limit any app may have, in MiB.
    max_memory_mib: Option<Spanned<u64>>,
    /// The largest `limits.request_body_kib` of an app.
    max_request_body_kib: Option<Spanned<u64>>,
    http: Option<RawHttp>,
    outbound: Option<RawOutbound>,
    cache: Option<RawNodeCache>,
    rate_limit: Option<RawNodeRateLimit>,
    kv: Option<RawNodeKv>,
    geo: Option<RawGeo>,
    /// Map cached apps on their first request instead of at start.
    #[serde(default)]
    lazy_load: bool,
    #[serde(default)]
    apps: BTreeMap<String, RawApp>,
    admin: Option<RawAdmin>,
}

/// `[cache]`: the node's edge cache.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNodeCache {
    /// Bytes all apps' stored responses may take together, in MiB.
    memory_mib: Option<Spanned<u64>>,
}

/// `[kv]`: the KV store.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNodeKv {
    /// The store's file, relative to node.toml.
    path: Option<String>,
    /// The largest value, in MiB.
    max_value_mib: Option<Spanned<u64>>,
    /// The most one app may store, in MiB.
    max_app_mib: Option<Spanned<u64>>,
}

impl RawNodeKv {
    fn validate(
        self,
        base: &Path,
        at: &impl Fn(std::ops::Range<usize>, String, String) -> ConfigError,
    ) -> Result<KvConfig, ConfigError> {
        let mut kv = KvConfig::at(base.join(self.path.as_deref().unwrap_or("kv.redb")));
        if let Some(mib) = positive(&self.max_value_mib, "kv.max_value_mib", at)? {
            if mib > 100 {
                let span = self
                    .max_value_mib
                    .as_ref()
                    .map(Spanned::span)
                    .unwrap_or_default();
                return Err(at(
                    span,
                    "kv.max_value_mib".into(),
                    "give 1 to 100: a value is read whole into the guest's memory".into(),
                ));
            }
            kv.max_value_bytes = mib << 20;
        }
        if let Some(mib) = positive(&self.max_app_mib, "kv.max_app_mib", at)? {
            kv.max_app_bytes = mib.saturating_mul(1 << 20);
        }
        Ok(kv)
    }
}

/// `[geo]`: where clients are.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGeo {
    /// MaxMind-format databases (City or Country, ASN), read at start.
    #[serde(default)]
    databases: Vec<Spanned<String>>,
}

/// `[rate_limit]`: bounds of every app's rate limiting.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNodeRateLimit {
    /// Keys one policy tracks at most.
    max_keys: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutbound {
    #[serde(default)]
    allow_private: Vec<Spanned<String>>,
    ca_file: Option<Spanned<String>>,
    dns_timeout_ms: Option<Spanned<u64>>,
    idle_timeout_ms: Option<Spanned<u64>>,
    max_idle_per_origin: Option<Spanned<u64>>,
    max_connections_per_origin: Option<Spanned<u64>>,
    max_connect_timeout_ms: Option<Spanned<u64>>,
    max_first_byte_timeout_ms: Option<Spanned<u64>>,
    max_between_bytes_timeout_ms: Option<Spanned<u64>>,
    max_subrequests: Option<Spanned<u64>>,
    max_subrequest_concurrency: Option<Spanned<u64>>,
    max_outbound_body_mib: Option<Spanned<u64>>,
}

impl RawOutbound {
    /// The node's outbound settings; the per-app maxima go into `maxima`.
    fn validate(
        self,
        base: &Path,
        maxima: &mut FetchLimits,
        at: &impl Fn(std::ops::Range<usize>, String, String) -> ConfigError,
    ) -> Result<FetchConfig, ConfigError> {
        let mut config = FetchConfig::default();
        for range in &self.allow_private {
            let allowance = PrivateAllowance::parse(&[range.get_ref()])
                .map_err(|message| at(range.span(), "outbound.allow_private".into(), message))?;
            config.allow_private.extend(allowance);
        }
        if let Some(ca_file) = &self.ca_file {
            let path = base.join(ca_file.get_ref());
            config.extra_roots = read_ca_file(&path)
                .map_err(|message| at(ca_file.span(), "outbound.ca_file".into(), message))?;
        }
        for (value, key, into) in [
            (
                &self.dns_timeout_ms,
                "dns_timeout_ms",
                &mut config.dns_timeout,
            ),
            (
                &self.idle_timeout_ms,
                "idle_timeout_ms",
                &mut config.idle_timeout,
            ),
            (
                &self.max_connect_timeout_ms,
                "max_connect_timeout_ms",
                &mut maxima.connect_timeout,
            ),
            (
                &self.max_first_byte_timeout_ms,
                "max_first_byte_timeout_ms",
                &mut maxima.first_byte_timeout,
            ),
            (
                &self.max_between_bytes_timeout_ms,
                "max_between_bytes_timeout_ms",
                &mut maxima.between_bytes_timeout,
            ),
        ] {
            if let Some(ms) = positive(value, &format!("outbound.{key}"), at)? {
                *into = Duration::from_millis(ms);
            }
        }
        for (value, key, into) in [
            (
                &self.max_idle_per_origin,
                "max_idle_per_origin",
                &mut config.max_idle_per_origin,
            ),
            (
                &self.max_connections_per_origin,
                "max_connections_per_origin",
                &mut config.max_connections_per_origin,
            ),
        ] {
            if let Some(n) = positive(value, &format!("outbound.{key}"), at)? {
                *into = usize::try_from(n).unwrap_or(usize::MAX);
            }
        }
        for (value, key, into) in [
            (
                &self.max_subrequests,
                "max_subrequests",
                &mut maxima.subrequests,
            ),
            (
                &self.max_subrequest_concurrency,
                "max_subrequest_concurrency",
                &mut maxima.concurrency,
            ),
        ] {
            if let Some(n) = positive(value, &format!("outbound.{key}"), at)? {
                *into = u32::try_from(n).unwrap_or(u32::MAX);
            }
        }
        if let Some(mib) = positive(
            &self.max_outbound_body_mib,
            "outbound.max_outbound_body_mib",
            at,
        )? {
            maxima.response_body = mib.saturating_mul(1 << 20);
        }
        Ok(config)
    }
}

/// The certificates of a PEM file, for `outbound.ca_file`.
fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem =
        std::fs::read(path).map_err(|err| format!("cannot read {}: {err}", path.display()))?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| format!("{} is not a PEM certificate file: {err}", path.display()))?;
    if certificates.is_empty() {
        return Err(format!(
            "{} holds no certificate (expected -----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(certificates)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    max_connections: Option<Spanned<u64>>,
    max_connections_per_ip: Option<Spanned<u64>>,
    handshake_timeout_ms: Option<Spanned<u64>>,
    header_timeout_ms: Option<Spanned<u64>>,
    keepalive_timeout_ms: Option<Spanned<u64>>,
    http2_idle_timeout_ms: Option<Spanned<u64>>,
    http2_ping_interval_ms: Option<Spanned<u64>>,
    http2_ping_timeout_ms: Option<Spanned<u64>>,
    send_timeout_ms: Option<Spanned<u64>>,
    body_timeout_ms: Option<Spanned<u64>>,
    body_min_rate: Option<u64>,
    body_prebuffer_kib: Option<u64>,
    body_buffer_mib: Option<Spanned<u64>>,
    shutdown_timeout_ms: Option<Spanned<u64>>,
    #[serde(default)]
    trusted_proxies: Vec<Spanned<String>>,
}

impl RawHttp {
    fn validate(
        self,
        at: &impl Fn(std::ops::Range<usize>, String, String) -> ConfigError,
    ) -> Result<HttpConfig, ConfigError> {
        let mut http = HttpConfig::default();
        for (value, key, into) in [
            (
                &self.max_connections,
                "max_connections",
                &mut http.max_connections,
            ),
            (
                &self.max_connections_per_ip,
                "max_connections_per_ip",
                &mut http.max_connections_per_ip,
            ),
        ] {
            if let Some(n) = positive(value, &format!("http.{key}"), at)? {
                *into = usize::try_from(n).unwrap_or(usize::MAX);
            }
        }
        for (value, key, into) in [
            (
                &self.handshake_timeout_ms,
                "handshake_timeout_ms",
                &mut http.handshake_timeout,
            ),
            (
                &self.header_timeout_ms,
                "header_timeout_ms",
                &mut http.header_timeout,
            ),
            (
                &self.keepalive_timeout_ms,
                "keepalive_timeout_ms",
                &mut http.keepalive_timeout,
            ),
            (
                &self.http2_idle_timeout_ms,
                "http2_idle_timeout_ms",
                &mut http.http2_idle_timeout,
            ),
            (
                &self.http2_ping_interval_ms,
                "http2_ping_interval_ms",
                &mut http.http2_ping_interval,
            ),
            (
                &self.http2_ping_timeout_ms,
                "http2_ping_timeout_ms",
                &mut http.http2_ping_timeout,
            ),
            (
                &self.send_timeout_ms,
                "send_timeout_ms",
                &mut http.send_timeout,
            ),
            (
                &self.body_timeout_ms,
                "body_timeout_ms",
                &mut http.body_timeout,
            ),
            (
                &self.shutdown_timeout_ms,
                "shutdown_timeout_ms",
                &mut http.shutdown_timeout,
            ),
        ] {
            if let Some(ms) = positive(value, &format!("http.{key}"), at)? {
                *into = Duration::from_millis(ms);
            }
        }
        if let Some(rate) = self.body_min_rate {
            http.body_min_rate = rate;
        }
        if let Some(kib) = self.body_prebuffer_kib {
            http.body_prebuffer = kib.saturating_mul(1024);
        }
        if let Some(mib) = positive(&self.body_buffer_mib, "http.body_buffer_mib", at)? {
            http.body_buffer_total = mib.saturating_mul(1 << 20);
        }
        for range in &self.trusted_proxies {
            http.trusted_proxies
                .add(range.get_ref())
                .map_err(|message| at(range.span(), "http.trusted_proxies".into(), message))?;
        }
        Ok(http)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: Option<Spanned<String>>,
    state_dir: Option<PathBuf>,
    max_upload_mib: Option<Spanned<u64>>,
    max_connections: Option<Spanned<u64>>,
    max_uploads: Option<Spanned<u64>>,
    compile_timeout_ms: Option<Spanned<u64>>,
    #[serde(default)]
    tokens: Vec<RawToken>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    name: Spanned<String>,
    sha256: Spanned<String>,
    scopes: Spanned<Vec<Scope>>,
}

impl RawAdmin {
    fn validate(
        self,
        base: &Path,
        at: &impl Fn(std::ops::Range<usize>, String, String) -> ConfigError,
    ) -> Result<AdminConfig, ConfigError> {
        let listen = match &self.listen {
            Some(listen) => listen.get_ref().parse().map_err(|_| {
                at(
                    listen.span(),
                    "admin.listen".into(),
                    format!(
                        "{:?} is not an address; write it as \"127.0.0.1:8081\"",
                        listen.get_ref()
                    ),
                )
            })?,
            None => DEFAULT_ADMIN_ADDR,
        };
        let max_upload_mib = match &self.max_upload_mib {
            Some(max) if *max.get_ref() == 0 => {
                return Err(at(
                    max.span(),
                    "admin.max_upload_mib".into(),
                    "must be at least 1".into(),
                ));
            }
            Some(max) if *max.get_ref() > DEFAULT_MAX_UPLOAD_MIB => {
                return Err(at(
                    max.span(),
                    "admin.max_upload_mib".into(),
                    format!("at most {DEFAULT_MAX_UPLOAD_MIB}: the largest component a node loads"),
                ));
            }
            Some(max) => *max.get_ref(),
            None => DEFAULT_MAX_UPLOAD_MIB,
        };
        let mut tokens = Vec::with_capacity(self.tokens.len());
        for token in self.tokens {
            let hex = token.sha256.get_ref();
            let sha256 = parse_sha256(hex).ok_or_else(|| {
                at(
                    token.sha256.span(),
                    "admin.tokens.sha256".into(),
                    "must be 64 hex digits, the sha256 of the token; `outpost token new` prints one".into(),
                )
            })?;
            if token.scopes.get_ref().is_empty() {
                return Err(at(
                    token.scopes.span(),
                    "admin.tokens.scopes".into(),
                    "give at least one of \"read\", \"deploy\", \"purge\"".into(),
                ));
            }
            tokens.push(AdminToken {
                name: token.name.into_inner(),
                sha256,
                scopes: token.scopes.into_inner(),
            });
        }
        let max_connections = positive(&self.max_connections, "admin.max_connections", at)?
            .map_or(DEFAULT_ADMIN_MAX_CONNECTIONS, |n| {
                usize::try_from(n).unwrap_or(usize::MAX)
            });
        let max_uploads = positive(&self.max_uploads, "admin.max_uploads", at)?
            .map_or(2, |n| usize::try_from(n).unwrap_or(usize::MAX));
        let compile_timeout = positive(&self.compile_timeout_ms, "admin.compile_timeout_ms", at)?
            .map_or(Duration::from_secs(120), Duration::from_millis);
        Ok(AdminConfig {
            listen,
            state_dir: base.join(self.state_dir.unwrap_or_else(|| PathBuf::from("state"))),
            max_upload: max_upload_mib << 20,
            tokens,
            max_connections,
            max_uploads,
            compile_timeout,
        })
    }
}

fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    cpu_ms: Option<Spanned<u64>>,
    wall_ms: Option<Spanned<u64>>,
    memory_mib: Option<Spanned<u64>>,
    request_body_kib: Option<Spanned<u64>>,
    instances: Option<Spanned<u64>>,
    connect_timeout_ms: Option<Spanned<u64>>,
    first_byte_timeout_ms: Option<Spanned<u64>>,
    between_bytes_timeout_ms: Option<Spanned<u64>>,
    subrequests: Option<Spanned<u64>>,
    subrequest_concurrency: Option<Spanned<u64>>,
    outbound_body_mib: Option<Spanned<u64>>,
}

impl RawLimits {
    /// `prefix` is the limits table's key in errors (`apps.NAME.limits`).
    /// A value above the node's maximum is refused, naming the node key;
    /// what is not set gets the default, lowered to the maximum.
    pub(crate) fn validate(
        self,
        prefix: &str,
        maxima: &Limits,
        at: &impl Fn(std::ops::Range<usize>, String, String) -> ConfigError,
    ) -> Result<Limits, ConfigError> {
        let mut limits = Limits::defaults_within(maxima);
        let within = |value: &Option<Spanned<u64>>,
                      field: &str,
                      unit: &str,
                      max: u64,
                      node_key: &str,
                      zero_ok: bool|
         -> Result<Option<u64>, ConfigError> {
            let Some(spanned) = value else {
                return Ok(None);
            };
            let key = format!("{prefix}.{field}");
            let value = *spanned.get_ref();
            if value == 0 && !zero_ok {
                return Err(at(spanned.span(), key, "must be at least 1".into()));
            }
            if value > max {
                return Err(at(
                    spanned.span(),
                    key,
                    format!(
                        "{value}{unit} is more than this node allows ({node_key} = {max}); \
                         lower it, or raise {node_key} in the node's node.toml"
                    ),
                ));
            }
            Ok(Some(value))
        };
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        if let Some(ms) = within(
            &self.cpu_ms,
            "cpu_ms",
            " ms",
            millis(maxima.cpu_time),
            "max_cpu_ms",
            false,
        )? {
            limits.cpu_time = Duration::from_millis(ms);
        }
        if let Some(ms) = within(
            &self.wall_ms,
            "wall_ms",
            " ms",
            millis(maxima.wall_time),
            "max_wall_ms",
            false,
        )? {
            limits.wall_time = Duration::from_millis(ms);
        }
        if let Some(mib) = within(
            &self.memory_mib,
            "memory_mib",
            " MiB",
            maxima.memory >> 20,
            "max_memory_mib",
            false,
        )? {
            limits.memory = mib << 20;
        }
        if let Some(kib) = within(
            &self.request_body_kib,
            "request_body_kib",
            " KiB",
            maxima.request_body / 1024,
            "max_request_body_kib",
            true,
        )? {
            limits.request_body = kib * 1024;
        }
        if let Some(n) = within(
            &self.instances,
            "instances",
            "",
            u64::from(maxima.instances),
            "max_instances_per_app",
            false,
        )? {
            limits.instances = u32::try_from(n).expect("at most a u32 maximum");
        }
        let fetch = &mut limits.fetch;
        for (value, field, max, node_key, into) in [
            (
                &self.connect_timeout_ms,
                "connect_timeout_ms",
                maxima.fetch.connect_timeout,
                "outbound.max_connect_timeout_ms",
                &mut fetch.connect_timeout,
            ),
            (
                &self.first_byte_timeout_ms,
                "first_byte_timeout_ms",
                maxima.fetch.first_byte_timeout,
                "outbound.max_first_byte_timeout_ms",
                &mut fetch.first_byte_timeout,
            ),
            (
                &self.between_bytes_timeout_ms,
                "between_bytes_timeout_ms",
                maxima.fetch.between_bytes_timeout,
                "outbound.max_between_bytes_timeout_ms",
                &mut fetch.between_bytes_timeout,
            ),
        ] {
            if let Some(ms) = within(value, field, " ms", millis(max), node_key, false)? {
                *into = Duration::from_millis(ms);
            }
        }
        for (value, field, max, node_key, zero_ok, into) in [
            (
                &self.subrequests,
                "subrequests",
                maxima.fetch.subrequests,
                "outbound.max_subrequests",
                true,
                &mut fetch.subrequests,
            ),
            (
                &self.subrequest_concurrency,
                "subrequest_concurrency",
                maxima.fetch.concurrency,
                "outbound.max_subrequest_concurrency",
                false,
                &mut fetch.concurrency,
            ),
        ] {
            if let Some(n) = within(value, field, "", u64::from(max), node_key, zero_ok)? {
                *into = u32::try_from(n).expect("at most a u32 maximum");
            }
        }
        if let Some(mib) = within(
            &self.outbound_body_mib,
            "outbound_body_mib",
            " MiB",
            maxima.fetch.response_body >> 20,
            "outbound.max_outbound_body_mib",
            false,
        )? {
            fetch.response_body = mib << 20;
        }
        Ok(limits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(source: &str) -> Result<NodeConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("app.wasm"), b"").unwrap();
        let path = dir.path().join("node.toml");
        NodeConfig::parse(&path, source, PathBuf::from("/tmp/cache")).map_err(|mut err| {
            err.file = PathBuf::from("node.toml");
            err
        })
    }

    #[test]
    fn parses_apps_routes_and_limits() {
        let config = parse(
            "listen = \"127.0.0.1:0\"\n\
             [apps.api]\ncomponent = \"app.wasm\"\nroutes = [\"api.example.com/\", \"/api\"]\n\
             [apps.api.limits]\ncpu_ms = 20\nmemory_mib = 64\n",
        )
        .unwrap();
        assert_eq!(config.listen.port(), 0);
        let app = &config.apps[0].manifest;
        assert_eq!(app.name, "api");
        assert_eq!(app.routes.len(), 2);
        assert_eq!(app.limits.cpu_time, Duration::from_millis(20));
        assert_eq!(app.limits.memory, 64 << 20);
        assert_eq!(app.limits.wall_time, Limits::default().wall_time);
    }

    #[test]
    fn kv_store_path_bounds_and_app_buckets() {
        let app = "[apps.a]\ncomponent = \"app.wasm\"\nroutes = [\"/\"]\n";
        let config = parse(&format!(
            "[kv]\npath = \"data/kv.redb\"\nmax_value_mib = 4\nmax_app_mib = 64\n{app}[apps.a.kv]\nbuckets = [\"sessions\", \"default\"]\n"
        ))
        .unwrap();
        assert!(config.kv.path.ends_with("data/kv.redb"));
        assert_eq!(
            (config.kv.max_value_bytes, config.kv.max_app_bytes),
            (4 << 20, 64 << 20)
        );
        assert_eq!(config.apps[0].manifest.kv_buckets, ["sessions"]);
        let defaults = parse(app).unwrap();
        assert!(defaults.kv.path.ends_with("kv.redb"));
        assert_eq!(defaults.kv.max_value_bytes, 25 << 20);
        for (toml, expected) in [
            (
                format!("[kv]\nmax_value_mib = 500\n{app}"),
                "node.toml:2: kv.max_value_mib: give 1 to 100",
            ),
            (
                format!("{app}[apps.a.kv]\nbuckets = [\"Sessions\"]\n"),
                "node.toml:5: apps.a.kv.buckets: \"Sessions\" is not a bucket name",
            ),
        ] {
            let err = parse(&toml).unwrap_err().to_string();
            assert!(err.starts_with(expected), "{toml}: {err}");
        }
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let err =
            parse("[apps.a]\ncomponent = \"app.wasm\"\nroutes = [\"/\"]\ncpu = 5\n").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("node.toml:4: "), "{text}");
        assert!(text.contains("unknown field `cpu`"), "{text}");
    }

    #[test]
    fn semantic_errors_name_the_key() {
        let err = parse("[apps.a]\ncomponent = \"missing.wasm\"\nroutes = [\"/\"]\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("node.toml:2: apps.a.component: no such file"),
            "{err}"
        );

        let err = parse("[apps.a]\ncomponent = \"app.wasm\"\nroutes = [\"nope\"]\n").unwrap_err();
        assert!(
            err.to_string().starts_with("node.toml:3: apps.a.routes: "),
            "{err}"
        );

        let err = parse(
            "[apps.a]\ncomponent = \"app.wasm\"\nroutes = [\"/\"]\n[apps.a.limits]\ncpu_ms = 0\n",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("node.toml:5: apps.a.limits.cpu_ms: must be at least 1"),
            "{err}"
        );

        let err =
            parse("listen = \"localhost\"\n[apps.a]\ncomponent = \"app.wasm\"\nroutes = [\"/\"]\n")
                .unwrap_err();
        assert!(
            err.to_string().starts_with("node.toml:1: listen: "),
            "{err}"
        );
    }

    #[test]
    fn a_route_belongs_to_one_app() {
        let err = parse(
            "[apps.a]\ncomponent = \"app.wasm\"\nroutes = [\"/x\"]\n\
             [apps.b]\ncomponent = \"app.wasm\"\nroutes = [\"/x\"]\n",
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("also claimed by app \"a\""),
            "{err}"
        );
    }

    #[test]
    fn admin_section_with_hashed_scoped_tokens() {
        let hash = "ab".repeat(32);
        let config = parse(&format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\nmax_upload_mib = 8\n\
             [[admin.tokens]]\nname = \"ci\"\nsha256 = \"{hash}\"\nscopes = [\"read\", \"deploy\"]\n"
        ))
        .unwrap();
        let admin = config.admin.unwrap();
        assert_eq!(admin.max_upload, 8 << 20);
        assert_eq!(admin.tokens[0].sha256, [0xab; 32]);
        assert_eq!(admin.tokens[0].scopes, vec![Scope::Read, Scope::Deploy]);
        assert!(admin.state_dir.ends_with("state"));

        let err = parse(
            "[admin]\n[[admin.tokens]]\nname = \"x\"\nsha256 = \"secret\"\nscopes = [\"read\"]\n",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("node.toml:4: admin.tokens.sha256: must be 64 hex digits"),
            "{err}"
        );
        let err = parse(&format!(
            "[admin]\n[[admin.tokens]]\nname = \"x\"\nsha256 = \"{hash}\"\nscopes = [\"root\"]\n"
        ))
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("node.toml:5: unknown variant `root`"),
            "{err}"
        );
    }

    #[test]
    fn http_deadlines_caps_and_node_maxima() {
        let config = parse(
            "max_instances = 100\ninstance_wait_ms = 500\nmax_cpu_ms = 200\n\
             [http]\nmax_connections_per_ip = 7\nheader_timeout_ms = 1500\nbody_min_rate = 0\n\
             [apps.a]\ncomponent = \"app.wasm\"\nroutes = [\"/\"]\n",
        )
        .unwrap();
        assert_eq!(config.http.max_connections_per_ip, 7);
        assert_eq!(config.http.header_timeout, Duration::from_millis(1500));
        assert_eq!(config.http.body_min_rate, 0);
        assert_eq!(
            config.http.keepalive_timeout,
            HttpConfig::default().keepalive_timeout
        );
        assert_eq!(config.runtime.instance_wait, Duration::from_millis(500));
        // An app that sets nothing gets the defaults within the maxima: a
        // quarter of the pool, and no more CPU than the node allows.
        assert_eq!(config.maxima.instances, 25);
        assert_eq!(config.apps[0].manifest.limits.instances, 25);
        assert_eq!(
            config.apps[0].manifest.limits.cpu_time,
            Duration::from_millis(50)
        );

        let err = parse(
            "[http]\nheader_timeout_ms = 0\n[apps.a]\ncomponent = \"app.wasm\"\nroutes = [\"/\"]\n",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("node.toml:2: http.header_timeout_ms: must be at least 1"),
            "{err}"
        );
        let err =
            parse("[http]\nidle_ms = 5\n[apps.a]\ncomponent = \"app.wasm\"\nroutes = [\"/\"]\n")
                .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("node.toml:2: unknown field `idle_ms`"),
            "{err}"
        );
        let err = parse("max_instances = 10\nmax_instances_per_app = 11\n[apps.a]\ncomponent = \"app.wasm\"\nroutes = [\"/\"]\n")
            .unwrap_err();
        assert!(err.to_string().contains("more than max_instances"), "{err}");
    }

    #[test]
    fn the_example_node_toml_is_valid() {
        let source = include_str!("../../../deploy/node.toml");
        let dir = tempfile::tempdir().unwrap();
        // Its components live on a production host: point them here.
        let source = source.replace("/srv/outpost/", &format!("{}/", dir.path().display()));
        for name in ["hello.wasm", "api.wasm"] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        let config = NodeConfig::parse(
            &dir.path().join("node.toml"),
            &source,
            PathBuf::from("/tmp"),
        )
        .unwrap_or_else(|err| panic!("deploy/node.toml: {err}"));
        assert_eq!(config.apps.len(), 2);
        assert_eq!(config.http.max_connections, 10_000);
    }

    #[test]
    fn no_apps_is_an_error_with_an_example() {
        let err = parse("listen = \"127.0.0.1:1\"\n").unwrap_err();
        assert!(err.to_string().contains("[apps.hello]"), "{err}");
    }
}

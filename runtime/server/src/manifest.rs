//! The app manifest, `outpost.toml`: what a handler project declares about
//! itself. The CLI reads it to build, serve and deploy; the node validates
//! it again when a version is uploaded.
//!
//! ```toml
//! schema = 1
//! name = "hello"
//! routes = ["/", "api.example.com/v1"]
//! allowed_outbound_hosts = ["https://api.example.com"]
//!
//! [limits]
//! cpu_ms = 50
//! ```
//!
//! An app in the node's node.toml (`[apps.NAME]`) takes the same sections,
//! read by the same code ([`RawApp`]), so operators and handler authors
//! write the same keys.

use crate::config::{ConfigError, RawLimits, line_of};
use crate::router::Route;
use outpost_core::{AppSpec, Limits};
use outpost_host::cache::{CacheRules, KeyRules};
use outpost_host::fetch::{
    BACKEND_SUFFIX, BackendSpec, Balance, Destination, HashKey, HealthCheck, OutboundRule,
};
use outpost_store::AppName;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// The manifest schema this build understands. Later issues add sections
/// (cache, rate limits, JWT, backends) under this number or the next.
pub const SCHEMA: u32 = 1;

/// The file name of a manifest in a project.
pub const MANIFEST_FILE: &str = "outpost.toml";

/// A validated app manifest.
#[derive(Clone, Debug)]
pub struct AppManifest {
    /// The app's name on a node: lowercase letters, digits, dashes.
    pub name: AppName,
    /// Which requests it serves.
    pub routes: Vec<Route>,
    /// Its per-request limits.
    pub limits: Limits,
    /// Where its handlers may send requests; empty: nowhere.
    pub outbound: Vec<OutboundRule>,
    /// Its named backends.
    pub backends: Vec<BackendSpec>,
    /// Its edge cache (`[cache]`).
    pub cache: CacheRules,
}

/// The keys a manifest names in parse errors.
const KEYS: &str = "schema, name, routes, allowed_outbound_hosts, [backends.NAME], [cache] enabled, memory_mib, max_object_kib, keep_tag_headers, [cache.key], [limits] cpu_ms, wall_ms, memory_mib, \
     request_body_kib, instances, connect_timeout_ms, first_byte_timeout_ms, \
     between_bytes_timeout_ms, subrequests, subrequest_concurrency, outbound_body_mib";

impl AppManifest {
    /// Reads and validates `DIR/outpost.toml` against a node's maxima.
    pub fn load(dir: &Path, maxima: &Limits) -> Result<Self, ConfigError> {
        let path = dir.join(MANIFEST_FILE);
        let source = std::fs::read_to_string(&path).map_err(|err| ConfigError {
            file: path.clone(),
            line: None,
            key: None,
            message: if err.kind() == std::io::ErrorKind::NotFound {
                "not found; is this a handler project? `outpost new NAME` creates one".into()
            } else {
                format!("cannot read: {err}")
            },
        })?;
        Self::parse(&path, &source, maxima)
    }

    /// Validates a manifest given as text; `path` is used in errors. Limits
    /// above the node's `maxima` are refused; unset ones get the defaults,
    /// lowered to the maxima.
    pub fn parse(path: &Path, source: &str, maxima: &Limits) -> Result<Self, ConfigError> {
        let file = || PathBuf::from(path);
        let at = |span: std::ops::Range<usize>, key: String, message: String| ConfigError {
            file: file(),
            line: Some(line_of(source, span.start)),
            key: Some(key),
            message,
        };
        let mut raw: RawApp = toml::from_str(source).map_err(|err| ConfigError {
            file: file(),
            line: err.span().map(|span| line_of(source, span.start)),
            key: None,
            message: format!("{} (keys of schema {SCHEMA}: {KEYS})", err.message().trim()),
        })?;
        match &raw.schema {
            None => {
                return Err(ConfigError {
                    file: file(),
                    line: Some(1),
                    key: Some("schema".into()),
                    message: format!("missing; add `schema = {SCHEMA}` at the top"),
                });
            }
            Some(schema) if *schema.get_ref() != SCHEMA => {
                return Err(at(
                    schema.span(),
                    "schema".into(),
                    format!(
                        "schema {} is not known to this outpost (it reads schema {SCHEMA}); upgrade outpost or write `schema = {SCHEMA}`",
                        schema.get_ref()
                    ),
                ));
            }
            Some(_) => {}
        }
        let Some(name) = raw.name.take() else {
            return Err(ConfigError {
                file: file(),
                line: None,
                key: Some("name".into()),
                message: "missing; add e.g. `name = \"hello\"`".into(),
            });
        };
        let checked = AppName::parse(name.get_ref())
            .map_err(|err| at(name.span(), "name".into(), err.to_string()))?;
        if let Some(component) = &raw.component {
            return Err(at(
                component.span(),
                "component".into(),
                "is for apps in node.toml; `outpost build` makes a project's component".into(),
            ));
        }
        let sections = raw.sections("", maxima, &at, file)?;
        Ok(Self {
            name: checked,
            routes: sections.routes,
            limits: sections.limits,
            outbound: sections.outbound,
            backends: sections.backends,
            cache: sections.cache,
        })
    }

    /// What the runtime loads for this app, with `component` as its code.
    pub fn spec(&self, component: PathBuf) -> AppSpec {
        AppSpec {
            name: self.name.to_string(),
            component,
            limits: self.limits.clone(),
            outbound: self.outbound.clone(),
            backends: self.backends.clone(),
            cache: self.cache.clone(),
        }
    }
}

/// An app's sections as written, in a manifest or under `[apps.NAME]` in
/// node.toml. `schema` and `name` belong to manifests, `component` to
/// node.toml; each reader refuses the other's.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawApp {
    pub(crate) schema: Option<Spanned<u32>>,
    pub(crate) name: Option<Spanned<String>>,
    pub(crate) component: Option<Spanned<String>>,
    #[serde(default)]
    routes: Vec<Spanned<String>>,
    limits: Option<RawLimits>,
    #[serde(default)]
    allowed_outbound_hosts: Vec<Spanned<String>>,
    #[serde(default)]
    backends: BTreeMap<String, RawBackend>,
    cache: Option<RawCache>,
}

/// The validated sections every app has.
pub(crate) struct AppSections {
    pub(crate) routes: Vec<Route>,
    pub(crate) limits: Limits,
    pub(crate) outbound: Vec<OutboundRule>,
    pub(crate) backends: Vec<BackendSpec>,
    pub(crate) cache: CacheRules,
}

impl RawApp {
    /// Validates routes, limits (against the node's `maxima`) and the
    /// outbound allowlist. `prefix` is the app's table in errors
    /// (`apps.NAME.`, or nothing in a manifest).
    pub(crate) fn sections(
        self,
        prefix: &str,
        maxima: &Limits,
        at: &impl Fn(std::ops::Range<usize>, String, String) -> ConfigError,
        file: impl Fn() -> PathBuf,
    ) -> Result<AppSections, ConfigError> {
        let key = |field: &str| format!("{prefix}{field}");
        if self.routes.is_empty() {
            return Err(ConfigError {
                file: file(),
                line: None,
                key: Some(key("routes")),
                message: "missing; give at least one route, e.g. routes = [\"/\"]".into(),
            });
        }
        let mut routes = Vec::with_capacity(self.routes.len());
        for route in &self.routes {
            routes.push(
                Route::parse(route.get_ref())
                    .map_err(|message| at(route.span(), key("routes"), message))?,
            );
        }
        let limits = match self.limits {
            Some(limits) => limits.validate(&key("limits"), maxima, at)?,
            None => Limits::defaults_within(maxima),
        };
        let mut outbound = Vec::with_capacity(self.allowed_outbound_hosts.len());
        for rule in &self.allowed_outbound_hosts {
            outbound.push(
                OutboundRule::parse(rule.get_ref())
                    .map_err(|message| at(rule.span(), key("allowed_outbound_hosts"), message))?,
            );
        }
        if self.backends.len() > MAX_BACKENDS {
            return Err(ConfigError {
                file: file(),
                line: None,
                key: Some(key("backends")),
                message: format!("at most {MAX_BACKENDS} backends per app"),
            });
        }
        let mut backends = Vec::with_capacity(self.backends.len());
        for (name, backend) in self.backends {
            backends.push(backend.validate(&name, &key(&format!("backends.{name}")), at, &file)?);
        }
        let cache = match self.cache {
            Some(cache) => cache.validate(&key("cache"), at)?,
            None => CacheRules::default(),
        };
        Ok(AppSections {
            routes,
            limits,
            outbound,
            backends,
            cache,
        })
    }
}

/// `[cache]`: the app's responses stored at the edge.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCache {
    #[serde(default)]
    enabled: bool,
    memory_mib: Option<Spanned<u64>>,
    max_object_kib: Option<Spanned<u64>>,
    #[serde(default)]
    keep_tag_headers: bool,
    key: Option<RawCacheKey>,
}

/// `[cache.key]`: how requests map to entries.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCacheKey {
    #[serde(default)]
    ignore_query: bool,
    #[serde(default)]
    ignore_params: Vec<String>,
    #[serde(default)]
    sort_query: bool,
    #[serde(default)]
    headers: Vec<Spanned<String>>,
    cookie: Option<String>,
}

/// The most request headers an app's cache key may add.
const MAX_KEY_HEADERS: usize = 16;

impl RawCache {
    /// The rules (`in_front` if `enabled`).
    fn validate(
        self,
        key: &str,
        at: &impl Fn(std::ops::Range<usize>, String, String) -> ConfigError,
    ) -> Result<CacheRules, ConfigError> {
        let mut rules = CacheRules {
            in_front: self.enabled,
            ..CacheRules::default()
        };
        if let Some(mib) = &self.memory_mib {
            if !(1..=65_536).contains(mib.get_ref()) {
                return Err(at(
                    mib.span(),
                    format!("{key}.memory_mib"),
                    "give 1 to 65536 (MiB); the node's [cache] memory_mib bounds all apps together"
                        .into(),
                ));
            }
            rules.memory = mib.get_ref() << 20;
        }
        if let Some(kib) = &self.max_object_kib {
            if *kib.get_ref() == 0 || kib.get_ref() << 10 > rules.memory {
                return Err(at(
                    kib.span(),
                    format!("{key}.max_object_kib"),
                    format!(
                        "give 1 to {} (KiB): an object must fit the app's memory_mib",
                        rules.memory >> 10
                    ),
                ));
            }
            rules.max_object = kib.get_ref() << 10;
        }
        rules.max_object = rules.max_object.min(rules.memory);
        rules.keep_tag_headers = self.keep_tag_headers;
        if let Some(raw) = self.key {
            if raw.headers.len() > MAX_KEY_HEADERS {
                return Err(at(
                    raw.headers[MAX_KEY_HEADERS].span(),
                    format!("{key}.key.headers"),
                    format!("at most {MAX_KEY_HEADERS} headers"),
                ));
            }
            let mut headers = Vec::with_capacity(raw.headers.len());
            for header in &raw.headers {
                let name =
                    http::HeaderName::from_bytes(header.get_ref().as_bytes()).map_err(|_| {
                        at(
                            header.span(),
                            format!("{key}.key.headers"),
                            format!("{:?} is not a header name", header.get_ref()),
                        )
                    })?;
                headers.push(name);
            }
            rules.key = KeyRules {
                ignore_query: raw.ignore_query,
                ignore_params: raw.ignore_params,
                sort_query: raw.sort_query,
                headers,
                cookie: raw.cookie,
            };
        }
        Ok(rules)
    }
}

/// The most backends one app may declare, and endpoints one backend may
/// have: each is health-checked by the node.
const MAX_BACKENDS: usize = 32;
const MAX_ENDPOINTS: usize = 64;
/// The shortest health check interval: checks are traffic the node makes on
/// an app's behalf.
const MIN_HEALTH_INTERVAL_MS: u64 = 100;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackend {
    #[serde(default)]
    endpoints: Vec<Spanned<String>>,
    balance: Option<Spanned<String>>,
    hash_key: Option<Spanned<String>>,
    weights: Option<Spanned<Vec<u32>>>,
    health: Option<RawHealth>,
    eject_after: Option<Spanned<u32>>,
    eject_ms: Option<Spanned<u64>>,
    #[serde(default)]
    cache: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    path: Option<Spanned<String>>,
    interval_ms: Option<Spanned<u64>>,
    timeout_ms: Option<Spanned<u64>>,
    expect_status: Option<Spanned<u16>>,
    rise: Option<Spanned<u32>>,
    fall: Option<Spanned<u32>>,
}

impl RawBackend {
    fn validate(
        self,
        name: &str,
        key: &str,
        at: &impl Fn(std::ops::Range<usize>, String, String) -> ConfigError,
        file: impl Fn() -> PathBuf,
    ) -> Result<BackendSpec, ConfigError> {
        let whole = |message: String| ConfigError {
            file: file(),
            line: None,
            key: Some(key.to_owned()),
            message,
        };
        let label_ok = !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !name.starts_with('-')
            && !name.ends_with('-');
        if !label_ok {
            return Err(whole(format!(
                "{name:?} is not a backend name: lowercase letters, digits and dashes (guests call it as http://NAME{BACKEND_SUFFIX})"
            )));
        }
        if self.endpoints.is_empty() || self.endpoints.len() > MAX_ENDPOINTS {
            return Err(whole(format!(
                "give 1 to {MAX_ENDPOINTS} endpoints, e.g. endpoints = [\"http://10.0.0.1:8080\"]"
            )));
        }
        let mut endpoints = Vec::with_capacity(self.endpoints.len());
        for endpoint in &self.endpoints {
            let bad = |message: String| at(endpoint.span(), format!("{key}.endpoints"), message);
            let uri: http::Uri = endpoint
                .get_ref()
                .parse()
                .map_err(|_| bad(format!("{:?} is not a URL", endpoint.get_ref())))?;
            if uri
                .path_and_query()
                .is_some_and(|path| path.as_str() != "/")
            {
                return Err(bad(format!(
                    "{:?}: give scheme, host and port only; the guest's path is used",
                    endpoint.get_ref()
                )));
            }
            endpoints.push(
                Destination::of(&uri)
                    .map_err(|message| bad(format!("{:?}: {message}", endpoint.get_ref())))?,
            );
        }
        let weights = match self.weights {
            None => vec![1; endpoints.len()],
            Some(weights) => {
                if weights.get_ref().len() != endpoints.len() || weights.get_ref().contains(&0) {
                    return Err(at(
                        weights.span(),
                        format!("{key}.weights"),
                        format!(
                            "give one weight of at least 1 per endpoint ({} endpoints)",
                            endpoints.len()
                        ),
                    ));
                }
                weights.into_inner()
            }
        };
        let balance = match &self.balance {
            None => Balance::RoundRobin,
            Some(balance) => Balance::parse(balance.get_ref())
                .map_err(|message| at(balance.span(), format!("{key}.balance"), message))?,
        };
        let hash_key = match &self.hash_key {
            None => HashKey::ClientIp,
            Some(hash_key) => HashKey::parse(hash_key.get_ref())
                .map_err(|message| at(hash_key.span(), format!("{key}.hash_key"), message))?,
        };
        let positive_u32 = |value: &Option<Spanned<u32>>, field: &str, default: u32| match value {
            Some(value) if *value.get_ref() == 0 => Err(at(
                value.span(),
                format!("{key}.{field}"),
                "must be at least 1".into(),
            )),
            Some(value) => Ok(*value.get_ref()),
            None => Ok(default),
        };
        let eject_after = positive_u32(&self.eject_after, "eject_after", 3)?;
        let eject_for = Duration::from_millis(match &self.eject_ms {
            Some(ms) if *ms.get_ref() == 0 => {
                return Err(at(
                    ms.span(),
                    format!("{key}.eject_ms"),
                    "must be at least 1".into(),
                ));
            }
            Some(ms) => *ms.get_ref(),
            None => 10_000,
        });
        let health = match self.health {
            None => None,
            Some(health) => {
                let key = format!("{key}.health");
                let path = match &health.path {
                    Some(path) if !path.get_ref().starts_with('/') => {
                        return Err(at(
                            path.span(),
                            format!("{key}.path"),
                            "must start with /".into(),
                        ));
                    }
                    Some(path) => path.get_ref().clone(),
                    None => "/".into(),
                };
                let interval = match &health.interval_ms {
                    Some(ms) if *ms.get_ref() < MIN_HEALTH_INTERVAL_MS => {
                        return Err(at(
                            ms.span(),
                            format!("{key}.interval_ms"),
                            format!("must be at least {MIN_HEALTH_INTERVAL_MS}"),
                        ));
                    }
                    Some(ms) => Duration::from_millis(*ms.get_ref()),
                    None => Duration::from_secs(2),
                };
                let timeout = match &health.timeout_ms {
                    Some(ms) if *ms.get_ref() == 0 => {
                        return Err(at(
                            ms.span(),
                            format!("{key}.timeout_ms"),
                            "must be at least 1".into(),
                        ));
                    }
                    Some(ms) => Duration::from_millis(*ms.get_ref()),
                    None => interval.min(Duration::from_secs(1)),
                };
                let expect_status = match &health.expect_status {
                    Some(status) if !(100..=599).contains(status.get_ref()) => {
                        return Err(at(
                            status.span(),
                            format!("{key}.expect_status"),
                            "is not an HTTP status (100-599)".into(),
                        ));
                    }
                    Some(status) => *status.get_ref(),
                    None => 200,
                };
                let counts = |value: &Option<Spanned<u32>>, field: &str, default: u32| match value {
                    Some(value) if *value.get_ref() == 0 => Err(at(
                        value.span(),
                        format!("{key}.{field}"),
                        "must be at least 1".into(),
                    )),
                    Some(value) => Ok(*value.get_ref()),
                    None => Ok(default),
                };
                Some(HealthCheck {
                    path,
                    interval,
                    timeout,
                    expect_status,
                    rise: counts(&health.rise, "rise", 2)?,
                    fall: counts(&health.fall, "fall", 3)?,
                })
            }
        };
        Ok(BackendSpec {
            name: name.to_owned(),
            endpoints,
            weights,
            balance,
            hash_key,
            health,
            eject_after,
            eject_for,
            cache: self.cache,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(source: &str) -> Result<AppManifest, String> {
        AppManifest::parse(Path::new("outpost.toml"), source, &Limits::node_maxima())
            .map_err(|err| err.to_string())
    }

    #[test]
    fn parses_name_routes_and_limits() {
        let manifest = parse(
            "schema = 1\nname = \"api\"\nroutes = [\"/\", \"example.com/v1\"]\n[limits]\ncpu_ms = 20\n",
        )
        .unwrap();
        assert_eq!(manifest.name, "api");
        assert_eq!(manifest.routes.len(), 2);
        assert_eq!(
            manifest.limits.cpu_time,
            std::time::Duration::from_millis(20)
        );
    }

    #[test]
    fn errors_name_file_line_key_and_fix() {
        let err = parse("schema = 1\nname = \"api\"\nroutes = [\"/\"]\ncolour = 1\n").unwrap_err();
        assert!(
            err.starts_with("outpost.toml:4: unknown field `colour`"),
            "{err}"
        );
        let err = parse("name = \"api\"\nroutes = [\"/\"]\n").unwrap_err();
        assert!(err.contains("schema: missing; add `schema = 1`"), "{err}");
        let err = parse("schema = 7\nname = \"api\"\nroutes = [\"/\"]\n").unwrap_err();
        assert!(
            err.starts_with("outpost.toml:1: schema: schema 7 is not known"),
            "{err}"
        );
        let err = parse("schema = 1\nname = \"My App\"\nroutes = [\"/\"]\n").unwrap_err();
        assert!(
            err.starts_with("outpost.toml:2: name: \"My App\" is not a valid app name"),
            "{err}"
        );
        let err = parse("schema = 1\nname = \"a\"\nroutes = [\"/\"]\n[limits]\nmemory_mib = 0\n")
            .unwrap_err();
        assert!(
            err.starts_with("outpost.toml:5: limits.memory_mib: must be at least 1"),
            "{err}"
        );
        let err = parse("schema = 1\nname = \"a\"\nroutes = [\"x\"]\n").unwrap_err();
        assert!(err.starts_with("outpost.toml:3: routes: "), "{err}");
    }

    #[test]
    fn limits_above_the_node_maxima_are_refused_naming_the_node_key() {
        let cases = [
            (
                "cpu_ms = 1001",
                "limits.cpu_ms: 1001 ms is more than this node allows (max_cpu_ms = 1000)",
            ),
            (
                "wall_ms = 120001",
                "limits.wall_ms: 120001 ms is more than this node allows (max_wall_ms = 120000)",
            ),
            (
                "memory_mib = 1025",
                "limits.memory_mib: 1025 MiB is more than this node allows (max_memory_mib = 1024)",
            ),
            (
                "request_body_kib = 131073",
                "limits.request_body_kib: 131073 KiB is more than this node allows (max_request_body_kib = 131072)",
            ),
            (
                "instances = 251",
                "limits.instances: 251 is more than this node allows (max_instances_per_app = 250)",
            ),
        ];
        for (line, expected) in cases {
            let err = parse(&format!(
                "schema = 1\nname = \"a\"\nroutes = [\"/\"]\n[limits]\n{line}\n"
            ))
            .unwrap_err();
            assert!(
                err.starts_with(&format!("outpost.toml:5: {expected}")),
                "{err}"
            );
        }
        let at_max = parse(
            "schema = 1\nname = \"a\"\nroutes = [\"/\"]\n[limits]\ncpu_ms = 1000\ninstances = 250\n",
        )
        .unwrap();
        assert_eq!(at_max.limits.cpu_time, std::time::Duration::from_secs(1));
        assert_eq!(at_max.limits.instances, 250);
    }

    #[test]
    fn the_cache_section_parses_with_errors_that_say_the_fix() {
        let head = "schema = 1\nname = \"a\"\nroutes = [\"/\"]\n";
        let off = parse(&format!("{head}[cache]\nenabled = false\nmemory_mib = 8\n")).unwrap();
        assert!(!off.cache.in_front, "enabled = false: no cache in front");
        assert_eq!(
            off.cache.memory,
            8 << 20,
            "the budget holds for the interface"
        );
        let none = parse(head).unwrap();
        assert_eq!(none.cache, outpost_host::cache::CacheRules::default());
        let on = parse(&format!(
            "{head}[cache]\nenabled = true\nmemory_mib = 8\nmax_object_kib = 512\n\
             [cache.key]\nsort_query = true\nheaders = [\"X-Tenant\"]\ncookie = \"region\"\n"
        ))
        .unwrap();
        let rules = on.cache;
        assert!(rules.in_front);
        assert_eq!(rules.memory, 8 << 20);
        assert_eq!(rules.max_object, 512 << 10);
        assert!(rules.key.sort_query);
        assert_eq!(rules.key.headers[0].as_str(), "x-tenant");
        assert_eq!(rules.key.cookie.as_deref(), Some("region"));
        for (section, expected) in [
            (
                "[cache]\nenabled = true\nmemory_mib = 0\n",
                "outpost.toml:6: cache.memory_mib: give 1 to 65536 (MiB)",
            ),
            (
                "[cache]\nenabled = true\nmemory_mib = 1\nmax_object_kib = 2048\n",
                "outpost.toml:7: cache.max_object_kib: give 1 to 1024 (KiB)",
            ),
            (
                "[cache]\nenabled = true\n[cache.key]\nheaders = [\"bad header\"]\n",
                "outpost.toml:7: cache.key.headers: \"bad header\" is not a header name",
            ),
        ] {
            let err = parse(&format!("{head}{section}")).unwrap_err();
            assert!(err.starts_with(expected), "{err}");
        }
    }

    #[test]
    fn outbound_hosts_and_backends_parse_with_errors_that_say_the_fix() {
        let manifest = parse(
            "schema = 1\nname = \"a\"\nroutes = [\"/\"]\n\
             allowed_outbound_hosts = [\"https://api.example.com\"]\n\
             [backends.users]\nendpoints = [\"http://10.0.0.1:8080\", \"http://10.0.0.2:8080\"]\n\
             balance = \"consistent-hash\"\nhash_key = \"header:x-user\"\nweights = [3, 1]\n\
             [backends.users.health]\npath = \"/healthz\"\ninterval_ms = 2000\n",
        )
        .unwrap();
        assert_eq!(manifest.outbound.len(), 1);
        let users = &manifest.backends[0];
        assert_eq!(users.name, "users");
        assert_eq!(users.weights, vec![3, 1]);
        assert_eq!(users.balance, Balance::ConsistentHash);
        assert_eq!(users.health.as_ref().unwrap().rise, 2);

        let header = "schema = 1\nname = \"a\"\nroutes = [\"/\"]\n";
        for (toml, expected) in [
            (
                "allowed_outbound_hosts = [\"example.com\"]\n",
                "outpost.toml:4: allowed_outbound_hosts: \"example.com\" has no scheme",
            ),
            (
                "[backends.Users]\nendpoints = [\"http://10.0.0.1\"]\n",
                "outpost.toml: backends.Users: \"Users\" is not a backend name",
            ),
            (
                "[backends.u]\nendpoints = [\"http://10.0.0.1\"]\nweights = [1, 2]\n",
                "outpost.toml:6: backends.u.weights: give one weight of at least 1 per endpoint",
            ),
            (
                "[backends.u]\nendpoints = [\"http://10.0.0.1/api\"]\n",
                "outpost.toml:5: backends.u.endpoints: \"http://10.0.0.1/api\": give scheme, host and port only",
            ),
            (
                "[backends.u]\nendpoints = [\"http://10.0.0.1\"]\n[backends.u.health]\ninterval_ms = 10\n",
                "outpost.toml:7: backends.u.health.interval_ms: must be at least 100",
            ),
            (
                "[backends.u]\nendpoints = [\"http://10.0.0.1\"]\nbalance = \"fastest\"\n",
                "outpost.toml:6: backends.u.balance: \"fastest\" is not a balancing method",
            ),
        ] {
            let err = parse(&format!("{header}{toml}")).unwrap_err();
            assert!(err.starts_with(expected), "{err}");
        }
    }
}

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

mod jwt;

use crate::config::{ConfigError, RawLimits, line_of, positive};
use crate::router::Route;
use outpost_core::{AppSpec, Limits};
use outpost_host::cache::{CacheRules, KeyRules};
use outpost_host::edge_rules::EdgeRuleSpec;
use outpost_host::fetch::{
    BACKEND_SUFFIX, BackendSpec, Balance, Destination, HashKey, HealthCheck, OutboundRule,
};
use outpost_host::jwt::JwtSpec;
use outpost_host::ratelimit::{KeySource, Mode, RateLimitSpec};
use outpost_store::{AppName, VarName};
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
    /// Its rate-limit policies (`[rate_limits.NAME]`).
    pub rate_limits: Vec<RateLimitSpec>,
    /// Its JWT policies (`[jwt.NAME]`).
    pub jwt: Vec<JwtSpec>,
    /// Its KV buckets besides `default` (`[kv] buckets`).
    pub kv_buckets: Vec<String>,
    /// Its `[[edge]]` rules.
    pub edge: Vec<EdgeRuleSpec>,
    /// Its `[variables]`: names and values handlers read through
    /// `wasi:config/store`.
    pub variables: BTreeMap<String, String>,
}

/// The keys a manifest names in parse errors.
const KEYS: &str = "schema, name, routes, allowed_outbound_hosts, [backends.NAME], [cache] enabled, memory_mib, max_object_kib, keep_tag_headers, [cache.key], \
     [rate_limits.NAME] requests, period_s, burst, key, mode, [jwt.NAME] issuer, audiences, algorithms, jwks_url, jwks_refresh_min_s, keys, hs_secret, \
     leeway_s, required_claims, forward_claims, token, max_token_bytes, [[edge]] path, methods, jwt, rate_limit, [kv] buckets, [variables], [limits] cpu_ms, wall_ms, memory_mib, \
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
        Ok(raw.sections("", maxima, &at, file)?.named(checked))
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
            rate_limits: self.rate_limits.clone(),
            jwt: self.jwt.clone(),
            kv_buckets: self.kv_buckets.clone(),
            edge: self.edge.clone(),
            variables: self.variables.clone(),
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
    #[serde(default)]
    rate_limits: BTreeMap<String, RawRateLimit>,
    #[serde(default)]
    jwt: BTreeMap<String, jwt::RawJwt>,
    kv: Option<RawKv>,
    #[serde(default)]
    edge: Vec<RawEdgeRule>,
    #[serde(default)]
    variables: BTreeMap<String, Spanned<String>>,
}

/// The validated sections every app has.
pub(crate) struct AppSections {
    pub(crate) routes: Vec<Route>,
    pub(crate) limits: Limits,
    pub(crate) outbound: Vec<OutboundRule>,
    pub(crate) backends: Vec<BackendSpec>,
    pub(crate) cache: CacheRules,
    pub(crate) rate_limits: Vec<RateLimitSpec>,
    pub(crate) jwt: Vec<JwtSpec>,
    pub(crate) kv_buckets: Vec<String>,
    pub(crate) edge: Vec<EdgeRuleSpec>,
    pub(crate) variables: BTreeMap<String, String>,
}

impl AppSections {
    /// The manifest of app `name` with these sections.
    pub(crate) fn named(self, name: AppName) -> AppManifest {
        AppManifest {
            name,
            routes: self.routes,
            limits: self.limits,
            outbound: self.outbound,
            backends: self.backends,
            cache: self.cache,
            rate_limits: self.rate_limits,
            jwt: self.jwt,
            kv_buckets: self.kv_buckets,
            edge: self.edge,
            variables: self.variables,
        }
    }
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
        if self.rate_limits.len() > MAX_RATE_LIMITS {
            return Err(ConfigError {
                file: file(),
                line: None,
                key: Some(key("rate_limits")),
                message: format!("at most {MAX_RATE_LIMITS} rate-limit policies per app"),
            });
        }
        let mut rate_limits = Vec::with_capacity(self.rate_limits.len());
        for (name, policy) in self.rate_limits {
            rate_limits.push(policy.validate(
                &name,
                &key(&format!("rate_limits.{name}")),
                at,
                &file,
            )?);
        }
        if self.jwt.len() > jwt::MAX_JWT_POLICIES {
            return Err(ConfigError {
                file: file(),
                line: None,
                key: Some(key("jwt")),
                message: format!("at most {} JWT policies per app", jwt::MAX_JWT_POLICIES),
            });
        }
        let mut jwts = Vec::with_capacity(self.jwt.len());
        for (name, policy) in self.jwt {
            jwts.push(policy.validate(&name, &key(&format!("jwt.{name}")), at, &file)?);
        }
        let mut kv_buckets = Vec::new();
        for bucket in self.kv.into_iter().flat_map(|kv| kv.buckets) {
            let bad = |message: String| at(bucket.span(), key("kv.buckets"), message);
            policy_name(bucket.get_ref()).map_err(|_| {
                bad(format!(
                    "{:?} is not a bucket name: lowercase letters, digits, - and _ (at most 64)",
                    bucket.get_ref()
                ))
            })?;
            if kv_buckets.len() == MAX_KV_BUCKETS {
                return Err(bad(format!("at most {MAX_KV_BUCKETS} buckets per app")));
            }
            if bucket.get_ref() != outpost_host::kv::DEFAULT_BUCKET
                && !kv_buckets.contains(bucket.get_ref())
            {
                kv_buckets.push(bucket.into_inner());
            }
        }
        if self.edge.len() > MAX_EDGE_RULES {
            return Err(ConfigError {
                file: file(),
                line: None,
                key: Some(key("edge")),
                message: format!("at most {MAX_EDGE_RULES} [[edge]] rules per app"),
            });
        }
        let mut edge = Vec::with_capacity(self.edge.len());
        for rule in self.edge {
            edge.push(rule.validate(&key("edge"), &jwts, &rate_limits, at, &file)?);
        }
        if self.variables.len() > MAX_VARIABLES {
            return Err(ConfigError {
                file: file(),
                line: None,
                key: Some(key("variables")),
                message: format!("at most {MAX_VARIABLES} variables per app"),
            });
        }
        let mut variables = BTreeMap::new();
        for (name, value) in self.variables {
            let bad =
                |message: String| at(value.span(), key(&format!("variables.{name}")), message);
            VarName::parse(&name).map_err(|err| bad(err.to_string()))?;
            if value.get_ref().len() > MAX_VARIABLE_BYTES {
                return Err(bad(format!(
                    "at most {} KiB; keep larger data in KV or fetch it",
                    MAX_VARIABLE_BYTES >> 10
                )));
            }
            variables.insert(name, value.into_inner());
        }
        Ok(AppSections {
            routes,
            limits,
            outbound,
            backends,
            cache,
            rate_limits,
            jwt: jwts,
            kv_buckets,
            edge,
            variables,
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

/// The most variables an app may declare, and the longest value: each
/// instance can read them all.
const MAX_VARIABLES: usize = 256;
const MAX_VARIABLE_BYTES: usize = 16 << 10;

/// The most rate-limit policies and `[[edge]]` rules one app may declare:
/// every request the rules match is checked against each.
const MAX_RATE_LIMITS: usize = 32;
const MAX_EDGE_RULES: usize = 64;

/// `[rate_limits.NAME]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    requests: Option<Spanned<u32>>,
    period_s: Option<Spanned<u64>>,
    burst: Option<Spanned<u32>>,
    key: Option<Spanned<String>>,
    mode: Option<Spanned<String>>,
}

/// The longest period a policy may count over: a day.
const MAX_PERIOD_S: u64 = 86_400;

impl RawRateLimit {
    fn validate(
        self,
        name: &str,
        key: &str,
        at: &impl Fn(std::ops::Range<usize>, String, String) -> ConfigError,
        file: impl Fn() -> PathBuf,
    ) -> Result<RateLimitSpec, ConfigError> {
        let whole = |message: String| ConfigError {
            file: file(),
            line: None,
            key: Some(key.to_owned()),
            message,
        };
        policy_name(name).map_err(whole)?;
        let Some(requests) = positive(&self.requests, &format!("{key}.requests"), at)? else {
            return Err(whole(
                "requests: missing; e.g. requests = 100 (per period_s)".into(),
            ));
        };
        let period_s = match &self.period_s {
            None => return Err(whole("period_s: missing; e.g. period_s = 60".into())),
            Some(period) if !(1..=MAX_PERIOD_S).contains(period.get_ref()) => {
                return Err(at(
                    period.span(),
                    format!("{key}.period_s"),
                    format!("give 1 to {MAX_PERIOD_S} (seconds)"),
                ));
            }
            Some(period) => *period.get_ref(),
        };
        let burst = positive(&self.burst, &format!("{key}.burst"), at)?.unwrap_or(requests);
        let source = match &self.key {
            None => KeySource::ClientIp,
            Some(source) => KeySource::parse(source.get_ref())
                .map_err(|message| at(source.span(), format!("{key}.key"), message))?,
        };
        let mode = match self
            .mode
            .as_ref()
            .map(|mode| (mode, mode.get_ref().as_str()))
        {
            None | Some((_, "enforce")) => Mode::Enforce,
            Some((_, "shadow")) => Mode::Shadow,
            Some((mode, other)) => {
                return Err(at(
                    mode.span(),
                    format!("{key}.mode"),
                    format!("{other:?} is not a mode; use \"enforce\" or \"shadow\""),
                ));
            }
        };
        Ok(RateLimitSpec {
            name: name.to_owned(),
            requests,
            period: Duration::from_secs(period_s),
            burst,
            key: source,
            mode,
        })
    }
}

/// `[kv]`: the app's buckets besides `default`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKv {
    #[serde(default)]
    buckets: Vec<Spanned<String>>,
}

/// The most buckets one app may declare.
const MAX_KV_BUCKETS: usize = 16;

/// Checks a policy's name (`[rate_limits.NAME]`, `[jwt.NAME]`).
fn policy_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a policy name: lowercase letters, digits, - and _ (at most 64)"
        ))
    }
}

/// `[[edge]]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEdgeRule {
    path: Option<Spanned<String>>,
    #[serde(default)]
    methods: Vec<Spanned<String>>,
    jwt: Option<Spanned<String>>,
    rate_limit: Option<Spanned<String>>,
}

impl RawEdgeRule {
    fn validate(
        self,
        key: &str,
        jwts: &[JwtSpec],
        policies: &[RateLimitSpec],
        at: &impl Fn(std::ops::Range<usize>, String, String) -> ConfigError,
        file: impl Fn() -> PathBuf,
    ) -> Result<EdgeRuleSpec, ConfigError> {
        let path = match &self.path {
            None => "/".to_owned(),
            Some(path) if !path.get_ref().starts_with('/') => {
                return Err(at(
                    path.span(),
                    format!("{key}.path"),
                    "must start with /".into(),
                ));
            }
            Some(path) => path.get_ref().clone(),
        };
        let mut methods = Vec::with_capacity(self.methods.len());
        for method in &self.methods {
            // Methods are case-sensitive on the wire; the standard ones are
            // written in capitals, and "get" is taken to mean GET.
            let upper = method.get_ref().to_ascii_uppercase();
            let parsed = http::Method::from_bytes(upper.as_bytes()).map_err(|_| {
                at(
                    method.span(),
                    format!("{key}.methods"),
                    format!("{:?} is not an HTTP method; e.g. \"GET\"", method.get_ref()),
                )
            })?;
            methods.push(parsed);
        }
        if self.jwt.is_none() && self.rate_limit.is_none() {
            return Err(ConfigError {
                file: file(),
                line: None,
                key: Some(key.to_owned()),
                message: "a rule with nothing to check; add jwt = \"NAME\" (a [jwt.NAME] policy) or rate_limit = \"NAME\" (a [rate_limits.NAME] policy)".into(),
            });
        }
        let jwt = match &self.jwt {
            None => None,
            Some(jwt) => {
                let name = jwt.get_ref();
                if !jwts.iter().any(|policy| &policy.name == name) {
                    return Err(at(
                        jwt.span(),
                        format!("{key}.jwt"),
                        format!("no [jwt.{name}] policy is declared"),
                    ));
                }
                Some(name.clone())
            }
        };
        let Some(rate_limit) = self.rate_limit else {
            return Ok(EdgeRuleSpec {
                path,
                methods,
                jwt,
                rate_limit: None,
            });
        };
        let name = rate_limit.get_ref();
        match policies.iter().find(|policy| &policy.name == name) {
            None => {
                return Err(at(
                    rate_limit.span(),
                    format!("{key}.rate_limit"),
                    format!("no [rate_limits.{name}] policy is declared"),
                ));
            }
            Some(policy) if policy.key == KeySource::Guest => {
                return Err(at(
                    rate_limit.span(),
                    format!("{key}.rate_limit"),
                    format!(
                        "[rate_limits.{name}] is keyed by the handler (key = \"guest\"): handlers check it with outpost:edge/ratelimit; \
                         an [[edge]] rule needs key = \"client-ip\", \"header:NAME\" or \"jwt:CLAIM\""
                    ),
                ));
            }
            Some(policy) if matches!(policy.key, KeySource::Claim(_)) && jwt.is_none() => {
                return Err(at(
                    rate_limit.span(),
                    format!("{key}.rate_limit"),
                    format!(
                        "[rate_limits.{name}] counts by a token's claim: add jwt = \"NAME\" to this rule, so the token is verified first"
                    ),
                ));
            }
            Some(_) => {}
        }
        Ok(EdgeRuleSpec {
            path,
            methods,
            jwt,
            rate_limit: Some(name.clone()),
        })
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
        let eject_after =
            positive(&self.eject_after, &format!("{key}.eject_after"), at)?.unwrap_or(3);
        let eject_for = Duration::from_millis(
            positive(&self.eject_ms, &format!("{key}.eject_ms"), at)?.unwrap_or(10_000),
        );
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
                let timeout = positive(&health.timeout_ms, &format!("{key}.timeout_ms"), at)?
                    .map_or(interval.min(Duration::from_secs(1)), Duration::from_millis);
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
                let counts = |value: &Option<Spanned<u32>>, field: &str, default: u32| {
                    Ok(positive(value, &format!("{key}.{field}"), at)?.unwrap_or(default))
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

    #[test]
    fn rate_limits_and_edge_rules_parse_with_errors_that_say_the_fix() {
        let head = "schema = 1\nname = \"a\"\nroutes = [\"/\"]\n";
        let manifest = parse(&format!(
            "{head}[rate_limits.per_key]\nrequests = 100\nperiod_s = 60\nburst = 20\nkey = \"header:X-Api-Key\"\n\
             [rate_limits.guest_one]\nrequests = 5\nperiod_s = 1\nkey = \"guest\"\nmode = \"shadow\"\n\
             [[edge]]\npath = \"/api/\"\nmethods = [\"get\", \"POST\"]\nrate_limit = \"per_key\"\n"
        ))
        .unwrap();
        let per_key = &manifest.rate_limits[1];
        assert_eq!(per_key.name, "per_key");
        assert_eq!((per_key.requests, per_key.burst), (100, 20));
        assert_eq!(per_key.mode, Mode::Enforce);
        let guest = &manifest.rate_limits[0];
        assert_eq!(
            (guest.burst, guest.mode),
            (5, Mode::Shadow),
            "burst defaults to requests"
        );
        let rule = &manifest.edge[0];
        assert_eq!(rule.methods, [http::Method::GET, http::Method::POST]);
        assert_eq!(rule.rate_limit.as_deref(), Some("per_key"));

        let policy = "[rate_limits.p]\nrequests = 1\nperiod_s = 1\n";
        for (toml, expected) in [
            (
                "[rate_limits.p]\nperiod_s = 1\n".to_owned(),
                "outpost.toml: rate_limits.p: requests: missing",
            ),
            (
                "[rate_limits.p]\nrequests = 1\nperiod_s = 0\n".to_owned(),
                "outpost.toml:6: rate_limits.p.period_s: give 1 to 86400",
            ),
            (
                format!("{policy}key = \"jwt:sub\"\n[[edge]]\nrate_limit = \"p\"\n"),
                "outpost.toml:9: edge.rate_limit: [rate_limits.p] counts by a token's claim: add jwt = \"NAME\"",
            ),
            (
                format!("{policy}mode = \"strict\"\n"),
                "outpost.toml:7: rate_limits.p.mode: \"strict\" is not a mode",
            ),
            (
                "[rate_limits.Per]\nrequests = 1\nperiod_s = 1\n".to_owned(),
                "outpost.toml: rate_limits.Per: \"Per\" is not a policy name",
            ),
            (
                format!("{policy}[[edge]]\nrate_limit = \"q\"\n"),
                "outpost.toml:8: edge.rate_limit: no [rate_limits.q] policy is declared",
            ),
            (
                format!("{policy}key = \"guest\"\n[[edge]]\nrate_limit = \"p\"\n"),
                "outpost.toml:9: edge.rate_limit: [rate_limits.p] is keyed by the handler",
            ),
            (
                format!("{policy}[[edge]]\npath = \"api\"\nrate_limit = \"p\"\n"),
                "outpost.toml:8: edge.path: must start with /",
            ),
            (
                format!("{policy}[[edge]]\npath = \"/\"\n"),
                "outpost.toml: edge: a rule with nothing to check",
            ),
            (
                format!("{policy}[[edge]]\njwt = \"main\"\nrate_limit = \"p\"\n"),
                "outpost.toml:8: edge.jwt: no [jwt.main] policy is declared",
            ),
        ] {
            let err = parse(&format!("{head}{toml}")).unwrap_err();
            assert!(err.starts_with(expected), "{toml}: {err}");
        }
    }

    #[test]
    fn jwt_policies_parse_with_their_keys_and_errors_that_say_the_fix() {
        let head = "schema = 1\nname = \"a\"\nroutes = [\"/\"]\n";
        let ec = include_str!("../../host/src/jwt/testdata/ec.pub");
        let manifest = parse(&format!(
            "{head}[jwt.main]\nissuer = \"https://auth.example.com/\"\naudiences = [\"api\"]\n\
             algorithms = [\"ES256\", \"RS256\", \"HS256\"]\n\
             jwks_url = \"https://auth.example.com/.well-known/jwks.json\"\n\
             keys = [{{ kid = \"k1\", alg = \"ES256\", pem = {ec:?} }}]\n\
             hs_secret = \"secret:jwt_key\"\nforward_claims = \"X-JWT-Claims\"\ntoken = \"cookie:session\"\n\
             [rate_limits.per_sub]\nrequests = 10\nperiod_s = 60\nkey = \"jwt:sub\"\n\
             [[edge]]\npath = \"/api\"\njwt = \"main\"\nrate_limit = \"per_sub\"\n"
        ))
        .unwrap();
        let policy = &manifest.jwt[0];
        assert_eq!(policy.keys.len(), 1);
        assert_eq!(policy.keys[0].kid.as_deref(), Some("k1"));
        assert_eq!(policy.hs_secret.as_deref(), Some("jwt_key"));
        assert_eq!(policy.leeway_s, 30);
        assert_eq!(policy.max_token_bytes, 8192);
        assert_eq!(policy.jwks_refresh_min, Duration::from_secs(60));
        assert_eq!(
            policy.forward_claims.as_ref().map(|h| h.as_str()),
            Some("x-jwt-claims")
        );
        assert_eq!(manifest.edge[0].jwt.as_deref(), Some("main"));

        let es = "[jwt.p]\nalgorithms = [\"ES256\"]\n";
        for (toml, expected) in [
            (
                "[jwt.p]\njwks_url = \"https://a.example/jwks\"\n".to_owned(),
                "outpost.toml: jwt.p: algorithms: missing; pin the algorithms",
            ),
            (
                "[jwt.p]\nalgorithms = [\"none\"]\n".to_owned(),
                "outpost.toml:5: jwt.p.algorithms: \"none\" means unsigned tokens",
            ),
            (
                "[jwt.p]\nalgorithms = [\"RS1\"]\n".to_owned(),
                "outpost.toml:5: jwt.p.algorithms: \"RS1\" is not an algorithm",
            ),
            (
                es.to_owned(),
                "outpost.toml: jwt.p: no key for ES256: add jwks_url",
            ),
            (
                "[jwt.p]\nalgorithms = [\"HS256\"]\n".to_owned(),
                "outpost.toml: jwt.p: HS256 tokens need the secret they are signed with",
            ),
            (
                format!("{es}hs_secret = \"secret:k\"\n"),
                "outpost.toml:6: jwt.p.hs_secret: an HS secret, but no HS256/384/512",
            ),
            (
                "[jwt.p]\nalgorithms = [\"HS256\"]\nhs_secret = \"k\"\n".to_owned(),
                "outpost.toml:6: jwt.p.hs_secret: name a secret held by the node",
            ),
            (
                format!("{es}jwks_url = \"http://idp.example/jwks\"\n"),
                "outpost.toml:6: jwt.p.jwks_url: \"http://idp.example/jwks\": a key set over plain HTTP",
            ),
            (
                format!("{es}keys = [{{ pem = \"x\" }}]\n"),
                "outpost.toml:6: jwt.p.keys: a PEM key needs its algorithm",
            ),
            (
                format!("{es}keys = [{{ alg = \"ES256\", pem = \"x\" }}]\n"),
                "outpost.toml:6: jwt.p.keys: not a ES256 public key in PEM",
            ),
            (
                format!(
                    "{es}keys = [{{ jwk = '{{\"kty\":\"oct\",\"alg\":\"HS256\",\"k\":\"c2VjcmV0\"}}' }}]\n"
                ),
                "outpost.toml:6: jwt.p.keys: a secret key does not belong in a manifest",
            ),
            (
                format!(
                    "{es}jwks_url = \"https://a.example/j\"\nforward_claims = \"authorization\"\n"
                ),
                "outpost.toml:7: jwt.p.forward_claims: authorization means something else",
            ),
            (
                format!("{es}jwks_url = \"https://a.example/j\"\ntoken = \"query:t\"\n"),
                "outpost.toml:7: jwt.p.token: \"query:t\" is not a token source",
            ),
        ] {
            let err = parse(&format!("{head}{toml}")).unwrap_err();
            assert!(err.starts_with(expected), "{toml}: {err}");
        }
    }

    #[test]
    fn every_example_manifest_is_valid() {
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
        let mut checked = 0;
        for entry in std::fs::read_dir(&examples).unwrap() {
            let dir = entry.unwrap().path();
            if dir.join(MANIFEST_FILE).exists() {
                AppManifest::load(&dir, &Limits::node_maxima())
                    .unwrap_or_else(|err| panic!("{err}"));
                checked += 1;
            }
        }
        assert!(checked >= 3, "only {checked} example manifests found");
    }

    #[test]
    fn variables_parse_with_errors_that_say_the_fix() {
        let head = "schema = 1\nname = \"a\"\nroutes = [\"/\"]\n";
        let manifest = parse(&format!(
            "{head}[variables]\ngreeting = \"hello\"\napi_url = \"https://x\"\n"
        ))
        .unwrap();
        assert_eq!(manifest.variables["greeting"], "hello");
        assert_eq!(manifest.variables.len(), 2);
        let err = parse(&format!("{head}[variables]\nApiUrl = \"x\"\n")).unwrap_err();
        assert!(
            err.starts_with("outpost.toml:5: variables.ApiUrl: \"ApiUrl\" is not a valid variable or secret name"),
            "{err}"
        );
        let big = "x".repeat(20_000);
        let err = parse(&format!("{head}[variables]\nbig = \"{big}\"\n")).unwrap_err();
        assert!(
            err.starts_with("outpost.toml:5: variables.big: at most 16 KiB"),
            "{err}"
        );
    }
}

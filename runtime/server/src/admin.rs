//! The admin API: its own listener (loopback by default), bearer tokens
//! with scopes, JSON in and out, an audit line for every mutation.
//!
//! ```text
//! GET    /v1/health                          read    the node is up
//! GET    /v1/ready                           read    apps are loaded, requests are served
//! GET    /v1/apps                            read    apps, their active versions and routes
//! GET    /v1/stats                           read    requests and failures per app
//! GET    /v1/apps/APP/versions               read    kept versions of an app
//! GET    /v1/apps/APP/tail                   read    live request log and guest output (SSE)
//! POST   /v1/apps/APP/versions               deploy  upload: body = component, Outpost-Manifest = base64 outpost.toml
//! POST   /v1/apps/APP/versions/N/activate    deploy  serve version N
//! POST   /v1/apps/APP/rollback[?to=N]        deploy  serve version N, or the one before the active one
//! DELETE /v1/apps/APP                        deploy  stop serving the app and delete its versions
//! GET    /v1/apps/APP/secrets                read    the names of an app's secrets (never values)
//! PUT    /v1/apps/APP/secrets/NAME           deploy  set a secret: body = its value
//! DELETE /v1/apps/APP/secrets/NAME           deploy  delete a secret
//! ```

mod auth;
mod sse;

use crate::config::{AdminConfig, Scope};
use crate::front::{self, ConnectionCaps, Deadlines, Driver, Front};
use crate::manifest::{AppManifest, MANIFEST_FILE};
use crate::table::{AppTable, Origin, Served};
use auth::{Audit, Authorized, Tokens};
use base64::Engine as _;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper::body::Incoming;
use outpost_core::{Limits, Runtime};
use outpost_host::cache::Purge;
use outpost_host::vars::{Secret, Secrets};
use outpost_store::AppName;
use outpost_store::{AppStore, Staging, StoreError, VarName, Version};
use serde_json::{Value, json};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// The header carrying the app manifest of an upload, base64-encoded.
pub const MANIFEST_HEADER: &str = "outpost-manifest";

pub(crate) type AdminBody = UnsyncBoxBody<Bytes, Infallible>;

/// Everything the admin API works on.
pub(crate) struct Admin {
    table: Arc<AppTable>,
    runtime: Arc<Runtime>,
    front: Arc<Front>,
    /// What a manifest may ask for at most.
    maxima: Limits,
    /// The store; the lock also serializes every mutation.
    store: tokio::sync::Mutex<AppStore>,
    /// Uploads are validated (compiled) one at a time. A compile that
    /// outlasts its timeout keeps the lock until it ends: a runaway compile
    /// cannot be joined by more.
    compiling: Arc<tokio::sync::Mutex<()>>,
    /// Uploads in progress (read, staged, validated); more get 429.
    uploads: Arc<tokio::sync::Semaphore>,
    max_uploads: usize,
    compile_timeout: Duration,
    tokens: Tokens,
    audit: Audit,
    max_upload: u64,
    caps: Arc<ConnectionCaps>,
    driver: Arc<Driver>,
}

/// Deadlines of admin API connections (HTTP/1.1 only). An upload's body
/// has its own bound (`UPLOAD_TIMEOUT`).
const ADMIN_DEADLINES: Deadlines = Deadlines {
    handshake: Duration::from_secs(30),
    header: Duration::from_secs(30),
    keepalive: Duration::from_secs(60),
    http2_idle: Duration::from_secs(60),
    http2_ping_interval: Duration::from_secs(20),
    http2_ping_timeout: Duration::from_secs(10),
    send: Duration::from_secs(30),
};

/// How long a whole upload may take to arrive.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(300);

impl Admin {
    /// Opens the store and loads the active version of every deployed app
    /// into `table`.
    pub(crate) fn open(
        config: &AdminConfig,
        maxima: &Limits,
        runtime: Arc<Runtime>,
        table: Arc<AppTable>,
        front: Arc<Front>,
    ) -> anyhow::Result<Self> {
        let store = AppStore::open(&config.state_dir)?;
        let mut deployed = Vec::new();
        for name in store.apps()? {
            // One bad stored app must not keep the node (and the admin API
            // that can fix it) down: it is skipped, loudly.
            match load_active(&runtime, maxima, &store, &table, &name) {
                Ok(Some(served)) => deployed.push(served),
                Ok(None) => {}
                Err(err) => tracing::error!(
                    "deployed app {name} is not served: {err}; activate another version or delete the app"
                ),
            }
        }
        table
            .install_all(deployed)
            .map_err(|conflict| anyhow::anyhow!("deployed apps: {conflict}"))?;
        for app in store.apps_with_secrets()? {
            runtime
                .services()
                .vars
                .set_secrets(&app, live_secrets(store.secrets(&app)?));
        }
        Ok(Self {
            table,
            runtime,
            front,
            maxima: maxima.clone(),
            store: tokio::sync::Mutex::new(store),
            compiling: Arc::new(tokio::sync::Mutex::new(())),
            uploads: Arc::new(tokio::sync::Semaphore::new(config.max_uploads)),
            max_uploads: config.max_uploads,
            compile_timeout: config.compile_timeout,
            tokens: Tokens::new(config.tokens.clone()),
            audit: Audit::open(&config.state_dir.join("audit.log"))?,
            max_upload: config.max_upload,
            caps: Arc::new(ConnectionCaps::new(
                config.max_connections,
                config.max_connections,
            )),
            driver: Arc::new(Driver::new(ADMIN_DEADLINES, true)),
        })
    }

    async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<AdminBody> {
        let path = request.uri().path().to_owned();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let method = request.method().clone();
        let result = match (&method, segments.as_slice()) {
            (&Method::GET, ["v1", "health"]) => {
                self.read(&request, |_| Ok(json!({"status": "ok"})))
            }
            (&Method::GET, ["v1", "ready"]) => self.read(&request, |admin| {
                Ok(json!({"ready": true, "apps": admin.table.list().len()}))
            }),
            (&Method::GET, ["v1", "apps"]) => self.read(&request, Self::apps),
            (&Method::GET, ["v1", "stats"]) => self.read(&request, Self::stats),
            (&Method::GET, ["v1", "apps", app, "versions"]) => {
                async {
                    self.tokens.authorize(request.headers(), Scope::Read)?;
                    let app = AppName::parse(app)?;
                    Ok(json_response(StatusCode::OK, &self.versions(&app).await?))
                }
                .await
            }
            (&Method::GET, ["v1", "apps", app, "tail"]) => {
                async {
                    self.tokens.authorize(request.headers(), Scope::Read)?;
                    let app = AppName::parse(app)?;
                    self.check_exists(&app).await?;
                    Ok(sse::tail(&self.runtime, &app))
                }
                .await
            }
            (&Method::POST, ["v1", "apps", app, "versions"]) => {
                self.mutate(request, peer, Mutation::Upload((*app).to_owned()))
                    .await
            }
            (&Method::POST, ["v1", "apps", app, "versions", version, "activate"]) => {
                let mutation = Mutation::Activate((*app).to_owned(), version.parse().ok());
                self.mutate(request, peer, mutation).await
            }
            (&Method::POST, ["v1", "apps", app, "rollback"]) => {
                let mutation =
                    Mutation::Rollback((*app).to_owned(), query_param(request.uri(), "to"));
                self.mutate(request, peer, mutation).await
            }
            (&Method::POST, ["v1", "apps", app, "purge"]) => {
                self.mutate(request, peer, Mutation::Purge((*app).to_owned()))
                    .await
            }
            (&Method::DELETE, ["v1", "apps", app]) => {
                self.mutate(request, peer, Mutation::Delete((*app).to_owned()))
                    .await
            }
            (&Method::GET, ["v1", "apps", app, "secrets"]) => {
                async {
                    self.tokens.authorize(request.headers(), Scope::Read)?;
                    let app = AppName::parse(app)?;
                    let names = self.store.lock().await.secret_names(&app)?;
                    let names: Vec<&str> = names.iter().map(VarName::as_str).collect();
                    Ok(json_response(
                        StatusCode::OK,
                        &json!({"app": app, "secrets": names}),
                    ))
                }
                .await
            }
            (&Method::PUT, ["v1", "apps", app, "secrets", name]) => {
                let mutation = Mutation::PutSecret((*app).to_owned(), (*name).to_owned());
                self.mutate(request, peer, mutation).await
            }
            (&Method::DELETE, ["v1", "apps", app, "secrets", name]) => {
                let mutation = Mutation::DeleteSecret((*app).to_owned(), (*name).to_owned());
                self.mutate(request, peer, mutation).await
            }
            (_, ["v1", "health" | "ready" | "apps" | "stats"])
            | (
                _,
                [
                    "v1",
                    "apps",
                    _,
                    "versions" | "tail" | "rollback" | "purge" | "secrets",
                ],
            )
            | (_, ["v1", "apps", _, "secrets", _])
            | (_, ["v1", "apps", _, "versions", _, "activate"])
            | (_, ["v1", "apps", _]) => Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{method} is not allowed on {}", request.uri().path()),
            )),
            _ => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!(
                    "no admin endpoint {method} {}; the endpoints are listed in the README",
                    request.uri().path()
                ),
            )),
        };
        result.unwrap_or_else(|err| err.response())
    }

    /// A read-only endpoint answered from memory.
    fn read(
        &self,
        request: &Request<Incoming>,
        answer: impl FnOnce(&Self) -> Result<Value, ApiError>,
    ) -> Result<Response<AdminBody>, ApiError> {
        self.tokens.authorize(request.headers(), Scope::Read)?;
        answer(self).map(|value| json_response(StatusCode::OK, &value))
    }

    /// A mutation: needs the deploy scope (purges: the purge scope). An authorized one is written to
    /// the audit log before it is carried out (refused with 503 if that
    /// fails: no unaudited change) and again with its outcome; refused
    /// attempts are counted and sampled into the log.
    async fn mutate(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
        mutation: Mutation,
    ) -> Result<Response<AdminBody>, ApiError> {
        let (parts, body) = request.into_parts();
        let (action, app) = mutation.describe();
        let app = match AppName::parse(app) {
            Ok(app) => app,
            Err(invalid) => {
                // Not audited: nothing can happen to an app that cannot
                // exist, and a client-chosen 64 KiB name has no place in
                // the log.
                drain(body, self.max_upload).await;
                return Err(invalid.into());
            }
        };
        let app = &app;
        let who = match self
            .tokens
            .identify(&parts.headers)
            .and_then(|token| token.allowed(mutation.scope()))
        {
            Ok(who) => who,
            Err(refused) => {
                self.audit.refused(peer, action, app, refused.status);
                drain(body, self.max_upload).await;
                return Err(refused);
            }
        };
        if let Err(err) = self
            .audit
            .record(Some(&who.name), action, app, None, &json!({}))
        {
            drain(body, self.max_upload).await;
            return Err(ApiError::internal(format!(
                "the audit log cannot be written ({err}); no change is made until it can"
            ))
            .with_status(StatusCode::SERVICE_UNAVAILABLE));
        }
        let result = match &mutation {
            Mutation::Upload(_) => self.upload(app, &who, &parts.headers, body).await,
            Mutation::Activate(_, version) => self.activate(app, *version).await,
            Mutation::Rollback(_, to) => self.rollback(app, to.as_deref()).await,
            Mutation::Delete(_) => self.delete(app).await,
            Mutation::Purge(_) => self.purge(app, body).await,
            Mutation::PutSecret(_, name) => self.put_secret(app, name, body).await,
            Mutation::DeleteSecret(_, name) => self.delete_secret(app, name).await,
        };
        let (status, outcome) = match &result {
            Ok((status, value)) => (*status, value.clone()),
            Err(err) => (err.status, json!({"error": err.message})),
        };
        if let Err(err) = self
            .audit
            .record(Some(&who.name), action, app, Some(status), &outcome)
        {
            tracing::error!("cannot write the outcome of {action} {app} to the audit log: {err}");
        }
        result.map(|(status, value)| json_response(status, &value))
    }

    fn apps(&self) -> Result<Value, ApiError> {
        let apps: Vec<Value> = self
            .table
            .list()
            .iter()
            .map(|served| {
                json!({
                    "name": served.app.name(),
                    "origin": origin_name(served.origin),
                    "version": served.version,
                    "routes": served.routes.iter().map(ToString::to_string).collect::<Vec<_>>(),
                })
            })
            .collect();
        Ok(json!({ "apps": apps }))
    }

    fn stats(&self) -> Result<Value, ApiError> {
        let outbound = self.runtime.services().fetch.stats();
        let open: std::collections::HashMap<&str, usize> = outbound
            .open_connections
            .iter()
            .map(|(origin, open)| (origin.as_str(), *open))
            .collect();
        let apps: Vec<Value> = self
            .table
            .list()
            .iter()
            .map(|served| {
                let stats = served.app.stats();
                let backends: Vec<Value> = served
                    .app
                    .fetch_policy()
                    .backends()
                    .map(|backend| {
                        let endpoints: Vec<Value> = backend
                            .stats()
                            .into_iter()
                            .zip(&backend.endpoints)
                            .map(|(stats, endpoint)| {
                                let origin = format!(
                                    "{}:{}",
                                    endpoint.destination.host, endpoint.destination.port
                                );
                                json!({
                                    "endpoint": stats.endpoint,
                                    "state": stats.state,
                                    "requests": stats.requests,
                                    "errors": stats.errors,
                                    "in_flight": stats.in_flight,
                                    "latency_p50_us": stats.latency_p50_us,
                                    "latency_p99_us": stats.latency_p99_us,
                                    "open_connections": open.get(origin.as_str()).copied().unwrap_or(0),
                                })
                            })
                            .collect();
                        json!({ "name": backend.spec.name, "endpoints": endpoints })
                    })
                    .collect();
                json!({
                    "name": served.app.name(),
                    "version": served.version,
                    "requests": stats.requests(),
                    "failures": stats.failures(),
                    "backends": backends,
                    "rate_limits": served.app.rate_limits().iter().map(|limiter| {
                        let stats = limiter.stats();
                        json!({
                            "name": stats.name,
                            "mode": stats.mode,
                            "allowed": stats.allowed,
                            "limited": stats.limited,
                            "shadow_limited": stats.shadow_limited,
                            "keys": stats.keys,
                        })
                    }).collect::<Vec<_>>(),
                    "cache": {
                        "in_front": served.app.cache().rules().in_front,
                        "entries": served.app.cache().entries(),
                        "bytes": served.app.cache().used(),
                        "budget_bytes": served.app.cache().rules().memory,
                    },
                })
            })
            .collect();
        Ok(json!({
            "apps": apps,
            "outbound": {
                "sent": outbound.sent,
                "refused": outbound.refused,
                "failed": outbound.failed,
                "open_connections": open,
            },
            "connections": self.front.stats(),
            "admin": {
                "connections": self.caps.counters.to_json(self.caps.open()),
                "refused_attempts": self.audit.refused_count(),
            },
        }))
    }

    async fn versions(&self, app: &AppName) -> Result<Value, ApiError> {
        let store = self.store.lock().await;
        let versions = store.versions(app)?;
        if versions.is_empty() {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no deployed app {app}"),
            ));
        }
        let active = store.active(app)?.map(|version| version.version);
        let versions: Vec<Value> = versions
            .iter()
            .rev()
            .map(|version| {
                json!({
                    "version": version.version,
                    "sha256": version.sha256,
                    "size": version.size,
                    "created_unix_ms": version.created_unix_ms,
                    "created_by": version.created_by,
                    "active": Some(version.version) == active,
                })
            })
            .collect();
        Ok(json!({ "app": app, "active": active, "versions": versions }))
    }

    /// Validates and stores an upload as a new, inactive version.
    async fn upload(
        &self,
        app: &AppName,
        who: &Authorized,
        headers: &http::HeaderMap,
        body: Incoming,
    ) -> Result<(StatusCode, Value), ApiError> {
        let Ok(_upload) = self.uploads.clone().try_acquire_owned() else {
            drain(body, self.max_upload).await;
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "{} uploads are in progress, the most this node takes at once (admin.max_uploads); try again shortly",
                    self.max_uploads
                ),
            )
            .with_retry_after(5));
        };
        // The body first, whatever is wrong with the rest: see stage_upload.
        let staging = self.store.lock().await.staging()?;
        let staging = stage_upload(body, staging, self.max_upload).await?;
        let manifest_text = manifest_of(headers)?;
        let manifest = AppManifest::parse(Path::new(MANIFEST_FILE), &manifest_text, &self.maxima)
            .map_err(|err| ApiError::new(StatusCode::BAD_REQUEST, err.to_string()))?;
        if manifest.name != *app {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "the manifest names app {:?}, but the upload is for {app:?}",
                    manifest.name
                ),
            ));
        }
        let staging = staging.ok_or_else(|| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the component is larger than the node accepts ({} MiB, admin.max_upload_mib)",
                    self.max_upload >> 20
                ),
            )
        })?;
        if staging.size() == 0 {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "the upload is empty; send the component as the body",
            ));
        }

        self.refuse_config_app(app)?;
        let staged = staging.finish()?;
        // Validation compiles the component (and caches the artifact, so the
        // activation that follows is fast): it must be a component, import
        // only the handler world, export wasi:http/incoming-handler. One
        // compile at a time, and without the store lock: activations and
        // rollbacks go on meanwhile. The compile owns the lock until it
        // ends, even past its timeout (wasmtime cannot stop a compile).
        let compiling =
            tokio::time::timeout(self.compile_timeout, self.compiling.clone().lock_owned())
                .await
                .map_err(|_| {
                    ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "an earlier upload is still compiling; try again later",
                    )
                    .with_retry_after(30)
                })?;
        let runtime = self.runtime.clone();
        let path = staged.path().to_owned();
        let compiled = tokio::time::timeout(
            self.compile_timeout,
            tokio::task::spawn_blocking(move || {
                let validated = runtime.validate(&path);
                drop(compiling);
                validated
            }),
        )
        .await;
        match compiled {
            Err(_elapsed) => {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!(
                        "the component did not compile within {} ms (admin.compile_timeout_ms)",
                        self.compile_timeout.as_millis()
                    ),
                ));
            }
            Ok(Err(panicked)) => {
                return Err(ApiError::internal(format!("validation failed: {panicked}")));
            }
            Ok(Ok(Err(invalid))) => {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    // Name the upload, not the staging file.
                    invalid
                        .to_string()
                        .replace(&staged.path().display().to_string(), "the upload"),
                ));
            }
            Ok(Ok(Ok(()))) => {}
        }
        let store = self.store.lock().await;
        let sha256 = store.commit(staged)?;
        let version = store.record_version(app, &sha256, &manifest_text, &who.name)?;
        tracing::info!(
            "app {app}: version {} uploaded by {}",
            version.version,
            who.name
        );
        Ok((
            StatusCode::CREATED,
            json!({"app": app, "version": version.version, "sha256": version.sha256, "size": version.size}),
        ))
    }

    async fn activate(
        &self,
        app: &AppName,
        version: Option<u64>,
    ) -> Result<(StatusCode, Value), ApiError> {
        let Some(version) = version else {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "the version must be a number, as in /versions/3/activate",
            ));
        };
        self.refuse_config_app(app)?;
        let store = self.store.lock().await;
        self.switch_to(&store, app, version).await
    }

    /// 404 unless `app` is served or stored.
    async fn check_exists(&self, app: &AppName) -> Result<(), ApiError> {
        if self.table.get(app).is_some() || !self.store.lock().await.versions(app)?.is_empty() {
            return Ok(());
        }
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no app {app} on this node"),
        ))
    }

    /// Apps from node.toml belong to the operator: a deploy token can
    /// neither replace nor remove them.
    fn refuse_config_app(&self, app: &str) -> Result<(), ApiError> {
        if self
            .table
            .get(app)
            .is_some_and(|served| served.origin == Origin::Config)
        {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "app {app} comes from the node config; deploy under another name, or change node.toml"
                ),
            ));
        }
        Ok(())
    }

    async fn rollback(
        &self,
        app: &AppName,
        to: Option<&str>,
    ) -> Result<(StatusCode, Value), ApiError> {
        self.refuse_config_app(app)?;
        let store = self.store.lock().await;
        let target = match to {
            Some(to) => to.parse::<u64>().map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("?to={to} is not a version number"),
                )
            })?,
            None => {
                let active = store.active(app)?.ok_or_else(|| {
                    ApiError::new(
                        StatusCode::NOT_FOUND,
                        format!("app {app} has no active version to roll back from"),
                    )
                })?;
                store
                    .versions(app)?
                    .iter()
                    .rev()
                    .map(|version| version.version)
                    .find(|&number| number < active.version)
                    .ok_or_else(|| {
                        ApiError::new(
                            StatusCode::CONFLICT,
                            format!(
                                "app {app} has no version before {} to roll back to",
                                active.version
                            ),
                        )
                    })?
            }
        };
        self.switch_to(&store, app, target).await
    }

    /// Loads `version` (from the precompiled cache: validated at upload),
    /// checks its routes, makes it durable as active, then swaps it in.
    async fn switch_to(
        &self,
        store: &AppStore,
        app: &AppName,
        version: u64,
    ) -> Result<(StatusCode, Value), ApiError> {
        let record = store.version(app, version)?.ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("app {app} has no version {version}"),
            )
        })?;
        let runtime = self.runtime.clone();
        let blob = store.blob_path(&record.sha256);
        let name = app.clone();
        let maxima = self.maxima.clone();
        let served = tokio::task::spawn_blocking(move || {
            load_version(&runtime, &maxima, &name, &blob, &record)
        })
        .await
        .map_err(|panicked| ApiError::internal(format!("loading failed: {panicked}")))?
        .map_err(|(status, message)| ApiError::new(status, message))?;
        self.table
            .check_routes(app, &served.routes, Origin::Store)
            .map_err(|conflict| ApiError::new(StatusCode::CONFLICT, conflict))?;
        store.activate(app, version)?;
        let previous = self
            .table
            .install(served)
            .map_err(|conflict| ApiError::new(StatusCode::CONFLICT, conflict))?
            .and_then(|previous| previous.version);
        tracing::info!("app {app}: version {version} active (was {previous:?})");
        if let Err(err) = self.front.fit_descriptors() {
            tracing::error!("{err:#}");
        }
        Ok((
            StatusCode::OK,
            json!({"app": app, "version": version, "previous": previous}),
        ))
    }

    /// Purges an app's cached responses; the selection is the JSON body.
    /// Runs off the admin API's event loop: a purge of 100,000 entries
    /// takes a while and must not hold other admin requests.
    async fn purge(&self, app: &AppName, body: Incoming) -> Result<(StatusCode, Value), ApiError> {
        let bytes = http_body_util::Limited::new(body, PURGE_BODY_MAX)
            .collect()
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "a purge request is at most {} KiB of JSON; send several",
                        PURGE_BODY_MAX >> 10
                    ),
                )
            })?
            .to_bytes();
        let request: PurgeBody = serde_json::from_slice(&bytes).map_err(|err| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "the body is not a purge request ({err}); send e.g. {{\"tags\": [\"product-1\"], \"soft\": true}} \
                     with any of urls, prefixes, tags, all, soft"
                ),
            )
        })?;
        let purge = Purge {
            urls: request.urls,
            prefixes: request.prefixes,
            tags: request.tags,
            all: request.all,
            soft: request.soft,
        };
        if !purge.all && purge.urls.is_empty() && purge.prefixes.is_empty() && purge.tags.is_empty()
        {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "nothing selected: give urls, prefixes, tags, or \"all\": true",
            ));
        }
        let served = self.table.get(app).ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no app {app} is served on this node"),
            )
        })?;
        let policy = served.app.cache().clone();
        // The selection goes into the answer, and so into the audit log.
        let selection = json!({
            "urls": purge.urls,
            "prefixes": purge.prefixes,
            "tags": purge.tags,
            "all": purge.all,
            "soft": purge.soft,
        });
        let purged = tokio::task::spawn_blocking(move || policy.purge(&purge))
            .await
            .map_err(|err| ApiError::internal(format!("the purge failed: {err}")))?
            .map_err(|message| ApiError::new(StatusCode::BAD_REQUEST, message))?;
        let mut answer = selection;
        answer["purged"] = json!(purged);
        Ok((StatusCode::OK, answer))
    }

    async fn delete(&self, app: &AppName) -> Result<(StatusCode, Value), ApiError> {
        self.refuse_config_app(app)?;
        let store = self.store.lock().await;
        let removed = self.table.remove(app).is_some();
        let deleted = store.delete_app(app)?;
        self.runtime
            .services()
            .vars
            .set_secrets(app, Secrets::new());
        if !removed && !deleted {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no deployed app {app}"),
            ));
        }
        tracing::info!("app {app}: deleted");
        Ok((StatusCode::OK, json!({"app": app, "deleted": true})))
    }
}

impl Admin {
    /// `PUT /v1/apps/APP/secrets/NAME`: the body is the value (UTF-8, at
    /// most [`SECRET_MAX`] bytes). The app's handlers see it from their
    /// next request. The value is never logged, audited or answered.
    async fn put_secret(
        &self,
        app: &AppName,
        name: &str,
        body: Incoming,
    ) -> Result<(StatusCode, Value), ApiError> {
        self.refuse_config_app(app)?;
        let name = match VarName::parse(name) {
            Ok(name) => name,
            Err(err) => {
                drain(body, SECRET_MAX as u64).await;
                return Err(err.into());
            }
        };
        let value = http_body_util::Limited::new(body, SECRET_MAX)
            .collect()
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("a secret is at most {} KiB", SECRET_MAX >> 10),
                )
            })?
            .to_bytes();
        if std::str::from_utf8(&value).is_err() {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "a secret is UTF-8 text (wasi:config values are strings); encode binary values, e.g. as base64",
            ));
        }
        let store = self.store.lock().await;
        store.put_secret(app, &name, &value)?;
        self.serve_secrets(&store, app)?;
        tracing::info!("app {app}: secret {name} set");
        Ok((StatusCode::OK, json!({"app": app, "secret": name.as_str()})))
    }

    /// `DELETE /v1/apps/APP/secrets/NAME`.
    async fn delete_secret(
        &self,
        app: &AppName,
        name: &str,
    ) -> Result<(StatusCode, Value), ApiError> {
        self.refuse_config_app(app)?;
        let name = VarName::parse(name)?;
        let store = self.store.lock().await;
        if !store.delete_secret(app, &name)? {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("app {app} has no secret {name}"),
            ));
        }
        self.serve_secrets(&store, app)?;
        tracing::info!("app {app}: secret {name} deleted");
        Ok((
            StatusCode::OK,
            json!({"app": app, "secret": name.as_str(), "deleted": true}),
        ))
    }

    /// Hands `app`'s stored secrets to its handlers.
    fn serve_secrets(&self, store: &AppStore, app: &AppName) -> Result<(), ApiError> {
        let secrets = live_secrets(store.secrets(app)?);
        self.runtime.services().vars.set_secrets(app, secrets);
        Ok(())
    }
}

/// The largest secret value.
const SECRET_MAX: usize = 64 << 10;

/// Stored secrets as handlers see them.
fn live_secrets(stored: Vec<(VarName, String)>) -> Secrets {
    stored
        .into_iter()
        .map(|(name, value)| (name.as_str().to_owned(), Secret::new(&value)))
        .collect()
}

/// Serves the admin API until `shutdown` resolves, on connections of its
/// own (capped by `admin.max_connections`, with descriptors kept for them):
/// a flood of clients on the front end cannot lock the operator out. Open
/// connections (a tail, say) get a second to end.
pub(crate) async fn serve(
    listener: TcpListener,
    admin: Arc<Admin>,
    shutdown: impl Future<Output = ()>,
) {
    let handler = {
        let admin = admin.clone();
        move |request, peer| {
            let admin = admin.clone();
            async move { admin.handle(request, peer).await }
        }
    };
    front::accept_loop(
        listener,
        &admin.caps,
        admin.driver.clone(),
        handler,
        shutdown,
        Duration::from_secs(1),
        "admin API",
    )
    .await;
}

/// An upload that is refused is still read, and thrown away, up to this
/// much: a client writing its body would otherwise see the connection closed
/// under it (a broken pipe) instead of the refusal and its reason.
const DRAIN_LIMIT: u64 = 1 << 30;

/// Writes an upload's body into `staging` as it arrives: the staging file,
/// or `None` if there were more than `max` bytes (the rest is read and
/// dropped, up to `DRAIN_LIMIT` bytes in all, so the client sees the 413
/// and not a broken pipe). The whole upload has `UPLOAD_TIMEOUT`.
async fn stage_upload(
    mut body: Incoming,
    mut staging: Staging,
    max: u64,
) -> Result<Option<Staging>, ApiError> {
    let read = async {
        let mut seen: u64 = 0;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|err| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("reading the upload failed: {err}"),
                )
            })?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            seen += data.len() as u64;
            if seen <= max {
                staging.write(&data)?;
            } else if seen > DRAIN_LIMIT {
                break;
            }
        }
        Ok::<_, ApiError>(seen)
    };
    let seen = tokio::time::timeout(UPLOAD_TIMEOUT, read)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the upload did not arrive within {} s",
                    UPLOAD_TIMEOUT.as_secs()
                ),
            )
        })??;
    Ok((seen <= max).then_some(staging))
}

/// How long a refused request's body is read before the connection is
/// simply closed.
const DRAIN_TIME: Duration = Duration::from_secs(10);

/// Reads and drops a refused request's body, so the client gets the
/// refusal instead of a connection closed under its upload; bounded in bytes
/// and time.
async fn drain(body: Incoming, limit: u64) {
    crate::edge::drain(body, limit, DRAIN_TIME).await;
}

/// What the deploy scope may change.
enum Mutation {
    Upload(String),
    Activate(String, Option<u64>),
    Rollback(String, Option<String>),
    Delete(String),
    Purge(String),
    PutSecret(String, String),
    DeleteSecret(String, String),
}

impl Mutation {
    /// The scope a token needs for it.
    fn scope(&self) -> Scope {
        match self {
            Self::Purge(_) => Scope::Purge,
            _ => Scope::Deploy,
        }
    }

    /// The audit log's action and app.
    fn describe(&self) -> (&'static str, &str) {
        match self {
            Self::Purge(app) => ("purge", app),
            Self::Upload(app) => ("upload", app),
            Self::Activate(app, _) => ("activate", app),
            Self::Rollback(app, _) => ("rollback", app),
            Self::Delete(app) => ("delete", app),
            Self::PutSecret(app, _) => ("secret-put", app),
            Self::DeleteSecret(app, _) => ("secret-delete", app),
        }
    }
}

/// The largest purge request body.
const PURGE_BODY_MAX: usize = 64 << 10;

/// `POST /v1/apps/APP/purge`'s body.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgeBody {
    #[serde(default)]
    urls: Vec<String>,
    #[serde(default)]
    prefixes: Vec<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    all: bool,
    #[serde(default)]
    soft: bool,
}

/// The active version of a stored app, loaded, unless it has none. An app
/// named like an app of node.toml is refused: the node config wins.
fn load_active(
    runtime: &Runtime,
    maxima: &Limits,
    store: &AppStore,
    table: &AppTable,
    name: &AppName,
) -> Result<Option<Served>, String> {
    let Some(version) = store.active(name).map_err(|err| err.to_string())? else {
        return Ok(None);
    };
    if table.get(name).is_some() {
        return Err("node.toml has an app of the same name".into());
    }
    let served = load_version(
        runtime,
        maxima,
        name,
        &store.blob_path(&version.sha256),
        &version,
    )
    .map_err(|(_, err)| format!("version {}: {err}", version.version))?;
    table.check_routes(name, &served.routes, Origin::Store)?;
    tracing::info!("app {name}: version {} from the store", version.version);
    Ok(Some(served))
}

/// Loads a stored version for serving, with the routes and limits of its
/// manifest.
fn load_version(
    runtime: &Runtime,
    maxima: &Limits,
    app: &AppName,
    blob: &Path,
    version: &Version,
) -> Result<Served, (StatusCode, String)> {
    let manifest = AppManifest::parse(Path::new(MANIFEST_FILE), &version.manifest, maxima)
        .map_err(|err| {
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("stored manifest: {err}"),
            )
        })?;
    if manifest.name != *app {
        return Err((
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the stored manifest names app {:?}", manifest.name),
        ));
    }
    let spec = manifest.spec(blob.to_owned());
    let (loaded, _) = runtime
        .load_app(&spec)
        .map_err(|err| (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()))?;
    Ok(Served {
        app: loaded,
        routes: manifest.routes,
        version: Some(version.version),
        origin: Origin::Store,
    })
}

fn manifest_of(headers: &http::HeaderMap) -> Result<String, ApiError> {
    let missing = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("send the app's outpost.toml, base64-encoded, in the {MANIFEST_HEADER} header"),
        )
    };
    let encoded = headers.get(MANIFEST_HEADER).ok_or_else(missing)?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.as_bytes())
        .map_err(|_| missing())?;
    String::from_utf8(decoded)
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "the manifest is not UTF-8 text"))
}

fn query_param(uri: &http::Uri, name: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| value.to_owned())
    })
}

fn origin_name(origin: Origin) -> &'static str {
    match origin {
        Origin::Config => "config",
        Origin::Store => "deployed",
    }
}

pub(crate) fn json_response(status: StatusCode, value: &Value) -> Response<AdminBody> {
    let mut body = serde_json::to_vec_pretty(value).expect("JSON values serialize");
    body.push(b'\n');
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)).boxed_unsync())
        .expect("static response parts are valid")
}

/// An admin request that cannot be carried out: a status and why.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    message: String,
    retry_after: Option<u32>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    fn internal(message: String) -> Self {
        tracing::error!("admin: {message}");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    fn with_retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    fn response(&self) -> Response<AdminBody> {
        let mut response = json_response(self.status, &json!({ "error": self.message }));
        let headers = response.headers_mut();
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
        }
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, http::HeaderValue::from(seconds));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound(message) => Self::new(StatusCode::NOT_FOUND, message),
            StoreError::Invalid(message) => Self::new(StatusCode::BAD_REQUEST, message),
            StoreError::Io { .. } => Self::internal(err.to_string()),
        }
    }
}

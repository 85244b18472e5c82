//! A cache in front of an origin: the one request flow of the edge cache,
//! whether the origin is the app's handler (`[cache] enabled = true`) or
//! what a handler fetches (`[backends.NAME] cache = true`). A fresh hit is
//! answered at once, without the origin; a miss asks the origin and stores
//! its response while it streams on; a stale entry is revalidated with a
//! conditional request, served while a background refresh runs
//! (`stale-while-revalidate`), or served when the origin fails
//! (`stale-if-error`); concurrent misses collapse into one request. Every
//! response that went through the cache says why in `Cache-Status`. The
//! rules themselves are the rest of this module.

use super::{
    CACHE_STATUS, CachePolicy, CacheStatus, Conditional, Flight, Leader, Lookup, Overrides,
    RequestDirectives, Reuse, Stored, answer, evaluate_conditional, invalidated, reuse, selects,
};
use crate::RequestId;
use bytes::{Bytes, BytesMut};
use http::header::{
    ETAG, IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE, LAST_MODIFIED,
    RANGE,
};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt as _, Full};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};
use wasmtime_wasi_http::WasiBody;

/// What the cache stands in front of.
pub trait Origin: Clone + Send + Sync + 'static {
    /// The body of requests to it.
    type Body: Send + 'static;
    /// Why it gave no response.
    type Failure: Send + 'static;

    /// Asks the origin.
    fn ask(
        &self,
        request: Request<Self::Body>,
    ) -> impl Future<Output = Result<Response<WasiBody>, Self::Failure>> + Send;

    /// Asks the origin with a bodyless request of the cache's own: a
    /// `stale-while-revalidate` refresh in the background, or a
    /// revalidation asked again without its conditionals.
    fn ask_again(
        self,
        request: Request<()>,
    ) -> impl Future<Output = Result<Response<WasiBody>, Self::Failure>> + Send + 'static;

    /// The host a request names, as the cache keys it.
    fn host<B>(request: &Request<B>) -> &str;
}

/// A request on its way through the cache to `origin`.
pub struct CachedRequest<'a, O> {
    /// The app's cache.
    pub policy: &'a CachePolicy,
    pub origin: O,
    /// The app's name (the first part of every key).
    pub app: &'a str,
    /// Whether the request's URL is `https`.
    pub https: bool,
    /// The request's id, for the answers the cache makes itself.
    pub id: RequestId,
}

/// What the origin is asked for, when the cache cannot answer alone.
pub enum Miss {
    /// An unsafe method: forwarded, then invalidates.
    Method,
    /// A stale entry to revalidate; `if_error`: it may answer if the
    /// origin fails (`stale-if-error`), with this conditional result.
    Stale {
        key: Vec<u8>,
        stored: Arc<Stored>,
        if_error: Option<Conditional>,
        status: CacheStatus,
    },
    /// Nothing usable stored: collapsed with concurrent misses.
    Absent {
        key: Vec<u8>,
        directives: RequestDirectives,
        status: CacheStatus,
    },
}

impl<O: Origin> CachedRequest<'_, O> {
    /// Answers `request` from the cache if it can, without waiting for
    /// anything: a hit never awaits, and its future stays small (the miss
    /// path, with the origin's future in it, is boxed by the caller).
    #[expect(
        clippy::result_large_err,
        reason = "a boxed miss would cost every miss an allocation, for no gain on hits"
    )]
    pub fn lookup<B>(&self, request: &Request<B>) -> Result<Response<WasiBody>, Miss> {
        let method = request.method();
        if method != Method::GET && method != Method::HEAD {
            return Err(Miss::Method);
        }
        let key = self.policy.rules().key.primary(
            self.app,
            self.https,
            O::host(request),
            request.uri(),
            request.headers(),
        );
        let directives = RequestDirectives::of(request.headers());
        let now = SystemTime::now();
        let (stored, mut status) = match self.policy.lookup(&key, request.headers()) {
            Lookup::Found(stored) => (Some(stored), forwarded("stale")),
            Lookup::UriMiss => (None, forwarded("uri-miss")),
            Lookup::VaryMiss => (None, forwarded("vary-miss")),
        };
        if let Some(stored) = stored {
            let conditional = evaluate_conditional(request.headers(), &stored.headers);
            if conditional == Conditional::Origin {
                status.fwd = Some("request");
            } else {
                let hit = CacheStatus {
                    hit: true,
                    detail: Some("L1"),
                    ..CacheStatus::default()
                };
                match reuse(&stored.timing, &stored.directives, &directives, now) {
                    Reuse::Fresh | Reuse::StaleAccepted => {
                        return Ok(hit_response(&stored, request, conditional, now, hit));
                    }
                    Reuse::StaleWhileRevalidate => {
                        self.refresh_in_background(request, key, &stored);
                        return Ok(hit_response(&stored, request, conditional, now, hit));
                    }
                    Reuse::Revalidate { .. } if directives.only_if_cached => {}
                    Reuse::Revalidate { if_error } => {
                        return Err(Miss::Stale {
                            key,
                            if_error: if_error.then_some(conditional),
                            stored,
                            status,
                        });
                    }
                }
            }
        }
        if directives.only_if_cached {
            status.detail = Some("only-if-cached");
            return Ok(gateway_timeout(self.id, status));
        }
        Err(Miss::Absent {
            key,
            directives,
            status,
        })
    }

    /// Asks the origin what [`lookup`](Self::lookup) could not answer.
    pub async fn ask(
        self,
        request: Request<O::Body>,
        miss: Miss,
    ) -> Result<Response<WasiBody>, O::Failure> {
        match miss {
            Miss::Method => self.unsafe_method(request).await,
            Miss::Stale {
                key,
                stored,
                if_error,
                status,
            } => {
                self.revalidate(request, key, stored, if_error, status)
                    .await
            }
            Miss::Absent {
                key,
                directives,
                status,
            } => self.collapse(request, key, &directives, status).await,
        }
    }

    /// Concurrent misses for the key make one request to the origin; the
    /// others wait for its response and are answered from the entry it
    /// stored.
    async fn collapse(
        self,
        request: Request<O::Body>,
        key: Vec<u8>,
        directives: &RequestDirectives,
        status: CacheStatus,
    ) -> Result<Response<WasiBody>, O::Failure> {
        let leader = match self.policy.collapse(&key, self.id) {
            Flight::Lead(leader) => Some(leader),
            Flight::Alone => None,
            Flight::Follow(follower) => {
                follower.wait(COLLAPSE_WAIT).await;
                if let Lookup::Found(stored) = self.policy.lookup(&key, request.headers()) {
                    let conditional = evaluate_conditional(request.headers(), &stored.headers);
                    let now = SystemTime::now();
                    let usable = matches!(
                        reuse(&stored.timing, &stored.directives, directives, now),
                        Reuse::Fresh | Reuse::StaleAccepted
                    );
                    if conditional != Conditional::Origin && usable {
                        let hit = CacheStatus {
                            hit: true,
                            collapsed: true,
                            detail: Some("L1"),
                            ..CacheStatus::default()
                        };
                        return Ok(hit_response(&stored, &request, conditional, now, hit));
                    }
                }
                // The leader's answer cannot serve this request (not
                // stored, another variant, or too slow): ask on its own.
                None
            }
        };
        self.forward(request, key, leader, status).await
    }

    /// A stale entry: asks the origin with the entry's validators (unless
    /// the client sent conditionals of its own) and, on `304`, serves the
    /// entry freshened.
    async fn revalidate(
        self,
        mut request: Request<O::Body>,
        key: Vec<u8>,
        stored: Arc<Stored>,
        if_error: Option<Conditional>,
        status: CacheStatus,
    ) -> Result<Response<WasiBody>, O::Failure> {
        // What the client asked, before the validators are added: the
        // stored answer is made for it.
        let asked = Asked::of(&request, key);
        let ours = !has_conditionals(request.headers()) && stored.has_validator();
        if ours {
            add_validators(request.headers_mut(), &stored);
        }
        let outcome = self.origin.ask(request).await;
        let failed = match &outcome {
            Ok(response) => response.status().is_server_error(),
            Err(_) => true,
        };
        if failed && let Some(conditional) = if_error {
            let status = CacheStatus {
                hit: true,
                fwd_status: outcome
                    .as_ref()
                    .ok()
                    .map(|response| response.status().as_u16()),
                detail: Some("stale-if-error"),
                ..CacheStatus::default()
            };
            return Ok(hit_response(
                &stored,
                &asked.request(),
                conditional,
                SystemTime::now(),
                status,
            ));
        }
        let response = outcome?;
        if ours && response.status() == StatusCode::NOT_MODIFIED {
            if !selects(&stored.headers, response.headers()) {
                // The 304 is about another response than the stored one
                // (§4.3.4), and the client asked no conditional: ask again
                // without the validators, for the whole response.
                let whole = self.origin.clone().ask_again(asked.request()).await?;
                return Ok(self.store_while_streaming(whole, asked, None, status));
            }
            let fresh = stored.freshened(response.headers(), asked.at);
            let stored = self.policy.insert(&asked.key, fresh.clone());
            let status = CacheStatus {
                fwd_status: Some(304),
                stored,
                detail: Some("revalidated"),
                ..status
            };
            let request = asked.request();
            let conditional = evaluate_conditional(request.headers(), &fresh.headers);
            return Ok(hit_response(
                &fresh,
                &request,
                conditional,
                SystemTime::now(),
                status,
            ));
        }
        Ok(self.store_while_streaming(response, asked, None, status))
    }

    /// A miss: the origin answers, and its response is stored if it may
    /// be.
    async fn forward(
        self,
        request: Request<O::Body>,
        key: Vec<u8>,
        leader: Option<Leader>,
        status: CacheStatus,
    ) -> Result<Response<WasiBody>, O::Failure> {
        let asked = Asked::of(&request, key);
        let response = self.origin.ask(request).await?;
        Ok(self.store_while_streaming(response, asked, leader, status))
    }

    /// Adds `Cache-Status` to the origin's `response` and, if it may be
    /// stored, stores it once its body has streamed to the client.
    fn store_while_streaming(
        &self,
        response: Response<WasiBody>,
        asked: Asked,
        leader: Option<Leader>,
        mut status: CacheStatus,
    ) -> Response<WasiBody> {
        let Asked {
            method,
            headers: request_headers,
            key,
            at: requested_at,
            ..
        } = asked;
        let (mut parts, body) = response.into_parts();
        status.fwd_status = Some(parts.status.as_u16());
        // hyper sends what Content-Length says, and stops polling the body
        // there.
        let declared = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok()?.parse::<u64>().ok())
            .or(body.size_hint().exact());
        let body = match self.policy.entry_for(
            parts.status,
            &parts.headers,
            &method,
            &request_headers,
            requested_at,
            declared,
            &Overrides::default(),
        ) {
            Err(why) => {
                status.detail = Some(why);
                body
            }
            Ok(entry) if parts.status == StatusCode::NO_CONTENT || declared == Some(0) => {
                // hyper never polls a body it will not send: store it now.
                status.stored = self.policy.insert(&key, entry);
                drop(leader);
                body
            }
            Ok(entry) => {
                status.stored = true;
                let policy = self.policy.clone();
                Recording::wrap(body, declared, policy.rules().max_object, move |bytes| {
                    policy.insert(
                        &key,
                        Stored {
                            body: bytes,
                            ..entry
                        },
                    );
                    // Followers wake once the entry is there.
                    drop(leader);
                })
            }
        };
        self.policy.strip_tags(&mut parts.headers);
        parts.headers.insert(CACHE_STATUS, status.header_value());
        Response::from_parts(parts, body)
    }

    /// Unsafe methods go to the origin; a non-error answer invalidates
    /// the target URI (and same-origin `Location`/`Content-Location`).
    async fn unsafe_method(
        self,
        request: Request<O::Body>,
    ) -> Result<Response<WasiBody>, O::Failure> {
        let method = request.method().clone();
        let host = O::host(&request).to_owned();
        let target = request
            .uri()
            .path_and_query()
            .map_or("/", |path| path.as_str())
            .to_owned();
        let mut response = self.origin.ask(request).await?;
        let rules = self.policy.rules();
        for path in invalidated(
            &method,
            response.status(),
            self.https,
            &host,
            &target,
            response.headers(),
        ) {
            if let Ok(uri) = path.parse::<http::Uri>() {
                self.policy
                    .invalidate_uri(rules.key.uri_prefix(self.app, self.https, &host, &uri));
            }
        }
        let status = CacheStatus {
            fwd: Some("method"),
            fwd_status: Some(response.status().as_u16()),
            ..CacheStatus::default()
        };
        self.policy.strip_tags(response.headers_mut());
        response
            .headers_mut()
            .insert(CACHE_STATUS, status.header_value());
        Ok(response)
    }

    /// `stale-while-revalidate`: one background request to the origin
    /// refreshes the entry while clients get the stale one.
    fn refresh_in_background<B>(&self, request: &Request<B>, key: Vec<u8>, stored: &Stored) {
        let Some(refresh) = self.policy.start_refresh(&key) else {
            return;
        };
        let mut headers = request.headers().clone();
        for name in [
            IF_MATCH,
            IF_NONE_MATCH,
            IF_MODIFIED_SINCE,
            IF_UNMODIFIED_SINCE,
            IF_RANGE,
            RANGE,
        ] {
            headers.remove(name);
        }
        add_validators(&mut headers, stored);
        let mut background = Request::new(());
        *background.uri_mut() = request.uri().clone();
        *background.headers_mut() = headers;
        let origin = self.origin.clone();
        let policy = self.policy.clone();
        let stored = stored.clone();
        tokio::spawn(async move {
            let _refresh = refresh;
            let request_headers = background.headers().clone();
            let requested_at = SystemTime::now();
            let Ok(response) = origin.ask_again(background).await else {
                return;
            };
            let (parts, body) = response.into_parts();
            if parts.status == StatusCode::NOT_MODIFIED && selects(&stored.headers, &parts.headers)
            {
                policy.insert(&key, stored.freshened(&parts.headers, requested_at));
                return;
            }
            let Ok(entry) = policy.entry_for(
                parts.status,
                &parts.headers,
                &Method::GET,
                &request_headers,
                requested_at,
                None,
                &Overrides::default(),
            ) else {
                return;
            };
            let max_object = usize::try_from(policy.rules().max_object).unwrap_or(usize::MAX);
            if let Ok(collected) = http_body_util::Limited::new(body, max_object)
                .collect()
                .await
            {
                policy.insert(
                    &key,
                    Stored {
                        body: collected.to_bytes(),
                        ..entry
                    },
                );
            }
        });
    }
}

/// How long a miss waits for the same key's request in flight before it
/// asks the origin itself.
const COLLAPSE_WAIT: Duration = Duration::from_secs(10);

/// A request to the origin, as the store needs it once the response is
/// there.
struct Asked {
    method: Method,
    uri: http::Uri,
    headers: HeaderMap,
    key: Vec<u8>,
    /// When the request was sent (the response delay counts in `Age`).
    at: SystemTime,
}

impl Asked {
    fn of<B>(request: &Request<B>, key: Vec<u8>) -> Self {
        Self {
            method: request.method().clone(),
            uri: request.uri().clone(),
            headers: request.headers().clone(),
            key,
            at: SystemTime::now(),
        }
    }

    /// The request again, without a body: what an answer is made for.
    fn request(&self) -> Request<()> {
        let mut request = Request::new(());
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        request
    }
}

fn forwarded(why: &'static str) -> CacheStatus {
    CacheStatus {
        fwd: Some(why),
        ..CacheStatus::default()
    }
}

fn has_conditionals(headers: &HeaderMap) -> bool {
    [
        IF_MATCH,
        IF_NONE_MATCH,
        IF_MODIFIED_SINCE,
        IF_UNMODIFIED_SINCE,
    ]
    .iter()
    .any(|name| headers.contains_key(name))
}

/// The stored response's validators, as a conditional request's fields.
fn add_validators(headers: &mut HeaderMap, stored: &Stored) {
    if let Some(etag) = stored.headers.get(ETAG) {
        headers.insert(IF_NONE_MATCH, etag.clone());
    }
    if let Some(modified) = stored.headers.get(LAST_MODIFIED) {
        headers.insert(IF_MODIFIED_SINCE, modified.clone());
    }
}

fn hit_response<B>(
    stored: &Stored,
    request: &Request<B>,
    conditional: Conditional,
    now: SystemTime,
    status: CacheStatus,
) -> Response<WasiBody> {
    answer(
        stored,
        request.method(),
        request.headers(),
        conditional,
        now,
        status,
    )
    .map(|bytes| {
        Full::new(bytes)
            .map_err(|never| match never {})
            .boxed_unsync()
    })
}

/// `only-if-cached` and nothing usable stored (RFC 9111 §5.2.1.7).
fn gateway_timeout(id: RequestId, status: CacheStatus) -> Response<WasiBody> {
    let body = format!(
        "the request asks for a cached response only (only-if-cached) and none is stored\nrequest id: {id}\n"
    );
    let mut response = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = StatusCode::GATEWAY_TIMEOUT;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
        .headers_mut()
        .insert(CACHE_STATUS, status.header_value());
    response
}

/// A response body streamed to the client and kept, up to a size, to be
/// stored once it has ended: the client never waits for the store.
struct Recording {
    inner: WasiBody,
    kept: Vec<Bytes>,
    size: u64,
    max: u64,
    /// The length the body declared: hyper stops polling a body once it
    /// has sent that many bytes, so reaching it is the end.
    declared: Option<u64>,
    done: Option<Box<dyn FnOnce(Bytes) + Send>>,
}

impl Recording {
    fn wrap(
        inner: WasiBody,
        declared: Option<u64>,
        max: u64,
        done: impl FnOnce(Bytes) + Send + 'static,
    ) -> WasiBody {
        Self {
            declared,
            inner,
            kept: Vec::new(),
            size: 0,
            max,
            done: Some(Box::new(done)),
        }
        .boxed_unsync()
    }

    fn finish(&mut self) {
        let Some(done) = self.done.take() else {
            return;
        };
        let kept = std::mem::take(&mut self.kept);
        let body = match kept.len() {
            0 => Bytes::new(),
            1 => kept.into_iter().next().expect("one chunk"),
            _ => {
                let mut whole = BytesMut::with_capacity(usize::try_from(self.size).unwrap_or(0));
                for chunk in kept {
                    whole.extend_from_slice(&chunk);
                }
                whole.freeze()
            }
        };
        done(body);
    }
}

impl Body for Recording {
    type Data = Bytes;
    type Error = <WasiBody as Body>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(frame) => frame,
        };
        match &frame {
            Some(Ok(frame)) => match frame.data_ref() {
                Some(data) if this.done.is_some() => {
                    this.size += data.len() as u64;
                    if this.size > this.max {
                        // Too large to store: it only streams.
                        this.done = None;
                        this.kept.clear();
                    } else {
                        this.kept.push(data.clone());
                    }
                }
                Some(_) => {}
                // Trailers are not stored: the entry would lie about them.
                None => {
                    this.done = None;
                    this.kept.clear();
                }
            },
            // A body that failed is not stored.
            Some(Err(_)) => {
                this.done = None;
                this.kept.clear();
            }
            None => this.finish(),
        }
        let ended = this.inner.is_end_stream() || this.declared == Some(this.size);
        if ended && frame.as_ref().is_some_and(Result::is_ok) {
            this.finish();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

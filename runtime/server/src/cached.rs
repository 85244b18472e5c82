//! The app's handler as the origin of the cache in front of it
//! (`[cache] enabled = true`); the request flow itself is
//! `outpost_host::cache::CachedRequest`.

use crate::edge::RequestBody;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt as _, Empty};
use outpost_core::{App, BodyError, Failure, RequestId, RequestMeta, ResponseBody};
use outpost_host::cache::Origin;

/// A request's way to the app's handler.
#[derive(Clone)]
pub(crate) struct Handler {
    pub(crate) app: App,
    pub(crate) meta: RequestMeta,
}

impl Origin for Handler {
    type Body = RequestBody;
    type Failure = Failure;

    async fn ask(&self, request: Request<RequestBody>) -> Result<Response<ResponseBody>, Failure> {
        self.app.handle(request, self.meta).await
    }

    async fn ask_again(self, request: Request<()>) -> Result<Response<ResponseBody>, Failure> {
        let meta = RequestMeta {
            id: RequestId::next(),
            ..self.meta
        };
        let request = request
            .map(|()| Empty::<Bytes>::new().map_err(|never| -> BodyError { match never {} }));
        self.app.handle(request, meta).await
    }

    /// The request's host as the router saw it (the edge phase refused the
    /// requests where it is ambiguous).
    fn host<B>(request: &Request<B>) -> &str {
        crate::edge::host_of(request).unwrap_or_default()
    }
}

//! A caching reverse proxy, the CDN shape: every request (any method, its
//! conditional headers, its body) goes to the `origin` backend, and the
//! answer comes back as the origin gave it. The edge cache in front of the
//! handler (`[cache] enabled = true` in outpost.toml) does the rest: fresh
//! hits never reach this code, stale entries are revalidated through it
//! with `If-None-Match`/`If-Modified-Since` (which it forwards), and the
//! origin's `Cache-Control`, `Vary`, `Cache-Tag` and `Surrogate-Key` decide
//! what is stored and how it is purged. When the origin cannot be reached
//! the answer is a JSON 502 or 504, which `stale-if-error` can replace
//! with the stored response.

use outpost_sdk::fetch::{self, FetchErrorKind};
use outpost_sdk::{Request, Response, Result, StatusCode, handler};

#[handler]
fn handle(req: Request) -> Result<Response> {
    let path = req.uri().to_owned();
    match fetch::Request::forward(req, path).backend("origin").send() {
        Ok(res) => Ok(res.into_response()),
        Err(err) => {
            let status = if err.kind() == FetchErrorKind::Timeout {
                StatusCode::GATEWAY_TIMEOUT
            } else {
                StatusCode::BAD_GATEWAY
            };
            Ok(Response::json(&serde_json::json!({
                "error": "origin_unavailable",
                "message": err.to_string(),
            }))?
            .with_status(status))
        }
    }
}

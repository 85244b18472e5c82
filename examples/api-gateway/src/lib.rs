//! An API gateway: forwards `/api/*` to the `api` backend (a pool of
//! endpoints the node balances and health-checks), with the `/api` prefix
//! taken off and `x-gateway` and `x-user` (the caller's verified subject)
//! headers added. Upstream failures become clean JSON errors: 504 when the
//! backend is too slow, 502 otherwise.
//!
//! Tokens and rate limits are checked at the edge (see outpost.toml), so
//! the handler only runs for callers with a valid token within their limit.

use outpost_sdk::fetch::{self, FetchErrorKind};
use outpost_sdk::{Request, Response, Result, StatusCode, handler, jwt};

#[handler]
fn handle(req: Request) -> Result<Response> {
    let Some(rest) = req.uri().strip_prefix("/api") else {
        return json_error(StatusCode::NOT_FOUND, "not_found", "no such route");
    };
    let path = if rest.starts_with('/') {
        rest.to_owned()
    } else {
        format!("/{rest}")
    };

    let user =
        jwt::forwarded(&req, "x-jwt-claims").and_then(|claims| claims.subject().map(str::to_owned));
    let mut upstream = fetch::Request::forward(req, path)
        .backend("api")
        .header("x-gateway", "outpost");
    if let Some(user) = user {
        upstream = upstream.header("x-user", &user);
    }
    match upstream.send() {
        Ok(res) => Ok(res.into_response().with_header("x-gateway", "outpost")),
        Err(err) if err.kind() == FetchErrorKind::Timeout => json_error(
            StatusCode::GATEWAY_TIMEOUT,
            "upstream_timeout",
            &err.to_string(),
        ),
        Err(err) => json_error(
            StatusCode::BAD_GATEWAY,
            "upstream_unavailable",
            &err.to_string(),
        ),
    }
}

fn json_error(status: StatusCode, code: &str, message: &str) -> Result<Response> {
    Ok(
        Response::json(&serde_json::json!({ "error": code, "message": message }))?
            .with_status(status),
    )
}

//! An API gateway: forwards `/api/*` to the `api` backend (a pool of
//! endpoints the node balances and health-checks), with the `/api` prefix
//! taken off and an `x-gateway` header added. Upstream failures become
//! clean JSON errors: 504 when the backend is too slow, 502 otherwise.

use outpost_sdk::fetch::{self, FetchErrorKind};
use outpost_sdk::{Request, Response, Result, StatusCode, handler};

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

    let mut upstream = fetch::Request::new(req.method().clone(), path).backend("api");
    for (name, value) in req.headers() {
        // Hop-by-hop headers (and the host's own framing) stay on their hop.
        if HOP_BY_HOP.contains(&name.as_str()) {
            continue;
        }
        if let Ok(value) = value.to_str() {
            upstream = upstream.header(name.as_str(), value);
        }
    }
    let upstream = upstream
        .header("x-gateway", "outpost")
        .body(req.into_body());

    match upstream.send() {
        Ok(res) => {
            let mut out = Response::new(res.status());
            for (name, value) in res.headers() {
                if !HOP_BY_HOP.contains(&name.as_str()) {
                    out.headers_mut().append(name.clone(), value.clone());
                }
            }
            Ok(out
                .with_header("x-gateway", "outpost")
                .with_body(res.into_bytes()))
        }
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

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1),
/// plus the ones the host sets on each hop.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

fn json_error(status: StatusCode, code: &str, message: &str) -> Result<Response> {
    Ok(
        Response::json(&serde_json::json!({ "error": code, "message": message }))?
            .with_status(status),
    )
}

//! A link shortener on KV (`outpost_sdk::kv`, the standard
//! `wasi:keyvalue` underneath).
//!
//! - `POST /` with a URL as the body: `201`, `Location: /CODE` and
//!   `{"code", "url"}`. Codes are the base-62 digits of a counter
//!   (`next-id`, incremented atomically), so two links never share one.
//! - `GET /CODE`: `302` to the URL; the hit is counted (`hits/CODE`).
//! - `GET /CODE/stats`: `{"code", "url", "hits"}`.

use outpost_sdk::kv::Store;
use outpost_sdk::{Error, Method, Request, Response, Result, StatusCode, handler};
use serde_json::json;

/// The longest URL accepted.
const MAX_URL: usize = 2048;

#[handler]
fn handle(req: Request) -> Result<Response> {
    let links = Store::open("links")?;
    let path = req.path().trim_start_matches('/');
    match (req.method(), path.split_once('/')) {
        (&Method::POST, _) if path.is_empty() => create(&links, &req),
        (&Method::GET, None) if !path.is_empty() => follow(&links, path),
        (&Method::GET, Some((code, "stats"))) => stats(&links, code),
        _ => Err(Error::new(
            StatusCode::NOT_FOUND,
            "POST / with a URL, GET /CODE or GET /CODE/stats",
        )),
    }
}

fn create(links: &Store, req: &Request) -> Result<Response> {
    let url = req.text()?.trim();
    let valid = url.len() <= MAX_URL
        && (url.starts_with("https://") || url.starts_with("http://"))
        && !url.contains(char::is_whitespace);
    if !valid {
        return Err(Error::bad_request(format!(
            "the body must be one http(s) URL of at most {MAX_URL} bytes"
        )));
    }
    let id = links.increment("next-id", 1)?;
    let code = base62(u64::try_from(id).unwrap_or_default());
    links.set(&format!("link/{code}"), url)?;
    Ok(Response::json(&json!({ "code": code, "url": url }))?
        .with_status(StatusCode::CREATED)
        .with_header("location", format!("/{code}")))
}

fn follow(links: &Store, code: &str) -> Result<Response> {
    let url = target(links, code)?;
    links.increment(&format!("hits/{code}"), 1)?;
    Ok(Response::new(StatusCode::FOUND).with_header("location", url))
}

fn stats(links: &Store, code: &str) -> Result<Response> {
    let url = target(links, code)?;
    let hits = match links.get(&format!("hits/{code}"))? {
        Some(bytes) => i64::from_le_bytes(bytes.try_into().unwrap_or_default()),
        None => 0,
    };
    Response::json(&json!({ "code": code, "url": url, "hits": hits }))
}

/// The URL behind `code`, or a 404.
fn target(links: &Store, code: &str) -> Result<String> {
    let not_found = || Error::new(StatusCode::NOT_FOUND, format!("no link {code:?}"));
    if code.is_empty() || code.len() > 16 || !code.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(not_found());
    }
    let bytes = links.get(&format!("link/{code}"))?.ok_or_else(not_found)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn base62(mut n: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut code = Vec::new();
    loop {
        code.push(DIGITS[(n % 62) as usize]);
        n /= 62;
        if n == 0 {
            break;
        }
    }
    code.reverse();
    String::from_utf8(code).expect("base-62 digits are ASCII")
}

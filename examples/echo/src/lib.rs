//! Answers with the request it received, as JSON: method, path, query,
//! headers and body (hex-encoded as `body_hex` when it is not UTF-8).
//! Useful to see exactly what a handler is given. `?status=NNN` sets the
//! response status, to try out clients; `?log=TEXT` prints TEXT to stdout,
//! which the node logs with the request's id.

use outpost_sdk::{Error, Request, Response, Result, StatusCode, handler};
use serde_json::{Map, Value, json};

#[handler]
fn handle(req: Request) -> Result<Response> {
    let mut headers = Map::new();
    for (name, value) in req.headers() {
        let value = Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned());
        match headers.get_mut(name.as_str()) {
            Some(Value::Array(values)) => values.push(value),
            _ => {
                headers.insert(name.as_str().to_owned(), Value::Array(vec![value]));
            }
        }
    }
    // A body that is not UTF-8 is echoed hex-encoded, under "body_hex".
    let (body_key, body) = match req.text() {
        Ok(text) => ("body", text.to_owned()),
        Err(_) => ("body_hex", hex(req.body())),
    };
    let status = match req.query_param("status") {
        Some(code) => code
            .parse::<u16>()
            .ok()
            .and_then(|code| StatusCode::from_u16(code).ok())
            .ok_or_else(|| Error::bad_request(format!("?status={code} is not an HTTP status")))?,
        None => StatusCode::OK,
    };
    if let Some(line) = req.query_param("log") {
        println!("{line}");
    }
    let mut echo = json!({
        "method": req.method().as_str(),
        "path": req.path(),
        "query": req.query(),
        "authority": req.authority(),
        "headers": headers,
        "body_len": req.body().len(),
    });
    echo[body_key] = Value::String(body);
    Ok(Response::json(&echo)?.with_status(status))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)] as char);
        out.push(DIGITS[usize::from(byte & 0xf)] as char);
    }
    out
}

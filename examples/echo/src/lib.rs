//! Answers with the request it received, as JSON: method, path, query,
//! headers and body. Useful to see exactly what a handler is given.
//! `?status=NNN` sets the response status, to try out clients.

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
    // A body that is not UTF-8 is echoed as a list of byte values instead.
    let body = match req.text() {
        Ok(text) => Value::String(text.to_owned()),
        Err(_) => Value::from(req.body().to_vec()),
    };
    let status = match req.query_param("status") {
        Some(code) => code
            .parse::<u16>()
            .ok()
            .and_then(|code| StatusCode::from_u16(code).ok())
            .ok_or_else(|| Error::bad_request(format!("?status={code} is not an HTTP status")))?,
        None => StatusCode::OK,
    };
    let response = Response::json(&json!({
        "method": req.method().as_str(),
        "path": req.path(),
        "query": req.query(),
        "authority": req.authority(),
        "headers": headers,
        "body_len": req.body().len(),
        "body": body,
    }))?;
    Ok(response.with_status(status))
}

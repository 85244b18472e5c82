//! A response made from a stored one: the client's own conditional,
//! `Range` and `HEAD` answered by the cache, fields that may not be reused
//! without revalidation removed, `Age` and `Cache-Status` added.

use super::{CacheStatus, Conditional, RangeAnswer, Stored, answer_range, fields_to_strip};
use bytes::Bytes;
use http::HeaderMap;
use http::header::{AGE, CONTENT_LENGTH, CONTENT_RANGE, HeaderName};
use http::{HeaderValue, Method, Response, StatusCode};
use std::time::SystemTime;

/// RFC 9211's field.
pub const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// The answer to a `method` request with `request` headers, whose
/// conditional evaluated to `conditional` (never
/// [`Conditional::Origin`]: the origin answers those), from `stored` at
/// `now`. The body is a slice of the stored one: nothing is copied.
pub fn answer(
    stored: &Stored,
    method: &Method,
    request: &http::HeaderMap,
    conditional: Conditional,
    now: SystemTime,
    mut status: CacheStatus,
) -> Response<Bytes> {
    // A map of the right size filled once (a clone would grow for the
    // fields added here and by the front end): values are shared, not
    // copied.
    let mut headers = HeaderMap::with_capacity(stored.headers.len() + 4);
    let strip: Vec<&HeaderName> = fields_to_strip(&stored.directives).collect();
    for (name, value) in &stored.headers {
        if !strip.contains(&name) {
            headers.append(name.clone(), value.clone());
        }
    }
    let age = stored.timing.age(now);
    headers.insert(AGE, number(age.as_secs()));
    let lifetime = i64::try_from(stored.timing.lifetime.as_secs()).unwrap_or(i64::MAX);
    status.ttl = Some(lifetime.saturating_sub(i64::try_from(age.as_secs()).unwrap_or(i64::MAX)));
    headers.insert(CACHE_STATUS, status.header_value());
    let length = stored.body.len() as u64;
    let (code, body) = if conditional == Conditional::NotModified {
        headers.remove(CONTENT_LENGTH);
        (StatusCode::NOT_MODIFIED, Bytes::new())
    } else {
        let range = if stored.status == StatusCode::OK {
            answer_range(request, &stored.headers, length)
        } else {
            RangeAnswer::Full
        };
        if let Some(content_range) = range.content_range(length) {
            headers.insert(
                CONTENT_RANGE,
                HeaderValue::try_from(content_range).expect("digits make a valid header value"),
            );
        }
        match range {
            // The stored fields hold the body's Content-Length.
            RangeAnswer::Full => (stored.status, stored.body.clone()),
            RangeAnswer::Partial(bytes) => {
                let part = stored.body.slice(bytes.start as usize..bytes.end as usize);
                headers.insert(CONTENT_LENGTH, number(part.len() as u64));
                (StatusCode::PARTIAL_CONTENT, part)
            }
            RangeAnswer::Unsatisfiable => {
                headers.insert(CONTENT_LENGTH, number(0));
                (StatusCode::RANGE_NOT_SATISFIABLE, Bytes::new())
            }
        }
    };
    let body = if *method == Method::HEAD {
        Bytes::new()
    } else {
        body
    };
    let mut response = Response::new(body);
    *response.status_mut() = code;
    *response.headers_mut() = headers;
    response
}

/// A number as a header value, formatted without a heap buffer.
pub(super) fn number(n: u64) -> HeaderValue {
    let mut buffer = [0u8; 20];
    let mut at = buffer.len();
    let mut rest = n;
    loop {
        at -= 1;
        buffer[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    HeaderValue::from_bytes(&buffer[at..]).expect("digits make a valid header value")
}

//! Validators: a client's own conditional request answered from a stored
//! response (RFC 9110 §13), and a stored response's header fields freshened
//! by a `304 Not Modified` from the origin (RFC 9111 §3.2, §4.3.4).

use super::list;
use http::header::{
    CONNECTION, CONTENT_LENGTH, DATE, ETAG, HeaderName, IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH,
    IF_UNMODIFIED_SINCE, LAST_MODIFIED, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE, TRAILER,
    TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderMap, HeaderValue};

/// What a client's conditional headers make of a stored response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conditional {
    /// No condition the cache evaluates: answer with the stored response.
    Unconditional,
    /// The client's copy is current: answer `304 Not Modified`.
    NotModified,
    /// The condition does not hold: answer with the stored response.
    Modified,
    /// A precondition only the origin can judge (`If-Match`,
    /// `If-Unmodified-Since`): forward the request.
    Origin,
}

/// RFC 9110 §13.2.2, for a GET or HEAD answered from `stored` headers:
/// `If-None-Match` (weak comparison) first, `If-Modified-Since` only
/// without it.
pub fn evaluate_conditional(request: &HeaderMap, stored: &HeaderMap) -> Conditional {
    if request.contains_key(IF_MATCH) || request.contains_key(IF_UNMODIFIED_SINCE) {
        return Conditional::Origin;
    }
    if request.contains_key(IF_NONE_MATCH) {
        let Some(etag) = stored.get(ETAG).and_then(|value| value.to_str().ok()) else {
            return Conditional::Modified;
        };
        let matches =
            list(request, IF_NONE_MATCH).any(|tag| tag == "*" || weak_eq(tag, etag.trim()));
        return if matches {
            Conditional::NotModified
        } else {
            Conditional::Modified
        };
    }
    let date = |headers: &HeaderMap, name| {
        headers
            .get(name)
            .and_then(|value: &HeaderValue| value.to_str().ok())
            .and_then(super::freshness::parse_date)
    };
    let since = date(request, IF_MODIFIED_SINCE);
    let Some(since) = since else {
        // Absent, or an invalid date, which §13.1.3 says to ignore.
        return Conditional::Unconditional;
    };
    // Without Last-Modified, the stored response's Date (RFC 9111 §4.3.2).
    let modified = date(stored, LAST_MODIFIED).or_else(|| date(stored, DATE));
    match modified {
        Some(modified) if modified <= since => Conditional::NotModified,
        _ => Conditional::Modified,
    }
}

/// Weak comparison (RFC 9110 §8.8.3.2): equal opaque tags, `W/` ignored.
pub fn weak_eq(a: &str, b: &str) -> bool {
    let opaque = |tag: &str| tag.strip_prefix("W/").unwrap_or(tag).to_owned();
    opaque(a) == opaque(b)
}

/// Strong comparison: both strong and equal.
pub fn strong_eq(a: &str, b: &str) -> bool {
    !a.starts_with("W/") && !b.starts_with("W/") && a == b
}

/// Header fields a cache never stores or forwards from a stored response
/// (RFC 9111 §3.1): hop-by-hop ones and those `Connection` names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = list(headers, CONNECTION)
        .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        CONNECTION,
        TE,
        TRANSFER_ENCODING,
        UPGRADE,
        TRAILER,
        PROXY_AUTHENTICATE,
        PROXY_AUTHORIZATION,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
    ] {
        headers.remove(name);
    }
}

/// Whether a `304` with `fresh` headers is about the response stored with
/// `stored` headers (§4.3.4): a strong `ETag` must match; without one, a
/// `Last-Modified` must; with neither, the stored response is the one
/// the conditional request was made for.
pub fn selects(stored: &HeaderMap, fresh: &HeaderMap) -> bool {
    fn text(headers: &HeaderMap, name: HeaderName) -> Option<&str> {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
    }
    // ETag is a singleton, but a response may repeat it: any value of the
    // 304 matching any stored one selects.
    fn etags(headers: &HeaderMap) -> Vec<&str> {
        headers
            .get_all(ETAG)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .map(str::trim)
            .collect()
    }
    let new = etags(fresh);
    if !new.is_empty() {
        let old = etags(stored);
        return new
            .iter()
            .any(|new| old.iter().any(|old| weak_eq(new, old)));
    }
    match (text(fresh, LAST_MODIFIED), text(stored, LAST_MODIFIED)) {
        (Some(new), Some(old)) => new == old,
        (Some(_), None) => false,
        _ => true,
    }
}

/// Freshens `stored` with the fields of a `304` (§3.2): each field the
/// 304 carries replaces the stored one, except `Content-Length` (the
/// stored body's) and hop-by-hop fields.
pub fn freshen(stored: &mut HeaderMap, not_modified: &HeaderMap) {
    let mut fields = not_modified.clone();
    strip_hop_by_hop(&mut fields);
    fields.remove(CONTENT_LENGTH);
    for name in fields.keys() {
        stored.remove(name);
    }
    for (name, value) in fields.iter() {
        stored.append(name, value.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::test_headers as headers;

    const MON: &str = "Mon, 02 Jan 2023 10:00:00 GMT";
    const TUE: &str = "Tue, 03 Jan 2023 10:00:00 GMT";

    #[test]
    fn if_none_match_uses_weak_comparison_and_wins_over_if_modified_since() {
        let stored = headers(&[("etag", "W/\"v1\""), ("last-modified", MON)]);
        let check = |lines: &[(&'static str, &str)]| evaluate_conditional(&headers(lines), &stored);
        assert_eq!(
            check(&[("if-none-match", "\"v1\"")]),
            Conditional::NotModified
        );
        assert_eq!(
            check(&[("if-none-match", "\"v0\", W/\"v1\"")]),
            Conditional::NotModified
        );
        assert_eq!(check(&[("if-none-match", "*")]), Conditional::NotModified);
        assert_eq!(
            check(&[("if-none-match", "\"v2\""), ("if-modified-since", TUE)]),
            Conditional::Modified
        );
        assert_eq!(check(&[]), Conditional::Unconditional);
    }

    #[test]
    fn if_modified_since_compares_with_last_modified() {
        let stored = headers(&[("last-modified", MON)]);
        let check =
            |since: &str| evaluate_conditional(&headers(&[("if-modified-since", since)]), &stored);
        assert_eq!(check(MON), Conditional::NotModified);
        assert_eq!(check(TUE), Conditional::NotModified);
        assert_eq!(
            check("Sun, 01 Jan 2023 10:00:00 GMT"),
            Conditional::Modified
        );
        assert_eq!(check("yesterday"), Conditional::Unconditional);
        // Without a Last-Modified the response counts as modified.
        assert_eq!(
            evaluate_conditional(&headers(&[("if-modified-since", TUE)]), &HeaderMap::new()),
            Conditional::Modified
        );
    }

    #[test]
    fn preconditions_go_to_the_origin() {
        let stored = headers(&[("etag", "\"v1\"")]);
        assert_eq!(
            evaluate_conditional(&headers(&[("if-match", "\"v1\"")]), &stored),
            Conditional::Origin
        );
        assert_eq!(
            evaluate_conditional(&headers(&[("if-unmodified-since", MON)]), &stored),
            Conditional::Origin
        );
    }

    #[test]
    fn comparisons() {
        assert!(weak_eq("W/\"a\"", "\"a\""));
        assert!(!strong_eq("W/\"a\"", "\"a\""));
        assert!(strong_eq("\"a\"", "\"a\""));
        assert!(!weak_eq("\"a\"", "\"b\""));
    }

    #[test]
    fn hop_by_hop_fields_and_those_connection_names_are_dropped() {
        let mut h = headers(&[
            ("connection", "close, x-private-hop"),
            ("x-private-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("content-type", "text/plain"),
        ]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("content-type"));
    }

    #[test]
    fn a_304_selects_the_stored_response_by_validator_and_freshens_it() {
        let stored_headers = headers(&[
            ("etag", "\"v1\""),
            ("cache-control", "max-age=10"),
            ("content-length", "5"),
            ("x-old", "kept"),
        ]);
        assert!(selects(&stored_headers, &headers(&[("etag", "\"v1\"")])));
        assert!(!selects(&stored_headers, &headers(&[("etag", "\"v2\"")])));
        assert!(selects(&stored_headers, &HeaderMap::new()));
        assert!(!selects(
            &headers(&[("last-modified", MON)]),
            &headers(&[("last-modified", TUE)])
        ));
        let mut stored = stored_headers.clone();
        freshen(
            &mut stored,
            &headers(&[
                ("cache-control", "max-age=60"),
                ("content-length", "0"),
                ("connection", "close"),
                ("x-new", "1"),
            ]),
        );
        assert_eq!(stored["cache-control"], "max-age=60");
        assert_eq!(stored["content-length"], "5");
        assert_eq!(stored["x-old"], "kept");
        assert_eq!(stored["x-new"], "1");
        assert!(!stored.contains_key("connection"));
    }
}

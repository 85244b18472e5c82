//! RFC 9111 §4.4: after an unsafe request gets a non-error response, the
//! cache drops what it stored for the target URI, and for the URIs in
//! `Location` and `Content-Location` when they have the same origin.

use http::header::{CONTENT_LOCATION, LOCATION};
use http::{HeaderMap, Method, StatusCode};

/// The paths (with their query) whose entries `method` with a `status`
/// response invalidates, for a request to `path` on `https`://`host`.
/// Empty for safe methods and error responses.
pub fn invalidated(
    method: &Method,
    status: StatusCode,
    https: bool,
    host: &str,
    path: &str,
    response: &HeaderMap,
) -> Vec<String> {
    let safe = matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    );
    if safe || !(status.is_success() || status.is_redirection()) {
        return Vec::new();
    }
    let mut paths = vec![path.to_owned()];
    for name in [LOCATION, CONTENT_LOCATION] {
        let Some(reference) = response.get(name).and_then(|value| value.to_str().ok()) else {
            continue;
        };
        if let Some(target) = same_origin_path(reference.trim(), https, host, path)
            && !paths.contains(&target)
        {
            paths.push(target);
        }
    }
    paths
}

/// `reference` as a path on the request's origin, or `None` if it names
/// another origin (or is not a reference the cache can resolve).
fn same_origin_path(reference: &str, https: bool, host: &str, base: &str) -> Option<String> {
    if let Some((scheme, rest)) = reference.split_once("://") {
        let scheme_https = match scheme.to_ascii_lowercase().as_str() {
            "https" => true,
            "http" => false,
            _ => return None,
        };
        let (authority, path) = rest.find('/').map_or((rest, "/"), |i| rest.split_at(i));
        let default = if scheme_https { ":443" } else { ":80" };
        let authority = authority.strip_suffix(default).unwrap_or(authority);
        let same = scheme_https == https && authority.eq_ignore_ascii_case(host);
        return same.then(|| path.to_owned());
    }
    if reference.starts_with("//") {
        return same_origin_path(
            &format!("{}:{reference}", if https { "https" } else { "http" }),
            https,
            host,
            base,
        );
    }
    if reference.starts_with('/') {
        return Some(reference.to_owned());
    }
    // A relative path: resolved against the request's directory.
    let directory = base.split('?').next().unwrap_or(base);
    let directory = &directory[..=directory.rfind('/').unwrap_or(0)];
    Some(format!("{directory}{reference}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(method: Method, status: u16, lines: &[(&'static str, &str)]) -> Vec<String> {
        invalidated(
            &method,
            StatusCode::from_u16(status).unwrap(),
            true,
            "example.com",
            "/items/7?x=1",
            &crate::cache::test_headers(lines),
        )
    }

    #[test]
    fn unsafe_methods_with_non_error_responses_invalidate_the_target() {
        assert_eq!(run(Method::POST, 200, &[]), ["/items/7?x=1"]);
        assert_eq!(run(Method::DELETE, 303, &[]), ["/items/7?x=1"]);
        assert!(run(Method::GET, 200, &[]).is_empty());
        assert!(run(Method::POST, 404, &[]).is_empty());
        assert!(run(Method::PUT, 500, &[]).is_empty());
    }

    #[test]
    fn location_and_content_location_on_the_same_origin_only() {
        assert_eq!(
            run(
                Method::POST,
                201,
                &[
                    ("location", "https://example.com:443/items/8"),
                    ("content-location", "9")
                ]
            ),
            ["/items/7?x=1", "/items/8", "/items/9"]
        );
        assert_eq!(
            run(
                Method::POST,
                201,
                &[
                    ("location", "https://other.example/items/8"),
                    ("content-location", "http://example.com/items/9")
                ]
            ),
            ["/items/7?x=1"]
        );
        assert_eq!(
            run(Method::PUT, 200, &[("location", "//EXAMPLE.com/a")]),
            ["/items/7?x=1", "/a"]
        );
    }
}

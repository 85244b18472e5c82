//! Cache keys: the primary key that names a resource (method, scheme,
//! host, path and query, shaped by the app's key rules) and the secondary
//! key that `Vary` adds (RFC 9111 §4.1).
//!
//! A key is bytes, built once per lookup; entries of different apps never
//! share a key because the app's name comes first.

use super::list;
use http::header::{ACCEPT_ENCODING, COOKIE, HeaderName, VARY};
use http::{HeaderMap, Uri};

/// How an app shapes the primary key (`[cache.key]` in the manifest).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyRules {
    /// Leave the query out of the key.
    pub ignore_query: bool,
    /// Query parameters left out of the key (`utm_source`, say).
    pub ignore_params: Vec<String>,
    /// Sort the query's parameters, so `?a=1&b=2` and `?b=2&a=1` share
    /// an entry.
    pub sort_query: bool,
    /// Request headers whose values join the key.
    pub headers: Vec<HeaderName>,
    /// A cookie whose value joins the key.
    pub cookie: Option<String>,
}

/// Separates the key's parts: a byte no URI, header value or app name
/// holds.
pub(super) const SEP: u8 = 0;

/// Stands for a field the request does not carry: a byte no header value
/// holds.
const ABSENT: u8 = 1;

impl KeyRules {
    /// The primary key of a request for `uri` on `app` (GET and HEAD share
    /// it: a HEAD is answered from a stored GET).
    pub fn primary(
        &self,
        app: &str,
        https: bool,
        host: &str,
        uri: &Uri,
        headers: &HeaderMap,
    ) -> Vec<u8> {
        let mut key = self.uri_prefix(app, https, host, uri);
        for name in &self.headers {
            key.push(SEP);
            key.extend_from_slice(name.as_str().as_bytes());
            for value in headers.get_all(name) {
                key.push(b':');
                key.extend_from_slice(value.as_bytes());
            }
        }
        if let Some(cookie) = &self.cookie {
            key.push(SEP);
            key.extend_from_slice(b"cookie:");
            if let Some(value) = cookie_value(headers, cookie) {
                key.extend_from_slice(value.as_bytes());
            }
        }
        key
    }

    /// The part of every primary key of `uri` that the URI makes: what an
    /// invalidation of the URI matches, whatever headers or cookie the
    /// rules add after it (each added part starts with [`SEP`]).
    pub fn uri_prefix(&self, app: &str, https: bool, host: &str, uri: &Uri) -> Vec<u8> {
        let query = uri.query().map_or(0, str::len);
        let mut key = Vec::with_capacity(app.len() + host.len() + uri.path().len() + query + 16);
        key.extend_from_slice(app.as_bytes());
        key.push(SEP);
        key.extend_from_slice(if https { b"https" } else { b"http" });
        key.push(SEP);
        let host = host.trim_end_matches('.').as_bytes();
        key.extend(host.iter().map(u8::to_ascii_lowercase));
        key.push(SEP);
        self.push_target(&mut key, uri);
        key
    }

    /// The path and query of `uri` as keys hold them (the query shaped by
    /// the rules).
    pub fn target(&self, uri: &Uri) -> Vec<u8> {
        let mut target = Vec::with_capacity(uri.path().len() + 16);
        self.push_target(&mut target, uri);
        target
    }

    fn push_target(&self, key: &mut Vec<u8>, uri: &Uri) {
        key.extend_from_slice(uri.path().as_bytes());
        if let Some(query) = uri.query().filter(|_| !self.ignore_query) {
            key.push(b'?');
            self.push_query(key, query);
        }
    }

    fn push_query(&self, key: &mut Vec<u8>, query: &str) {
        if self.ignore_params.is_empty() && !self.sort_query {
            key.extend_from_slice(query.as_bytes());
            return;
        }
        let mut params: Vec<&str> = query
            .split('&')
            .filter(|param| !param.is_empty())
            .filter(|param| {
                let name = param.split_once('=').map_or(*param, |(name, _)| name);
                !self.ignore_params.iter().any(|ignored| ignored == name)
            })
            .collect();
        if self.sort_query {
            params.sort_unstable();
        }
        for (i, param) in params.iter().enumerate() {
            if i > 0 {
                key.push(b'&');
            }
            key.extend_from_slice(param.as_bytes());
        }
    }
}

/// The value of cookie `name` in the request's `Cookie` lines.
fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|line| line.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(cookie, _)| *cookie == name)
        .map(|(_, value)| value)
}

/// A stored response's `Vary`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Vary {
    /// `Vary: *`: no later request matches (§4.1).
    Any,
    /// The request fields that select this response (empty: none).
    Fields(Vec<HeaderName>),
}

impl Vary {
    /// The `Vary` of a response's `headers`, every line counted, names
    /// lowercased and sorted so equal sets compare equal.
    pub fn of(headers: &HeaderMap) -> Self {
        let mut fields = Vec::new();
        for token in list(headers, VARY) {
            if token == "*" {
                return Self::Any;
            }
            if let Ok(name) = HeaderName::from_bytes(token.as_bytes())
                && !fields.contains(&name)
            {
                fields.push(name);
            }
        }
        fields.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        Self::Fields(fields)
    }

    /// The secondary key of `request` under this `Vary`: `None` for
    /// `Vary: *`, which matches nothing. Values are normalised the way
    /// §4.1 allows (whitespace around commas, several lines joined), and
    /// `Accept-Encoding` is reduced to the one encoding the origin would
    /// choose among those caches usually store.
    pub fn secondary(&self, request: &HeaderMap) -> Option<Vec<u8>> {
        let Self::Fields(fields) = self else {
            return None;
        };
        let mut key = Vec::new();
        for name in fields {
            key.extend_from_slice(name.as_str().as_bytes());
            key.push(b':');
            if *name == ACCEPT_ENCODING {
                key.extend_from_slice(preferred_encoding(request).as_bytes());
            } else if !request.contains_key(name) {
                // Absent only matches absent (§4.1), never an empty value.
                key.push(ABSENT);
            } else {
                let mut first = true;
                for item in request
                    .get_all(name)
                    .iter()
                    .flat_map(|value| value.as_bytes().split(|&b| b == b','))
                {
                    if !first {
                        key.push(b',');
                    }
                    first = false;
                    key.extend_from_slice(item.trim_ascii());
                }
            }
            key.push(SEP);
        }
        Some(key)
    }
}

/// Of `br`, `zstd` and `gzip`, the first the request accepts (q > 0),
/// else `identity`: requests that would get the same encoding share an
/// entry, however their `Accept-Encoding` is spelled.
fn preferred_encoding(request: &HeaderMap) -> &'static str {
    let accepted = |encoding: &str| {
        request
            .get_all(ACCEPT_ENCODING)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .any(|item| {
                let mut parts = item.split(';');
                let coding = parts.next().unwrap_or("").trim();
                let refused = parts.any(|param| {
                    let param = param.trim();
                    param
                        .strip_prefix("q=")
                        .or_else(|| param.strip_prefix("Q="))
                        .and_then(|q| q.trim().parse::<f32>().ok())
                        .is_some_and(|q| q <= 0.0)
                });
                (coding.eq_ignore_ascii_case(encoding) || coding == "*") && !refused
            })
    };
    ["br", "zstd", "gzip"]
        .into_iter()
        .find(|encoding| accepted(encoding))
        .unwrap_or("identity")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::test_headers as headers;

    fn key(rules: &KeyRules, app: &str, uri: &str, lines: &[(&'static str, &str)]) -> Vec<u8> {
        rules.primary(
            app,
            false,
            "Example.com.",
            &uri.parse().unwrap(),
            &headers(lines),
        )
    }

    #[test]
    fn apps_hosts_and_paths_are_told_apart() {
        let rules = KeyRules::default();
        assert_ne!(key(&rules, "a", "/x", &[]), key(&rules, "b", "/x", &[]));
        assert_ne!(key(&rules, "a", "/x", &[]), key(&rules, "a", "/y", &[]));
        assert_ne!(key(&rules, "a", "/x?q=1", &[]), key(&rules, "a", "/x", &[]));
        // Host case and a trailing dot do not matter.
        assert_eq!(
            rules.primary(
                "a",
                false,
                "EXAMPLE.com",
                &"/x".parse().unwrap(),
                &HeaderMap::new()
            ),
            key(&rules, "a", "/x", &[])
        );
        assert_ne!(
            rules.primary(
                "a",
                true,
                "example.com",
                &"/x".parse().unwrap(),
                &HeaderMap::new()
            ),
            key(&rules, "a", "/x", &[])
        );
    }

    #[test]
    fn query_rules() {
        let ignore = KeyRules {
            ignore_query: true,
            ..KeyRules::default()
        };
        assert_eq!(
            key(&ignore, "a", "/x?q=1", &[]),
            key(&ignore, "a", "/x", &[])
        );
        let shaped = KeyRules {
            ignore_params: vec!["utm_source".into()],
            sort_query: true,
            ..KeyRules::default()
        };
        assert_eq!(
            key(&shaped, "a", "/x?b=2&utm_source=mail&a=1", &[]),
            key(&shaped, "a", "/x?a=1&b=2", &[])
        );
        assert_ne!(
            key(&shaped, "a", "/x?a=1&b=3", &[]),
            key(&shaped, "a", "/x?a=1&b=2", &[])
        );
    }

    #[test]
    fn headers_and_a_cookie_join_the_key() {
        let rules = KeyRules {
            headers: vec![HeaderName::from_static("x-country")],
            cookie: Some("ab".into()),
            ..KeyRules::default()
        };
        let base = key(
            &rules,
            "a",
            "/",
            &[("x-country", "de"), ("cookie", "ab=1; s=9")],
        );
        assert_eq!(
            base,
            key(
                &rules,
                "a",
                "/",
                &[("x-country", "de"), ("cookie", "s=7; ab=1")]
            )
        );
        assert_ne!(
            base,
            key(&rules, "a", "/", &[("x-country", "fr"), ("cookie", "ab=1")])
        );
        assert_ne!(
            base,
            key(&rules, "a", "/", &[("x-country", "de"), ("cookie", "ab=2")])
        );
    }

    #[test]
    fn vary_star_matches_nothing_and_fields_are_normalised() {
        assert_eq!(Vary::of(&headers(&[("vary", "Accept, *")])), Vary::Any);
        assert_eq!(Vary::Any.secondary(&HeaderMap::new()), None);
        let vary = Vary::of(&headers(&[
            ("vary", "X-B, accept-language"),
            ("vary", "x-b"),
        ]));
        assert_eq!(
            vary,
            Vary::Fields(vec![
                HeaderName::from_static("accept-language"),
                HeaderName::from_static("x-b")
            ])
        );
        let a = vary.secondary(&headers(&[("accept-language", "en,  de"), ("x-b", "1")]));
        let b = vary.secondary(&headers(&[
            ("accept-language", "en"),
            ("accept-language", "de"),
            ("x-b", "1"),
        ]));
        assert_eq!(a, b);
        let c = vary.secondary(&headers(&[("accept-language", "fr"), ("x-b", "1")]));
        assert_ne!(a, c);
        // A missing field is a value of its own, unlike an empty one.
        assert_ne!(a, vary.secondary(&headers(&[("x-b", "1")])));
        assert_ne!(
            vary.secondary(&headers(&[("accept-language", ""), ("x-b", "1")])),
            vary.secondary(&headers(&[("x-b", "1")]))
        );
        assert_eq!(
            Vary::of(&HeaderMap::new()).secondary(&HeaderMap::new()),
            Some(Vec::new())
        );
    }

    #[test]
    fn accept_encoding_is_reduced_to_the_encoding_served() {
        let vary = Vary::of(&headers(&[("vary", "Accept-Encoding")]));
        let of = |value: &str| vary.secondary(&headers(&[("accept-encoding", value)]));
        assert_eq!(of("gzip, deflate, br"), of("br;q=0.5, gzip"));
        assert_eq!(of("gzip"), of("deflate, GZIP"));
        assert_ne!(of("gzip"), of("br"));
        assert_eq!(of("br;q=0, gzip"), of("gzip"));
        assert_eq!(of("identity"), vary.secondary(&HeaderMap::new()));
        assert_eq!(of("*"), of("br"));
    }
}

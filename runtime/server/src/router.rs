//! Host and path-prefix routing from a request to an app.

use std::collections::HashMap;
use std::fmt;

/// Which requests an app serves: an optional host (exact, or `*.suffix`) and
/// a path prefix matched on segment boundaries (`/api` matches `/api` and
/// `/api/users`, not `/apis`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    host: HostPattern,
    prefix: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum HostPattern {
    Any,
    Exact(String),
    /// `*.example.com`, stored as `.example.com`.
    Suffix(String),
}

impl Route {
    /// Parses `"/path"`, `"host/path"` or `"*.host/path"`.
    pub fn parse(route: &str) -> Result<Self, String> {
        let (host, prefix) = match route.find('/') {
            Some(0) => ("", route),
            Some(slash) => route.split_at(slash),
            None if route.is_empty() => {
                return Err("a route cannot be empty; use \"/\" for everything".into());
            }
            None => {
                return Err(format!(
                    "route {route:?} has no path; write \"/{route}\" for a path prefix \
                     or \"{route}/\" for a whole host"
                ));
            }
        };
        if prefix.contains(['?', '#']) {
            return Err(format!(
                "route {route:?}: a path prefix cannot contain '?' or '#'"
            ));
        }
        let host = match host {
            "" => HostPattern::Any,
            _ => {
                let lower = host.to_ascii_lowercase();
                let (pattern, name) = match lower.strip_prefix("*.") {
                    Some(rest) => (HostPattern::Suffix(format!(".{rest}")), rest.to_owned()),
                    None => (HostPattern::Exact(lower.clone()), lower),
                };
                let valid = !name.is_empty()
                    && name.split('.').all(|label| {
                        !label.is_empty()
                            && label
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    });
                if !valid {
                    return Err(format!(
                        "route {route:?}: {host:?} is not a host name; write routes as \
                         \"/path\", \"example.com/path\" or \"*.example.com/path\" (no scheme, no port)"
                    ));
                }
                pattern
            }
        };
        // A trailing slash is not part of the match: "/api/" equals "/api".
        let prefix = match prefix.trim_end_matches('/') {
            "" => "/".to_owned(),
            trimmed => trimmed.to_owned(),
        };
        Ok(Self { host, prefix })
    }

    fn matches(&self, host: Option<&str>, path: &str) -> bool {
        let host_matches = match (&self.host, host) {
            (HostPattern::Any, _) => true,
            (HostPattern::Exact(name), Some(host)) => name.eq_ignore_ascii_case(host),
            (HostPattern::Suffix(suffix), Some(host)) => {
                host.len() > suffix.len()
                    && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
            }
            (_, None) => false,
        };
        host_matches
            && (self.prefix == "/"
                || path
                    .strip_prefix(self.prefix.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')))
    }

    /// Whether this route would take some requests from `other`: a request
    /// can match both, and this one is more specific, so it wins.
    pub(crate) fn takes_from(&self, other: &Route) -> bool {
        self.host.overlaps(&other.host)
            && (self.prefix_covers(&other.prefix) || other.prefix_covers(&self.prefix))
            && self.specificity() > other.specificity()
    }

    /// Whether `self`'s host pattern names a host (as opposed to any host).
    pub(crate) fn has_host(&self) -> bool {
        !matches!(self.host, HostPattern::Any)
    }

    /// Whether every path under `prefix` is under this route's prefix.
    fn prefix_covers(&self, prefix: &str) -> bool {
        self.prefix == "/"
            || prefix
                .strip_prefix(self.prefix.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }

    /// Higher is more specific: exact hosts beat wildcards beat any host,
    /// then longer prefixes win.
    fn specificity(&self) -> (u8, usize, usize) {
        let host = match &self.host {
            HostPattern::Exact(_) => (2, 0),
            HostPattern::Suffix(suffix) => (1, suffix.len()),
            HostPattern::Any => (0, 0),
        };
        (host.0, host.1, self.prefix.len())
    }
}

impl HostPattern {
    /// Whether some host matches both patterns.
    fn overlaps(&self, other: &HostPattern) -> bool {
        match (self, other) {
            (Self::Any, _) | (_, Self::Any) => true,
            (Self::Exact(a), Self::Exact(b)) => a == b,
            (Self::Exact(name), Self::Suffix(suffix))
            | (Self::Suffix(suffix), Self::Exact(name)) => {
                name.len() > suffix.len() && name.ends_with(suffix.as_str())
            }
            (Self::Suffix(a), Self::Suffix(b)) => {
                a.ends_with(b.as_str()) || b.ends_with(a.as_str())
            }
        }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            HostPattern::Any => {}
            HostPattern::Exact(name) => f.write_str(name)?,
            HostPattern::Suffix(suffix) => write!(f, "*{suffix}")?,
        }
        f.write_str(&self.prefix)
    }
}

/// Finds the app for a request: the most specific matching route wins.
///
/// Exact-host routes sit in a hash map, so a node with a thousand hosts
/// routes as fast as one with a single route.
#[derive(Debug)]
pub struct Router<T> {
    /// Routes of each exact host, longest prefix first.
    exact: HashMap<String, Vec<(Route, T)>>,
    /// Wildcard-host and any-host routes, most specific first.
    others: Vec<(Route, T)>,
}

impl<T> Router<T> {
    /// A router over `(route, target)` pairs.
    pub fn new(routes: Vec<(Route, T)>) -> Self {
        let mut exact: HashMap<String, Vec<(Route, T)>> = HashMap::new();
        let mut others = Vec::new();
        for (route, target) in routes {
            match &route.host {
                HostPattern::Exact(host) => {
                    exact.entry(host.clone()).or_default().push((route, target))
                }
                _ => others.push((route, target)),
            }
        }
        for routes in exact.values_mut() {
            routes.sort_by_key(|(route, _)| std::cmp::Reverse(route.specificity()));
        }
        others.sort_by_key(|(route, _)| std::cmp::Reverse(route.specificity()));
        Self { exact, others }
    }

    /// The target for `host` (without port) and `path`.
    pub fn route(&self, host: Option<&str>, path: &str) -> Option<&T> {
        fn first_match<'a, T>(
            routes: &'a [(Route, T)],
            host: Option<&str>,
            path: &str,
        ) -> Option<&'a T> {
            routes
                .iter()
                .find(|(route, _)| route.matches(host, path))
                .map(|(_, target)| target)
        }
        if let Some(host) = host {
            let lowered;
            let key = if host.bytes().any(|b| b.is_ascii_uppercase()) {
                lowered = host.to_ascii_lowercase();
                lowered.as_str()
            } else {
                host
            };
            if let Some(found) = self
                .exact
                .get(key)
                .and_then(|routes| first_match(routes, Some(host), path))
            {
                return Some(found);
            }
        }
        first_match(&self.others, host, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(routes: &[&str]) -> Router<String> {
        Router::new(
            routes
                .iter()
                .map(|r| (Route::parse(r).unwrap(), (*r).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn most_specific_route_wins() {
        let r = router(&["/", "/api", "/api/v2", "example.com/", "*.example.com/api"]);
        let at = |host, path| r.route(host, path).map(String::as_str);
        assert_eq!(at(Some("other.org"), "/x"), Some("/"));
        assert_eq!(at(Some("other.org"), "/api/users"), Some("/api"));
        assert_eq!(at(Some("other.org"), "/api/v2/x"), Some("/api/v2"));
        assert_eq!(at(Some("other.org"), "/apis"), Some("/"));
        assert_eq!(at(Some("EXAMPLE.com"), "/api"), Some("example.com/"));
        assert_eq!(
            at(Some("a.example.com"), "/api/x"),
            Some("*.example.com/api")
        );
        assert_eq!(at(Some("a.example.com"), "/other"), Some("/"));
        assert_eq!(at(None, "/api"), Some("/api"));
    }

    #[test]
    fn unmatched_requests_find_nothing() {
        let r = router(&["example.com/app"]);
        assert_eq!(r.route(Some("example.com"), "/"), None);
        assert_eq!(r.route(Some("example.org"), "/app"), None);
        assert_eq!(r.route(None, "/app"), None);
        assert_eq!(
            r.route(Some("example.com"), "/app/"),
            Some(&"example.com/app".to_owned())
        );
    }

    #[test]
    fn a_more_specific_route_takes_requests_from_a_broader_one() {
        let route = |r| Route::parse(r).unwrap();
        let takes = |a, b| route(a).takes_from(&route(b));
        assert!(takes("api.example.com/admin", "api.example.com/"));
        assert!(takes("api.example.com/", "*.example.com/"));
        assert!(takes("a.b.example.com/x", "*.example.com/"));
        assert!(takes("/api", "/"));
        assert!(
            !takes("api.example.com/", "api.example.com/admin"),
            "less specific"
        );
        assert!(!takes("other.com/admin", "api.example.com/"), "other host");
        assert!(
            !takes("api.example.com/x", "api.example.com/y"),
            "other path"
        );
        assert!(
            !takes("*.example.com/", "api.example.com/"),
            "wildcards lose to exact hosts"
        );
        assert!(
            !takes("example.com/", "*.example.com/"),
            "the wildcard needs a label"
        );
    }

    #[test]
    fn bad_routes_are_explained() {
        assert!(Route::parse("").unwrap_err().contains("empty"));
        assert!(Route::parse("http://x/").unwrap_err().contains("no scheme"));
        assert!(Route::parse("x.com:8080/").unwrap_err().contains("no port"));
        assert!(Route::parse("/a?b").unwrap_err().contains("'?'"));
        assert!(
            Route::parse("api")
                .unwrap_err()
                .contains("\"/api\" for a path prefix")
        );
        assert_eq!(
            Route::parse("Example.COM/").unwrap().to_string(),
            "example.com/"
        );
        assert_eq!(Route::parse("/api/").unwrap().to_string(), "/api");
    }
}

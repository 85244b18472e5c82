//! An app's `[[edge]]` rules: checks the edge phase makes before any
//! instance exists, for the requests each rule matches (a path prefix and,
//! optionally, methods). A rule names a rate-limit policy; JWT policies
//! join them with JWT verification, checked first.

use crate::ratelimit::{Decision, Limiter, RateLimitPolicy, whole_seconds};
use http::{HeaderMap, Method};
use std::net::IpAddr;
use std::sync::Arc;

/// `[[edge]]`, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdgeRuleSpec {
    /// The path prefix it applies to: `/api` matches `/api` and `/api/…`,
    /// `/api/` only `/api/…`, `/` every request.
    pub path: String,
    /// The methods it applies to; empty: all.
    pub methods: Vec<Method>,
    /// The `[rate_limits.NAME]` policy it applies.
    pub rate_limit: Option<String>,
}

impl EdgeRuleSpec {
    fn matches(&self, method: &Method, path: &str) -> bool {
        let prefix_ok = if self.path.ends_with('/') {
            path.starts_with(&self.path)
        } else {
            path.strip_prefix(&self.path)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        };
        prefix_ok && (self.methods.is_empty() || self.methods.contains(method))
    }
}

/// An app's rules, with the policies they apply.
#[derive(Debug, Default)]
pub struct EdgeRules {
    rules: Vec<(EdgeRuleSpec, Option<Arc<Limiter>>)>,
}

/// What the rules decided for one request.
#[derive(Debug)]
pub enum EdgeVerdict {
    /// Go on; add these fields (`RateLimit`, `RateLimit-Policy`) to the
    /// response, if any.
    Pass(Option<HeaderMap>),
    /// A rate limit refused the request: 429 with these fields.
    Limited {
        /// The policy that refused it.
        policy: String,
        /// Whole seconds until it would be allowed.
        retry_after: u64,
        /// `RateLimit` and `RateLimit-Policy` of the policies checked.
        fields: HeaderMap,
    },
}

impl EdgeRules {
    /// `specs` with the policies of `limits` they name (checked to exist
    /// when the manifest was read).
    pub fn resolve(specs: &[EdgeRuleSpec], limits: &RateLimitPolicy) -> Self {
        let rules = specs
            .iter()
            .map(|spec| {
                let limiter = spec
                    .rate_limit
                    .as_deref()
                    .and_then(|name| limits.get(name))
                    .cloned();
                (spec.clone(), limiter)
            })
            .collect();
        Self { rules }
    }

    /// Whether there are no rules: the edge phase skips them.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Applies every rule matching the request, in order; the first that
    /// refuses decides.
    pub fn check(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        client: Option<IpAddr>,
    ) -> EdgeVerdict {
        let mut fields: Option<HeaderMap> = None;
        for (spec, limiter) in &self.rules {
            let Some(limiter) = limiter else { continue };
            if !spec.matches(method, path) {
                continue;
            }
            let decision: Decision = limiter.check_request(headers, client);
            if limiter.shadow() {
                continue;
            }
            let fields = fields.get_or_insert_with(HeaderMap::new);
            limiter.describe(&decision, fields);
            if !decision.allowed {
                return EdgeVerdict::Limited {
                    policy: limiter.spec().name.clone(),
                    retry_after: whole_seconds(decision.retry_after).max(1),
                    fields: std::mem::take(fields),
                };
            }
        }
        EdgeVerdict::Pass(fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(path: &str, methods: &[Method]) -> EdgeRuleSpec {
        EdgeRuleSpec {
            path: path.into(),
            methods: methods.to_vec(),
            rate_limit: None,
        }
    }

    #[test]
    fn rules_match_path_prefixes_by_segment_and_methods() {
        let api = rule("/api", &[]);
        assert!(api.matches(&Method::GET, "/api"));
        assert!(api.matches(&Method::GET, "/api/users"));
        assert!(!api.matches(&Method::GET, "/apiary"));
        let slash = rule("/api/", &[Method::POST]);
        assert!(slash.matches(&Method::POST, "/api/users"));
        assert!(!slash.matches(&Method::GET, "/api/users"));
        assert!(!slash.matches(&Method::POST, "/api"));
        assert!(rule("/", &[]).matches(&Method::DELETE, "/anything"));
    }
}

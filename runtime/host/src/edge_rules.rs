//! An app's `[[edge]]` rules: checks the edge phase makes before any
//! instance exists, for the requests each rule matches (a path prefix and,
//! optionally, methods). A rule names a JWT policy, a rate-limit policy or
//! both; every matching rule's JWT is checked before any rate limit
//! counts the request, so a request refused for its token spends no
//! client's budget.

use crate::jwt::{JwtError, JwtOutcome, JwtPolicies, JwtPolicy, forwarded_claims};
use crate::ratelimit::{Decision, Limiter, RateLimitPolicy, whole_seconds};
use http::{HeaderMap, HeaderName, Method};
use serde_json::{Map, Value};
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
    /// The `[jwt.NAME]` policy requests must pass.
    pub jwt: Option<String>,
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

/// A verified token's claims, shared by the rules that checked it.
type Claims = Arc<Map<String, Value>>;

/// One rule with the policies it applies.
#[derive(Debug)]
struct EdgeRule {
    spec: EdgeRuleSpec,
    jwt: Option<Arc<JwtPolicy>>,
    limiter: Option<Arc<Limiter>>,
}

/// An app's rules, with the policies they apply.
#[derive(Debug, Default)]
pub struct EdgeRules {
    rules: Vec<EdgeRule>,
    /// Headers verified claims are forwarded in: a client's copy is
    /// removed from every request, matched by a rule or not.
    claim_headers: Vec<HeaderName>,
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
    /// A JWT policy refused the request's token (`None`: it has none):
    /// 401.
    Unauthorized {
        /// The policy.
        policy: String,
        /// Why, when there was a token.
        error: Option<JwtError>,
    },
    /// A JWT policy's keys cannot be had now: 503.
    KeysUnavailable {
        /// The policy.
        policy: String,
        /// Why.
        why: String,
    },
    /// A JWT policy's key set is to be fetched first: await
    /// [`Jwks::refresh`](crate::jwt::Jwks::refresh) with this generation,
    /// then check the request again.
    FetchKeys(Arc<crate::jwt::Jwks>, u64),
}

impl EdgeRules {
    /// `specs` with the policies of `jwts` and `limits` they name (checked
    /// to exist when the manifest was read).
    pub fn resolve(specs: &[EdgeRuleSpec], jwts: &JwtPolicies, limits: &RateLimitPolicy) -> Self {
        let rules = specs
            .iter()
            .map(|spec| EdgeRule {
                spec: spec.clone(),
                jwt: spec.jwt.as_deref().and_then(|name| jwts.get(name)).cloned(),
                limiter: spec
                    .rate_limit
                    .as_deref()
                    .and_then(|name| limits.get(name))
                    .cloned(),
            })
            .collect();
        let mut claim_headers: Vec<HeaderName> = jwts
            .iter()
            .filter_map(|policy| policy.forward_claims().cloned())
            .collect();
        claim_headers.dedup();
        Self {
            rules,
            claim_headers,
        }
    }

    /// Whether there is nothing to do: the edge phase skips the rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.claim_headers.is_empty()
    }

    /// Applies every rule matching the request: JWT policies first (their
    /// claims forwarded in `headers` as the policies say), then rate
    /// limits, in order; the first that refuses decides.
    pub fn check(
        &self,
        method: &Method,
        path: &str,
        headers: &mut HeaderMap,
        client: Option<IpAddr>,
    ) -> EdgeVerdict {
        for name in &self.claim_headers {
            headers.remove(name);
        }
        // Each matching rule's claims, by rule index (a policy named by
        // several rules is checked once).
        let mut verified: Vec<(usize, Claims)> = Vec::new();
        let mut by_policy: Vec<(&Arc<JwtPolicy>, Claims)> = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let Some(jwt) = &rule.jwt else { continue };
            if !rule.spec.matches(method, path) {
                continue;
            }
            if let Some((_, claims)) = by_policy.iter().find(|(seen, _)| Arc::ptr_eq(seen, jwt)) {
                verified.push((i, claims.clone()));
                continue;
            }
            let unauthorized = |error| EdgeVerdict::Unauthorized {
                policy: jwt.name().to_owned(),
                error,
            };
            let Some(token) = jwt.token(headers) else {
                return unauthorized(None);
            };
            let claims = match jwt.check(token) {
                JwtOutcome::Verified(claims) => Arc::new(claims),
                JwtOutcome::Refused(err) => return unauthorized(Some(err)),
                JwtOutcome::KeysUnavailable(why) => {
                    return EdgeVerdict::KeysUnavailable {
                        policy: jwt.name().to_owned(),
                        why,
                    };
                }
                JwtOutcome::FetchKeys(jwks, generation) => {
                    return EdgeVerdict::FetchKeys(jwks, generation);
                }
            };
            by_policy.push((jwt, claims.clone()));
            verified.push((i, claims));
        }
        for (jwt, claims) in &by_policy {
            if let (Some(header), Some(value)) = (jwt.forward_claims(), forwarded_claims(claims)) {
                headers.insert(header.clone(), value);
            }
        }

        let mut fields: Option<HeaderMap> = None;
        for (i, rule) in self.rules.iter().enumerate() {
            let Some(limiter) = &rule.limiter else {
                continue;
            };
            if !rule.spec.matches(method, path) {
                continue;
            }
            let claims = verified
                .iter()
                .find(|(rule, _)| *rule == i)
                .map(|(_, claims)| &**claims);
            let decision: Decision = limiter.check_request(headers, client, claims);
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
            jwt: None,
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

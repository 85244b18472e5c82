//! `[jwt.NAME]` policies: a [`JwtSpec`] as the manifest declares it, and
//! the [`JwtPolicy`] an app version checks tokens with, its keys drawn from
//! three places: inline keys (resolved when the manifest is read), an HS
//! secret the node holds (looked up per check, so `outpost secret put`
//! rotates it without a redeploy) and a JWKS (fetched through the upstream
//! fetch path, see [`Jwks`]).

use super::{Jwks, JwksCache, JwtError, JwtVerifier, VerifyingKey, is_hmac};
use crate::vars::VarsPolicy;
use http::{HeaderMap, HeaderName, HeaderValue};
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};
use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Where a request carries its token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenSource {
    /// `Authorization: Bearer TOKEN` (`bearer`, the default).
    Bearer,
    /// A header holding the token alone (`header:NAME`).
    Header(HeaderName),
    /// A cookie (`cookie:NAME`).
    Cookie(String),
}

impl TokenSource {
    /// Parses `bearer`, `header:NAME` or `cookie:NAME`.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text == "bearer" {
            return Ok(Self::Bearer);
        }
        if let Some(name) = text.strip_prefix("header:") {
            return HeaderName::from_bytes(name.as_bytes())
                .map(Self::Header)
                .map_err(|_| format!("{name:?} is not a header name"));
        }
        if let Some(name) = text.strip_prefix("cookie:") {
            let valid = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
            return if valid {
                Ok(Self::Cookie(name.to_owned()))
            } else {
                Err(format!("{name:?} is not a cookie name"))
            };
        }
        Err(format!(
            "{text:?} is not a token source; use \"bearer\", \"header:NAME\" or \"cookie:NAME\""
        ))
    }

    /// The token `headers` carry, if any.
    pub fn token<'h>(&self, headers: &'h HeaderMap) -> Option<&'h str> {
        match self {
            Self::Bearer => headers
                .get_all(http::header::AUTHORIZATION)
                .iter()
                .find_map(|value| {
                    let value = value.to_str().ok()?;
                    let (scheme, token) = value.split_once(' ')?;
                    scheme
                        .eq_ignore_ascii_case("bearer")
                        .then(|| token.trim())
                        .filter(|token| !token.is_empty())
                }),
            Self::Header(name) => headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::trim)
                .filter(|token| !token.is_empty()),
            Self::Cookie(wanted) => headers
                .get_all(http::header::COOKIE)
                .iter()
                .filter_map(|value| value.to_str().ok())
                .flat_map(|value| value.split(';'))
                .find_map(|pair| {
                    let (name, value) = pair.trim().split_once('=')?;
                    (name == wanted)
                        .then(|| value.trim_matches('"'))
                        .filter(|token| !token.is_empty())
                }),
        }
    }
}

/// `[jwt.NAME]`, validated.
#[derive(Clone, Debug)]
pub struct JwtSpec {
    /// The policy's name.
    pub name: String,
    /// The `iss` tokens must carry, if any.
    pub issuer: Option<String>,
    /// One of these must be in `aud`; empty: `aud` is not checked.
    pub audiences: Vec<String>,
    /// The algorithms tokens may use.
    pub algorithms: Vec<Algorithm>,
    /// Keys given inline (`keys = [...]`).
    pub keys: Vec<VerifyingKey>,
    /// A key set to fetch (`jwks_url`).
    pub jwks_url: Option<http::Uri>,
    /// A JWKS is fetched again for an unknown `kid` at most this often.
    pub jwks_refresh_min: Duration,
    /// The name of the node-held secret that is the HS key (`hs_secret =
    /// "secret:NAME"`).
    pub hs_secret: Option<String>,
    /// Seconds of clock skew allowed on `exp` and `nbf`.
    pub leeway_s: u64,
    /// Claims tokens must have.
    pub required_claims: Vec<String>,
    /// The header the verified claims reach the handler in, as JSON.
    pub forward_claims: Option<HeaderName>,
    /// Where requests carry the token.
    pub token: TokenSource,
    /// Longer tokens are refused unread.
    pub max_token_bytes: usize,
}

/// What checking a request's token decided, without waiting for anything.
#[derive(Debug)]
pub enum JwtOutcome {
    /// Valid: its claims.
    Verified(Map<String, Value>),
    /// Refused.
    Refused(JwtError),
    /// No key can be had now: the JWKS could not be fetched (and is not
    /// to be asked again yet), or the HS secret is not set. Not the
    /// client's fault.
    KeysUnavailable(String),
    /// The JWKS is to be fetched (first use, or a `kid` it lacks): await
    /// [`Jwks::refresh`] with this generation, then check again.
    FetchKeys(Arc<Jwks>, u64),
}

/// A policy as an app version checks tokens with it.
#[derive(Debug)]
pub struct JwtPolicy {
    name: String,
    token: TokenSource,
    forward_claims: Option<HeaderName>,
    verifier: JwtVerifier,
    jwks: Option<Arc<Jwks>>,
    /// The secret's name, and where the app's secrets are.
    hs_secret: Option<(String, Arc<VarsPolicy>)>,
}

/// A key found beyond the inline ones: in the JWKS, or the HS secret.
enum FoundKey {
    Jwks(Arc<super::jwks::KeySet>, usize),
    Secret(VerifyingKey),
}

impl Borrow<VerifyingKey> for FoundKey {
    fn borrow(&self) -> &VerifyingKey {
        match self {
            Self::Jwks(set, i) => &set.keys[*i],
            Self::Secret(key) => key,
        }
    }
}

impl JwtPolicy {
    /// `spec`, its JWKS from the node's `jwks`, its HS secret read from
    /// `vars`.
    pub fn new(spec: &JwtSpec, jwks: &JwksCache, vars: &Arc<VarsPolicy>) -> Self {
        Self {
            name: spec.name.clone(),
            token: spec.token.clone(),
            forward_claims: spec.forward_claims.clone(),
            verifier: JwtVerifier {
                issuer: spec.issuer.clone(),
                audiences: spec.audiences.clone(),
                algorithms: spec.algorithms.clone(),
                keys: spec.keys.clone(),
                leeway_s: spec.leeway_s,
                required_claims: spec.required_claims.clone(),
                max_token_bytes: spec.max_token_bytes,
            },
            jwks: spec
                .jwks_url
                .as_ref()
                .map(|url| jwks.get(url, spec.jwks_refresh_min)),
            hs_secret: spec
                .hs_secret
                .as_ref()
                .map(|name| (name.clone(), vars.clone())),
        }
    }

    /// The policy's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The token `headers` carry for this policy, if any.
    pub fn token<'h>(&self, headers: &'h HeaderMap) -> Option<&'h str> {
        self.token.token(headers)
    }

    /// The header verified claims are forwarded in, if any.
    pub fn forward_claims(&self) -> Option<&HeaderName> {
        self.forward_claims.as_ref()
    }

    /// Checks `token` with the keys at hand.
    pub fn check(&self, token: &str) -> JwtOutcome {
        let mut missing_secret = None;
        let mut jwks_asked = None;
        let result = self.verifier.verify_with(token, |alg, kid| {
            if is_hmac(alg) {
                let (name, vars) = self.hs_secret.as_ref()?;
                let Some(secret) = vars.secret(name) else {
                    missing_secret = Some(name.clone());
                    return None;
                };
                return VerifyingKey::from_secret(None, alg, secret.expose().as_bytes())
                    .ok()
                    .map(FoundKey::Secret);
            }
            let jwks = self.jwks.as_ref()?;
            let set = jwks.current();
            let found = set
                .keys
                .iter()
                .position(|key| key.alg == alg && key.kid.as_deref() == kid);
            jwks_asked = Some((jwks.clone(), set.generation, set.fetched()));
            found.map(|i| FoundKey::Jwks(set, i))
        });
        match result {
            Ok(claims) => {
                if let Some((jwks, _, _)) = &jwks_asked {
                    jwks.refresh_if_stale();
                }
                JwtOutcome::Verified(claims)
            }
            Err(JwtError::UnknownKey) => {
                if let Some(name) = missing_secret {
                    return JwtOutcome::KeysUnavailable(format!(
                        "the policy's HS secret {name:?} is not set (outpost secret put APP {name})"
                    ));
                }
                match jwks_asked {
                    Some((jwks, generation, _)) if jwks.due() => {
                        JwtOutcome::FetchKeys(jwks, generation)
                    }
                    Some((jwks, _, false)) => JwtOutcome::KeysUnavailable(format!(
                        "the key set {} could not be fetched: {}",
                        jwks.url(),
                        jwks.current().error.as_deref().unwrap_or("not fetched yet")
                    )),
                    _ => JwtOutcome::Refused(JwtError::UnknownKey),
                }
            }
            Err(err) => JwtOutcome::Refused(err),
        }
    }

    /// Checks `token`, fetching the JWKS first when it has to.
    pub async fn verify(&self, token: &str) -> Result<Map<String, Value>, JwtRefusal> {
        let mut fetched = false;
        loop {
            match self.check(token) {
                JwtOutcome::Verified(claims) => return Ok(claims),
                JwtOutcome::Refused(err) => return Err(JwtRefusal::Token(err)),
                JwtOutcome::KeysUnavailable(why) => return Err(JwtRefusal::KeysUnavailable(why)),
                JwtOutcome::FetchKeys(jwks, generation) if !fetched => {
                    jwks.refresh(generation).await;
                    fetched = true;
                }
                JwtOutcome::FetchKeys(..) => return Err(JwtRefusal::Token(JwtError::UnknownKey)),
            }
        }
    }
}

/// Why [`JwtPolicy::verify`] gave no claims.
#[derive(Debug)]
pub enum JwtRefusal {
    /// The token is not valid.
    Token(JwtError),
    /// No key can be had now (see [`JwtOutcome::KeysUnavailable`]).
    KeysUnavailable(String),
}

/// An app version's JWT policies, by name.
#[derive(Debug, Default)]
pub struct JwtPolicies {
    policies: BTreeMap<String, Arc<JwtPolicy>>,
}

impl JwtPolicies {
    /// Policies of `specs`.
    pub fn new(specs: &[JwtSpec], jwks: &JwksCache, vars: &Arc<VarsPolicy>) -> Self {
        Self {
            policies: specs
                .iter()
                .map(|spec| {
                    (
                        spec.name.clone(),
                        Arc::new(JwtPolicy::new(spec, jwks, vars)),
                    )
                })
                .collect(),
        }
    }

    /// The policy called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<JwtPolicy>> {
        self.policies.get(name)
    }

    /// Every policy.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<JwtPolicy>> {
        self.policies.values()
    }
}

/// `claims` as a header value: compact JSON with every non-ASCII
/// character escaped (`\uXXXX`), so that any claim fits a field value.
pub fn forwarded_claims(claims: &Map<String, Value>) -> Option<HeaderValue> {
    let json = serde_json::to_string(claims).ok()?;
    let mut ascii = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_ascii() {
            ascii.push(c);
        } else {
            // Non-ASCII only occurs inside JSON strings, where an escape
            // means the same character.
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                ascii.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    HeaderValue::from_str(&ascii).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_found_where_the_policy_says() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "authorization",
            HeaderValue::from_static("Bearer  abc.def.ghi "),
        );
        headers.insert("x-token", HeaderValue::from_static("tok"));
        headers.append("cookie", HeaderValue::from_static("a=1; session=\"s.t.u\""));
        assert_eq!(TokenSource::Bearer.token(&headers), Some("abc.def.ghi"));
        let header = TokenSource::parse("header:X-Token").unwrap();
        assert_eq!(header.token(&headers), Some("tok"));
        let cookie = TokenSource::parse("cookie:session").unwrap();
        assert_eq!(cookie.token(&headers), Some("s.t.u"));
        assert_eq!(
            TokenSource::parse("cookie:other").unwrap().token(&headers),
            None
        );
        headers.insert(
            "authorization",
            HeaderValue::from_static("Basic dXNlcjpwYXNz"),
        );
        assert_eq!(TokenSource::Bearer.token(&headers), None);
        assert!(TokenSource::parse("query:token").is_err());
        assert!(TokenSource::parse("cookie:a;b").is_err());
    }

    #[test]
    fn forwarded_claims_are_ascii_json_meaning_the_same() {
        let claims: Map<String, Value> =
            serde_json::from_str(r#"{"sub":"zoë","emoji":"🦀","n":1}"#).unwrap();
        let value = forwarded_claims(&claims).unwrap();
        let text = value.to_str().unwrap();
        assert!(text.is_ascii(), "{text}");
        let back: Map<String, Value> = serde_json::from_str(text).unwrap();
        assert_eq!(back, claims);
    }
}

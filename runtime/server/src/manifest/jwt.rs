//! `[jwt.NAME]`: a JWT policy as written, validated into a [`JwtSpec`]
//! with its inline keys parsed, so that a bad key is an error at deploy
//! time naming its line, never a 401 at request time.

use super::policy_name;
use crate::config::ConfigError;
use outpost_host::jwt::{Algorithm, JwtSpec, TokenSource, VerifyingKey, is_hmac};
use outpost_store::VarName;
use serde::Deserialize;
use std::ops::Range;
use std::path::PathBuf;
use std::str::FromStr as _;
use std::time::Duration;
use toml::Spanned;

/// The most policies one app may declare.
pub(super) const MAX_JWT_POLICIES: usize = 16;
/// The most inline keys of one policy.
const MAX_INLINE_KEYS: usize = 16;
/// Headers a policy may not forward claims in: they mean something else
/// to the handler or to the connection.
const RESERVED_HEADERS: [&str; 8] = [
    "authorization",
    "cookie",
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "te",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJwt {
    issuer: Option<Spanned<String>>,
    #[serde(default)]
    audiences: Vec<Spanned<String>>,
    algorithms: Option<Spanned<Vec<Spanned<String>>>>,
    jwks_url: Option<Spanned<String>>,
    jwks_refresh_min_s: Option<Spanned<u64>>,
    #[serde(default)]
    keys: Vec<Spanned<RawKey>>,
    hs_secret: Option<Spanned<String>>,
    leeway_s: Option<Spanned<u64>>,
    #[serde(default)]
    required_claims: Vec<Spanned<String>>,
    forward_claims: Option<Spanned<String>>,
    token: Option<Spanned<String>>,
    max_token_bytes: Option<Spanned<usize>>,
}

/// One inline key: `{ kid, alg, pem }` or `{ jwk }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    kid: Option<String>,
    alg: Option<String>,
    pem: Option<String>,
    jwk: Option<String>,
}

impl RawJwt {
    pub(super) fn validate(
        self,
        name: &str,
        key: &str,
        at: &impl Fn(Range<usize>, String, String) -> ConfigError,
        file: impl Fn() -> PathBuf,
    ) -> Result<JwtSpec, ConfigError> {
        let whole = |message: String| ConfigError {
            file: file(),
            line: None,
            key: Some(key.to_owned()),
            message,
        };
        policy_name(name).map_err(whole)?;
        let field = |name: &str| format!("{key}.{name}");

        let Some(listed) = &self.algorithms else {
            return Err(whole(
                "algorithms: missing; pin the algorithms tokens are signed with, e.g. algorithms = [\"RS256\"]"
                    .into(),
            ));
        };
        let mut algorithms = Vec::new();
        for alg in listed.get_ref() {
            let text = alg.get_ref();
            let bad = |message: String| at(alg.span(), field("algorithms"), message);
            if text.eq_ignore_ascii_case("none") {
                return Err(bad(
                    "\"none\" means unsigned tokens, which are never accepted".into(),
                ));
            }
            let parsed = Algorithm::from_str(text).map_err(|_| {
                bad(format!(
                    "{text:?} is not an algorithm; use HS256/384/512, RS256/384/512, PS256/384/512, ES256/384 or EdDSA"
                ))
            })?;
            if !algorithms.contains(&parsed) {
                algorithms.push(parsed);
            }
        }
        if algorithms.is_empty() {
            return Err(at(
                listed.span(),
                field("algorithms"),
                "empty; pin at least one algorithm".into(),
            ));
        }

        if self.keys.len() > MAX_INLINE_KEYS {
            return Err(whole(format!(
                "keys: at most {MAX_INLINE_KEYS} inline keys; publish more as a JWKS"
            )));
        }
        let mut keys = Vec::with_capacity(self.keys.len());
        for raw in &self.keys {
            let span = raw.span();
            let bad = |message: String| at(span.clone(), field("keys"), message);
            let raw = raw.get_ref();
            let parsed = match (&raw.pem, &raw.jwk) {
                (Some(pem), None) => {
                    let Some(alg) = &raw.alg else {
                        return Err(bad(
                            "a PEM key needs its algorithm: add alg = \"RS256\" (or the one it signs with)"
                                .into(),
                        ));
                    };
                    let alg = Algorithm::from_str(alg)
                        .map_err(|_| bad(format!("{alg:?} is not an algorithm")))?;
                    VerifyingKey::from_pem(raw.kid.clone(), alg, pem).map_err(bad)?
                }
                (None, Some(jwk)) => {
                    if raw.kid.is_some() || raw.alg.is_some() {
                        return Err(bad(
                            "a JWK carries its own kid and alg; write them inside it".into(),
                        ));
                    }
                    let parsed = VerifyingKey::from_jwk(jwk).map_err(bad)?;
                    if is_hmac(parsed.alg) {
                        return Err(bad(
                            "a secret key does not belong in a manifest; keep it on the node and use hs_secret = \"secret:NAME\""
                                .into(),
                        ));
                    }
                    parsed
                }
                _ => {
                    return Err(bad(
                        "give either pem (with alg, and kid if tokens name one) or jwk".into(),
                    ));
                }
            };
            if !algorithms.contains(&parsed.alg) {
                return Err(bad(format!(
                    "a {:?} key, but {:?} is not in algorithms",
                    parsed.alg, parsed.alg
                )));
            }
            keys.push(parsed);
        }

        let jwks_url = match &self.jwks_url {
            None => None,
            Some(url) => Some(
                jwks_url(url.get_ref())
                    .map_err(|message| at(url.span(), field("jwks_url"), message))?,
            ),
        };
        let hs_secret = match &self.hs_secret {
            None => None,
            Some(secret) => {
                let bad = |message: String| at(secret.span(), field("hs_secret"), message);
                let name = secret.get_ref().strip_prefix("secret:").ok_or_else(|| {
                    bad("name a secret held by the node: hs_secret = \"secret:NAME\" (set with `outpost secret put APP NAME`)".into())
                })?;
                VarName::parse(name).map_err(|err| bad(err.to_string()))?;
                if !algorithms.iter().any(|alg| is_hmac(*alg)) {
                    return Err(bad(
                        "an HS secret, but no HS256/384/512 in algorithms".into()
                    ));
                }
                Some(name.to_owned())
            }
        };
        if let Some(alg) = algorithms.iter().find(|alg| is_hmac(**alg))
            && hs_secret.is_none()
        {
            return Err(whole(format!(
                "{alg:?} tokens need the secret they are signed with: add hs_secret = \"secret:NAME\""
            )));
        }
        let public = algorithms.iter().filter(|alg| !is_hmac(**alg));
        if jwks_url.is_none()
            && let Some(alg) = public
                .clone()
                .find(|alg| !keys.iter().any(|key| key.alg == **alg))
        {
            return Err(whole(format!(
                "no key for {alg:?}: add jwks_url = \"https://…\" or an inline key with alg = \"{alg:?}\""
            )));
        }

        let jwks_refresh_min_s = match &self.jwks_refresh_min_s {
            None => 60,
            Some(value) if (1..=3600).contains(value.get_ref()) => *value.get_ref(),
            Some(value) => {
                return Err(at(
                    value.span(),
                    field("jwks_refresh_min_s"),
                    "give 1 to 3600 (seconds)".into(),
                ));
            }
        };
        let leeway_s = match &self.leeway_s {
            None => 30,
            Some(value) if *value.get_ref() <= 300 => *value.get_ref(),
            Some(value) => {
                return Err(at(
                    value.span(),
                    field("leeway_s"),
                    "give 0 to 300 (seconds of clock skew)".into(),
                ));
            }
        };
        let max_token_bytes = match &self.max_token_bytes {
            None => outpost_host::jwt::DEFAULT_MAX_TOKEN_BYTES,
            Some(value) if (256..=65_536).contains(value.get_ref()) => *value.get_ref(),
            Some(value) => {
                return Err(at(
                    value.span(),
                    field("max_token_bytes"),
                    "give 256 to 65536".into(),
                ));
            }
        };
        let mut required_claims = Vec::with_capacity(self.required_claims.len());
        for claim in self.required_claims {
            if claim.get_ref().is_empty() {
                return Err(at(
                    claim.span(),
                    field("required_claims"),
                    "an empty claim name".into(),
                ));
            }
            required_claims.push(claim.into_inner());
        }
        let forward_claims = match &self.forward_claims {
            None => None,
            Some(header) => {
                let bad = |message: String| at(header.span(), field("forward_claims"), message);
                let name = http::HeaderName::from_bytes(header.get_ref().as_bytes())
                    .map_err(|_| bad(format!("{:?} is not a header name", header.get_ref())))?;
                if RESERVED_HEADERS.contains(&name.as_str()) {
                    return Err(bad(format!(
                        "{name} means something else to handlers; use e.g. \"x-jwt-claims\""
                    )));
                }
                Some(name)
            }
        };
        let token = match &self.token {
            None => TokenSource::Bearer,
            Some(source) => TokenSource::parse(source.get_ref())
                .map_err(|message| at(source.span(), field("token"), message))?,
        };
        Ok(JwtSpec {
            name: name.to_owned(),
            issuer: self.issuer.map(Spanned::into_inner),
            audiences: self
                .audiences
                .into_iter()
                .map(Spanned::into_inner)
                .collect(),
            algorithms,
            keys,
            jwks_url,
            jwks_refresh_min: Duration::from_secs(jwks_refresh_min_s),
            hs_secret,
            leeway_s,
            required_claims,
            forward_claims,
            token,
            max_token_bytes,
        })
    }
}

/// A key set's address: `https://`, or `http://` to this machine (an
/// identity provider run next to `outpost dev`): over plain HTTP anyone on
/// the path could swap the keys.
fn jwks_url(text: &str) -> Result<http::Uri, String> {
    let uri: http::Uri = text.parse().map_err(|_| format!("{text:?} is not a URL"))?;
    let host = uri.host().unwrap_or_default();
    match uri.scheme_str() {
        Some("https") if !host.is_empty() => Ok(uri),
        Some("http") => {
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            let loopback = host == "localhost"
                || bare
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if loopback {
                Ok(uri)
            } else {
                Err(format!(
                    "{text:?}: a key set over plain HTTP can be swapped by anyone on the way; use https:// (http:// only to this machine)"
                ))
            }
        }
        _ => Err(format!("{text:?} is not an https:// URL")),
    }
}

//! JWT verification: the checks of a `[jwt.NAME]` policy ([`JwtVerifier`],
//! free of I/O), the policy's keys ([`policy`]: inline, an HS secret the
//! node holds, a JWKS fetched through the upstream fetch path), and the
//! `outpost:edge/jwt` interface ([`guest`]), so that `[[edge]]` rules and
//! handlers decide alike.
//!
//! Signatures are checked by `jsonwebtoken` with verifiers on `ring`, the
//! library rustls already links ([`crypto`]). Everything a token says
//! about how to check it is distrusted first, here: `alg: none` in any
//! spelling, keys offered by the token itself (`jku`, `x5u`, `jwk`, `x5c`),
//! `crit` extensions, duplicate header fields or claims, oversized tokens,
//! and an algorithm that is not the key's own (an HS256 token "signed" with
//! an RSA public key finds no HS key).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
pub use jsonwebtoken::Algorithm;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{DecodingKey, Validation};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};
use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr as _;

pub mod crypto;
mod guest;
mod jwks;
mod policy;

pub use guest::JwtCtx;
pub use jwks::{Jwks, JwksCache};
pub use policy::{
    JwtOutcome, JwtPolicies, JwtPolicy, JwtRefusal, JwtSpec, TokenSource, forwarded_claims,
};

/// Tokens longer than this are refused before any parsing.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8 << 10;

/// Why a token was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JwtError {
    /// Past its `exp` (and the leeway).
    Expired,
    /// Before its `nbf` (less the leeway).
    NotYetValid,
    /// The signature does not verify.
    BadSignature,
    /// No key of the policy fits the token's `kid` and algorithm, or the
    /// token offers its own key.
    UnknownKey,
    /// `aud` names none of the policy's audiences.
    BadAudience,
    /// `iss` is not the policy's issuer.
    BadIssuer,
    /// Not a well-formed token, or a claim the policy requires is missing
    /// (the text says which).
    Malformed(String),
    /// `none`, or an algorithm the policy does not pin.
    AlgorithmNotAllowed,
}

impl fmt::Display for JwtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Expired => f.write_str("the token has expired"),
            Self::NotYetValid => f.write_str("the token is not valid yet"),
            Self::BadSignature => f.write_str("the token's signature does not verify"),
            Self::UnknownKey => f.write_str("no key of the policy fits the token"),
            Self::BadAudience => f.write_str("the token is not for this audience"),
            Self::BadIssuer => f.write_str("the token is not from the expected issuer"),
            Self::Malformed(why) => write!(f, "malformed token: {why}"),
            Self::AlgorithmNotAllowed => f.write_str("the token's algorithm is not allowed"),
        }
    }
}

/// A key of a policy: used only with its own algorithm, and only for
/// tokens naming its `kid` (a key without one fits tokens without one).
/// Its `Debug` shows which key, never the key.
#[derive(Clone)]
pub struct VerifyingKey {
    pub kid: Option<String>,
    pub alg: Algorithm,
    key: DecodingKey,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl VerifyingKey {
    /// A public key in PEM (RSA and PS: PKCS#1 or SPKI; ES: SPKI; EdDSA:
    /// SPKI) for `alg`.
    pub fn from_pem(kid: Option<String>, alg: Algorithm, pem: &str) -> Result<Self, String> {
        let pem = pem.as_bytes();
        let key = match alg {
            alg if is_rsa(alg) => DecodingKey::from_rsa_pem(pem),
            Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(pem),
            Algorithm::EdDSA => DecodingKey::from_ed_pem(pem),
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                return Err(format!("{alg:?} keys are secrets, not PEM; use hs_secret"));
            }
            other => return Err(format!("{other:?} is not supported")),
        }
        .map_err(|err| format!("not a {alg:?} public key in PEM: {err}"))?;
        Ok(Self { kid, alg, key })
    }

    /// A key given as a JWK (JSON); its `alg` and `kid` come from it.
    pub fn from_jwk(jwk: &str) -> Result<Self, String> {
        let parsed: jsonwebtoken::jwk::Jwk =
            serde_json::from_str(jwk).map_err(|err| format!("not a JWK: {err}"))?;
        let alg = jwk_algorithm(&parsed)
            .ok_or("the JWK has no signing `alg`: keys are pinned to one algorithm")?;
        Self::of_jwk(&parsed, alg)
    }

    /// The keys of a JWKS entry, for the algorithms a policy pins: one key
    /// for an entry with an `alg`; an entry without one is used with the
    /// algorithm its curve implies (EC, OKP) or, for RSA, with each RSA
    /// algorithm the policy pins (RS and PS share keys, not weaknesses).
    /// Secret (`oct`) and encryption keys are refused: a published key set
    /// holds public signing keys only.
    pub fn from_jwks_entry(
        jwk: &jsonwebtoken::jwk::Jwk,
        pinned: &[Algorithm],
    ) -> Result<Vec<Self>, String> {
        use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, PublicKeyUse};
        if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
            return Err("an encryption key (`use: enc`)".into());
        }
        let algorithms = match (&jwk.algorithm, jwk_algorithm(jwk)) {
            (AlgorithmParameters::OctetKey(_), _) => {
                return Err("a secret (`kty: oct`) key in a published key set".into());
            }
            (_, Some(alg)) => vec![alg],
            (AlgorithmParameters::EllipticCurve(ec), None) => match ec.curve {
                EllipticCurve::P256 => vec![Algorithm::ES256],
                EllipticCurve::P384 => vec![Algorithm::ES384],
                _ => return Err(format!("curve {:?} is not supported", ec.curve)),
            },
            (AlgorithmParameters::OctetKeyPair(_), None) => vec![Algorithm::EdDSA],
            (AlgorithmParameters::RSA(_), None) => {
                pinned.iter().copied().filter(|alg| is_rsa(*alg)).collect()
            }
            (_, None) => return Err("a key type this verifier does not know".into()),
        };
        algorithms
            .into_iter()
            .filter(|alg| pinned.contains(alg))
            .map(|alg| Self::of_jwk(jwk, alg))
            .collect()
    }

    fn of_jwk(jwk: &jsonwebtoken::jwk::Jwk, alg: Algorithm) -> Result<Self, String> {
        let key = DecodingKey::from_jwk(jwk).map_err(|err| format!("unusable JWK: {err}"))?;
        Ok(Self {
            kid: jwk.common.key_id.clone(),
            alg,
            key,
        })
    }

    /// An HMAC secret for `alg` (HS256/384/512).
    pub fn from_secret(kid: Option<String>, alg: Algorithm, secret: &[u8]) -> Result<Self, String> {
        if !is_hmac(alg) {
            return Err(format!("a secret is a key for HS256/384/512, not {alg:?}"));
        }
        let key = DecodingKey::from_secret(secret).map_err(|err| err.to_string())?;
        Ok(Self { kid, alg, key })
    }
}

/// Whether `alg` is an RSA signature (RS or PS).
pub fn is_rsa(alg: Algorithm) -> bool {
    matches!(
        alg,
        Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512
    )
}

/// Whether `alg` is an HMAC (HS).
pub fn is_hmac(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

/// A JWK's own signing algorithm, if it names one.
fn jwk_algorithm(jwk: &jsonwebtoken::jwk::Jwk) -> Option<Algorithm> {
    jwk.common
        .key_algorithm
        .and_then(|alg| Algorithm::from_str(&format!("{alg:?}")).ok())
}

/// A policy's checks, and its keys known in advance (more may come from
/// elsewhere: see [`verify_with`](Self::verify_with)).
#[derive(Debug)]
pub struct JwtVerifier {
    pub issuer: Option<String>,
    pub audiences: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    pub keys: Vec<VerifyingKey>,
    pub leeway_s: u64,
    pub required_claims: Vec<String>,
    pub max_token_bytes: usize,
}

impl JwtVerifier {
    /// The verified claims of `token`, or why it is refused.
    pub fn verify(&self, token: &str) -> Result<Map<String, Value>, JwtError> {
        self.verify_with(token, |_, _| None::<&VerifyingKey>)
    }

    /// As [`verify`](Self::verify), asking `more` for a key of the token's
    /// algorithm and `kid` when none of [`keys`](Self::keys) fits. `more`
    /// is not asked about a token refused for its header alone.
    pub fn verify_with<K: Borrow<VerifyingKey>>(
        &self,
        token: &str,
        more: impl FnOnce(Algorithm, Option<&str>) -> Option<K>,
    ) -> Result<Map<String, Value>, JwtError> {
        crypto::install();
        if token.len() > self.max_token_bytes {
            return Err(JwtError::Malformed(format!(
                "longer than {} bytes",
                self.max_token_bytes
            )));
        }
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(_signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed("not three dot-separated parts".into()));
        };
        let header = json_object(header, "header")?;
        let alg = header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or_else(|| JwtError::Malformed("the header has no `alg`".into()))?;
        if alg.eq_ignore_ascii_case("none") {
            return Err(JwtError::AlgorithmNotAllowed);
        }
        if ["jku", "x5u", "jwk", "x5c"]
            .iter()
            .any(|field| header.contains_key(*field))
        {
            // Keys come from the policy, never from the token.
            return Err(JwtError::UnknownKey);
        }
        if header.contains_key("crit") {
            return Err(JwtError::Malformed(
                "`crit` names extensions this verifier does not implement".into(),
            ));
        }
        let alg = Algorithm::from_str(alg).map_err(|_| JwtError::AlgorithmNotAllowed)?;
        if !self.algorithms.contains(&alg) {
            return Err(JwtError::AlgorithmNotAllowed);
        }
        // Claims are parsed here too: duplicates are refused, and they must
        // be an object.
        json_object(payload, "claims")?;
        let kid = header.get("kid").and_then(Value::as_str);
        let found;
        let key = match self
            .keys
            .iter()
            .find(|key| key.alg == alg && key.kid.as_deref() == kid)
        {
            Some(key) => key,
            None => {
                found = more(alg, kid).ok_or(JwtError::UnknownKey)?;
                found.borrow()
            }
        };

        let mut validation = Validation::new(alg);
        validation.leeway = self.leeway_s;
        validation.validate_nbf = true;
        validation.validate_aud = !self.audiences.is_empty();
        if !self.audiences.is_empty() {
            validation.set_audience(&self.audiences);
        }
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
        }
        let mut spec = vec!["exp"];
        if !self.audiences.is_empty() {
            spec.push("aud");
        }
        if self.issuer.is_some() {
            spec.push("iss");
        }
        validation.set_required_spec_claims(&spec);
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation)
            .map_err(|err| match err.kind() {
                ErrorKind::ExpiredSignature => JwtError::Expired,
                ErrorKind::ImmatureSignature => JwtError::NotYetValid,
                ErrorKind::InvalidSignature => JwtError::BadSignature,
                ErrorKind::InvalidAudience => JwtError::BadAudience,
                ErrorKind::InvalidIssuer => JwtError::BadIssuer,
                ErrorKind::InvalidAlgorithm => JwtError::AlgorithmNotAllowed,
                ErrorKind::MissingRequiredClaim(claim) => {
                    JwtError::Malformed(format!("no `{claim}` claim"))
                }
                other => JwtError::Malformed(format!("{other:?}")),
            })?;
        if let Some(missing) = self
            .required_claims
            .iter()
            .find(|claim| !data.claims.contains_key(claim.as_str()))
        {
            return Err(JwtError::Malformed(format!("no `{missing}` claim")));
        }
        Ok(data.claims)
    }
}

/// A base64url part of a token as a JSON object, its fields unique.
fn json_object(part: &str, what: &str) -> Result<Map<String, Value>, JwtError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwtError::Malformed(format!("the {what} is not base64url")))?;
    let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
    let object = deserializer
        .deserialize_map(UniqueFields)
        .map_err(|err| JwtError::Malformed(format!("the {what} is not a JSON object: {err}")))?;
    deserializer
        .end()
        .map_err(|_| JwtError::Malformed(format!("the {what} has trailing bytes")))?;
    Ok(object)
}

/// A JSON object whose field names are unique: `{"sub":"a","sub":"b"}`
/// means different things to different parsers, so it means nothing.
struct UniqueFields;

impl<'de> Visitor<'de> for UniqueFields {
    type Value = Map<String, Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut map = Map::new();
        while let Some((name, value)) = access.next_entry::<String, Value>()? {
            if map.contains_key(&name) {
                return Err(de::Error::custom(format!("`{name}` appears twice")));
            }
            map.insert(name, value);
        }
        Ok(map)
    }
}

#[cfg(test)]
mod tests;

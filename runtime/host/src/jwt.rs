//! JWT verification: the checks of a `[jwt.NAME]` policy, free of I/O, so
//! that `[[edge]]` rules and `outpost:edge/jwt` decide alike (both still to
//! be wired: see the README's "Not built yet").
//!
//! Signatures are checked by `jsonwebtoken` (RustCrypto backend: no second
//! TLS crypto provider next to rustls' ring). Everything a token says
//! about how to check it is distrusted first, here: `alg: none` in any
//! spelling, keys offered by the token itself (`jku`, `x5u`, `jwk`, `x5c`),
//! `crit` extensions, duplicate header fields or claims, oversized tokens,
//! and an algorithm that is not the key's own (an HS256 token "signed" with
//! an RSA public key finds no HS key).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;
use std::str::FromStr as _;

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
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => DecodingKey::from_rsa_pem(pem),
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
        let alg = parsed
            .common
            .key_algorithm
            .and_then(|alg| Algorithm::from_str(&format!("{alg:?}")).ok())
            .ok_or("the JWK has no signing `alg`: keys are pinned to one algorithm")?;
        let key = DecodingKey::from_jwk(&parsed).map_err(|err| format!("unusable JWK: {err}"))?;
        Ok(Self {
            kid: parsed.common.key_id.clone(),
            alg,
            key,
        })
    }

    /// An HMAC secret for `alg` (HS256/384/512).
    pub fn from_secret(kid: Option<String>, alg: Algorithm, secret: &[u8]) -> Result<Self, String> {
        if !matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
            return Err(format!("a secret is a key for HS256/384/512, not {alg:?}"));
        }
        let key = DecodingKey::from_secret(secret).map_err(|err| err.to_string())?;
        Ok(Self { kid, alg, key })
    }
}

/// A policy's checks.
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
        let kid = header.get("kid").and_then(Value::as_str);
        let key = self
            .keys
            .iter()
            .find(|key| key.alg == alg && key.kid.as_deref() == kid)
            .ok_or(JwtError::UnknownKey)?;
        // Claims are parsed here too: duplicates are refused, and they must
        // be an object.
        json_object(payload, "claims")?;

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

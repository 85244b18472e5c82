//! JWT verification (`outpost:edge/jwt`): the app's `[jwt.NAME]`
//! policies, for tokens a handler finds itself.
//!
//! Most apps need no code for JWTs: an `[[edge]]` rule with `jwt = "NAME"`
//! refuses requests without a valid token (401) before the handler runs,
//! and, with `forward_claims`, hands the verified claims to the handler in
//! a header no client can forge ([`forwarded`]). [`verify`] is for tokens
//! elsewhere: a query parameter, a WebSocket subprotocol, a request body.
//!
//! ```toml
//! [jwt.main]
//! issuer = "https://auth.example.com/"
//! audiences = ["api"]
//! algorithms = ["RS256"]
//! jwks_url = "https://auth.example.com/.well-known/jwks.json"
//! forward_claims = "x-jwt-claims"
//! ```
//!
//! ```no_run
//! use outpost_sdk::{handler, jwt, Error, Request, Response, Result, StatusCode};
//!
//! #[handler]
//! fn handle(req: Request) -> Result<Response> {
//!     let token = req.query_param("token").unwrap_or_default();
//!     let claims = jwt::verify("main", &token)
//!         .map_err(|err| Error::new(StatusCode::UNAUTHORIZED, err.to_string()))?;
//!     Ok(Response::text(format!("hello {}\n", claims.subject().unwrap_or("?"))))
//! }
//! ```

use crate::Request;
use crate::wasi::bindings::outpost::edge::jwt as wit;
use serde_json::{Map, Value};
use std::fmt;

/// A token's verified claims.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims(Map<String, Value>);

impl Claims {
    /// The claim `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    /// `sub`, when it is a string.
    pub fn subject(&self) -> Option<&str> {
        self.get("sub").and_then(Value::as_str)
    }

    /// Every claim.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    /// The claims as a type of the handler's own.
    ///
    /// ```no_run
    /// # fn run(claims: outpost_sdk::jwt::Claims) -> Result<(), serde_json::Error> {
    /// // Any `DeserializeOwned` type: a struct with `#[derive(Deserialize)]`,
    /// // or a map.
    /// let claims: std::collections::BTreeMap<String, serde_json::Value> = claims.deserialize()?;
    /// # Ok(()) }
    /// ```
    pub fn deserialize<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(Value::Object(self.0.clone()))
    }
}

/// Verifies `token` with the app's policy `policy`: its claims, or why it
/// is refused.
///
/// ```no_run
/// use outpost_sdk::jwt;
///
/// # fn run(token: &str) {
/// match jwt::verify("main", token) {
///     Ok(claims) => println!("user {:?}", claims.subject()),
///     Err(err) if err.is_token_invalid() => println!("refused: {err}"),
///     Err(err) => println!("cannot check now: {err}"),
/// }
/// # }
/// ```
pub fn verify(policy: &str, token: &str) -> Result<Claims, JwtError> {
    let json = wit::verify(policy, token).map_err(JwtError)?;
    match serde_json::from_str(&json) {
        Ok(Value::Object(claims)) => Ok(Claims(claims)),
        _ => Err(JwtError(wit::Error::Malformed(
            "the host returned claims that are not a JSON object".into(),
        ))),
    }
}

/// The claims an `[[edge]]` rule verified, from the header its policy's
/// `forward_claims` names (the edge removes any copy a client sends, so
/// only the node can set it); `None` if the request has none.
///
/// ```no_run
/// use outpost_sdk::{handler, jwt, Request, Response, Result};
///
/// #[handler]
/// fn handle(req: Request) -> Result<Response> {
///     let user = jwt::forwarded(&req, "x-jwt-claims")
///         .and_then(|claims| claims.subject().map(str::to_owned))
///         .unwrap_or_else(|| "anonymous".into());
///     Ok(Response::text(format!("hello {user}\n")))
/// }
/// ```
pub fn forwarded(req: &Request, header: &str) -> Option<Claims> {
    match serde_json::from_str(req.header(header)?) {
        Ok(Value::Object(claims)) => Some(Claims(claims)),
        _ => None,
    }
}

/// Why a token gave no claims.
#[derive(Debug, Clone)]
pub struct JwtError(wit::Error);

impl JwtError {
    /// Whether the token itself is at fault (answer 401), rather than the
    /// app's policies or the policy's keys being unavailable.
    pub fn is_token_invalid(&self) -> bool {
        !matches!(
            self.0,
            wit::Error::UnknownPolicy(_) | wit::Error::KeysUnavailable(_)
        )
    }
}

impl fmt::Display for JwtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            wit::Error::UnknownPolicy(name) => write!(f, "the app declares no JWT policy {name:?}"),
            wit::Error::Expired => f.write_str("the token has expired"),
            wit::Error::NotYetValid => f.write_str("the token is not valid yet"),
            wit::Error::BadSignature => f.write_str("the token's signature does not verify"),
            wit::Error::UnknownKey => f.write_str("no key of the policy fits the token"),
            wit::Error::BadAudience => f.write_str("the token is not for this audience"),
            wit::Error::BadIssuer => f.write_str("the token is not from the expected issuer"),
            wit::Error::Malformed(why) => write!(f, "malformed token: {why}"),
            wit::Error::AlgorithmNotAllowed => f.write_str("the token's algorithm is not allowed"),
            wit::Error::KeysUnavailable(why) => {
                write!(f, "the policy's keys are unavailable: {why}")
            }
        }
    }
}

impl std::error::Error for JwtError {}

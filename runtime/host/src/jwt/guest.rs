//! JWT verification as handlers call it (`outpost:edge/jwt`,
//! `wit/jwt.wit`): the app's policies, for a token the handler passes.

use super::JwtError;
use super::policy::{JwtPolicies, JwtRefusal};
use crate::bindings::outpost::edge::jwt::{Error, Host};
use std::sync::Arc;

/// One request's view of its app's JWT policies.
pub struct JwtCtx {
    policies: Arc<JwtPolicies>,
}

impl JwtCtx {
    /// The policies of one app, for one request.
    pub fn new(policies: Arc<JwtPolicies>) -> Self {
        Self { policies }
    }
}

impl Host for JwtCtx {
    async fn verify(&mut self, policy: String, token: String) -> Result<String, Error> {
        let verifier = self
            .policies
            .get(&policy)
            .ok_or(Error::UnknownPolicy(policy))?
            .clone();
        let claims = verifier
            .verify(&token)
            .await
            .map_err(|refusal| match refusal {
                JwtRefusal::KeysUnavailable(why) => Error::KeysUnavailable(why),
                JwtRefusal::Token(err) => match err {
                    JwtError::Expired => Error::Expired,
                    JwtError::NotYetValid => Error::NotYetValid,
                    JwtError::BadSignature => Error::BadSignature,
                    JwtError::UnknownKey => Error::UnknownKey,
                    JwtError::BadAudience => Error::BadAudience,
                    JwtError::BadIssuer => Error::BadIssuer,
                    JwtError::Malformed(why) => Error::Malformed(why),
                    JwtError::AlgorithmNotAllowed => Error::AlgorithmNotAllowed,
                },
            })?;
        Ok(serde_json::Value::Object(claims).to_string())
    }
}

//! Variables and secrets: the app's `[variables]` and the secrets the node
//! holds for it, read by handlers through `wasi:config/store` (the
//! standard interface Spin also implements).
//!
//! The shape of every host service: a node-wide [`VarsService`] holding
//! each app's current secrets (swapped whole when an operator sets one, so
//! running apps see it at their next request, no redeploy), a per-app
//! [`VarsPolicy`] with the variables of its version, and a per-request
//! [`VarsCtx`]. A secret overrides a variable of the same name, so an
//! operator can override a manifest's value without a redeploy.

use crate::bindings::wasi::config::store::{Error, Host};
use arc_swap::ArcSwap;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// A secret's value. Its `Debug` shows no value, so a secret never reaches
/// a log line through a `{:?}`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    /// A secret of `value`.
    pub fn new(value: &str) -> Self {
        Self(value.into())
    }

    /// The value, for the handler that asks.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// One app's secrets, by name.
pub type Secrets = BTreeMap<String, Secret>;

/// The node's secrets of every app, as served now.
#[derive(Debug, Default)]
pub struct VarsService {
    apps: Mutex<HashMap<String, Arc<ArcSwap<Secrets>>>>,
}

impl VarsService {
    /// From now on, app `app`'s handlers see `secrets` (all of them: the
    /// set replaces the previous one).
    pub fn set_secrets(&self, app: &str, secrets: Secrets) {
        self.slot(app).store(Arc::new(secrets));
    }

    /// App `app`'s variables and (live) secrets.
    pub fn policy(&self, app: &str, variables: BTreeMap<String, String>) -> VarsPolicy {
        VarsPolicy {
            variables,
            secrets: self.slot(app),
        }
    }

    fn slot(&self, app: &str) -> Arc<ArcSwap<Secrets>> {
        self.apps
            .lock()
            .expect("secrets lock")
            .entry(app.to_owned())
            .or_default()
            .clone()
    }
}

/// One app version's variables, and its app's secrets.
#[derive(Debug)]
pub struct VarsPolicy {
    variables: BTreeMap<String, String>,
    secrets: Arc<ArcSwap<Secrets>>,
}

impl VarsPolicy {
    /// The value of `name`: a secret of that name, else a variable.
    pub fn get(&self, name: &str) -> Option<String> {
        if let Some(secret) = self.secrets.load().get(name) {
            return Some(secret.expose().to_owned());
        }
        self.variables.get(name).cloned()
    }

    /// The secret `name` (variables are not looked at).
    pub fn secret(&self, name: &str) -> Option<Secret> {
        self.secrets.load().get(name).cloned()
    }

    /// Every name with its value, sorted by name.
    pub fn all(&self) -> Vec<(String, String)> {
        let secrets = self.secrets.load();
        let mut all: BTreeMap<&str, &str> = self
            .variables
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        for (name, secret) in secrets.iter() {
            all.insert(name, secret.expose());
        }
        all.into_iter()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect()
    }
}

/// One request's view of its app's variables and secrets.
pub struct VarsCtx {
    policy: Arc<VarsPolicy>,
}

impl VarsCtx {
    /// The variables and secrets of one app, for one request.
    pub fn new(policy: Arc<VarsPolicy>) -> Self {
        Self { policy }
    }
}

impl Host for VarsCtx {
    fn get(&mut self, key: String) -> Result<Option<String>, Error> {
        Ok(self.policy.get(&key))
    }

    fn get_all(&mut self) -> Result<Vec<(String, String)>, Error> {
        Ok(self.policy.all())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_override_variables_and_change_without_a_redeploy() {
        let service = VarsService::default();
        let variables = BTreeMap::from([
            ("greeting".to_owned(), "hello".to_owned()),
            ("region".to_owned(), "eu".to_owned()),
        ]);
        let policy = service.policy("app", variables);
        assert_eq!(policy.get("greeting").as_deref(), Some("hello"));
        service.set_secrets(
            "app",
            Secrets::from([("greeting".to_owned(), Secret::new("override"))]),
        );
        assert_eq!(policy.get("greeting").as_deref(), Some("override"));
        assert_eq!(
            policy.all(),
            [
                ("greeting".to_owned(), "override".to_owned()),
                ("region".to_owned(), "eu".to_owned())
            ]
        );
        service.set_secrets(
            "other",
            Secrets::from([("region".to_owned(), Secret::new("x"))]),
        );
        assert_eq!(
            policy.get("region").as_deref(),
            Some("eu"),
            "apps never share secrets"
        );
        assert_eq!(format!("{:?}", Secret::new("s3cr3t")), "Secret(..)");
    }
}

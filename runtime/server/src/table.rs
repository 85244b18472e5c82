//! The apps a node serves and the router over their routes. Installing,
//! replacing or removing an app builds a new router and swaps it in
//! atomically: a request routes with the router it started with and runs
//! on the version it was routed to, so a swap never fails a request.

use crate::router::{Route, Router};
use arc_swap::ArcSwap;
use outpost_core::App;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Where an app came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// `[apps.NAME]` in node.toml (or `outpost serve FILE`, `outpost dev`).
    Config,
    /// Deployed through the admin API; lives in the node's store.
    Store,
}

/// One app as served now.
#[derive(Clone)]
pub struct Served {
    /// The loaded version.
    pub app: App,
    /// Its routes.
    pub routes: Vec<Route>,
    /// Its version number in the store (deployed apps).
    pub version: Option<u64>,
    /// Where it came from.
    pub origin: Origin,
}

/// Every app of the node, by name, and the router built from them.
pub struct AppTable {
    apps: Mutex<BTreeMap<String, Served>>,
    router: ArcSwap<Router<App>>,
}

impl Default for AppTable {
    fn default() -> Self {
        Self {
            apps: Mutex::new(BTreeMap::new()),
            router: ArcSwap::from_pointee(Router::new(Vec::new())),
        }
    }
}

impl AppTable {
    /// The router as of now. Cheap: one atomic load.
    pub fn router(&self) -> arc_swap::Guard<Arc<Router<App>>> {
        self.router.load()
    }

    /// Serves `served` under its app's name from now on, replacing the
    /// version served before. Refused, changing nothing, if another app
    /// claims one of its routes.
    pub fn install(&self, served: Served) -> Result<Option<Served>, String> {
        self.update(|apps| add(apps, served))
    }

    /// Serves many apps at once, with one router rebuild (a node starting
    /// with 1,000 apps would otherwise build 1,000 routers). Refused,
    /// changing nothing, if any two claim the same route.
    pub fn install_all(&self, served: Vec<Served>) -> Result<(), String> {
        self.update(|apps| {
            served
                .into_iter()
                .try_for_each(|served| add(apps, served).map(drop))
        })
    }

    /// Serves `served` in place of the app called `old` (a renamed app), in
    /// one swap: its routes may be the old app's.
    pub fn replace(&self, old: &str, served: Served) -> Result<(), String> {
        self.update(|apps| {
            apps.remove(old);
            add(apps, served).map(drop)
        })
    }

    /// Whether `app` could serve `routes` without taking another app's
    /// (and, for a deployed app, without taking requests for a host an app
    /// of node.toml names).
    pub fn check_routes(&self, app: &str, routes: &[Route], origin: Origin) -> Result<(), String> {
        route_conflict(
            &self.apps.lock().expect("app table lock"),
            app,
            routes,
            origin,
        )
    }

    /// Stops serving an app. Requests already routed to it finish.
    pub fn remove(&self, name: &str) -> Option<Served> {
        self.update(|apps| Ok(apps.remove(name)))
            .expect("removing an app cannot conflict")
    }

    /// The app called `name`, as served now.
    pub fn get(&self, name: &str) -> Option<Served> {
        self.apps.lock().expect("app table lock").get(name).cloned()
    }

    /// Every app, by name.
    pub fn list(&self) -> Vec<Served> {
        self.apps
            .lock()
            .expect("app table lock")
            .values()
            .cloned()
            .collect()
    }

    /// Applies `change` to a copy of the apps; if it succeeds, the copy
    /// becomes the table and the router is rebuilt from it.
    fn update<T>(
        &self,
        change: impl FnOnce(&mut BTreeMap<String, Served>) -> Result<T, String>,
    ) -> Result<T, String> {
        let mut apps = self.apps.lock().expect("app table lock");
        let mut next = apps.clone();
        let outcome = change(&mut next)?;
        *apps = next;
        self.rebuild(&apps);
        Ok(outcome)
    }

    fn rebuild(&self, apps: &BTreeMap<String, Served>) {
        let routes = apps
            .values()
            .flat_map(|served| {
                served
                    .routes
                    .iter()
                    .map(|route| (route.clone(), served.app.clone()))
            })
            .collect();
        self.router.store(Arc::new(Router::new(routes)));
    }
}

/// Adds or replaces an app, unless another app has one of its routes.
fn add(apps: &mut BTreeMap<String, Served>, served: Served) -> Result<Option<Served>, String> {
    let name = served.app.name().to_owned();
    route_conflict(apps, &name, &served.routes, served.origin)?;
    Ok(apps.insert(name, served))
}

/// A route belongs to one app. And a host named by a node.toml app belongs
/// to the operator: a deployed app may not take any of its requests with a
/// more specific route (`api.example.com/admin` under node.toml's
/// `api.example.com/`, or `a.example.com/` under `*.example.com/`), as a
/// deploy token is trusted with its own apps, not with the operator's
/// hosts. Any-host node.toml routes (`/`) are catch-alls that deployed apps
/// may refine.
fn route_conflict(
    apps: &BTreeMap<String, Served>,
    app: &str,
    routes: &[Route],
    origin: Origin,
) -> Result<(), String> {
    for (other, existing) in apps.iter().filter(|(other, _)| *other != app) {
        if let Some(route) = routes.iter().find(|route| existing.routes.contains(route)) {
            return Err(format!(
                "route {:?} is already served by app {other:?}; remove it from one of them",
                route.to_string()
            ));
        }
        if origin == Origin::Store && existing.origin == Origin::Config {
            for route in routes {
                if let Some(owned) = existing
                    .routes
                    .iter()
                    .find(|owned| owned.has_host() && route.takes_from(owned))
                {
                    return Err(format!(
                        "route {:?} would take requests from route {:?} of app {other:?}, which the node config \
                         serves; hosts named in node.toml belong to the operator: use another host",
                        route.to_string(),
                        owned.to_string()
                    ));
                }
            }
        }
    }
    Ok(())
}

//! Outpost's node: the operator's node config and the app manifest, the
//! table of served apps and the router over it, the hyper server (HTTP/1.1
//! and HTTP/2 with prior knowledge) with a deadline in every connection
//! phase, the edge phase that answers what it can before any Wasm runs, and
//! the admin API that deploys versions from the app store.

mod admin;
mod cached;
mod config;
mod edge;
mod front;
mod manifest;
mod node;
mod router;
mod table;

pub use admin::MANIFEST_HEADER;
pub use config::{
    AdminConfig, AdminToken, AppConfig, ConfigError, DEFAULT_ADMIN_ADDR, DEFAULT_LISTEN_ADDR,
    HttpConfig, NodeConfig, Scope,
};
pub use manifest::{AppManifest, MANIFEST_FILE, SCHEMA};
pub use node::Node;
pub use router::{Route, Router};
pub use table::{AppTable, Origin, Served};

//! Outpost's front end: the operator's node config, the router from host and
//! path to app, and the hyper server (HTTP/1.1 and HTTP/2 with prior
//! knowledge) that hands each request to its app.

mod config;
mod front;
mod node;
mod router;

pub use config::{AppConfig, ConfigError, DEFAULT_LISTEN_ADDR, NodeConfig};
pub use node::Node;
pub use router::{Route, Router};

//! Outpost's execution core.
//!
//! One [`Runtime`] per process owns the wasmtime engine (pooling allocator,
//! copy-on-write memory images, epoch interruption), the linker with every
//! host interface of the `outpost:edge/handler` world, the epoch ticker, and
//! the on-disk cache of precompiled components. [`Runtime::load_app`] turns a
//! component file into an [`App`]: compiled once, imports resolved and types
//! checked once against the `outpost:edge/handler` world (`HandlerPre`).
//! [`App::handle`] then serves each request in a fresh, isolated instance
//! bounded by the app's [`Limits`].

mod app;
mod cpu;
mod deadline;
mod failure;
mod guest_log;
mod instance;
mod limits;
mod precompile;
mod runtime;
mod state;
mod tail;

pub use app::{App, AppStats, ResponseBody};
pub use failure::{Failure, LoadError};
pub use instance::Saturated;
pub use limits::{
    Limits, MAX_CORE_INSTANCES_PER_COMPONENT, MAX_MEMORIES_PER_COMPONENT, MAX_TABLES_PER_COMPONENT,
};
pub use outpost_host::{RequestId, RequestMeta, printable, printable_capped};
pub use precompile::Provenance;
pub use runtime::{AppSpec, Runtime, RuntimeConfig};
pub use tail::TailEvent;

/// The error a request body handed to [`App::handle`] may fail with; the
/// guest's body stream reports it (`connection-read-timeout` for a client
/// too slow to send, say).
pub use wasmtime_wasi_http::Error as BodyError;

//! The `outpost:edge/handler` world (`wit/world.wit`), bound once.
//!
//! Every component is checked against this world at load time
//! ([`HandlerPre`]) and called through it ([`Handler`]). Its `wasi:*` parts
//! are mapped (`with:`) onto wasmtime-wasi's and wasmtime-wasi-http's own
//! bindings, so their host implementations link as they are and a resource
//! such as an incoming request is the same Rust type on both sides. An
//! interface of Outpost's own (`outpost:edge/cache`, say) gets its `Host`
//! trait generated here; its implementation lives in `outpost-host` and is
//! linked in [`add_to_linker`], next to the WASI ones.

use wasmtime::component::Linker;

use crate::state::RequestState;

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "outpost:edge/handler",
    exports: { default: async },
    require_store_data_send: true,
    with: {
        "wasi:http": wasmtime_wasi_http::p2::bindings::http,
        "wasi:io": wasmtime_wasi::p2::bindings::io,
        "wasi:cli": wasmtime_wasi::p2::bindings::cli,
        "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        "wasi:random": wasmtime_wasi::p2::bindings::random,
        "wasi:filesystem": wasmtime_wasi::p2::bindings::filesystem,
        "wasi:sockets": wasmtime_wasi::p2::bindings::sockets,
    },
});

/// Links every interface the world imports: WASI p2 (sockets linked but
/// denied, no preopens: see [`RequestState`]) and `wasi:http`.
pub(crate) fn add_to_linker(linker: &mut Linker<RequestState>) -> anyhow::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)
        .and_then(|()| wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker))
        .map_err(|err| anyhow::anyhow!("cannot link host interfaces: {err:#}"))
}

//! The `outpost:edge/handler` world (`wit/world.wit`), bound once.
//!
//! Every component is checked against this world at load time
//! ([`HandlerPre`]) and called through it ([`Handler`]). Its `wasi:*` parts
//! are mapped (`with:`) onto wasmtime-wasi's and wasmtime-wasi-http's own
//! bindings, so their host implementations link as they are and a resource
//! such as an incoming request is the same Rust type on both sides.
//!
//! The bindings live here, next to the services, so that an interface of
//! Outpost's own (`outpost:edge/cache`, say) gets its `Host` trait here and
//! its implementation on the service's per-request context in this crate;
//! `outpost-core` only adds it to the linker, with a getter into its
//! per-request state.

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "outpost:edge/handler",
    exports: { default: async },
    // A purge walks the app's entries on a blocking thread, and a lookup
    // may wait for a concurrent request's insert; an insert answers from
    // memory at once. A JWT check may wait for its policy's key set; a KV
    // read or write for the store.
    imports: {
        "outpost:edge/cache.purge": async,
        "outpost:edge/cache.lookup": async,
        "outpost:edge/jwt.verify": async,
        "wasi:keyvalue/store.[method]bucket.get": async,
        "wasi:keyvalue/store.[method]bucket.set": async,
        "wasi:keyvalue/store.[method]bucket.delete": async,
        "wasi:keyvalue/store.[method]bucket.exists": async,
        "wasi:keyvalue/store.[method]bucket.list-keys": async,
        "wasi:keyvalue/atomics.[static]cas.new": async,
        "wasi:keyvalue/atomics.increment": async,
        "wasi:keyvalue/atomics.swap": async,
        "wasi:keyvalue/batch.get-many": async,
        "wasi:keyvalue/batch.set-many": async,
        "wasi:keyvalue/batch.delete-many": async,
        "outpost:edge/kv.set-with-ttl": async,
        "outpost:edge/kv.list-prefix": async,
    },
    require_store_data_send: true,
    with: {
        "wasi:http": wasmtime_wasi_http::p2::bindings::http,
        "wasi:io": wasmtime_wasi::p2::bindings::io,
        "wasi:cli": wasmtime_wasi::p2::bindings::cli,
        "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        "wasi:random": wasmtime_wasi::p2::bindings::random,
        "wasi:filesystem": wasmtime_wasi::p2::bindings::filesystem,
        "wasi:sockets": wasmtime_wasi::p2::bindings::sockets,
        "wasi:keyvalue/store.bucket": crate::kv::Bucket,
        "wasi:keyvalue/atomics.cas": crate::kv::Cas,
    },
});

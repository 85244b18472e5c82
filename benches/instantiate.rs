//! In-process latency of the per-request path: a fresh instance from the
//! app's `ProxyPre`, one trivial GET through the `hello` example, the whole
//! response body read. No sockets involved.
//!
//! Two numbers per request: *response*, from the call to the end of the body
//! (what a client waits for), and *full cycle*, which also includes the
//! instance's teardown. The runtime tears an instance down in a task of its
//! own once the response is out; here that task runs when the loop yields
//! after each request, as a connection's task yields after writing.
//!
//! Run: `cargo bench -p outpost-benches --bench instantiate`
//! (`-- --iterations N` to change the sample size, `-- --component PATH` to
//! measure another component than examples/hello).

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use outpost_core::{AppSpec, Limits, RequestMeta, Runtime, RuntimeConfig};
use outpost_host::Services;
use outpost_host::cache::{CacheConfig, CacheRules};
use outpost_host::fetch::FetchConfig;
use outpost_host::kv::KvConfig;
use outpost_host::ratelimit::RateLimitConfig;
use std::time::{Duration, Instant};

const WARMUP: usize = 2_000;

fn main() {
    let arg = |name: &str| std::env::args().skip_while(|arg| arg != name).nth(1);
    let iterations =
        arg("--iterations").map_or(50_000, |n| n.parse().expect("--iterations takes a number"));
    let component =
        arg("--component").unwrap_or_else(|| outpost_tests::artifacts::HELLO.to_owned());

    let cache = tempfile_dir();
    let services = Services::new(
        &FetchConfig::default(),
        &CacheConfig::default(),
        &RateLimitConfig::default(),
        &KvConfig::at(cache.join("kv.redb")),
        &[],
    )
    .expect("services start");
    let runtime =
        Runtime::new(RuntimeConfig::new(cache.clone()), services).expect("runtime starts");
    let (app, _) = runtime
        .load_app(&AppSpec {
            name: "hello".into(),
            component: component.clone().into(),
            limits: Limits::default(),
            outbound: Vec::new(),
            backends: Vec::new(),
            cache: CacheRules::default(),
            rate_limits: Vec::new(),
            jwt: Vec::new(),
            kv_buckets: Vec::new(),
            edge: Vec::new(),
            variables: Default::default(),
        })
        .expect("hello loads");

    // One worker thread: the measurement is the cost of one request on one
    // core, as the front end's per-core runtime would see it.
    let executor = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let samples = executor.block_on(async {
        let one = || async {
            let request = http::Request::get("http://localhost/")
                .body(Empty::<Bytes>::new().map_err(|never| -> hyper::Error { match never {} }))
                .unwrap();
            let started = Instant::now();
            let response = app
                .handle(request, RequestMeta::local())
                .await
                .expect("hello answers");
            let body = response
                .into_body()
                .collect()
                .await
                .expect("body streams")
                .to_bytes();
            let answered = started.elapsed();
            assert!(!body.is_empty());
            tokio::task::yield_now().await;
            (answered, started.elapsed())
        };
        for _ in 0..WARMUP {
            one().await;
        }
        let mut samples = Vec::with_capacity(iterations);
        for _ in 0..iterations {
            samples.push(one().await);
        }
        samples
    });
    drop(runtime);
    let _ = std::fs::remove_dir_all(cache);
    let (response, full_cycle): (Vec<_>, Vec<_>) = samples.into_iter().unzip();
    println!("instantiate + trivial request, {iterations} iterations, in-process");
    println!("           response   full cycle");
    let response = Quantiles::of(response);
    let full_cycle = Quantiles::of(full_cycle);
    for (label, q) in [
        ("p50", 0.50),
        ("p90", 0.90),
        ("p99", 0.99),
        ("p99.9", 0.999),
    ] {
        println!(
            "  {label:<6} {:>9.2} µs {:>9.2} µs",
            response.at(q),
            full_cycle.at(q)
        );
    }
    println!(
        "  mean   {:>9.2} µs {:>9.2} µs",
        response.mean(),
        full_cycle.mean()
    );
}

/// Sorted samples, read in microseconds.
struct Quantiles(Vec<Duration>);

impl Quantiles {
    fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        Self(samples)
    }

    fn at(&self, q: f64) -> f64 {
        let index = ((self.0.len() as f64 * q) as usize).min(self.0.len() - 1);
        micros(self.0[index])
    }

    fn mean(&self) -> f64 {
        micros(self.0.iter().sum::<Duration>() / self.0.len() as u32)
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("outpost-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

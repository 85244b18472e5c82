//! In-process latency of the per-request path: a fresh instance from the
//! app's `ProxyPre`, one trivial GET through the `hello` example, the whole
//! response body read, the instance dropped. No sockets involved.
//!
//! Run: `cargo bench -p outpost-benches --bench instantiate`
//! (`-- --iterations N` to change the sample size, `-- --component PATH` to
//! measure another component than examples/hello).

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use outpost_core::{AppSpec, Limits, RequestId, Runtime, RuntimeConfig};
use std::time::{Duration, Instant};

const WARMUP: usize = 2_000;

fn main() {
    let arg = |name: &str| std::env::args().skip_while(|arg| arg != name).nth(1);
    let iterations = arg("--iterations").map_or(50_000, |n| n.parse().expect("--iterations takes a number"));
    let component = arg("--component").unwrap_or_else(|| outpost_tests::artifacts::HELLO.to_owned());

    let cache = tempfile_dir();
    let runtime = Runtime::new(RuntimeConfig::new(cache.clone())).expect("runtime starts");
    let (app, _) = runtime
        .load_app(&AppSpec {
            name: "hello".into(),
            component: component.clone().into(),
            limits: Limits::default(),
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
            let response = app.handle(request, RequestId::next()).await.expect("hello answers");
            let body = response.into_body().collect().await.expect("body streams").to_bytes();
            let elapsed = started.elapsed();
            assert!(!body.is_empty());
            elapsed
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
    report(samples);
}

fn report(mut samples: Vec<Duration>) {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    println!("instantiate + trivial request, {} iterations, in-process", samples.len());
    println!("  p50    {:>9.2} µs", micros(at(0.50)));
    println!("  p90    {:>9.2} µs", micros(at(0.90)));
    println!("  p99    {:>9.2} µs", micros(at(0.99)));
    println!("  p99.9  {:>9.2} µs", micros(at(0.999)));
    println!("  mean   {:>9.2} µs", micros(mean));
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("outpost-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

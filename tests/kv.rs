//! End to end: KV through `wasi:keyvalue` and `outpost:edge/kv` (the
//! `kv-api` fixture and the `shortener` example) on the node's embedded
//! store: persistence across a restart and a SIGKILL, atomic counters and
//! compare-and-swap under concurrent clients, listings by prefix with a
//! cursor, expiry, batches, limits, and isolation between apps.

use outpost_tests::{Outpost, Reply, TempDir, artifacts, serve_config, serve_dir};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const OUTPOST: &str = env!("CARGO_BIN_EXE_outpost");

/// App `a` (the fixture, bucket `extra` besides `default`) on every host,
/// app `b` (the fixture again) on host `b.example`, with `node` extra
/// node.toml settings before the apps.
fn start(node: &str) -> (Outpost, TempDir) {
    let toml = format!(
        "{node}\n[apps.a]\ncomponent = {0:?}\nroutes = [\"/\"]\n[apps.a.kv]\nbuckets = [\"extra\"]\n\
         [apps.a.limits]\nrequest_body_kib = 4096\n\
         [apps.b]\ncomponent = {0:?}\nroutes = [\"b.example/\"]\n",
        artifacts::KV_API
    );
    serve_config(OUTPOST.as_ref(), &toml)
}

fn put(node: &Outpost, path: &str, body: &str) -> Reply {
    node.send("PUT", path, &[], body.to_owned())
}

fn get(node: &Outpost, path: &str) -> Reply {
    node.request("GET", path, &[])
}

#[test]
fn values_are_set_read_listed_by_prefix_and_expire() {
    let (node, _dir) = start("");
    assert_eq!(put(&node, "/k/greeting", "hello").text(), "ok");
    let read = get(&node, "/k/greeting");
    assert_eq!((read.status.as_u16(), read.text()), (200, "hello".into()));
    assert_eq!(get(&node, "/exists/greeting").text(), "true");
    assert_eq!(get(&node, "/k/absent").status, 404);
    assert_eq!(node.request("DELETE", "/k/greeting", &[]).text(), "ok");
    assert_eq!(get(&node, "/exists/greeting").text(), "false");

    // 1,200 keys in two batches; a listing pages them 1,000 at a time.
    for batch in [0..1000, 1000..1200] {
        let body: String = batch.map(|i| format!("user/{i:04}={i}\n")).collect();
        assert_eq!(node.send("POST", "/batch", &[], body).text(), "ok");
    }
    put(&node, "/k/other", "x");
    let first = get(&node, "/list?prefix=user/").text();
    let lines: Vec<&str> = first.lines().collect();
    assert_eq!(lines.len(), 1001, "1000 keys and the cursor");
    assert_eq!(lines[0], "user/0000");
    assert_eq!(lines[1000], "cursor: user/0999");
    let rest = get(&node, "/list?prefix=user/&cursor=user/0999").text();
    let lines: Vec<&str> = rest.lines().collect();
    assert_eq!(
        (lines.len(), lines[0], lines[200]),
        (201, "user/1000", "cursor: -")
    );
    let many = get(&node, "/batch?keys=user/0007,nope,user/1199").text();
    assert_eq!(many, "user/0007=7\nnope\nuser/1199=1199\n");

    // Buckets are apart: the same key in `extra` is another value.
    put(&node, "/k/other?bucket=extra", "in extra");
    assert_eq!(get(&node, "/k/other").text(), "x");
    assert_eq!(get(&node, "/k/other?bucket=extra").text(), "in extra");

    // Expiry: gone after its TTL, from reads and listings.
    assert_eq!(put(&node, "/k/session?ttl=1", "s").text(), "ok");
    assert_eq!(get(&node, "/k/session").status, 200);
    std::thread::sleep(Duration::from_millis(1300));
    assert_eq!(get(&node, "/k/session").status, 404);
    assert_eq!(get(&node, "/list?prefix=session").text(), "cursor: -\n");
}

#[test]
fn counters_and_compare_and_swap_lose_nothing_under_8_concurrent_clients() {
    let (node, _dir) = start("");
    let node = Arc::new(node);
    let clients: Vec<_> = (0..8)
        .map(|client| {
            let node = node.clone();
            std::thread::spawn(move || {
                for _ in 0..25 {
                    let reply = node.send("POST", "/incr/hits?by=2", &[], "");
                    assert_eq!(reply.status, 200, "{}", reply.text());
                    let reply = node.send("POST", "/append/log", &[], format!("{client}"));
                    assert_eq!(reply.status, 200, "{}", reply.text());
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    assert_eq!(node.send("POST", "/incr/hits?by=0", &[], "").text(), "400");
    let log = get(&node, "/k/log").text();
    assert_eq!(log.len(), 200, "every append kept: {log}");
    for client in 0..8 {
        assert_eq!(log.matches(&client.to_string()).count(), 25, "{log}");
    }
    // A counter is 8 bytes; anything else is not one.
    put(&node, "/k/text", "not a number");
    let refused = node.send("POST", "/incr/text", &[], "");
    assert_eq!(refused.status, 500);
    assert!(
        refused.text().contains("not a counter"),
        "{}",
        refused.text()
    );
}

#[test]
fn acknowledged_writes_survive_a_restart_and_a_sigkill_mid_stream() {
    let (node, dir) = start("");
    put(&node, "/k/before-restart", "kept");
    node.stop();
    let node = serve_dir(OUTPOST.as_ref(), dir.path());
    assert_eq!(get(&node, "/k/before-restart").text(), "kept");

    // Writes one after another until the node is killed; every write that
    // was answered `ok` must be there after the restart.
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let killed = Arc::new(AtomicBool::new(false));
    let node = Arc::new(node);
    let writer = {
        let (node, acknowledged, killed) = (node.clone(), acknowledged.clone(), killed.clone());
        std::thread::spawn(move || {
            for i in 0..100_000 {
                if killed.load(Ordering::SeqCst) && i % 10 == 0 {
                    // A few more tries after the kill, to be sure some
                    // writes were in flight when it came.
                    if node.try_send("PUT", "/k/probe", &[], "x").is_err() {
                        return;
                    }
                }
                match node.try_send("PUT", &format!("/k/w{i}"), &[], format!("value-{i}")) {
                    Ok(reply) if reply.status == 200 => acknowledged.lock().unwrap().push(i),
                    Ok(reply) => panic!("write {i}: {} {}", reply.status, reply.text()),
                    Err(_) => return,
                }
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while acknowledged.lock().unwrap().len() < 200 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = std::process::Command::new("kill")
        .args(["-KILL", &node.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    killed.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() >= 200, "{} writes", acknowledged.len());
    drop(Arc::try_unwrap(node).ok().expect("the writer is done"));

    let node = serve_dir(OUTPOST.as_ref(), dir.path());
    for i in &acknowledged {
        let reply = get(&node, &format!("/k/w{i}"));
        assert_eq!(
            (reply.status.as_u16(), reply.text()),
            (200, format!("value-{i}")),
            "acknowledged write {i} of {} lost",
            acknowledged.len()
        );
    }
}

#[test]
fn keys_values_quotas_and_buckets_are_bounded_with_errors_that_say_why() {
    let (node, _dir) = start("[kv]\nmax_value_mib = 1\nmax_app_mib = 3\n");
    let long_key = "k".repeat(513);
    let refused = put(&node, &format!("/k/{long_key}"), "v");
    assert_eq!(refused.status, 500);
    assert!(
        refused.text().contains("a key has 1 to 512 bytes"),
        "{}",
        refused.text()
    );
    assert_eq!(
        put(&node, &format!("/k/{}", "k".repeat(512)), "v").status,
        200
    );

    let too_big = "x".repeat((1 << 20) + 1);
    let refused = put(&node, "/k/big", &too_big);
    assert_eq!(refused.status, 500);
    assert!(
        refused.text().contains("max_value_mib"),
        "{}",
        refused.text()
    );

    let almost_a_mib = "x".repeat(1000 << 10);
    for i in 0..3 {
        assert_eq!(
            put(&node, &format!("/k/fill{i}"), &almost_a_mib).status,
            200
        );
    }
    let refused = put(&node, "/k/fill3", &almost_a_mib);
    assert_eq!(refused.status, 500);
    assert!(
        refused.text().contains("quota of 3 MiB"),
        "{}",
        refused.text()
    );
    // Deleting frees room.
    node.request("DELETE", "/k/fill0", &[]);
    assert_eq!(put(&node, "/k/fill3", &almost_a_mib).status, 200);

    let refused = get(&node, "/k/x?bucket=undeclared");
    assert_eq!(refused.status, 500);
    assert!(
        refused.text().contains("no such KV bucket"),
        "{}",
        refused.text()
    );

    // App b has buckets of the same names, and none of a's data.
    put(&node, "/k/shared-name", "a's");
    let other = node.request("GET", "/k/shared-name", &[("host", "b.example")]);
    assert_eq!(other.status, 404);
}

#[test]
fn the_shortener_example_creates_links_redirects_and_counts_every_hit() {
    let toml = format!(
        "[apps.shortener]\ncomponent = {:?}\nroutes = [\"/\"]\n[apps.shortener.kv]\nbuckets = [\"links\"]\n",
        artifacts::SHORTENER
    );
    let (node, _dir) = serve_config(OUTPOST.as_ref(), &toml);
    let created = node.send("POST", "/", &[], "https://example.com/a/long/path");
    assert_eq!(created.status, 201, "{}", created.text());
    let body: serde_json::Value = serde_json::from_slice(&created.body).unwrap();
    let code = body["code"].as_str().unwrap().to_owned();
    assert_eq!(created.header("location"), format!("/{code}"));
    let second = node.send("POST", "/", &[], "http://example.org/");
    let second: serde_json::Value = serde_json::from_slice(&second.body).unwrap();
    assert_ne!(second["code"], code.as_str(), "codes are never shared");

    let node = Arc::new(node);
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (node, code) = (node.clone(), code.clone());
            std::thread::spawn(move || {
                for _ in 0..20 {
                    let reply = get(&node, &format!("/{code}"));
                    assert_eq!(reply.status, 302);
                    assert_eq!(reply.header("location"), "https://example.com/a/long/path");
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    let stats: serde_json::Value =
        serde_json::from_slice(&get(&node, &format!("/{code}/stats")).body).unwrap();
    assert_eq!(stats["hits"], 160);
    assert_eq!(get(&node, "/nope").status, 404);
    assert_eq!(node.send("POST", "/", &[], "not a url").status, 400);
}

//! End to end: rate limits, applied by `[[edge]]` rules before any
//! instance exists and checked by handlers through
//! `outpost:edge/ratelimit` (the `ratelimit-api` fixture). The app's
//! request counter (admin stats) tells whether an instance ran.

use outpost_tests::{HttpClient, Outpost, Reply, TempDir, artifacts, block_on, serve_config};
use std::time::{Duration, Instant};

const OUTPOST: &str = env!("CARGO_BIN_EXE_outpost");
const TOKEN: &str = "op_ratelimit_test_token";

/// A node with the fixture as app `r` and its policies and rules, at most
/// 64 keys per policy.
fn start() -> (Outpost, TempDir) {
    let toml = format!(
        "[rate_limit]\nmax_keys = 64\n\
         [admin]\nlisten = \"127.0.0.1:0\"\nstate_dir = \"state\"\n\
         [[admin.tokens]]\nname = \"ops\"\nsha256 = \"{}\"\nscopes = [\"read\"]\n\
         [apps.r]\ncomponent = {:?}\nroutes = [\"/\"]\n\
         [apps.r.rate_limits.per_ip]\nrequests = 1\nperiod_s = 60\nburst = 3\n\
         [apps.r.rate_limits.per_key]\nrequests = 1\nperiod_s = 60\nburst = 2\nkey = \"header:x-api-key\"\n\
         [apps.r.rate_limits.trial]\nrequests = 1\nperiod_s = 60\nburst = 1\nmode = \"shadow\"\n\
         [apps.r.rate_limits.per_tenant]\nrequests = 1\nperiod_s = 60\nburst = 2\nkey = \"guest\"\n\
         [apps.r.rate_limits.fast]\nrequests = 20\nperiod_s = 1\nburst = 5\n\
         [[apps.r.edge]]\npath = \"/api\"\nrate_limit = \"per_ip\"\n\
         [[apps.r.edge]]\npath = \"/keyed/\"\nmethods = [\"POST\"]\nrate_limit = \"per_key\"\n\
         [[apps.r.edge]]\npath = \"/shadow\"\nrate_limit = \"trial\"\n\
         [[apps.r.edge]]\npath = \"/fast\"\nrate_limit = \"fast\"\n",
        outpost_store::sha256_hex(TOKEN.as_bytes()),
        artifacts::RATELIMIT_API
    );
    serve_config(OUTPOST.as_ref(), &toml)
}

fn request(node: &Outpost, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    node.request(method, path, headers)
}

fn get(node: &Outpost, path: &str) -> Reply {
    request(node, "GET", path, &[])
}

/// App `r`'s entry in `/v1/stats`.
fn app_stats(node: &Outpost) -> serde_json::Value {
    node.admin_stats(TOKEN)["apps"][0].clone()
}

/// Requests the app's handler has served (instances run).
fn handled(node: &Outpost) -> u64 {
    app_stats(node)["requests"]
        .as_u64()
        .expect("a request count")
}

/// Policy `name`'s counts in `/v1/stats`.
fn policy_stats(node: &Outpost, name: &str) -> serde_json::Value {
    let stats = app_stats(node);
    stats["rate_limits"]
        .as_array()
        .expect("a list of policies")
        .iter()
        .find(|policy| policy["name"] == name)
        .unwrap_or_else(|| panic!("no policy {name} in {stats}"))
        .clone()
}

#[test]
fn an_edge_rule_refuses_past_the_burst_with_429_and_the_draft_fields_before_any_instance() {
    let (node, _dir) = start();
    for remaining in [2, 1, 0] {
        let allowed = get(&node, "/api/items");
        assert_eq!(allowed.status, 200, "{}", allowed.text());
        assert_eq!(allowed.header("ratelimit-policy"), "\"per_ip\";q=1;w=60");
        assert!(
            allowed
                .header("ratelimit")
                .starts_with(&format!("\"per_ip\";r={remaining};t=")),
            "{}",
            allowed.header("ratelimit")
        );
    }
    assert_eq!(handled(&node), 3);
    for _ in 0..20 {
        let refused = get(&node, "/api");
        assert_eq!(refused.status, 429);
        assert_eq!(refused.header("retry-after"), "60");
        assert_eq!(refused.header("ratelimit-policy"), "\"per_ip\";q=1;w=60");
        assert_eq!(refused.header("ratelimit"), "\"per_ip\";r=0;t=180");
        assert!(refused.header("x-request-id").len() == 16);
        assert!(
            refused.text().contains("rate limit \"per_ip\""),
            "{}",
            refused.text()
        );
    }
    assert_eq!(handled(&node), 3, "no instance ran for a refused request");
    let stats = policy_stats(&node, "per_ip");
    assert_eq!(
        (stats["allowed"].as_u64(), stats["limited"].as_u64()),
        (Some(3), Some(20))
    );
    // Paths outside the rule's prefix are neither limited nor described.
    let other = get(&node, "/apiary");
    assert_eq!(other.status, 200);
    assert!(other.headers.get("ratelimit").is_none());
}

#[test]
fn header_keys_are_limited_apart_only_for_the_rules_methods_and_a_key_flood_stays_bounded() {
    let (node, _dir) = start();
    let post = |key: &str| request(&node, "POST", "/keyed/x", &[("x-api-key", key)]).status;
    assert_eq!([post("a"), post("a"), post("a")], [200, 200, 429]);
    assert_eq!(post("b"), 200, "another key has its own burst");
    assert_eq!(
        get(&node, "/keyed/x").status,
        200,
        "GET is not in the rule's methods"
    );
    // Requests without the header share one key.
    let bare = || request(&node, "POST", "/keyed/x", &[]).status;
    assert_eq!([bare(), bare(), bare()], [200, 200, 429]);

    // 300 distinct keys: the policy tracks at most max_keys (64) of them;
    // the others share one schedule per shard instead of growing memory.
    let mut allowed = 0;
    for n in 0..300 {
        if post(&format!("flood-{n}")) == 200 {
            allowed += 1;
        }
    }
    let stats = policy_stats(&node, "per_key");
    let keys = stats["keys"].as_u64().unwrap();
    assert!(keys <= 64, "{keys} keys tracked: {stats}");
    // Each tracked key's burst (2), plus each of 16 shards' overflow burst.
    assert!(allowed <= 64 * 2 + 16 * 2, "{allowed} of the flood allowed");
    assert!(allowed >= 32, "only {allowed} of the flood allowed");
}

#[test]
fn a_shadow_policy_counts_and_logs_what_it_would_refuse_but_lets_it_through() {
    let (node, _dir) = start();
    for _ in 0..5 {
        let reply = get(&node, "/shadow");
        assert_eq!(reply.status, 200);
        assert!(
            reply.headers.get("ratelimit").is_none(),
            "a shadow policy is invisible to clients"
        );
    }
    let stats = policy_stats(&node, "trial");
    assert_eq!(stats["mode"], "shadow");
    assert_eq!(
        (stats["allowed"].as_u64(), stats["shadow_limited"].as_u64()),
        (Some(1), Some(4))
    );
    assert!(node.wait_for_log("rate limit trial (shadow mode) would have refused 1 requests"));
    assert_eq!(
        node.logs()
            .matches("(shadow mode) would have refused")
            .count(),
        1,
        "one log line per 10 s, however many requests: {}",
        node.logs()
    );
}

#[test]
fn handlers_check_guest_policies_by_their_own_keys_with_typed_errors() {
    let (node, _dir) = start();
    let check = |query: &str| get(&node, &format!("/check?{query}"));
    let first = check("policy=per_tenant&key=t1");
    assert_eq!(
        first.text(),
        "allowed=true limit=2 remaining=1 reset=60 retry_after=0\n"
    );
    assert_eq!(
        check("policy=per_tenant&key=t1").text(),
        "allowed=true limit=2 remaining=0 reset=120 retry_after=0\n"
    );
    assert_eq!(
        check("policy=per_tenant&key=t1").text(),
        "allowed=false limit=2 remaining=0 reset=120 retry_after=60\n"
    );
    assert!(
        check("policy=per_tenant&key=t2")
            .text()
            .starts_with("allowed=true")
    );
    for (query, error) in [
        (
            "policy=nope&key=k",
            "the app declares no rate-limit policy \"nope\"",
        ),
        (
            "policy=per_ip&key=k",
            "rate-limit policy \"per_ip\" is not keyed by the handler",
        ),
        (
            "policy=per_tenant&key=k&cost=3",
            "the cost is more than the policy's burst of 2",
        ),
    ] {
        let reply = check(query);
        assert_eq!(reply.status, 422, "{query}");
        assert!(reply.text().starts_with(error), "{query}: {}", reply.text());
    }
    let long = check(&format!("policy=per_tenant&key={}", "k".repeat(2000)));
    assert_eq!(long.status, 422);
    assert!(
        long.text().contains("longer than 1024 bytes"),
        "{}",
        long.text()
    );
}

#[test]
fn eight_concurrent_clients_together_get_the_burst_plus_the_rate() {
    let (node, _dir) = start();
    let url = node.url("/fast");
    let started = Instant::now();
    let window = Duration::from_millis(1500);
    let allowed: u64 = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..8)
            .map(|_| {
                let url = url.clone();
                scope.spawn(move || {
                    block_on(async {
                        let client = HttpClient::http1();
                        let mut allowed = 0u64;
                        while started.elapsed() < window {
                            let request = http::Request::get(url.as_str())
                                .body(http_body_util::Full::new(bytes::Bytes::new()))
                                .unwrap();
                            let reply = client.send(request).await.expect("an answer");
                            match reply.status.as_u16() {
                                200 => allowed += 1,
                                429 => {}
                                other => panic!("status {other}: {}", reply.text()),
                            }
                        }
                        allowed
                    })
                })
            })
            .collect();
        clients
            .into_iter()
            .map(|client| client.join().unwrap())
            .sum()
    });
    let elapsed = started.elapsed().as_secs_f64();
    // burst 5, then 20 per second: never more than 5 + 20 t in t seconds.
    let ceiling = 5.0 + 20.0 * elapsed;
    assert!(
        allowed as f64 <= ceiling,
        "{allowed} allowed in {elapsed:.2} s (ceiling {ceiling:.0})"
    );
    // And the clients, always asking, got most of it.
    let floor = 5.0 + 20.0 * (window.as_secs_f64() - 0.5);
    assert!(
        allowed as f64 >= floor,
        "only {allowed} allowed in {elapsed:.2} s (floor {floor:.0})"
    );
    let stats = policy_stats(&node, "fast");
    assert_eq!(stats["allowed"].as_u64(), Some(allowed));
}

//! End to end: the edge cache in front of a handler. The `cache-origin`
//! fixture stamps every answer with a serial, so a stored answer is told
//! from a fresh one, and the app's request counter (admin stats) tells
//! whether an instance ran at all.

use outpost_tests::origin::Origin;
use outpost_tests::{HttpClient, Outpost, Reply, TempDir, artifacts, block_on, serve_config};
use std::process::Command;
use std::time::Duration;

const OUTPOST: &str = env!("CARGO_BIN_EXE_outpost");

/// A node with the cache origin as app `c` on every route, its `[cache]`
/// enabled, `app_keys` added to its table.
fn start(app_keys: &str) -> (Outpost, TempDir) {
    let toml = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\nstate_dir = \"state\"\n\
         [[admin.tokens]]\nname = \"ops\"\nsha256 = \"{}\"\nscopes = [\"read\"]\n\
         [[admin.tokens]]\nname = \"purger\"\nsha256 = \"{}\"\nscopes = [\"purge\"]\n\
         [apps.c]\ncomponent = {:?}\nroutes = [\"/\"]\n[apps.c.cache]\nenabled = true\n{app_keys}\n",
        outpost_store::sha256_hex(TOKEN.as_bytes()),
        outpost_store::sha256_hex(PURGE_TOKEN.as_bytes()),
        artifacts::CACHE_ORIGIN
    );
    serve_config(OUTPOST.as_ref(), &toml)
}

const TOKEN: &str = "op_cache_test_token";
const PURGE_TOKEN: &str = "op_cache_purge_token";

fn request(node: &Outpost, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    node.request(method, path, headers)
}

fn get(node: &Outpost, path: &str) -> Reply {
    request(node, "GET", path, &[])
}

/// App `c`'s entry in `/v1/stats`.
fn app_stats(node: &Outpost) -> serde_json::Value {
    node.admin_stats(TOKEN)["apps"][0].clone()
}

/// Requests the app's handler has served (instances run).
fn handled(node: &Outpost) -> u64 {
    let stats = app_stats(node);
    stats["requests"]
        .as_u64()
        .unwrap_or_else(|| panic!("no request count: {stats}"))
}

#[test]
fn a_fresh_hit_is_served_without_an_instance_and_says_so() {
    let (node, _dir) = start("");
    let path = "/page?cc=max-age=60";
    let first = get(&node, path);
    assert_eq!(first.status, 200);
    assert_eq!(
        first.header("cache-status"),
        "Outpost; fwd=uri-miss; fwd-status=200; stored"
    );
    let ran = handled(&node);
    for _ in 0..5 {
        let hit = get(&node, path);
        assert_eq!(hit.status, 200);
        assert_eq!(hit.text(), first.text(), "the stored body");
        assert_eq!(hit.header("x-serial"), first.header("x-serial"));
        assert!(
            hit.header("cache-status").starts_with("Outpost; hit; ttl="),
            "{}",
            hit.header("cache-status")
        );
        assert!(hit.header("cache-status").ends_with("; detail=L1"));
        let age: u64 = hit.header("age").parse().unwrap();
        assert!(age <= 60, "{age}");
        assert!(!hit.header("x-request-id").is_empty());
    }
    assert_eq!(handled(&node), ran, "hits ran no instance");

    // HEAD is answered from the stored GET: same headers, no body.
    let head = request(&node, "HEAD", path, &[]);
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(head.header("x-serial"), first.header("x-serial"));
    assert_eq!(
        head.header("content-length"),
        first.text().len().to_string()
    );

    // Another query is another resource.
    let other = get(&node, "/page?cc=max-age=60&x=1");
    assert!(other.header("cache-status").contains("fwd=uri-miss"));
    assert_eq!(handled(&node), ran + 1);
}

#[test]
fn responses_that_may_not_be_stored_say_why() {
    let (node, _dir) = start("");
    for (path, detail) in [
        ("/a?cc=no-store", "no-store"),
        ("/b?cc=private", "private"),
        ("/c?status=500", "status"),
        ("/d?status=302", "no-freshness"),
    ] {
        let reply = get(&node, path);
        let status = reply.header("cache-status");
        assert!(status.contains("fwd=uri-miss"), "{path}: {status}");
        assert!(!status.contains("stored"), "{path}: {status}");
        assert!(status.contains(detail), "{path}: {status}");
        let again = get(&node, path);
        assert_ne!(again.header("x-serial"), reply.header("x-serial"), "{path}");
    }
    // Authorization: stored only if the response allows it (§3.5).
    let auth = [("authorization", "Bearer x")];
    let reply = request(&node, "GET", "/e?cc=max-age=60", &auth);
    assert!(reply.header("cache-status").contains("authorization"));
    let reply = request(&node, "GET", "/f?cc=s-maxage=60", &auth);
    assert!(reply.header("cache-status").contains("stored"));
    // The client's no-store: not stored; only-if-cached with nothing: 504.
    let reply = request(
        &node,
        "GET",
        "/g?cc=max-age=60",
        &[("cache-control", "no-store")],
    );
    assert!(!reply.header("cache-status").contains("stored"));
    let reply = request(
        &node,
        "GET",
        "/h?cc=max-age=60",
        &[("cache-control", "only-if-cached")],
    );
    assert_eq!(reply.status, 504);
}

#[test]
fn request_directives_are_honoured() {
    let (node, _dir) = start("");
    let path = "/r?cc=max-age=60";
    let first = get(&node, path);
    // no-cache: to the origin, and the new answer is stored.
    let reply = request(&node, "GET", path, &[("cache-control", "no-cache")]);
    assert_ne!(reply.header("x-serial"), first.header("x-serial"));
    assert!(reply.header("cache-status").contains("fwd=stale"));
    let stored = reply.header("x-serial").to_owned();
    assert_eq!(get(&node, path).header("x-serial"), stored);
    // max-age=0: the stored one is too old for this client.
    let reply = request(&node, "GET", path, &[("cache-control", "max-age=0")]);
    assert_ne!(reply.header("x-serial"), stored);
    // min-fresh beyond what is left: to the origin.
    let reply = request(&node, "GET", path, &[("cache-control", "min-fresh=120")]);
    assert!(reply.header("cache-status").contains("fwd="));
}

#[test]
fn vary_stores_one_variant_per_header_value() {
    let (node, _dir) = start("");
    let path = "/v?cc=max-age=60&vary=accept-language";
    let en = request(&node, "GET", path, &[("accept-language", "en")]);
    let de = request(&node, "GET", path, &[("accept-language", "de")]);
    assert!(de.header("cache-status").contains("fwd=vary-miss"));
    assert!(en.text().contains("accept-language: en"));
    assert!(de.text().contains("accept-language: de"));
    let en_again = request(&node, "GET", path, &[("accept-language", "en")]);
    let de_again = request(&node, "GET", path, &[("accept-language", "de")]);
    assert_eq!(en_again.text(), en.text());
    assert_eq!(de_again.text(), de.text());
    assert!(en_again.header("cache-status").contains("hit"));
    // Absent matches absent only.
    let none = get(&node, path);
    assert!(none.header("cache-status").contains("fwd=vary-miss"));
    assert!(none.text().contains("accept-language: (none)"));
}

#[test]
fn stale_entries_are_revalidated_with_their_validators() {
    let (node, _dir) = start("");
    let path = "/etag?cc=max-age=0&etag=v1";
    let first = get(&node, path);
    assert!(first.header("cache-status").contains("stored"));
    let ran = handled(&node);
    // Stale at once: the handler is asked with If-None-Match and answers
    // 304; the client gets the stored body, freshened.
    let second = get(&node, path);
    assert_eq!(second.status, 200);
    assert_eq!(second.text(), first.text());
    assert_eq!(
        second.header("cache-status"),
        "Outpost; fwd=stale; fwd-status=304; ttl=0; stored; detail=revalidated"
    );
    assert_eq!(handled(&node), ran + 1);
    // The 304's fields replace the stored ones.
    assert_ne!(second.header("x-serial"), first.header("x-serial"));

    // A client's own conditional is answered from a fresh entry: 304.
    let path = "/etag2?cc=max-age=60&etag=v2";
    let first = get(&node, path);
    let ran = handled(&node);
    let reply = request(&node, "GET", path, &[("if-none-match", "\"v2\"")]);
    assert_eq!(reply.status, 304);
    assert!(reply.header("cache-status").contains("hit"));
    let reply = request(&node, "GET", path, &[("if-none-match", "\"v1\"")]);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), first.text());
    assert_eq!(handled(&node), ran, "both from the cache");

    // A 304 the handler gives a client's own conditional is passed on,
    // never stored as the resource.
    let path = "/etag3?cc=max-age=60&etag=v3";
    let reply = request(&node, "GET", path, &[("if-none-match", "\"v3\"")]);
    assert_eq!(reply.status, 304);
    assert!(!reply.header("cache-status").contains("stored"));
    let reply = get(&node, path);
    assert_eq!(reply.status, 200);
    assert!(reply.header("cache-status").contains("fwd=uri-miss"));
}

#[test]
fn stale_while_revalidate_serves_stale_and_refreshes_once() {
    let (node, _dir) = start("");
    let path = "/swr?cc=max-age=2,stale-while-revalidate=60";
    let first = get(&node, path);
    std::thread::sleep(Duration::from_millis(3100));
    let ran = handled(&node);
    // Concurrent clients are all answered from the cache at once: the
    // stale entry, or the refreshed one once the background request that
    // the first of them started has stored it.
    let replies: Vec<Reply> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8).map(|_| scope.spawn(|| get(&node, path))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for reply in &replies {
        assert!(reply.header("cache-status").contains("hit"));
    }
    assert!(
        replies
            .iter()
            .any(|reply| reply.header("x-serial") == first.header("x-serial"))
    );
    // One background request refreshed it.
    let mut refreshed = None;
    for _ in 0..100 {
        let reply = get(&node, path);
        if reply.header("x-serial") != first.header("x-serial") {
            refreshed = Some(reply);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let refreshed = refreshed.expect("the entry was refreshed in the background");
    assert!(refreshed.header("cache-status").contains("hit"));
    for reply in &replies {
        let serial = reply.header("x-serial");
        assert!(serial == first.header("x-serial") || serial == refreshed.header("x-serial"));
    }
    assert_eq!(handled(&node), ran + 1, "exactly one refresh");
}

#[test]
fn stale_if_error_serves_the_stored_response_when_the_handler_fails() {
    let (node, _dir) = start("");
    let path = "/sie?cc=max-age=0,stale-if-error=60";
    let first = get(&node, path);
    let failing = [("x-origin-status", "503")];
    let reply = request(&node, "GET", path, &failing);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), first.text());
    assert!(
        reply
            .header("cache-status")
            .contains("detail=stale-if-error"),
        "{}",
        reply.header("cache-status")
    );
    // Without stale-if-error the failure goes through.
    let path = "/nosie?cc=max-age=0";
    get(&node, path);
    let reply = request(&node, "GET", path, &failing);
    assert_eq!(reply.status, 503);
}

#[test]
fn unsafe_methods_invalidate_the_uri_and_its_location() {
    let (node, _dir) = start("");
    let item = "/items/1?cc=max-age=60";
    let list = "/items?cc=max-age=60";
    let item_serial = get(&node, item).header("x-serial").to_owned();
    let list_serial = get(&node, list).header("x-serial").to_owned();
    assert_eq!(get(&node, item).header("x-serial"), item_serial);
    // A POST to the list, whose answer's Location names the item.
    let created = request(
        &node,
        "POST",
        "/items?cc=max-age=60&location=/items/1%3Fcc%3Dmax-age%3D60",
        &[],
    );
    assert_eq!(created.status, 201);
    assert!(created.header("cache-status").contains("fwd=method"));
    assert_ne!(get(&node, item).header("x-serial"), item_serial);
    // The POST's own URI differs from the list's (its query): the list
    // entry stays.
    assert_eq!(get(&node, list).header("x-serial"), list_serial);
    let posted = request(&node, "POST", list, &[]);
    assert_eq!(posted.status, 201);
    assert_ne!(get(&node, list).header("x-serial"), list_serial);
}

#[test]
fn ranges_are_answered_from_the_stored_body() {
    let (node, _dir) = start("");
    let path = "/big?cc=max-age=60&bytes=100000";
    let whole = get(&node, path);
    assert_eq!(whole.body.len(), 100_000);
    let reply = request(&node, "GET", path, &[("range", "bytes=26-51")]);
    assert_eq!(reply.status, 206);
    assert_eq!(reply.text(), "abcdefghijklmnopqrstuvwxyz");
    assert_eq!(reply.header("content-range"), "bytes 26-51/100000");
    let reply = request(&node, "GET", path, &[("range", "bytes=200000-")]);
    assert_eq!(reply.status, 416);
    assert_eq!(reply.header("content-range"), "bytes */100000");
}

#[test]
fn objects_over_the_size_limit_stream_but_are_not_stored() {
    let (node, _dir) = start("max_object_kib = 64\n");
    let path = "/huge?cc=max-age=60&bytes=200000";
    let reply = get(&node, path);
    assert_eq!(reply.body.len(), 200_000);
    assert!(
        reply.header("cache-status").contains("too-large"),
        "{}",
        reply.header("cache-status")
    );
    assert!(
        get(&node, path)
            .header("cache-status")
            .contains("fwd=uri-miss")
    );
}

#[test]
fn the_cache_key_rules_apply() {
    let (node, _dir) = start(
        "[apps.c.cache.key]\nsort_query = true\nignore_params = [\"utm_source\"]\nheaders = [\"x-tenant\"]\n",
    );
    let first = get(&node, "/k?cc=max-age=60&b=2&a=1");
    let reordered = get(&node, "/k?a=1&b=2&cc=max-age=60&utm_source=mail");
    assert_eq!(reordered.header("x-serial"), first.header("x-serial"));
    let tenant = request(
        &node,
        "GET",
        "/k?cc=max-age=60&b=2&a=1",
        &[("x-tenant", "t1")],
    );
    assert_ne!(tenant.header("x-serial"), first.header("x-serial"));
}

#[test]
fn the_app_memory_budget_bounds_the_store() {
    // A 2 MiB budget, and 1,000 different 64 KiB objects: 31 times the
    // budget goes through the cache.
    let (node, _dir) = start("memory_mib = 2\nmax_object_kib = 64\n");
    let before = node.rss_kib();
    for n in 0..1000 {
        let reply = get(&node, &format!("/fill/{n}?cc=max-age=600&bytes=65000"));
        assert_eq!(reply.status, 200);
    }
    let stats = app_stats(&node)["cache"].clone();
    let bytes = stats["bytes"].as_u64().unwrap();
    let entries = stats["entries"].as_u64().unwrap();
    assert!(bytes <= 2 << 20, "{stats}");
    assert!((1..=32).contains(&entries), "{stats}");
    // What is kept is served.
    let hits = (0..1000)
        .rev()
        .filter(|n| {
            request(
                &node,
                "GET",
                &format!("/fill/{n}?cc=max-age=600&bytes=65000"),
                &[("cache-control", "only-if-cached")],
            )
            .status
                == 200
        })
        .count();
    assert!(
        (1..=32).contains(&hits),
        "{hits} hits of 64 KiB in a 2 MiB budget"
    );
    // The budget plus what serving 1,000 requests of 64 KiB leaves in the
    // allocator; without the bound it would be over 60 MiB.
    let grown = node.rss_kib().saturating_sub(before);
    assert!(grown < 24 * 1024, "RSS grew by {grown} KiB");
}

#[test]
fn concurrent_misses_for_one_key_make_one_handler_request() {
    let (node, _dir) = start("");
    let path = "/slow?cc=max-age=60&sleep_ms=500";
    let ran = handled(&node);
    let replies: Vec<Reply> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..100).map(|_| scope.spawn(|| get(&node, path))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let serial = replies[0].header("x-serial").to_owned();
    for reply in &replies {
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("x-serial"), serial);
    }
    let collapsed = replies
        .iter()
        .filter(|reply| reply.header("cache-status").contains("collapsed"))
        .count();
    assert!(collapsed > 0, "no request waited for another");
    assert_eq!(
        handled(&node),
        ran + 1,
        "one handler request for 100 misses"
    );
}

/// `POST /v1/apps/c/purge` with `body`, as `token`.
fn purge(node: &Outpost, token: &str, body: &str) -> Reply {
    let request = http::Request::post(node.admin_url("/v1/apps/c/purge"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_owned(),
        )))
        .unwrap();
    block_on(HttpClient::http1().send(request)).expect("purge answer")
}

fn purged(reply: &Reply) -> u64 {
    assert_eq!(reply.status, 200, "{}", reply.text());
    let answer: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    answer["purged"].as_u64().unwrap()
}

fn is_hit(node: &Outpost, path: &str) -> bool {
    get(node, path).header("cache-status").contains("hit")
}

#[test]
fn purge_by_tag_url_prefix_and_all_hard_and_soft() {
    let (node, dir) = start("");
    let tagged_a = "/p/1?cc=max-age=600&tags=a,b";
    let tagged_b = "/p/2?cc=max-age=600&keys=b%20c";
    let plain = "/q/3?cc=max-age=600";
    for path in [tagged_a, tagged_b, plain] {
        let reply = get(&node, path);
        // The tags are the edge's: the client never sees them.
        assert_eq!(reply.headers.get("cache-tag"), None);
        assert_eq!(reply.headers.get("surrogate-key"), None);
        assert!(is_hit(&node, path));
    }
    // A token without the purge scope is refused.
    assert_eq!(purge(&node, TOKEN, r#"{"all": true}"#).status, 403);
    // Bad requests say what to send.
    let reply = purge(&node, PURGE_TOKEN, r#"{"soft": true}"#);
    assert_eq!(reply.status, 400);
    assert!(
        reply.text().contains("nothing selected"),
        "{}",
        reply.text()
    );
    let reply = purge(&node, PURGE_TOKEN, r#"{"tag": ["a"]}"#);
    assert_eq!(reply.status, 400);
    assert!(
        reply.text().contains("not a purge request"),
        "{}",
        reply.text()
    );
    let reply = purge(&node, PURGE_TOKEN, r#"{"urls": ["ftp://x/"]}"#);
    assert_eq!(reply.status, 400);

    // By tag (Cache-Tag): only the entry carrying it.
    assert_eq!(purged(&purge(&node, PURGE_TOKEN, r#"{"tags": ["a"]}"#)), 1);
    assert!(!is_hit(&node, tagged_a), "purged, then stored again");
    assert!(is_hit(&node, tagged_b));
    // By tag (Surrogate-Key), both now carry b.
    assert_eq!(purged(&purge(&node, PURGE_TOKEN, r#"{"tags": ["b"]}"#)), 2);
    // By prefix.
    assert_eq!(
        purged(&purge(&node, PURGE_TOKEN, r#"{"prefixes": ["/q/"]}"#)),
        1
    );
    assert!(!is_hit(&node, plain));
    // By exact URL, absolute or a path: the query is part of it.
    let body = format!(r#"{{"urls": ["http://127.0.0.1{plain}"]}}"#);
    assert_eq!(purged(&purge(&node, PURGE_TOKEN, &body)), 1);
    assert!(!is_hit(&node, plain));
    assert_eq!(
        purged(&purge(&node, PURGE_TOKEN, r#"{"urls": ["/q/3"]}"#)),
        0,
        "another query is another URL"
    );

    // Soft: the entry turns stale, and stale-while-revalidate still
    // serves it while one background request refreshes it.
    let swr = "/s?cc=max-age=600,stale-while-revalidate=60&tags=soft";
    let first = get(&node, swr);
    assert_eq!(
        purged(&purge(
            &node,
            PURGE_TOKEN,
            r#"{"tags": ["soft"], "soft": true}"#
        )),
        1
    );
    let stale = get(&node, swr);
    assert!(stale.header("cache-status").contains("hit"));
    assert!(
        stale.header("cache-status").contains("ttl=-")
            || stale.header("cache-status").contains("ttl=0")
    );
    assert_eq!(stale.header("x-serial"), first.header("x-serial"));
    let mut refreshed = false;
    for _ in 0..100 {
        if get(&node, swr).header("x-serial") != first.header("x-serial") {
            refreshed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(refreshed, "the soft-purged entry was refreshed");

    // Everything, and the purges are in the audit log.
    assert!(purged(&purge(&node, PURGE_TOKEN, r#"{"all": true}"#)) >= 1);
    assert!(!is_hit(&node, swr));
    let audit = std::fs::read_to_string(dir.path().join("state/audit.log")).unwrap();
    assert!(audit.contains("\"purge\""), "{audit}");
    assert!(audit.contains("purger"), "{audit}");
}

#[test]
fn the_cli_purges_by_tag() {
    let (node, _dir) = start("keep_tag_headers = true\n");
    let path = "/cli?cc=max-age=600&tags=news";
    let reply = get(&node, path);
    // This app passes its tags on.
    assert_eq!(reply.header("cache-tag"), "news");
    assert!(is_hit(&node, path));
    let output = Command::new(OUTPOST)
        .args(["purge", "c", "--tag", "news", "--remote"])
        .arg(node.admin_url(""))
        .env("OUTPOST_TOKEN", PURGE_TOKEN)
        .env("HOME", _dir.path())
        .env_remove("XDG_CONFIG_HOME")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("purged 1 entries of c"), "{stdout}");
    assert!(!is_hit(&node, path));
    // Without a selector, clap says what is missing.
    let output = Command::new(OUTPOST)
        .args(["purge", "c", "--remote"])
        .arg(node.admin_url(""))
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--url"));
}

#[test]
fn the_cache_proxy_example_is_a_cdn_in_front_of_an_origin() {
    let origin = Origin::http();
    let toml = format!(
        "[outbound]\nallow_private = [\"127.0.0.0/8\"]\n\
         [apps.p]\ncomponent = {:?}\nroutes = [\"/\"]\n\
         [apps.p.backends.origin]\nendpoints = [\"http://{}\"]\n\
         [apps.p.cache]\nenabled = true\n",
        artifacts::CACHE_PROXY,
        origin.addr()
    );
    let (node, _dir) = serve_config(OUTPOST.as_ref(), &toml);

    let path = "/cacheable?max_age=1";
    let first = get(&node, path);
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.text(), "cacheable v1");
    assert!(first.header("cache-status").contains("stored"));
    for _ in 0..5 {
        assert!(get(&node, path).header("cache-status").contains("hit"));
    }
    assert_eq!(origin.cacheables(), 1, "hits never reach the origin");
    // Stale: revalidated through the proxy with If-None-Match; the origin
    // answers 304 and the client gets the stored body.
    assert_revalidated_once_stale(&node, path, &origin);
    // A client's own conditional is answered from a fresh entry.
    let fresh = "/cacheable?max_age=600";
    get(&node, fresh);
    assert_eq!(origin.cacheables(), 3);
    let reply = request(&node, "GET", fresh, &[("if-none-match", "\"v1\"")]);
    assert_eq!(reply.status, 304);
    assert_eq!(origin.cacheables(), 3);
    // An unsafe method goes through and invalidates.
    let posted = request(&node, "POST", fresh, &[]);
    assert_eq!(posted.status, 200);
    assert_eq!(origin.cacheables(), 4);
    assert!(
        get(&node, fresh)
            .header("cache-status")
            .contains("fwd=uri-miss")
    );
    // The origin down: a JSON 502 from the proxy.
    drop(origin);
    let down = get(&node, "/cacheable?max_age=1&other=1");
    assert_eq!(down.status, 502, "{}", down.text());
    assert!(down.text().contains("origin_unavailable"));
}

/// Waits for the origin's `/cacheable?max_age=1` at `path` (stored by its
/// first request) to go stale, then checks that the next request is
/// revalidated: one more origin request, answered 304, and the stored body.
fn assert_revalidated_once_stale(node: &Outpost, path: &str, origin: &Origin) {
    assert_eq!(origin.cacheables(), 1);
    std::thread::sleep(Duration::from_millis(1100));
    let revalidated = get(node, path);
    assert_eq!(revalidated.status, 200);
    assert_eq!(revalidated.text(), "cacheable v1");
    let status = revalidated.header("cache-status");
    assert!(status.contains("fwd=stale; fwd-status=304"), "{status}");
    assert_eq!(origin.cacheables(), 2);
}

/// A node serving the `cache-api` fixture as app `a` on host `a.test` and
/// as app `b` on host `b.test`, neither with the cache in front of its
/// handler, `a_cache` added to app `a`'s `[cache]`.
fn start_api(a_cache: &str) -> (Outpost, TempDir) {
    let toml = format!(
        "[apps.a]\ncomponent = {:?}\nroutes = [\"a.test/\"]\n[apps.a.cache]\n{a_cache}\n\
         [apps.b]\ncomponent = {:?}\nroutes = [\"b.test/\"]\n",
        artifacts::CACHE_API,
        artifacts::CACHE_API
    );
    serve_config(OUTPOST.as_ref(), &toml)
}

/// One call of the `cache-api` fixture on app `app`'s host.
fn call(node: &Outpost, app: &str, method: &str, path: &str, body: &str) -> Reply {
    call_with(node, app, method, path, body, &[])
}

fn call_with(
    node: &Outpost,
    app: &str,
    method: &str,
    path: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let host = format!("{app}.test");
    let mut all = vec![("host", host.as_str())];
    all.extend_from_slice(headers);
    node.send(method, path, &all, body.to_owned())
}

const PAGE: &str = "https://example.com/page";

#[test]
fn handlers_store_look_up_and_purge_entries_through_the_cache_interface() {
    let (node, _dir) = start_api("");
    let lookup = |url: &str| call(&node, "a", "GET", &format!("/lookup?url={url}"), "");
    assert_eq!(lookup(PAGE).status, 404, "nothing stored yet");

    let stored = call(
        &node,
        "a",
        "POST",
        &format!("/insert?url={PAGE}&ttl=60&tag=menu"),
        "soup",
    );
    assert_eq!(stored.status, 204, "{}", stored.text());
    let found = lookup(PAGE);
    assert_eq!(found.status, 200, "{}", found.text());
    assert_eq!(found.text(), "soup");
    assert_eq!(found.header("x-freshness"), "Fresh");
    assert_eq!(found.header("x-stored-status"), "200");
    let ttl: u64 = found.header("x-ttl").parse().unwrap();
    assert!((58..=60).contains(&ttl), "ttl {ttl}");
    // The key is the URL: scheme, host and path each count.
    for other in [
        "http://example.com/page",
        "https://example.org/page",
        "https://example.com/page2",
    ] {
        assert_eq!(lookup(other).status, 404, "{other} is another key");
    }
    // Another app's handler asking for the same URL finds nothing, and
    // its purges do not reach app a's entries.
    let b = call(&node, "b", "GET", &format!("/lookup?url={PAGE}"), "");
    assert_eq!(b.status, 404, "app b must not read app a's entry");
    let purged = call(&node, "b", "POST", "/purge?all", "");
    assert_eq!(purged.text(), "0\n");
    assert_eq!(lookup(PAGE).status, 200, "app b's purge left app a's entry");

    // Purge by tag: the entry goes, and the count says so.
    let purged = call(&node, "a", "POST", "/purge?tag=menu", "");
    assert_eq!(purged.status, 200, "{}", purged.text());
    assert_eq!(purged.text(), "1\n");
    assert_eq!(lookup(PAGE).status, 404);
}

#[test]
fn the_cache_interface_keeps_the_http_rules_and_says_why_it_refuses() {
    let (node, _dir) = start_api("max_object_kib = 1");
    let insert = |query: &str, body: &str, headers: &[(&str, &str)]| {
        call_with(
            &node,
            "a",
            "POST",
            &format!("/insert?url={PAGE}&{query}"),
            body,
            headers,
        )
    };
    let lookup = || call(&node, "a", "GET", &format!("/lookup?url={PAGE}"), "");
    for (query, headers, expected) in [
        ("cc=no-store&ttl=60", &[][..], "(NotStorable): no-store"),
        ("cc=private", &[], "(NotStorable): private"),
        (
            "cc=max-age=60",
            &[("authorization", "Bearer x")][..],
            "(NotStorable): authorization",
        ),
        ("status=206&ttl=60", &[], "(NotStorable): status"),
        ("", &[], "(NotStorable): not-reusable"),
    ] {
        let refused = insert(query, "x", headers);
        assert_eq!(refused.status, 422, "{query}: {}", refused.text());
        assert!(
            refused.text().contains(expected),
            "{query}: {}",
            refused.text()
        );
    }
    let large = insert("ttl=60", &"x".repeat(2048), &[]);
    assert!(large.text().contains("(TooLarge)"), "{}", large.text());
    let bad = call(&node, "a", "GET", "/lookup?url=example.com/page", "");
    assert!(bad.text().contains("(InvalidUrl)"), "{}", bad.text());
    assert_eq!(lookup().status, 404, "nothing refused was stored");

    // Freshness as the edge would judge it: a response's own max-age, the
    // stale-while-revalidate and stale-if-error windows.
    assert_eq!(insert("cc=max-age=60", "own", &[]).status, 204);
    assert_eq!(lookup().header("x-freshness"), "Fresh");
    assert_eq!(insert("cc=max-age=0&swr=30", "swr", &[]).status, 204);
    assert_eq!(lookup().header("x-freshness"), "StaleWhileRevalidate");
    assert_eq!(insert("cc=max-age=0&sie=30", "sie", &[]).status, 204);
    let stale = lookup();
    assert_eq!(stale.header("x-freshness"), "StaleIfError");
    assert_eq!(stale.text(), "sie", "an insert replaces the entry");
    // A request's own Cache-Control weighs too.
    assert_eq!(insert("ttl=60", "fresh", &[]).status, 204);
    let strict = call_with(
        &node,
        "a",
        "GET",
        &format!("/lookup?url={PAGE}"),
        "",
        &[("cache-control", "no-cache")],
    );
    assert_eq!(strict.header("x-freshness"), "Stale");

    // A soft purge keeps the entry, stale (within its window here);
    // purges per request are bounded.
    assert_eq!(insert("ttl=60&swr=30", "soft", &[]).status, 204);
    let soft = call(&node, "a", "POST", &format!("/purge?url={PAGE}&soft"), "");
    assert_eq!(soft.text(), "1\n");
    assert_eq!(lookup().header("x-freshness"), "StaleWhileRevalidate");
    let many = call(&node, "a", "POST", "/purge?all&times=17", "");
    assert!(many.text().contains("(Limit)"), "{}", many.text());
}

#[test]
fn a_page_a_handler_stores_is_answered_by_the_edge_and_refreshed_after_a_soft_purge() {
    let toml = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\nstate_dir = \"state\"\n\
         [[admin.tokens]]\nname = \"ops\"\nsha256 = \"{}\"\nscopes = [\"read\"]\n\
         [apps.c]\ncomponent = {:?}\nroutes = [\"/\"]\n[apps.c.cache]\nenabled = true\n\
         [apps.c.cache.key]\nignore_query = true\n",
        outpost_store::sha256_hex(TOKEN.as_bytes()),
        artifacts::PAGE_CACHE
    );
    let (node, _dir) = serve_config(OUTPOST.as_ref(), &toml);
    let first = get(&node, "/news/1");
    assert_eq!(first.status, 200);
    assert!(
        first.text().starts_with("<h1>/news/1</h1>"),
        "{}",
        first.text()
    );
    let ran = handled(&node);
    // The handler stored the page itself (its response says nothing of
    // caching): the edge answers from that entry without an instance.
    let hit = get(&node, "/news/1?utm=x");
    assert_eq!(hit.text(), first.text());
    assert!(
        hit.header("cache-status").contains("hit"),
        "{:?}",
        hit.header("cache-status")
    );
    assert_eq!(handled(&node), ran, "a hit runs no instance");

    let publish = request(&node, "POST", "/publish/news", &[]);
    assert_eq!(publish.text(), "1 pages of news will be rendered again\n");
    // Stale within its 30 s window: served at once, rendered again behind.
    let stale = get(&node, "/news/1");
    assert_eq!(stale.text(), first.text());
    let mut fresh = stale.text();
    for _ in 0..100 {
        fresh = get(&node, "/news/1").text();
        if fresh != first.text() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_ne!(
        fresh,
        first.text(),
        "the background refresh stored a new rendering"
    );
}

#[test]
fn fetches_to_a_cached_backend_read_through_the_cache() {
    let origin = Origin::http();
    // No cache in front of the handler: every request runs it, and only
    // its fetches go through the cache.
    let toml = format!(
        "[outbound]\nallow_private = [\"127.0.0.0/8\"]\n\
         [admin]\nlisten = \"127.0.0.1:0\"\nstate_dir = \"state\"\n\
         [[admin.tokens]]\nname = \"purger\"\nsha256 = \"{}\"\nscopes = [\"purge\"]\n\
         [apps.c]\ncomponent = {:?}\nroutes = [\"/\"]\n\
         [apps.c.backends.origin]\nendpoints = [\"http://{}\"]\ncache = true\n",
        outpost_store::sha256_hex(PURGE_TOKEN.as_bytes()),
        artifacts::CACHE_PROXY,
        origin.addr()
    );
    let (node, _dir) = serve_config(OUTPOST.as_ref(), &toml);
    let path = "/cacheable?max_age=1";
    let first = get(&node, path);
    assert_eq!(first.text(), "cacheable v1");
    let status = first.header("cache-status").to_owned();
    assert!(
        status.contains("fwd=uri-miss") && status.contains("stored"),
        "{status}"
    );
    for _ in 0..5 {
        let hit = get(&node, path);
        assert_eq!(hit.text(), "cacheable v1");
        assert!(
            hit.header("cache-status").contains("hit"),
            "{}",
            hit.header("cache-status")
        );
    }
    assert_eq!(origin.cacheables(), 1, "hits never reach the origin");
    // A client cannot switch the handler's cache off: the edge drops its
    // `outpost-cache` before the handler (which forwards every field) sees it.
    let forced = request(&node, "GET", path, &[("outpost-cache", "off")]);
    assert!(forced.header("cache-status").contains("hit"));
    assert_eq!(origin.cacheables(), 1);
    // Stale: revalidated with the entry's ETag; the origin's 304 freshens it.
    assert_revalidated_once_stale(&node, path, &origin);
    // The app's purge reaches what its fetches stored (the origin tags
    // its answers `product`).
    assert_eq!(
        purged(&purge(&node, PURGE_TOKEN, r#"{"tags": ["product"]}"#)),
        1
    );
    assert!(
        get(&node, path)
            .header("cache-status")
            .contains("fwd=uri-miss")
    );
    assert_eq!(origin.cacheables(), 3);
    // An unsafe method goes through and invalidates.
    assert_eq!(request(&node, "POST", path, &[]).status, 200);
    assert_eq!(origin.cacheables(), 4);
    assert!(
        get(&node, path)
            .header("cache-status")
            .contains("fwd=uri-miss")
    );
}

/// A node serving the plain `wasi:http` fetcher as app `f`, allowed to
/// reach `origin`.
fn start_fetcher(origin: &Origin) -> (Outpost, TempDir) {
    let toml = format!(
        "[outbound]\nallow_private = [\"127.0.0.0/8\"]\n\
         [apps.f]\ncomponent = {:?}\nroutes = [\"/\"]\n\
         allowed_outbound_hosts = [\"http://{}\"]\n",
        artifacts::FETCHER,
        origin.addr()
    );
    serve_config(OUTPOST.as_ref(), &toml)
}

#[test]
fn a_plain_wasi_http_guest_chooses_per_request_with_outpost_cache() {
    let origin = Origin::http();
    let (node, _dir) = start_fetcher(&origin);
    let url = format!("http://{}/cacheable?max_age=60", origin.addr());
    // Three fetches in one request: the first is stored, the next two hit.
    let on = get(&node, &format!("/?n=3&cache=on&url={url}"));
    assert_eq!(on.text(), "ok 3");
    assert_eq!(origin.cacheables(), 1);
    // Another request of the app hits too; without the field nothing is
    // cached (no backend says so), and `off` bypasses a stored entry.
    assert_eq!(
        get(&node, &format!("/?cache=on&url={url}")).text(),
        "cacheable v1"
    );
    assert_eq!(origin.cacheables(), 1);
    assert_eq!(get(&node, &format!("/?n=2&url={url}")).text(), "ok 2");
    assert_eq!(origin.cacheables(), 3);
    assert_eq!(
        get(&node, &format!("/?cache=off&url={url}")).text(),
        "cacheable v1"
    );
    assert_eq!(origin.cacheables(), 4);
}

#[test]
fn a_handler_fetching_one_cached_url_twice_at_once_does_not_wait_for_itself() {
    let origin = Origin::http();
    let (node, _dir) = start_fetcher(&origin);
    let url = format!("http://{}/cacheable?max_age=60", origin.addr());
    // The second fetch finds the first leading its key. Had it waited for
    // the first, whose body moves only as the guest reads it, the guest
    // (reading the second first) would stall for the whole collapse wait
    // of 10 s; on its own it answers at once.
    let started = std::time::Instant::now();
    let both = get(&node, &format!("/?parallel=2&reverse=1&cache=on&url={url}"));
    assert_eq!(both.text(), "ok 2");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}: the second fetch waited for the first",
        started.elapsed()
    );
    assert_eq!(origin.cacheables(), 2, "each fetch asked the origin");
    // Another request waits for nobody: the entry is stored.
    assert_eq!(
        get(&node, &format!("/?cache=on&url={url}")).text(),
        "cacheable v1"
    );
    assert_eq!(origin.cacheables(), 2);
}

#[test]
fn handlers_lookups_collapse_on_a_miss_and_one_of_them_refreshes() {
    let (node, _dir) = start_api("");
    let node = std::sync::Arc::new(node);
    // A lookup that misses makes its request the one to insert: the same
    // lookup in another request waits for that insert.
    let first = {
        let node = node.clone();
        std::thread::spawn(move || {
            let path = format!("/lookup?url={PAGE}&hold_ms=1500&then_insert=from-first");
            call(&node, "a", "GET", &path, "")
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let waited = call(&node, "a", "GET", &format!("/lookup?url={PAGE}"), "");
    assert_eq!(waited.status, 200, "{}", waited.text());
    assert_eq!(
        waited.text(),
        "from-first",
        "the second lookup got the first's insert"
    );
    assert_eq!(first.join().unwrap().status, 404, "the first lookup missed");

    // Stale within stale-while-revalidate: one request at a time is told
    // to refresh, the others to answer with the stale entry.
    let url = "https://example.com/swr";
    let path = format!("/insert?url={url}&cc=max-age=0&swr=60");
    assert_eq!(call(&node, "a", "POST", &path, "old").status, 204);
    let refresher = {
        let node = node.clone();
        std::thread::spawn(move || {
            call(
                &node,
                "a",
                "GET",
                &format!("/lookup?url={url}&hold_ms=1500"),
                "",
            )
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let other = call(&node, "a", "GET", &format!("/lookup?url={url}"), "");
    assert_eq!(other.header("x-freshness"), "StaleWhileRevalidate");
    assert_eq!(other.header("x-should-refresh"), "false");
    assert_eq!(refresher.join().unwrap().header("x-should-refresh"), "true");
    // The refreshing request ended without inserting: the next one is
    // told to refresh.
    let next = call(&node, "a", "GET", &format!("/lookup?url={url}"), "");
    assert_eq!(next.header("x-should-refresh"), "true");
}

#[test]
fn a_handler_holds_at_most_16_collapse_claims_and_64_kib_of_fields() {
    let (node, _dir) = start_api("");
    // Fields past 64 KiB are refused by name; just under, stored.
    let insert = |pad: usize| {
        let path = format!("/insert?url={PAGE}&ttl=60&pad={pad}");
        call(&node, "a", "POST", &path, "x")
    };
    let refused = insert(70_000);
    assert_eq!(refused.status, 422, "{}", refused.text());
    assert!(
        refused.text().contains("(InvalidField)") && refused.text().contains("at most 65536"),
        "{}",
        refused.text()
    );
    assert_eq!(insert(60_000).status, 204);

    // A request that misses 20 URLs and holds on: only its first 16
    // misses are claims that others wait for.
    let node = std::sync::Arc::new(node);
    let prefix = "https://example.com/claim/";
    let spawn_call = |path: String| {
        let node = node.clone();
        std::thread::spawn(move || call(&node, "a", "GET", &path, ""))
    };
    let holder = spawn_call(format!(
        "/lookup?url={prefix}&n=20&hold_ms=3000&then_insert=held"
    ));
    std::thread::sleep(Duration::from_millis(700));
    let within = spawn_call(format!("/lookup?url={prefix}0"));
    let beyond = spawn_call(format!("/lookup?url={prefix}19"));
    let beyond = beyond.join().unwrap();
    assert_eq!(
        beyond.status,
        404,
        "a miss past the 16th claims nothing: nobody waits for it ({})",
        beyond.text()
    );
    let within = within.join().unwrap();
    assert_eq!(within.status, 200, "{}", within.text());
    assert_eq!(within.text(), "held", "a claimed miss made the other wait");
    assert_eq!(holder.join().unwrap().text(), "missed 20 of 20\n");
}

#[test]
fn cdn_cache_control_overrides_cache_control_here_and_any_final_status_is_stored() {
    let (node, _dir) = start("");
    // RFC 9213: the CDN's own directives win at the edge; browsers still
    // get Cache-Control as the origin wrote it.
    let path = "/cdn?cc=no-store&cdn=max-age=60";
    let first = get(&node, path);
    assert!(
        first.header("cache-status").contains("stored"),
        "{}",
        first.header("cache-status")
    );
    assert_eq!(first.header("cache-control"), "no-store");
    let hit = get(&node, path);
    assert!(hit.header("cache-status").contains("hit"));
    assert_eq!(hit.text(), first.text());
    let path = "/cdn?cc=max-age=60&cdn=no-store";
    assert!(
        get(&node, path)
            .header("cache-status")
            .contains("detail=no-store")
    );
    assert!(
        get(&node, path)
            .header("cache-status")
            .contains("fwd=uri-miss")
    );
    // An invalid CDN-Cache-Control is ignored whole: Cache-Control rules.
    let path = "/cdn?cc=no-store&cdn=max-age%3D%2210%22";
    assert!(
        get(&node, path)
            .header("cache-status")
            .contains("detail=no-store")
    );

    // A 204 (no body to wait for) and a status RFC 9110 does not name,
    // with explicit freshness, are stored and reused.
    for path in ["/s?status=204&cc=max-age=60", "/s?status=599&cc=max-age=60"] {
        let first = get(&node, path);
        assert!(first.header("cache-status").contains("stored"), "{path}");
        let again = get(&node, path);
        assert!(
            again.header("cache-status").contains("hit"),
            "{path}: {}",
            again.header("cache-status")
        );
        assert_eq!(again.header("x-serial"), first.header("x-serial"));
    }
}

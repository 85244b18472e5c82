//! End to end: upstream fetch. The `fetcher` fixture (plain wasi:http)
//! fetches what its query names from real origins on loopback (hyper
//! servers started here, over HTTP/1.1 and, with TLS and a test CA, HTTP/2),
//! through the real `outpost` binary: the allowlist, the private-range
//! rule, the pool, every timeout and every cap.

use outpost_tests::origin::Origin;
use outpost_tests::{
    HttpClient, Outpost, Reply, TempDir, artifacts, block_on, serve_config, temp_dir, write_config,
};
use std::process::Command;
use std::time::{Duration, Instant};

const OUTPOST: &str = env!("CARGO_BIN_EXE_outpost");

/// A node with the fetcher as app `f` on every route, `app_keys` added to
/// its table, and `node_keys` at the top of node.toml.
fn start(node_keys: &str, app_keys: &str) -> (Outpost, TempDir) {
    let toml = format!(
        "{node_keys}\n[apps.f]\ncomponent = {:?}\nroutes = [\"/\"]\n{app_keys}\n",
        artifacts::FETCHER
    );
    serve_config(OUTPOST.as_ref(), &toml)
}

/// node.toml's `[outbound]` opening loopback.
const LOOPBACK_OPEN: &str = "[outbound]\nallow_private = [\"127.0.0.0/8\", \"::1\"]\n";

fn allow(urls: &[String]) -> String {
    format!("allowed_outbound_hosts = {urls:?}\n")
}

/// Asks the fetcher to fetch: `query` is its query string.
fn fetch(node: &Outpost, query: &str) -> Reply {
    block_on(HttpClient::http1().get(&node.url(&format!("/?{query}")))).expect("an HTTP answer")
}

fn origin_url(origin: &Origin) -> String {
    format!("http://{}", origin.addr())
}

#[test]
fn allowed_fetches_work_and_reuse_pooled_connections() {
    let origin = Origin::http();
    let base = origin_url(&origin);
    let limits = "[apps.f.limits]\nsubrequests = 1000\n";
    let (node, _dir) = start(
        LOOPBACK_OPEN,
        &format!("{}{limits}", allow(std::slice::from_ref(&base))),
    );

    let reply = fetch(&node, &format!("url={base}/hello"));
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), "hello from origin over HTTP/1.1");

    // 200 fetches in one request, then 50 requests of one fetch each.
    let reply = fetch(&node, &format!("url={base}/hello&n=200"));
    assert_eq!(reply.text(), "ok 200");
    for _ in 0..50 {
        assert_eq!(fetch(&node, &format!("url={base}/hello")).status, 200);
    }
    assert!(
        origin.accepted() <= 3,
        "251 sequential fetches opened {} connections to the origin",
        origin.accepted()
    );

    // Request bodies stream to the origin.
    let reply = fetch(&node, &format!("url={base}/upload&upload_kib=2048"));
    assert_eq!(reply.text(), format!("got {}", 2048 * 1024));
}

#[test]
fn tls_origins_speak_http2_with_the_operators_ca() {
    let origin = Origin::https("localhost");
    let base = format!("https://localhost:{}", origin.addr().port());
    let dir = temp_dir();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, origin.ca_pem.as_ref().unwrap()).unwrap();

    let trusted = format!("{LOOPBACK_OPEN}ca_file = {:?}\n", ca.display().to_string());
    let (node_with_ca, _d1) = start(&trusted, &allow(std::slice::from_ref(&base)));
    let reply = fetch(&node_with_ca, &format!("url={base}/hello&n=20"));
    assert_eq!(reply.text(), "ok 20");
    let reply = fetch(&node_with_ca, &format!("url={base}/hello"));
    assert_eq!(reply.text(), "hello from origin over HTTP/2.0");
    assert_eq!(origin.accepted(), 1, "HTTP/2 multiplexes one connection");

    // Without the CA the origin's certificate is not trusted.
    let (node_without, _d2) = start(LOOPBACK_OPEN, &allow(std::slice::from_ref(&base)));
    let reply = fetch(&node_without, &format!("url={base}/hello"));
    assert_eq!(reply.status, 502);
    assert_eq!(reply.text(), "error: ErrorCode::TlsCertificateError");
}

#[test]
fn the_allowlist_refuses_with_http_request_denied_and_one_log_line() {
    let origin = Origin::http();
    let allowed = Origin::http();
    let (node, _dir) = start(LOOPBACK_OPEN, &allow(&[origin_url(&allowed)]));

    for query in [
        format!("url={}/hello", origin_url(&origin)),
        format!("url={}/hello&n=5", origin_url(&origin)),
        // Same host, other scheme.
        format!("url=https://127.0.0.1:{}/hello", allowed.addr().port()),
    ] {
        let reply = fetch(&node, &query);
        assert_eq!(reply.status, 502, "{query}");
        assert_eq!(
            reply.text(),
            "error: ErrorCode::HttpRequestDenied",
            "{query}"
        );
    }
    assert_eq!(origin.accepted(), 0);
    assert!(node.wait_for_logs("outbound request refused", 3));
    let logs = node.logs();
    let refusal = logs
        .lines()
        .find(|line| line.contains("outbound request refused"))
        .expect("a refusal line");
    assert!(
        refusal.contains("app=\"f\"") || refusal.contains("app=f"),
        "{refusal}"
    );
    assert!(refusal.contains("request_id="), "{refusal}");
    assert!(
        refusal.contains(&format!("http://127.0.0.1:{}", origin.addr().port())),
        "{refusal}"
    );
    // One line per incoming request, however often its guest tries.
    assert_eq!(
        logs.matches("outbound request refused").count(),
        3,
        "{logs}"
    );
}

#[test]
fn private_addresses_are_refused_unless_the_operator_allows_them() {
    let origin = Origin::http();
    let port = origin.addr().port();
    let urls = [
        format!("http://localhost:{port}"),
        format!("http://127.0.0.1:{port}"),
        format!("http://[::ffff:127.0.0.1]:{port}"),
        "http://169.254.169.254".to_owned(),
        "http://10.0.0.1".to_owned(),
    ];
    let (closed, _d1) = start("", &allow(&urls));
    for url in [
        format!("http://localhost:{port}/hello"),
        format!("http://[::ffff:127.0.0.1]:{port}/hello"),
        format!("http://2130706433:{port}/hello"),
        format!("http://0x7f.1:{port}/hello"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://10.0.0.1/".to_owned(),
    ] {
        let started = Instant::now();
        let reply = fetch(&closed, &format!("url={url}"));
        assert_eq!(
            reply.text(),
            "error: ErrorCode::DestinationIpProhibited",
            "{url}"
        );
        assert!(started.elapsed() < Duration::from_secs(5), "{url}");
    }
    assert_eq!(origin.accepted(), 0, "no connection reached the origin");

    // The operator opens loopback: the same requests go through.
    let (open, _d2) = start(
        "[outbound]\nallow_private = [\"127.0.0.0/8\"]\n",
        &allow(&urls),
    );
    for url in [
        format!("http://localhost:{port}/hello"),
        format!("http://2130706433:{port}/hello"),
        format!("http://[::ffff:127.0.0.1]:{port}/hello"),
    ] {
        let reply = fetch(&open, &format!("url={url}"));
        assert_eq!(reply.text(), "hello from origin over HTTP/1.1", "{url}");
    }
    let reply = fetch(&open, "url=http://169.254.169.254/");
    assert_eq!(reply.text(), "error: ErrorCode::DestinationIpProhibited");
}

#[test]
fn every_timeout_ends_in_an_error_for_the_guest() {
    let origin = Origin::http();
    let base = origin_url(&origin);
    // A listener that never accepts, its backlog full: connects hang.
    let hung = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    hung.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    hung.listen(0).unwrap();
    let hung_addr = hung.local_addr().unwrap().as_socket().unwrap();
    let _fillers: Vec<_> = (0..8)
        .filter_map(|_| {
            let socket =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
            socket.set_nonblocking(true).ok()?;
            let _ = socket.connect(&hung_addr.into());
            Some(socket)
        })
        .collect();
    let urls = [base.clone(), format!("http://{hung_addr}")];
    let (node, _dir) = start(LOOPBACK_OPEN, &allow(&urls));

    let timed = |query: &str| {
        let started = Instant::now();
        let reply = fetch(&node, query);
        (reply.text(), started.elapsed())
    };
    let (text, took) = timed(&format!("url=http://{hung_addr}/&connect_ms=300"));
    assert_eq!(text, "error: ErrorCode::ConnectionTimeout");
    assert!(took < Duration::from_secs(4), "{took:?}");
    let (text, took) = timed(&format!("url={base}/slow-head?ms=10000&first_byte_ms=300"));
    assert_eq!(text, "error: ErrorCode::ConnectionReadTimeout");
    assert!(took < Duration::from_secs(4), "{took:?}");
    // Body errors reach the guest as a message (see the body cap test).
    let (text, took) = timed(&format!("url={base}/stall-body&between_ms=300"));
    assert!(text.contains("connection read timeout"), "{text}");
    assert!(took < Duration::from_secs(4), "{took:?}");

    // The app's limits apply without the guest asking, and a guest cannot
    // raise them.
    let limits = "[apps.f.limits]\nfirst_byte_timeout_ms = 300\nbetween_bytes_timeout_ms = 300\n";
    let (limited, _dir2) = start(LOOPBACK_OPEN, &format!("{}{limits}", allow(&urls)));
    let started = Instant::now();
    let reply = fetch(
        &limited,
        &format!("url={base}/slow-head?ms=10000&first_byte_ms=60000"),
    );
    assert_eq!(reply.text(), "error: ErrorCode::ConnectionReadTimeout");
    let reply = fetch(&limited, &format!("url={base}/stall-body"));
    assert!(
        reply.text().contains("connection read timeout"),
        "{}",
        reply.text()
    );
    assert!(started.elapsed() < Duration::from_secs(6));
}

#[test]
fn subrequests_concurrency_and_body_size_are_capped() {
    let origin = Origin::http();
    let base = origin_url(&origin);
    let limits =
        "[apps.f.limits]\nsubrequests = 6\nsubrequest_concurrency = 2\noutbound_body_mib = 1\n";
    let (node, _dir) = start(
        LOOPBACK_OPEN,
        &format!("{}{limits}", allow(std::slice::from_ref(&base))),
    );

    assert_eq!(
        fetch(&node, &format!("url={base}/hello&n=6")).text(),
        "ok 6"
    );
    let reply = fetch(&node, &format!("url={base}/hello&n=7"));
    assert_eq!(reply.status, 502);
    assert!(
        reply.text().contains("already made 6 outbound requests"),
        "{}",
        reply.text()
    );

    // Six at once, two in flight at a time.
    let reply = fetch(&node, &format!("url={base}/concurrent&parallel=6"));
    assert_eq!(reply.text(), "ok 6");
    assert_eq!(origin.max_in_flight(), 2);

    // Past the cap the body stream fails (wasmtime 48's `http-error-code`
    // gives no code for body errors: the guest sees the message).
    let reply = fetch(&node, &format!("url={base}/big?mib=2&discard=1"));
    assert!(
        reply
            .text()
            .contains("body size exceeds limit: 1048576 bytes"),
        "{}",
        reply.text()
    );
    let reply = fetch(&node, &format!("url={base}/big?mib=1&discard=1"));
    assert_eq!(reply.text(), format!("read {} bytes", 1 << 20));
}

#[test]
fn large_downloads_stream_through_without_being_buffered() {
    let origin = Origin::http();
    let base = origin_url(&origin);
    // Copying 100 MiB into the guest takes more than the default 50 ms.
    let limits = "[apps.f.limits]\noutbound_body_mib = 512\ncpu_ms = 1000\n";
    let (node, _dir) = start(
        LOOPBACK_OPEN,
        &format!("{}{limits}", allow(std::slice::from_ref(&base))),
    );
    let before = node.rss_kib();
    let reply = fetch(&node, &format!("url={base}/big?mib=100&discard=1"));
    assert_eq!(reply.text(), format!("read {} bytes", 100 << 20));
    let grown_mib = node.rss_kib().saturating_sub(before) / 1024;
    assert!(
        grown_mib < 48,
        "100 MiB through the node grew it by {grown_mib} MiB"
    );
}

#[test]
fn serve_takes_the_allowlist_and_private_ranges_as_flags() {
    let origin = Origin::http();
    let base = origin_url(&origin);
    let dir = temp_dir();
    let mut command = Command::new(OUTPOST);
    command
        .args(["serve", artifacts::FETCHER, "--listen", "127.0.0.1:0"])
        .args(["--allow-outbound", &base, "--allow-private", "127.0.0.0/8"])
        .arg("--cache-dir")
        .arg(dir.path().join("cache"));
    let node = Outpost::spawn(command).expect("the node starts");
    assert_eq!(
        fetch(&node, &format!("url={base}/hello")).text(),
        "hello from origin over HTTP/1.1"
    );

    let (status, output) = outpost_tests::run_to_exit(
        std::path::Path::new(OUTPOST),
        &[
            "serve",
            artifacts::FETCHER,
            "--allow-outbound",
            "api.example.com",
        ],
    )
    .unwrap();
    assert!(!status.success());
    assert!(output.contains("has no scheme"), "{output}");
}

#[test]
fn bad_outbound_config_names_file_line_and_key() {
    let dir = temp_dir();
    for (toml, expected) in [
        (
            "[apps.f]\ncomponent = \"C\"\nroutes = [\"/\"]\nallowed_outbound_hosts = [\"ftp://x\"]\n",
            ":4: apps.f.allowed_outbound_hosts: \"ftp://x\": scheme \"ftp\" is not supported",
        ),
        (
            "[outbound]\nallow_private = [\"10.0.0.0/33\"]\n[apps.f]\ncomponent = \"C\"\nroutes = [\"/\"]\n",
            ":2: outbound.allow_private: \"10.0.0.0/33\" is not an address range",
        ),
        (
            "[apps.f]\ncomponent = \"C\"\nroutes = [\"/\"]\n[apps.f.limits]\nsubrequests = 5000\n",
            ":5: apps.f.limits.subrequests: 5000 is more than this node allows (outbound.max_subrequests = 1000)",
        ),
    ] {
        let toml = toml.replace("\"C\"", &format!("{:?}", artifacts::FETCHER));
        let config = write_config(dir.path(), &toml);
        let (status, output) = outpost_tests::run_to_exit(
            std::path::Path::new(OUTPOST),
            &["serve", "--config", config.to_str().unwrap()],
        )
        .unwrap();
        assert!(!status.success());
        assert!(output.contains(expected), "{output}");
    }
}

const TOKEN: &str = "op_fetch_test_token";

/// The admin API section with a read token, for `/v1/stats`.
fn admin_section() -> String {
    format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\nstate_dir = \"state\"\n\
         [[admin.tokens]]\nname = \"ops\"\nsha256 = \"{}\"\nscopes = [\"read\"]\n",
        outpost_store::sha256_hex(TOKEN.as_bytes())
    )
}

fn stats(node: &Outpost) -> serde_json::Value {
    node.admin_stats(TOKEN)
}

/// The states of backend `users`' endpoints, from `/v1/stats`.
fn endpoint_states(node: &Outpost) -> Vec<String> {
    stats(node)["apps"][0]["backends"][0]["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|endpoint| endpoint["state"].as_str().unwrap().to_owned())
        .collect()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn backends_balance_retry_eject_and_rejoin() {
    let mut origins: Vec<Option<Origin>> = (0..3).map(|_| Some(Origin::http())).collect();
    let addrs: Vec<_> = origins.iter().map(|o| o.as_ref().unwrap().addr()).collect();
    let endpoints: Vec<String> = addrs.iter().map(|addr| format!("http://{addr}")).collect();
    let backend = format!(
        "[apps.f.limits]\nsubrequests = 1000\n\
         [apps.f.backends.users]\nendpoints = {endpoints:?}\n\
         [apps.f.backends.users.health]\npath = \"/healthz\"\ninterval_ms = 100\nrise = 2\nfall = 2\n"
    );
    let (node, _dir) = start(&format!("{LOOPBACK_OPEN}{}", admin_section()), &backend);
    let users = "url=http://users.backend.internal/hello";

    // Round-robin: 60 requests, 20 each.
    let reply = fetch(&node, &format!("{users}&n=60"));
    assert_eq!(reply.text(), "ok 60");
    let hellos: Vec<usize> = origins
        .iter()
        .map(|o| o.as_ref().unwrap().hellos())
        .collect();
    assert_eq!(hellos, vec![20, 20, 20]);
    assert_eq!(endpoint_states(&node), vec!["up", "up", "up"]);

    // One endpoint dies: not one idempotent request fails.
    origins[1] = None;
    for _ in 0..40 {
        let reply = fetch(&node, users);
        assert_eq!(reply.text(), "hello from origin over HTTP/1.1");
    }
    wait_until("the dead endpoint is down", || {
        endpoint_states(&node)[1] != "up"
    });

    // It comes back on its port, and the checks let it rejoin.
    origins[1] = Some(Origin::http_on(addrs[1]));
    wait_until("the endpoint is up again", || {
        endpoint_states(&node) == ["up", "up", "up"]
    });
    assert_eq!(fetch(&node, &format!("{users}&n=30")).text(), "ok 30");
    assert!(origins[1].as_ref().unwrap().hellos() >= 9);

    // Stats per endpoint.
    let stats = stats(&node);
    let endpoint = &stats["apps"][0]["backends"][0]["endpoints"][0];
    assert!(endpoint["requests"].as_u64().unwrap() >= 40, "{endpoint}");
    assert!(
        endpoint["latency_p99_us"].as_u64().unwrap() > 0,
        "{endpoint}"
    );
    assert!(
        stats["outbound"]["sent"].as_u64().unwrap() >= 130,
        "{stats}"
    );

    // Every endpoint down: the guest learns it without a connection
    // attempt (which would have said ConnectionRefused).
    origins.clear();
    wait_until("every endpoint is down", || {
        endpoint_states(&node).iter().all(|state| state == "down")
    });
    let reply = fetch(&node, users);
    assert_eq!(reply.text(), "error: ErrorCode::DestinationUnavailable");

    // A name the app does not declare is refused.
    let reply = fetch(&node, "url=http://orders.backend.internal/");
    assert_eq!(reply.text(), "error: ErrorCode::HttpRequestDenied");
}

#[test]
fn the_api_gateway_example_forwards_and_maps_upstream_errors_to_json() {
    let origins = [Origin::http(), Origin::http()];
    let endpoints: Vec<String> = origins.iter().map(origin_url).collect();
    let dir = temp_dir();
    let toml = format!(
        "{LOOPBACK_OPEN}\n[apps.gateway]\ncomponent = {:?}\nroutes = [\"/api\"]\n\
         [apps.gateway.limits]\nfirst_byte_timeout_ms = 300\n\
         [apps.gateway.backends.api]\nendpoints = {endpoints:?}\n",
        artifacts::API_GATEWAY
    );
    let config = write_config(dir.path(), &toml);
    let mut command = Command::new(OUTPOST);
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--cache-dir")
        .arg(dir.path().join("cache"));
    let node = Outpost::spawn(command).expect("the node starts");
    let get = |path: &str| block_on(HttpClient::http1().get(&node.url(path))).unwrap();

    for _ in 0..4 {
        let reply = get("/api/hello");
        assert_eq!(reply.status, 200);
        assert_eq!(reply.text(), "hello from origin over HTTP/1.1");
        assert_eq!(reply.header("x-gateway"), "outpost");
    }
    assert_eq!(origins[0].hellos(), 2, "two endpoints, round-robin");
    let reply = block_on(HttpClient::http1().post(&node.url("/api/upload"), "12345")).unwrap();
    assert_eq!(reply.text(), "got 5");

    let reply = get("/api/slow-head?ms=5000");
    assert_eq!(reply.status, 504);
    let error: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(error["error"], "upstream_timeout");

    drop(origins);
    let reply = get("/api/hello");
    assert_eq!(reply.status, 502);
    let error: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(error["error"], "upstream_unavailable", "{error}");
}

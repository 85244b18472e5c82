//! End to end: the real `outpost` binary on 127.0.0.1:0, real components
//! built from examples/ and tests/fixtures/, a real HTTP client.

use bytes::Bytes;
use http_body_util::Full;
use outpost_tests::{HttpClient, Outpost, TempDir, artifacts, run_to_exit, temp_dir, write_config};
use std::path::Path;
use std::time::{Duration, SystemTime};

const OUTPOST: &str = env!("CARGO_BIN_EXE_outpost");

fn outpost() -> &'static Path {
    Path::new(OUTPOST)
}

/// Serves one component, with a fresh precompiled cache.
fn serve(component: &str) -> (Outpost, TempDir) {
    let cache = temp_dir();
    let server = Outpost::start(
        outpost(),
        &[
            "serve",
            component,
            "--cache-dir",
            cache.path().to_str().unwrap(),
        ],
    )
    .expect("outpost starts");
    (server, cache)
}

/// Serves a node config written into a fresh directory that also holds the
/// precompiled cache.
fn serve_config(toml: &str) -> (Outpost, TempDir) {
    let dir = temp_dir();
    let config = write_config(dir.path(), toml);
    let cache = dir.path().join("cache");
    let server = Outpost::start(
        outpost(),
        &[
            "serve",
            "--config",
            config.to_str().unwrap(),
            "--cache-dir",
            cache.to_str().unwrap(),
        ],
    )
    .expect("outpost starts");
    (server, dir)
}

fn request_id(reply: &outpost_tests::Reply) -> String {
    let id = reply.header("x-request-id").to_owned();
    assert_eq!(id.len(), 16, "request id {id:?}");
    id
}

#[tokio::test]
async fn hello_answers_get_over_http1_and_http2() {
    let (server, _cache) = serve(artifacts::HELLO);
    let reply = HttpClient::http1().get(&server.url("/")).await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "Hello from Outpost!\n");
    assert_eq!(reply.header("content-type"), "text/plain; charset=utf-8");
    assert_eq!(
        reply.header("content-length"),
        "20",
        "the SDK announces the body length"
    );
    assert_eq!(reply.version, http::Version::HTTP_11);
    request_id(&reply);

    let reply = HttpClient::http2()
        .get(&server.url("/any/path"))
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.version, http::Version::HTTP_2);
    assert_eq!(reply.text(), "Hello from Outpost!\n");
}

#[tokio::test]
async fn guest_stdout_is_logged_with_the_id_of_the_request_that_printed_it() {
    // Instances are made ahead of their requests; each line must still
    // carry the id of the request that was being served.
    let (server, _cache) = serve(artifacts::ECHO);
    let client = HttpClient::http1();
    for n in 0..5 {
        let reply = client
            .get(&server.url(&format!("/?log=line-{n}-from-guest")))
            .await
            .unwrap();
        assert_eq!(reply.status, 200);
        let id = request_id(&reply);
        assert!(
            server.wait_for_log(&format!("line-{n}-from-guest")),
            "guest output reaches the log:\n{}",
            server.logs()
        );
        let line = server
            .logs()
            .lines()
            .find(|line| line.contains(&format!("line-{n}-from-guest")))
            .unwrap()
            .to_owned();
        assert!(line.contains(&id), "{line:?} names request {id}");
        assert!(line.contains("stdout"), "{line:?} names the stream");
    }
}

/// Sends `request`; if the response is cut, fails showing the server's log,
/// which says why (a limit, say).
async fn send_or_show_log(
    client: &HttpClient,
    server: &Outpost,
    request: http::Request<Full<Bytes>>,
) -> outpost_tests::Reply {
    client
        .send(request)
        .await
        .unwrap_or_else(|err| panic!("{err:#}\nserver log:\n{}", server.logs()))
}

#[tokio::test]
async fn echo_round_trips_method_path_query_headers_and_a_1mib_body() {
    // Echoing 1 MiB as hex in JSON takes the guest tens of milliseconds of
    // CPU, close to the default 50 ms limit when the whole suite runs at
    // once: this test is about the round trip, not the limit.
    let (server, _dir) = serve_config(&format!(
        "[apps.echo]\ncomponent = {:?}\nroutes = [\"/\"]\n[apps.echo.limits]\ncpu_ms = 1000\n",
        artifacts::ECHO
    ));
    let client = HttpClient::http1();

    let body: String = (0..1 << 20)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let request = http::Request::post(server.url("/upload/here?x=1&y=two"))
        .header("x-custom", "one")
        .header("x-custom", "two")
        .header("x-other", "value with spaces")
        .body(Full::new(Bytes::from(body.clone())))
        .unwrap();
    let reply = send_or_show_log(&client, &server, request).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("content-type"), "application/json");
    let echoed: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(echoed["method"], "POST");
    assert_eq!(echoed["path"], "/upload/here");
    assert_eq!(echoed["query"], "x=1&y=two");
    assert_eq!(
        echoed["headers"]["x-custom"],
        serde_json::json!(["one", "two"])
    );
    assert_eq!(
        echoed["headers"]["x-other"],
        serde_json::json!(["value with spaces"])
    );
    assert_eq!(echoed["body_len"], 1 << 20);
    assert!(
        echoed["body"] == body.as_str(),
        "the 1 MiB body came back unchanged"
    );
    assert!(
        reply.body.len() > 1 << 20,
        "the response carried the 1 MiB body back"
    );

    let reply = client.get(&server.url("/?q=a+b")).await.unwrap();
    let echoed: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(echoed["method"], "GET");
    assert_eq!(echoed["body_len"], 0);

    // GET may carry a body too; 1 MiB of non-UTF-8 bytes comes back hex-encoded.
    let binary: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8 | 0x80).collect();
    let request = http::Request::get(server.url("/binary"))
        .body(Full::new(Bytes::from(binary.clone())))
        .unwrap();
    let reply = send_or_show_log(&client, &server, request).await;
    assert_eq!(reply.status, 200);
    let echoed: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(echoed["method"], "GET");
    assert_eq!(echoed["body_len"], 1 << 20);
    let hex = echoed["body_hex"].as_str().unwrap().as_bytes();
    let returned: Vec<u8> = hex
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect();
    assert!(returned == binary, "the binary body came back unchanged");

    // The host closes a body stream once it holds the announced length,
    // sometimes before the guest's last flush (about one large response in
    // three): the SDK must not report that as a failed write.
    for _ in 0..8 {
        let request = http::Request::get(server.url("/binary"))
            .body(Full::new(Bytes::from(binary.clone())))
            .unwrap();
        let reply = send_or_show_log(&client, &server, request).await;
        assert_eq!(reply.status, 200);
    }
    // Guest output reaches the log a moment after the response.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let logs = server.logs();
    assert!(!logs.contains("response body failed"), "{logs}");
}

#[tokio::test]
async fn handler_status_codes_reach_the_client() {
    let (server, _cache) = serve(artifacts::ECHO);
    let client = HttpClient::http1();
    for status in [200u16, 201, 204, 301, 404, 418, 500, 503] {
        let reply = client
            .get(&server.url(&format!("/?status={status}")))
            .await
            .unwrap();
        assert_eq!(reply.status.as_u16(), status);
        request_id(&reply);
    }
    // A handler error (`Err(Error::bad_request(..))`) becomes its status.
    let reply = client.get(&server.url("/?status=abc")).await.unwrap();
    assert_eq!(reply.status, 400);
    assert!(
        reply.text().contains("is not an HTTP status"),
        "{}",
        reply.text()
    );
}

#[tokio::test]
async fn raw_wasi_http_component_runs_unchanged() {
    let (server, _cache) = serve(artifacts::RAW_WASI_HTTP);
    let reply = HttpClient::http1()
        .get(&server.url("/raw?ok"))
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-raw-wasi"), "yes");
    assert_eq!(reply.text(), "raw wasi:http handler saw /raw?ok\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_requests_are_all_answered() {
    let (server, _cache) = serve(artifacts::HELLO);
    let client = HttpClient::http1();
    let url = server.url("/");
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let client = client.clone();
            let url = url.clone();
            tokio::spawn(async move { client.get(&url).await })
        })
        .collect();
    let mut ok = 0;
    for task in tasks {
        let reply = task.await.unwrap().unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.text(), "Hello from Outpost!\n");
        ok += 1;
    }
    assert_eq!(ok, 1000);

    // The same over a single HTTP/2 connection, multiplexed.
    let client = HttpClient::http2();
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let client = client.clone();
            let url = url.clone();
            tokio::spawn(async move { client.get(&url).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap().status, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapping_app_does_not_disturb_a_healthy_one() {
    let (server, _dir) = serve_config(&format!(
        "[apps.trap]\ncomponent = {:?}\nroutes = [\"/trap\"]\n\
         [apps.hello]\ncomponent = {:?}\nroutes = [\"/\"]\n",
        artifacts::TRAP,
        artifacts::HELLO
    ));
    let client = HttpClient::http1();
    let mut tasks = Vec::new();
    for i in 0..600 {
        let client = client.clone();
        let (url, healthy) = if i % 3 == 0 {
            (server.url("/trap/boom"), false)
        } else {
            (server.url("/hello"), true)
        };
        tasks.push(tokio::spawn(
            async move { (healthy, client.get(&url).await) },
        ));
    }
    let (mut healthy_ok, mut trapped) = (0, 0);
    let mut trap_id = String::new();
    for task in tasks {
        let (healthy, reply) = task.await.unwrap();
        let reply = reply.expect("every request gets an HTTP answer");
        if healthy {
            assert_eq!(reply.status, 200, "healthy app failed: {}", reply.text());
            assert_eq!(reply.text(), "Hello from Outpost!\n");
            healthy_ok += 1;
        } else {
            assert_eq!(reply.status, 500);
            assert!(reply.text().contains("trapped"), "{}", reply.text());
            trap_id = request_id(&reply);
            trapped += 1;
        }
    }
    assert_eq!((healthy_ok, trapped), (400, 200));
    // The log names the request and the cause, with the guest's panic message.
    assert!(
        server.wait_for_log(&format!("request_id={trap_id}")),
        "{}",
        server.logs()
    );
    assert!(server.logs().contains("guest trapped"), "{}", server.logs());
    assert!(
        server.logs().contains("deliberate panic"),
        "{}",
        server.logs()
    );
    // The trapping app itself keeps serving requests that do not trap.
    let reply = client.get(&server.url("/trap/ok")).await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "still fine\n");
    let reply = client.get(&server.url("/hello")).await.unwrap();
    assert_eq!(reply.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_infinite_loop_is_cut_at_the_cpu_limit_while_others_are_served() {
    let (server, _dir) = serve_config(&format!(
        "[apps.spin]\ncomponent = {:?}\nroutes = [\"/\"]\n[apps.spin.limits]\ncpu_ms = 50\n",
        artifacts::CPU_LOOP
    ));
    let client = HttpClient::http1();
    let spinners: Vec<_> = (0..4)
        .map(|_| {
            let client = client.clone();
            let url = server.url("/spin");
            tokio::spawn(async move { client.get(&url).await })
        })
        .collect();
    // While the spinners run, quick requests to the same app keep working.
    for _ in 0..50 {
        let reply = client.get(&server.url("/quick")).await.unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(reply.text(), "quick\n");
    }
    for spinner in spinners {
        let reply = spinner.await.unwrap().unwrap();
        assert_eq!(reply.status, 503);
        assert!(
            reply.text().contains("CPU time limit of 50 ms"),
            "{}",
            reply.text()
        );
        let id = request_id(&reply);
        assert!(
            server.wait_for_log(&format!("request_id={id}")),
            "{}",
            server.logs()
        );
    }
    assert!(
        server.logs().contains("CPU time limit"),
        "{}",
        server.logs()
    );
}

#[tokio::test]
async fn a_sleeping_handler_is_cut_at_the_wall_clock_limit() {
    let (server, _dir) = serve_config(&format!(
        "[apps.slow]\ncomponent = {:?}\nroutes = [\"/\"]\n[apps.slow.limits]\nwall_ms = 300\n",
        artifacts::CPU_LOOP
    ));
    let client = HttpClient::http1();
    let reply = client.get(&server.url("/sleep")).await.unwrap();
    assert_eq!(reply.status, 504);
    assert!(
        reply.text().contains("did not finish within 300 ms"),
        "{}",
        reply.text()
    );
    assert_eq!(client.get(&server.url("/")).await.unwrap().status, 200);
}

#[tokio::test]
async fn a_memory_bomb_is_contained() {
    let (server, _dir) = serve_config(&format!(
        "[apps.bomb]\ncomponent = {:?}\nroutes = [\"/\"]\n[apps.bomb.limits]\nmemory_mib = 32\n",
        artifacts::MEMORY_BOMB
    ));
    let client = HttpClient::http1();
    for _ in 0..3 {
        let reply = client.get(&server.url("/bomb")).await.unwrap();
        assert_eq!(reply.status, 503);
        assert!(
            reply.text().contains("memory limit of 32 MiB"),
            "{}",
            reply.text()
        );
        let reply = client.get(&server.url("/small")).await.unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(reply.text(), "allocated 1048576 bytes\n");
    }
    assert!(server.wait_for_log("memory limit"), "{}", server.logs());
}

#[tokio::test]
async fn a_handler_that_sets_no_response_gets_a_500() {
    let (server, _cache) = serve(artifacts::NO_RESPONSE);
    let reply = HttpClient::http1().get(&server.url("/")).await.unwrap();
    assert_eq!(reply.status, 500);
    assert!(
        reply.text().contains("without setting a response"),
        "{}",
        reply.text()
    );
    let id = request_id(&reply);
    assert!(
        server.wait_for_log(&format!("request_id={id}")),
        "{}",
        server.logs()
    );
}

#[tokio::test]
async fn requests_route_by_host_and_path_prefix_and_unknown_ones_get_404() {
    let (server, _dir) = serve_config(&format!(
        "[apps.hello]\ncomponent = {:?}\nroutes = [\"/hello\"]\n\
         [apps.echo]\ncomponent = {:?}\nroutes = [\"echo.test/\", \"/echo\"]\n",
        artifacts::HELLO,
        artifacts::ECHO
    ));
    let client = HttpClient::http1();
    let reply = client.get(&server.url("/hello/world")).await.unwrap();
    assert_eq!(reply.text(), "Hello from Outpost!\n");
    let reply = client.get(&server.url("/echo/x")).await.unwrap();
    assert_eq!(reply.header("content-type"), "application/json");

    let by_host = http::Request::get(server.url("/anything"))
        .header("host", "echo.test")
        .body(Full::default())
        .unwrap();
    let reply = client.send(by_host).await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), "application/json");

    for path in ["/", "/hellos", "/other"] {
        let reply = client.get(&server.url(path)).await.unwrap();
        assert_eq!(reply.status, 404, "{path}");
        assert!(
            reply.text().contains("no app is routed"),
            "{}",
            reply.text()
        );
        request_id(&reply);
    }
}

#[tokio::test]
async fn a_body_over_the_limit_gets_413_before_any_wasm_runs() {
    let (server, _dir) = serve_config(&format!(
        "[apps.echo]\ncomponent = {:?}\nroutes = [\"/\"]\n[apps.echo.limits]\nrequest_body_kib = 64\n",
        artifacts::ECHO
    ));
    let client = HttpClient::http1();
    let reply = client
        .post(&server.url("/"), vec![b'x'; 64 * 1024])
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    let reply = client
        .post(&server.url("/"), vec![b'x'; 64 * 1024 + 1])
        .await
        .unwrap();
    assert_eq!(reply.status, 413);
    assert!(reply.text().contains("65536 bytes"), "{}", reply.text());
    // A body well over the limit is read and dropped, so the client gets
    // the 413 rather than a connection reset while it is still sending.
    for _ in 0..3 {
        let reply = client
            .post(&server.url("/"), vec![b'x'; 900 * 1024])
            .await
            .unwrap();
        assert_eq!(reply.status, 413);
    }
}

#[test]
fn precompiled_components_are_reused_after_a_restart() {
    let cache = temp_dir();
    let args = [
        "serve",
        artifacts::HELLO,
        "--cache-dir",
        cache.path().to_str().unwrap(),
    ];
    let first = Outpost::start(outpost(), &args).unwrap();
    assert!(first.wait_for_log("compiled in"), "{}", first.logs());
    first.stop();
    let artifacts: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(artifacts.len(), 1, "one artifact: {artifacts:?}");
    let written = modified(&artifacts[0]);

    let second = Outpost::start(outpost(), &args).unwrap();
    assert!(
        second.wait_for_log("loaded from the precompiled cache"),
        "{}",
        second.logs()
    );
    assert_eq!(
        modified(&artifacts[0]),
        written,
        "the artifact was not rewritten"
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let reply = runtime
        .block_on(HttpClient::http1().get(&second.url("/")))
        .unwrap();
    assert_eq!(reply.status, 200);
}

fn modified(path: &Path) -> SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

#[test]
fn bad_config_names_the_file_and_the_key_and_exits_non_zero() {
    let dir = temp_dir();
    let config = write_config(
        dir.path(),
        &format!(
            "[apps.hello]\ncomponent = {:?}\nroutes = [\"/\"]\n[apps.hello.limits]\ncpu_millis = 5\n",
            artifacts::HELLO
        ),
    );
    let (status, stderr) =
        run_to_exit(outpost(), &["serve", "--config", config.to_str().unwrap()]).unwrap();
    assert!(!status.success());
    assert!(stderr.contains("node.toml:5"), "{stderr}");
    assert!(stderr.contains("unknown field `cpu_millis`"), "{stderr}");

    let config = write_config(
        dir.path(),
        "[apps.hello]\ncomponent = \"nowhere.wasm\"\nroutes = [\"/\"]\n",
    );
    let (status, stderr) =
        run_to_exit(outpost(), &["serve", "--config", config.to_str().unwrap()]).unwrap();
    assert!(!status.success());
    assert!(
        stderr.contains("node.toml:2: apps.hello.component: no such file"),
        "{stderr}"
    );
}

#[test]
fn limits_above_the_node_maxima_are_refused_at_start() {
    let dir = temp_dir();
    let config = write_config(
        dir.path(),
        &format!(
            "max_wall_ms = 1000\n[apps.hello]\ncomponent = {:?}\nroutes = [\"/\"]\n[apps.hello.limits]\nwall_ms = 2000\n",
            artifacts::HELLO
        ),
    );
    let (status, stderr) =
        run_to_exit(outpost(), &["serve", "--config", config.to_str().unwrap()]).unwrap();
    assert!(!status.success());
    assert!(
        stderr.contains("node.toml:6: apps.hello.limits.wall_ms: 2000 ms is more than this node allows (max_wall_ms = 1000)"),
        "{stderr}"
    );
}

#[test]
fn a_precompiled_cache_other_users_can_write_is_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = temp_dir();
    let cache = dir.path().join("cache");
    let serve_with_cache = || {
        run_to_exit(
            outpost(),
            &[
                "serve",
                artifacts::HELLO,
                "--listen",
                "127.0.0.1:0",
                "--cache-dir",
                cache.to_str().unwrap(),
            ],
        )
        .unwrap()
    };
    // A node creates its cache private, and compiles into it.
    let server = Outpost::start(
        outpost(),
        &[
            "serve",
            artifacts::HELLO,
            "--cache-dir",
            cache.to_str().unwrap(),
        ],
    )
    .unwrap();
    server.stop();
    let mode = std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);

    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (status, stderr) = serve_with_cache();
    assert!(!status.success());
    assert!(stderr.contains("other users may write it"), "{stderr}");
    assert!(stderr.contains("chmod go-w"), "{stderr}");

    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o700)).unwrap();
    let artifact = std::fs::read_dir(&cache)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::set_permissions(&artifact, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (status, stderr) = serve_with_cache();
    assert!(!status.success());
    assert!(stderr.contains("only the node's user"), "{stderr}");

    // Without a cache directory to be found, the node does not fall back
    // to one in the working directory.
    let output = std::process::Command::new(outpost())
        .args(["serve", artifacts::HELLO, "--listen", "127.0.0.1:0"])
        .env_remove("HOME")
        .env_remove("XDG_CACHE_HOME")
        .env_remove("OUTPOST_CACHE_DIR")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--cache-dir"), "{stderr}");
    assert!(!dir.path().join("outpost").exists());
}

#[test]
fn files_that_are_not_handler_components_are_refused_at_load() {
    let dir = temp_dir();
    let cache = dir.path().join("cache");
    let cache = cache.to_str().unwrap();
    let core_module = dir.path().join("module.wasm");
    std::fs::write(&core_module, b"\0asm\x01\0\0\0").unwrap();
    let text = dir.path().join("text.wasm");
    std::fs::write(&text, "(component)").unwrap();

    let cases = [
        (
            core_module.to_str().unwrap(),
            "core WebAssembly module, not a component",
        ),
        (text.to_str().unwrap(), "not a WebAssembly binary"),
        (artifacts::IMPORTS_UNKNOWN, "fixture:unknown/telemetry"),
    ];
    for (component, expected) in cases {
        let (status, stderr) = run_to_exit(
            outpost(),
            &[
                "serve",
                component,
                "--cache-dir",
                cache,
                "--listen",
                "127.0.0.1:0",
            ],
        )
        .unwrap();
        assert!(!status.success(), "{component} was accepted");
        assert!(stderr.contains(expected), "{component}: {stderr}");
        assert!(
            stderr.contains(component),
            "the error names the file: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[tokio::test]
async fn requests_without_a_host_get_400() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (server, _cache) = serve(artifacts::HELLO);
    let mut stream = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        stream.read_to_string(&mut response),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(response.starts_with("HTTP/1.0 400"), "{response}");
    assert!(response.contains("no Host header"), "{response}");
}

#[test]
fn a_port_in_use_is_refused_even_with_reuseport_workers() {
    let (server, _cache) = serve(artifacts::HELLO);
    let addr = server.addr().to_string();
    let cache = temp_dir();
    let (status, stderr) = run_to_exit(
        outpost(),
        &[
            "serve",
            artifacts::HELLO,
            "--listen",
            &addr,
            "--cache-dir",
            cache.path().to_str().unwrap(),
        ],
    )
    .unwrap();
    assert!(!status.success());
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
    assert!(stderr.contains("in use"), "{stderr}");
}

#[test]
fn lazy_load_maps_cached_apps_on_their_first_request() {
    let dir = temp_dir();
    let config = write_config(
        dir.path(),
        &format!(
            "lazy_load = true\n\
             [apps.hello]\ncomponent = {:?}\nroutes = [\"hello.test/\"]\n\
             [apps.echo]\ncomponent = {:?}\nroutes = [\"echo.test/\"]\n",
            artifacts::HELLO,
            artifacts::ECHO
        ),
    );
    let cache = dir.path().join("cache");
    let args = [
        "serve",
        "--config",
        config.to_str().unwrap(),
        "--cache-dir",
        cache.to_str().unwrap(),
    ];
    // Nothing cached yet: both apps are compiled (and checked) at start.
    let first = Outpost::start(outpost(), &args).unwrap();
    assert!(first.wait_for_log("app hello"), "{}", first.logs());
    assert!(first.wait_for_log("app echo"), "{}", first.logs());
    assert_eq!(
        first.logs().matches("compiled in").count(),
        2,
        "{}",
        first.logs()
    );
    first.stop();

    let second = Outpost::start(outpost(), &args).unwrap();
    assert!(second.wait_for_log("app hello"), "{}", second.logs());
    assert!(second.wait_for_log("app echo"), "{}", second.logs());
    assert_eq!(
        second.logs().matches("loads on first request").count(),
        2,
        "{}",
        second.logs()
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let get = |host: &str| {
        let request = http::Request::get(second.url("/"))
            .header("host", host)
            .body(Full::default())
            .unwrap();
        runtime.block_on(HttpClient::http1().send(request)).unwrap()
    };
    assert_eq!(get("hello.test").text(), "Hello from Outpost!\n");
    assert!(
        second.wait_for_log("app hello: loaded from the precompiled cache on its first request")
    );
    assert!(
        !second.logs().contains("app echo: loaded"),
        "echo has had no request yet"
    );
    assert_eq!(get("echo.test").header("content-type"), "application/json");
    assert_eq!(get("hello.test").status, 200);
    assert!(
        second.wait_for_log("app echo: loaded from the precompiled cache on its first request")
    );
    assert_eq!(
        second.logs().matches("on its first request").count(),
        2,
        "{}",
        second.logs()
    );
}

#[test]
fn sigterm_lets_a_slow_request_finish_then_exits_cleanly() {
    let (server, _dir) = serve_config(&format!(
        "[apps.slow]\ncomponent = {:?}\nroutes = [\"/\"]\n[apps.slow.limits]\nwall_ms = 1500\n",
        artifacts::CPU_LOOP
    ));
    let url = server.url("/sleep");
    // A request in flight when the signal arrives: the wall-clock limit ends
    // it after 1.5 s, and its answer must still reach the client.
    let in_flight = std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(HttpClient::http1().get(&url)).unwrap()
    });
    std::thread::sleep(Duration::from_millis(300));
    let logs = server.stderr_handle();
    let status = server.terminate().unwrap();
    assert!(status.success(), "exit status {status}");
    assert_eq!(in_flight.join().unwrap().status, 504);
    // The log pipe may still be draining into the reader thread.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !logs.lock().unwrap().contains("all connections drained")
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let logs = logs.lock().unwrap();
    assert!(logs.contains("shutting down"), "{logs}");
    assert!(logs.contains("all connections drained"), "{logs}");
}

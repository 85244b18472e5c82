//! End to end: the control plane. A real node with its admin API and app
//! store, uploads of real components, crash safety under SIGKILL, swaps
//! under load, and the `outpost` CLI driven as a subprocess from `new` to
//! `deploy`, `rollback` and `tail`.

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use outpost_tests::{
    Finished, HttpClient, Outpost, Reply, TempDir, artifacts, run, temp_dir, write_config,
};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const OUTPOST: &str = env!("CARGO_BIN_EXE_outpost");
const DEPLOY_TOKEN: &str = "op_deploy_secret_for_tests";
const READ_TOKEN: &str = "op_read_secret_for_tests";
const MANIFEST: &str = "schema = 1\nname = \"site\"\nroutes = [\"/\"]\n";

/// node.toml with an admin API and two tokens; `extra` goes first (top-level
/// keys, `[apps.…]` tables), `admin_extra` into `[admin]`.
fn node_config(dir: &Path, extra: &str, admin_extra: &str) -> PathBuf {
    write_config(
        dir,
        &format!(
            "{extra}\n[admin]\n{admin_extra}\nlisten = \"127.0.0.1:0\"\nstate_dir = \"state\"\nmax_upload_mib = 8\n\
             [[admin.tokens]]\nname = \"ci\"\nsha256 = \"{}\"\nscopes = [\"read\", \"deploy\"]\n\
             [[admin.tokens]]\nname = \"viewer\"\nsha256 = \"{}\"\nscopes = [\"read\"]\n",
            outpost_store::sha256_hex(DEPLOY_TOKEN.as_bytes()),
            outpost_store::sha256_hex(READ_TOKEN.as_bytes()),
        ),
    )
}

/// A node with an admin API and an empty store, in a fresh directory.
fn start_node(dir: &Path, crash_point: Option<&str>) -> Outpost {
    start_node_with(dir, crash_point, "")
}

fn start_node_with(dir: &Path, crash_point: Option<&str>, extra: &str) -> Outpost {
    start_node_admin(dir, crash_point, extra, "")
}

fn start_node_admin(
    dir: &Path,
    crash_point: Option<&str>,
    extra: &str,
    admin_extra: &str,
) -> Outpost {
    let config = node_config(dir, extra, admin_extra);
    let mut command = Command::new(OUTPOST);
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--cache-dir")
        .arg(dir.join("cache"));
    if let Some(point) = crash_point {
        command.env("OUTPOST_CRASH_POINT", point);
    }
    Outpost::spawn(command).expect("the node starts")
}

fn admin_request(
    node: &Outpost,
    method: http::Method,
    path: &str,
    token: Option<&str>,
) -> http::request::Builder {
    let mut request = http::Request::builder()
        .method(method)
        .uri(node.admin_url(path));
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    request
}

async fn upload(node: &Outpost, component: &[u8], manifest: &str, token: Option<&str>) -> Reply {
    upload_to(node, "site", component, manifest, token).await
}

async fn upload_to(
    node: &Outpost,
    app: &str,
    component: &[u8],
    manifest: &str,
    token: Option<&str>,
) -> Reply {
    let path = format!("/v1/apps/{app}/versions");
    let request = admin_request(node, http::Method::POST, &path, token)
        .header(
            "outpost-manifest",
            base64::engine::general_purpose::STANDARD.encode(manifest),
        )
        .body(Full::new(Bytes::copy_from_slice(component)))
        .unwrap();
    HttpClient::http1().send(request).await.unwrap()
}

async fn admin(node: &Outpost, method: http::Method, path: &str, token: Option<&str>) -> Reply {
    let request = admin_request(node, method, path, token)
        .body(Full::new(Bytes::new()))
        .unwrap();
    HttpClient::http1().send(request).await.unwrap()
}

fn json(reply: &Reply) -> serde_json::Value {
    serde_json::from_slice(&reply.body)
        .unwrap_or_else(|_| panic!("JSON answer, got {:?}", reply.text()))
}

fn component(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

#[tokio::test]
async fn admin_needs_a_token_with_the_right_scope_and_audits_mutations() {
    let dir = temp_dir();
    let node = start_node(dir.path(), None);

    let reply = admin(&node, http::Method::GET, "/v1/apps", None).await;
    assert_eq!(reply.status, 401);
    assert!(
        json(&reply)["error"]
            .as_str()
            .unwrap()
            .contains("missing token"),
        "{}",
        reply.text()
    );
    assert_eq!(reply.header("www-authenticate"), "Bearer");
    let reply = admin(&node, http::Method::GET, "/v1/apps", Some("op_guessed")).await;
    assert_eq!(reply.status, 401);
    assert!(reply.text().contains("not recognized"), "{}", reply.text());

    let reply = admin(&node, http::Method::GET, "/v1/health", Some(READ_TOKEN)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(json(&reply)["status"], "ok");
    let reply = upload(
        &node,
        &component(artifacts::HELLO),
        MANIFEST,
        Some(READ_TOKEN),
    )
    .await;
    assert_eq!(reply.status, 403);
    assert!(
        reply.text().contains("lacks the deploy scope"),
        "{}",
        reply.text()
    );
    let reply = upload(&node, &component(artifacts::HELLO), MANIFEST, None).await;
    assert_eq!(reply.status, 401);

    let reply = upload(
        &node,
        &component(artifacts::HELLO),
        MANIFEST,
        Some(DEPLOY_TOKEN),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    assert_eq!(json(&reply)["version"], 1);

    let audit = std::fs::read_to_string(dir.path().join("state/audit.log")).unwrap();
    let lines: Vec<serde_json::Value> = audit
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    // Refused attempts are sampled (one line per 10 s, counting the rest);
    // an authorized mutation is logged before it happens and with its
    // outcome.
    assert_eq!(lines.len(), 3, "{audit}");
    assert_eq!(lines[0]["phase"], "refused");
    assert_eq!(lines[0]["status"], 403);
    assert_eq!(lines[0]["client"], "127.0.0.1");
    assert_eq!(lines[1]["phase"], "attempt");
    assert_eq!(lines[1]["token"], "ci");
    assert_eq!(lines[1]["action"], "upload");
    assert_eq!(lines[2]["phase"], "outcome");
    assert_eq!(lines[2]["token"], "ci");
    assert_eq!(lines[2]["status"], 201);
    let stats = admin(&node, http::Method::GET, "/v1/stats", Some(READ_TOKEN)).await;
    assert_eq!(
        json(&stats)["admin"]["refused_attempts"],
        2,
        "{}",
        stats.text()
    );
}

#[tokio::test]
async fn a_rejected_upload_says_why_and_changes_nothing() {
    let dir = temp_dir();
    let node = start_node(dir.path(), None);
    let hello = component(artifacts::HELLO);
    let deploy = Some(DEPLOY_TOKEN);

    let reply = upload(&node, b"this is not wasm", MANIFEST, deploy).await;
    assert_eq!(reply.status, 422, "{}", reply.text());
    assert!(
        reply.text().contains("not a WebAssembly"),
        "{}",
        reply.text()
    );

    let reply = upload(
        &node,
        &component(artifacts::IMPORTS_UNKNOWN),
        MANIFEST,
        deploy,
    )
    .await;
    assert_eq!(reply.status, 422, "{}", reply.text());
    assert!(
        reply.text().contains("fixture:unknown/telemetry"),
        "names the import: {}",
        reply.text()
    );

    // Refusals of large uploads reach the client as answers, not as a
    // connection closed while it is still sending.
    let too_big = vec![0u8; 9 << 20];
    for _ in 0..3 {
        let reply = upload(&node, &too_big, MANIFEST, deploy).await;
        assert_eq!(reply.status, 413, "{}", reply.text());
        assert!(reply.text().contains("max_upload_mib"), "{}", reply.text());
        let reply = upload(&node, &too_big[..7 << 20], MANIFEST, None).await;
        assert_eq!(reply.status, 401, "{}", reply.text());
    }

    let reply = upload(
        &node,
        &hello,
        "schema = 1\nname = \"site\"\nroutes = [\"nope\"]\n",
        deploy,
    )
    .await;
    assert_eq!(reply.status, 400);
    assert!(
        reply.text().contains("outpost.toml:3: routes"),
        "{}",
        reply.text()
    );

    let reply = upload(
        &node,
        &hello,
        "schema = 1\nname = \"other\"\nroutes = [\"/\"]\n",
        deploy,
    )
    .await;
    assert_eq!(reply.status, 400);
    assert!(
        reply
            .text()
            .contains("the manifest names app \\\"other\\\""),
        "{}",
        reply.text()
    );

    let request = admin_request(&node, http::Method::POST, "/v1/apps/site/versions", deploy)
        .body(Full::new(Bytes::from(hello.clone())))
        .unwrap();
    let reply = HttpClient::http1().send(request).await.unwrap();
    assert_eq!(reply.status, 400);
    assert!(
        reply.text().contains("outpost-manifest"),
        "{}",
        reply.text()
    );

    let reply = admin(&node, http::Method::GET, "/v1/apps/site/versions", deploy).await;
    assert_eq!(
        reply.status,
        404,
        "no version was recorded: {}",
        reply.text()
    );
    for sub in ["blobs", "staging"] {
        let entries = std::fs::read_dir(dir.path().join("state").join(sub))
            .unwrap()
            .count();
        assert_eq!(entries, 0, "state/{sub} is empty");
    }
}

#[tokio::test]
async fn operator_apps_stay_the_operators_and_every_upload_is_validated() {
    let dir = temp_dir();
    let extra = format!(
        "lazy_load = true\n[apps.cfg]\ncomponent = {:?}\nroutes = [\"/cfg\"]\n",
        artifacts::HELLO
    );
    let node = start_node_with(dir.path(), None, &extra);
    let deploy = Some(DEPLOY_TOKEN);
    assert!(is_hello(&get(&node, "/cfg").await));

    // A deploy token can neither replace nor delete an app of node.toml.
    let manifest = "schema = 1\nname = \"cfg\"\nroutes = [\"/\"]\n";
    let reply = upload_to(&node, "cfg", &component(artifacts::ECHO), manifest, deploy).await;
    assert_eq!(reply.status, 409, "{}", reply.text());
    assert!(
        reply.text().contains("comes from the node config"),
        "{}",
        reply.text()
    );
    let reply = admin(&node, http::Method::DELETE, "/v1/apps/cfg", deploy).await;
    assert_eq!(reply.status, 409, "{}", reply.text());
    assert!(is_hello(&get(&node, "/cfg").await));

    // Nor take its route.
    let taking = "schema = 1\nname = \"site\"\nroutes = [\"/cfg\"]\n";
    assert_eq!(
        upload(&node, &component(artifacts::ECHO), taking, deploy)
            .await
            .status,
        201
    );
    let reply = activate(&node, 1).await;
    assert_eq!(reply.status, 409, "{}", reply.text());
    assert!(
        reply.text().contains("already served by app \\\"cfg\\\""),
        "{}",
        reply.text()
    );
    assert!(is_hello(&get(&node, "/cfg").await));

    // With lazy_load, a component already compiled once is still checked
    // in full on every upload.
    for _ in 0..2 {
        let reply = upload(
            &node,
            &component(artifacts::IMPORTS_UNKNOWN),
            MANIFEST,
            deploy,
        )
        .await;
        assert_eq!(reply.status, 422, "{}", reply.text());
    }

    // Names that cannot be apps are refused before anything else, and a
    // tail of an unknown app is a 404, not a silent stream.
    let reply = admin(
        &node,
        http::Method::POST,
        "/v1/apps/Not..An..App/rollback",
        deploy,
    )
    .await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    let reply = admin(
        &node,
        http::Method::GET,
        "/v1/apps/nobody/tail",
        Some(READ_TOKEN),
    )
    .await;
    assert_eq!(reply.status, 404, "{}", reply.text());
    let audit = std::fs::read_to_string(dir.path().join("state/audit.log")).unwrap();
    assert!(!audit.contains("Not..An..App"), "{audit}");
}

#[tokio::test]
async fn operator_hosts_are_the_operators_and_manifests_stay_within_node_maxima() {
    let dir = temp_dir();
    let extra = format!(
        "max_cpu_ms = 200
[apps.api]
component = {:?}
routes = [\"api.test/\", \"*.shop.test/\", \"/\"]
",
        artifacts::HELLO
    );
    let node = start_node_with(dir.path(), None, &extra);
    let deploy = Some(DEPLOY_TOKEN);

    // A deployed app cannot take a path, or a subdomain, of a host that
    // node.toml names; it may refine the operator's any-host catch-all.
    for (n, (route, allowed)) in [
        ("api.test/admin", false),
        ("eu.shop.test/", false),
        ("/deployed", true),
        ("other.test/", true),
    ]
    .into_iter()
    .enumerate()
    {
        let manifest = format!("schema = 1\nname = \"site\"\nroutes = [{route:?}]\n");
        let reply = upload(&node, &component(artifacts::ECHO), &manifest, deploy).await;
        assert_eq!(reply.status, 201, "{}", reply.text());
        let reply = activate(&node, n as u64 + 1).await;
        if allowed {
            assert_eq!(reply.status, 200, "{route}: {}", reply.text());
        } else {
            assert_eq!(reply.status, 409, "{route}: {}", reply.text());
            assert!(
                reply.text().contains("hosts named in node.toml"),
                "{}",
                reply.text()
            );
        }
    }

    // Limits above the node's maxima are refused at upload, naming both.
    let manifest = "schema = 1\nname = \"site\"\nroutes = [\"/x\"]\n[limits]\ncpu_ms = 500\n";
    let reply = upload(&node, &component(artifacts::ECHO), manifest, deploy).await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert!(
        reply
            .text()
            .contains("limits.cpu_ms: 500 ms is more than this node allows (max_cpu_ms = 200)"),
        "{}",
        reply.text()
    );
}

#[tokio::test]
async fn a_compile_past_its_timeout_keeps_the_compile_lock() {
    let dir = temp_dir();
    // Every compile "runs away": none finishes within 1 ms.
    let node = start_node_admin(dir.path(), None, "", "compile_timeout_ms = 1");
    // A component of 80,000 functions of 30 instructions: seconds to
    // compile, longer than the next upload takes to arrive even on a
    // loaded machine (60,000 and then 200,000 functions of 6 instructions
    // each once compiled before the next upload arrived). 6 MB, under the
    // 8 MiB upload cap.
    let body = "i32.const 7 i32.mul i32.const 7 i32.xor ".repeat(7);
    // Each try's component differs (by `seed`): a finished compile is
    // cached, and a cached component would load at once.
    let slow = |seed: u32| {
        let functions: String = (0..80_000)
            .map(|n| {
                format!(
                    "(func (param i32) (result i32) local.get 0 {body} i32.const {} i32.add)\n",
                    n + seed
                )
            })
            .collect();
        outpost_tests::wat_component(&format!("(component (core module {functions}))"))
    };
    // The compile goes on, holding the lock: the next upload is turned
    // away instead of starting a second compile. On a loaded machine the
    // next upload may arrive only after the runaway compile is done, so
    // the pair is tried a few times; with the lock not kept no try could
    // see the 503.
    let mut reply = None;
    for seed in 0..3 {
        let first = upload(&node, &slow(seed), MANIFEST, Some(DEPLOY_TOKEN)).await;
        if first.status == 503 {
            // The previous try's compile is still running.
            tokio::time::sleep(Duration::from_secs(2)).await;
            continue;
        }
        assert_eq!(first.status, 422, "{}", first.text());
        assert!(
            first.text().contains("did not compile within 1 ms"),
            "{}",
            first.text()
        );
        let next = upload(
            &node,
            &component(artifacts::ECHO),
            MANIFEST,
            Some(DEPLOY_TOKEN),
        )
        .await;
        let turned_away = next.status == 503;
        reply = Some(next);
        if turned_away {
            break;
        }
    }
    let reply = reply.expect("at least one try");
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert!(reply.text().contains("still compiling"), "{}", reply.text());
    assert!(reply.headers.contains_key("retry-after"));
}

#[tokio::test]
async fn uploads_in_progress_are_bounded_and_go_to_disk() {
    let dir = temp_dir();
    let node = start_node_admin(dir.path(), None, "", "max_uploads = 2");
    // Two uploads in progress (their bodies arriving slowly) are the most:
    // a third gets 429. Their bytes go to disk, not to memory.
    let rss_before = node.rss_kib();
    let admin_addr = node.admin_addr().unwrap();
    let mut slow = Vec::new();
    for _ in 0..2 {
        let mut stream = std::net::TcpStream::connect(admin_addr).unwrap();
        let head = format!(
            "POST /v1/apps/site/versions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {DEPLOY_TOKEN}\r\n\
             Outpost-Manifest: {}\r\nContent-Length: {}\r\n\r\n",
            base64::engine::general_purpose::STANDARD.encode(MANIFEST),
            8 << 20
        );
        std::io::Write::write_all(&mut stream, head.as_bytes()).unwrap();
        std::io::Write::write_all(&mut stream, &vec![0u8; 6 << 20]).unwrap();
        slow.push(stream);
    }
    let hello = component(artifacts::HELLO);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let reply = loop {
        let reply = upload(&node, &hello, MANIFEST, Some(DEPLOY_TOKEN)).await;
        if reply.status == 429 || std::time::Instant::now() > deadline {
            break reply;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(reply.status, 429, "{}", reply.text());
    assert!(
        reply.text().contains("admin.max_uploads"),
        "{}",
        reply.text()
    );
    let grown = node.rss_kib().saturating_sub(rss_before);
    assert!(
        grown < 8 << 10,
        "12 MiB of uploads in progress grew the node by {grown} KiB"
    );
    let staged: u64 = std::fs::read_dir(dir.path().join("state/staging"))
        .unwrap()
        .map(|entry| entry.unwrap().metadata().unwrap().len())
        .sum();
    assert!(
        staged >= 8 << 20,
        "uploads are staged on disk as they arrive ({staged} bytes)"
    );
    drop(slow);
}

#[tokio::test]
async fn a_mutation_that_cannot_be_audited_is_refused_and_refusals_are_sampled() {
    let dir = temp_dir();
    std::fs::create_dir_all(dir.path().join("state")).unwrap();
    // Every write to the audit log fails (ENOSPC).
    std::os::unix::fs::symlink("/dev/full", dir.path().join("state/audit.log")).unwrap();
    let node = start_node(dir.path(), None);
    let reply = upload(
        &node,
        &component(artifacts::HELLO),
        MANIFEST,
        Some(DEPLOY_TOKEN),
    )
    .await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert!(
        reply.text().contains("audit log cannot be written"),
        "{}",
        reply.text()
    );
    let reply = admin(
        &node,
        http::Method::GET,
        "/v1/apps/site/versions",
        Some(READ_TOKEN),
    )
    .await;
    assert_eq!(reply.status, 404, "nothing was stored: {}", reply.text());
    node.stop();

    // With a working log, 50 attempts with a bad token make one line.
    let dir = temp_dir();
    let node = start_node(dir.path(), None);
    for _ in 0..50 {
        let reply = upload(
            &node,
            &component(artifacts::HELLO),
            MANIFEST,
            Some("op_wrong"),
        )
        .await;
        assert_eq!(reply.status, 401);
    }
    let audit = std::fs::read_to_string(dir.path().join("state/audit.log")).unwrap();
    assert!((1..=2).contains(&audit.lines().count()), "{audit}");
    let stats = admin(&node, http::Method::GET, "/v1/stats", Some(READ_TOKEN)).await;
    assert_eq!(json(&stats)["admin"]["refused_attempts"], 50);
}

/// Uploads hello as version 1 and echo as version 2 of app "site".
async fn upload_two_versions(node: &Outpost) {
    for (n, path) in [(1, artifacts::HELLO), (2, artifacts::ECHO)] {
        let reply = upload(node, &component(path), MANIFEST, Some(DEPLOY_TOKEN)).await;
        assert_eq!(reply.status, 201, "{}", reply.text());
        assert_eq!(json(&reply)["version"], n);
    }
}

async fn activate(node: &Outpost, version: u64) -> Reply {
    let path = format!("/v1/apps/site/versions/{version}/activate");
    admin(node, http::Method::POST, &path, Some(DEPLOY_TOKEN)).await
}

async fn get(node: &Outpost, path: &str) -> Reply {
    HttpClient::http1().get(&node.url(path)).await.unwrap()
}

async fn rollback(node: &Outpost, query: &str) -> Reply {
    let path = format!("/v1/apps/site/rollback{query}");
    admin(node, http::Method::POST, &path, Some(DEPLOY_TOKEN)).await
}

fn is_hello(reply: &Reply) -> bool {
    reply.text() == "Hello from Outpost!\n"
}

#[tokio::test]
async fn activation_and_rollback_under_load_fail_no_request() {
    let dir = temp_dir();
    let node = start_node(dir.path(), None);
    upload_two_versions(&node).await;
    let reply = get(&node, "/").await;
    assert_eq!(reply.status, 404, "nothing is served before activation");

    assert_eq!(activate(&node, 1).await.status, 200);
    assert!(is_hello(&get(&node, "/").await));

    // 8 clients, 500 requests each, while the main task swaps 8 times.
    let url = node.url("/swap");
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let client = HttpClient::http1();
                let (mut hello, mut echo) = (0, 0);
                for _ in 0..500 {
                    let reply = client.get(&url).await.expect("the request completes");
                    assert_eq!(
                        reply.status,
                        200,
                        "no request fails during a swap: {}",
                        reply.text()
                    );
                    if is_hello(&reply) {
                        hello += 1
                    } else {
                        echo += 1
                    }
                }
                (hello, echo)
            })
        })
        .collect();
    for swap in 0..8u64 {
        tokio::time::sleep(Duration::from_millis(40)).await;
        let reply = activate(&node, 2 - swap % 2).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let (mut hello, mut echo) = (0, 0);
    for client in clients {
        let (h, e) = client.await.unwrap();
        hello += h;
        echo += e;
    }
    assert_eq!(hello + echo, 4000);
    assert!(
        hello > 0 && echo > 0,
        "both versions answered ({hello} hello, {echo} echo)"
    );

    // Version 1 is active now (the last swap); roll back to 2 by number,
    // then without a number back to the one before it.
    let reply = rollback(&node, "?to=2").await;
    assert_eq!(json(&reply)["version"], 2, "{}", reply.text());
    assert!(!is_hello(&get(&node, "/").await));
    let reply = rollback(&node, "").await;
    assert_eq!(json(&reply)["version"], 1, "{}", reply.text());
    assert!(is_hello(&get(&node, "/").await));
    let reply = rollback(&node, "").await;
    assert_eq!(reply.status, 409, "nothing before 1: {}", reply.text());

    let versions = json(
        &admin(
            &node,
            http::Method::GET,
            "/v1/apps/site/versions",
            Some(READ_TOKEN),
        )
        .await,
    );
    assert_eq!(versions["active"], 1);
    assert_eq!(versions["versions"].as_array().unwrap().len(), 2);
    let stats = json(&admin(&node, http::Method::GET, "/v1/stats", Some(READ_TOKEN)).await);
    assert_eq!(stats["apps"][0]["name"], "site");

    // The active version survives a restart.
    node.stop();
    let node = start_node(dir.path(), None);
    assert!(is_hello(&get(&node, "/").await));
    let reply = admin(
        &node,
        http::Method::DELETE,
        "/v1/apps/site",
        Some(DEPLOY_TOKEN),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(get(&node, "/").await.status, 404);
}

// Multi-threaded: the upload runs in a task while this one blocks waiting
// for the node's log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_any_step_of_an_upload_or_activation_keeps_a_consistent_store() {
    let dir = temp_dir();
    let node = start_node(dir.path(), None);
    let reply = upload(
        &node,
        &component(artifacts::HELLO),
        MANIFEST,
        Some(DEPLOY_TOKEN),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let reply = activate(&node, 1).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    node.stop();

    // (crash point, whether the new version is active after the restart)
    let points = [
        ("blob-written", false),
        ("blob-stored", false),
        ("version-written", false),
        ("version-recorded", false),
        ("active-written", false),
        ("activated", true),
    ];
    for (point, committed) in points {
        let node = start_node(dir.path(), Some(point));
        let admin_url = node.admin_url("/v1/apps/site/versions");
        let echo = component(artifacts::ECHO);
        // Upload and activate in the background: the node stops at the
        // crash point and never answers.
        let deploy = tokio::spawn(async move {
            let request = http::Request::post(&admin_url)
                .header("authorization", format!("Bearer {DEPLOY_TOKEN}"))
                .header(
                    "outpost-manifest",
                    base64::engine::general_purpose::STANDARD.encode(MANIFEST),
                )
                .body(Full::new(Bytes::from(echo)))
                .unwrap();
            let reply = HttpClient::http1().send(request).await?;
            let version =
                serde_json::from_slice::<serde_json::Value>(&reply.body)?["version"].clone();
            let request = http::Request::post(
                admin_url.replace("/versions", &format!("/versions/{version}/activate")),
            )
            .header("authorization", format!("Bearer {DEPLOY_TOKEN}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
            HttpClient::http1().send(request).await
        });
        assert!(
            node.wait_for_log(&format!("crash point {point} reached")),
            "the node reaches {point}:\n{}",
            node.logs()
        );
        node.stop(); // SIGKILL
        deploy.abort();

        let node = start_node(dir.path(), None);
        let reply = HttpClient::http1().get(&node.url("/")).await.unwrap();
        assert_eq!(
            reply.status,
            200,
            "after a kill at {point}: {}",
            reply.text()
        );
        assert_eq!(
            !is_hello(&reply),
            committed,
            "after a kill at {point} the {} version serves",
            if committed { "new" } else { "previous" }
        );
        let versions = json(
            &admin(
                &node,
                http::Method::GET,
                "/v1/apps/site/versions",
                Some(READ_TOKEN),
            )
            .await,
        );
        for version in versions["versions"].as_array().unwrap() {
            let blob = dir
                .path()
                .join("state/blobs")
                .join(format!("{}.wasm", version["sha256"].as_str().unwrap()));
            assert!(
                blob.exists(),
                "every recorded version has its blob (kill at {point})"
            );
        }
        assert_eq!(
            std::fs::read_dir(dir.path().join("state/staging"))
                .unwrap()
                .count(),
            0
        );
        if committed {
            // Back to version 1 for the next round.
            assert_eq!(activate(&node, 1).await.status, 200);
        }
        node.stop();
    }
}

/// `outpost ARGS` in `dir`, with the CLI's own config out of the way and
/// guest builds sharing one target directory (so each test does not build
/// the SDK's dependencies again).
fn outpost_cli(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(OUTPOST);
    command
        .args(args)
        .current_dir(dir)
        .env("XDG_CONFIG_HOME", dir.join(".config"))
        .env("CARGO_TARGET_DIR", shared_guest_target())
        .env(
            "OUTPOST_SDK_PATH",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdk"),
        )
        .env("OUTPOST_CACHE_DIR", dir.join(".cache"))
        .env_remove("OUTPOST_TOKEN")
        .env_remove("OUTPOST_REMOTE");
    command
}

fn shared_guest_target() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/cli-projects");
    // Made here, not by cargo: cargo makes a missing target dir under a
    // temporary name and renames it, and the CLI's cargo (this dir) and
    // the scaffold test's (host/, inside it) raced on a fresh clone.
    std::fs::create_dir_all(dir.join("host")).expect("the shared target dir can be made");
    dir
}

fn run_cli(dir: &Path, args: &[&str]) -> Finished {
    run(outpost_cli(dir, args)).expect("the CLI runs")
}

/// `outpost new NAME` in a fresh directory.
fn new_project(name: &str) -> (TempDir, PathBuf) {
    let dir = temp_dir();
    let finished = run_cli(dir.path(), &["new", name]);
    assert!(finished.status.success(), "{finished:?}");
    assert!(
        finished
            .stdout
            .contains(&format!("created handler project {name}")),
        "{finished:?}"
    );
    let project = dir.path().join(name);
    for file in ["Cargo.toml", "src/lib.rs", "outpost.toml", ".gitignore"] {
        assert!(project.join(file).is_file(), "{file} is scaffolded");
    }
    (dir, project)
}

fn edit_greeting(project: &Path, from: &str, to: &str) {
    let lib = project.join("src/lib.rs");
    let source = std::fs::read_to_string(&lib).unwrap();
    assert!(source.contains(from));
    std::fs::write(&lib, source.replace(from, to)).unwrap();
}

#[tokio::test]
async fn cli_new_build_dev_then_edits_are_served() {
    let (_dir, project) = new_project("greeter");
    // The scaffold's own test runs on the host.
    let mut cargo_test = Command::new(env!("CARGO"));
    cargo_test
        .args(["test", "--manifest-path"])
        .arg(project.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", shared_guest_target().join("host"));
    let finished = run(cargo_test).unwrap();
    assert!(
        finished.status.success(),
        "the scaffold's test passes: {finished:?}"
    );
    assert!(
        finished.stdout.contains("greets_with_the_path ... ok"),
        "{}",
        finished.stdout
    );

    let finished = run_cli(&project, &["build"]);
    assert!(finished.status.success(), "{finished:?}");
    assert!(finished.stderr.contains("built "), "{}", finished.stderr);

    let server =
        Outpost::spawn(outpost_cli(&project, &["dev", "--port", "0"])).expect("dev serves");
    let client = HttpClient::http1();
    let reply = client.get(&server.url("/there")).await.unwrap();
    assert_eq!(reply.text(), "Hello from greeter at /there!\n");

    // A broken edit: the compiler's error is shown, the old version serves.
    edit_greeting(
        &project,
        "Ok(Response::text(",
        "Ok(Response::text(nonsense + ",
    );
    assert!(
        server.wait_for_log_within(
            "still serving the last good version",
            Duration::from_secs(300)
        ),
        "a failed build is reported:\n{}",
        server.logs()
    );
    assert!(
        server.logs().contains("error"),
        "the compiler's message is shown:\n{}",
        server.logs()
    );
    assert_eq!(
        client.get(&server.url("/there")).await.unwrap().text(),
        "Hello from greeter at /there!\n"
    );

    edit_greeting(
        &project,
        "Ok(Response::text(nonsense + ",
        "Ok(Response::text(",
    );
    edit_greeting(&project, "Hello from", "Howdy from");
    assert!(
        server.wait_for_stdout("reloaded greeter", 1, Duration::from_secs(300)),
        "rebuilt:\n{}",
        server.logs()
    );
    assert_eq!(
        client.get(&server.url("/there")).await.unwrap().text(),
        "Howdy from greeter at /there!\n"
    );

    // Its own build output does not trigger another build.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        server.stdout().matches("reloaded").count(),
        1,
        "no rebuild loop:\n{}",
        server.stdout()
    );
}

#[tokio::test]
async fn cli_dev_serves_the_projects_local_secrets_and_reloads_them() {
    let (_dir, project) = new_project("keyed");
    let gitignore = std::fs::read_to_string(project.join(".gitignore")).unwrap();
    assert!(gitignore.contains("/.secrets.toml"), "{gitignore}");
    std::fs::write(
        project.join("src/lib.rs"),
        "use outpost_sdk::{handler, secret, Request, Response, Result};\n\
         #[handler]\n\
         fn handle(_req: Request) -> Result<Response> {\n\
         \x20   let key = secret(\"api_key\").map_or(\"none\".to_owned(), |key| key.expose().to_owned());\n\
         \x20   Ok(Response::text(format!(\"key {key}\\n\")))\n\
         }\n",
    )
    .unwrap();
    std::fs::write(project.join(".secrets.toml"), "api_key = \"local-value\"\n").unwrap();
    let server =
        Outpost::spawn(outpost_cli(&project, &["dev", "--port", "0"])).expect("dev serves");
    let client = HttpClient::http1();
    assert_eq!(
        client.get(&server.url("/")).await.unwrap().text(),
        "key local-value\n"
    );
    // Editing the file reloads, as a source edit does.
    std::fs::write(project.join(".secrets.toml"), "api_key = \"changed\"\n").unwrap();
    assert!(
        server.wait_for_stdout("reloaded keyed", 1, Duration::from_secs(300)),
        "reloaded:\n{}",
        server.logs()
    );
    assert_eq!(
        client.get(&server.url("/")).await.unwrap().text(),
        "key changed\n"
    );
    // A bad name is an error naming the file and line; the last good
    // version serves on.
    std::fs::write(
        project.join(".secrets.toml"),
        "ok = \"1\"\nApi-Key = \"x\"\n",
    )
    .unwrap();
    assert!(
        server.wait_for_log_within(".secrets.toml:2: ", Duration::from_secs(60)),
        "{}",
        server.logs()
    );
    assert_eq!(
        client.get(&server.url("/")).await.unwrap().text(),
        "key changed\n"
    );
}

#[test]
fn token_new_prints_a_secret_and_only_its_hash_for_node_toml() {
    let dir = temp_dir();
    let finished = run_cli(
        dir.path(),
        &["token", "new", "--name", "ci", "--scopes", "read,deploy"],
    );
    assert!(finished.status.success(), "{finished:?}");
    let token = finished
        .stdout
        .split_whitespace()
        .find(|word| word.starts_with("op_"))
        .expect("a token is printed");
    assert_eq!(token.len(), 3 + 64, "256 random bits, hex");
    let entry = format!(
        "sha256 = \"{}\"",
        outpost_store::sha256_hex(token.as_bytes())
    );
    assert!(finished.stdout.contains(&entry), "{}", finished.stdout);
    assert!(
        finished.stdout.contains("scopes = [\"read\", \"deploy\"]"),
        "{}",
        finished.stdout
    );
    let finished = run_cli(
        dir.path(),
        &["token", "new", "--name", "x", "--scopes", "root"],
    );
    assert_eq!(finished.status.code(), Some(2), "{finished:?}");
}

#[tokio::test]
async fn cli_deploy_versions_rollback_and_tail_against_a_node() {
    let node_dir = temp_dir();
    let node = start_node(node_dir.path(), None);
    let (_dir, project) = new_project("site");
    let remote = node.admin_url("");
    let deploy = |token: Option<&str>| {
        let mut args = vec!["deploy", "--remote", &remote];
        if let Some(token) = token {
            args.extend(["--token", token]);
        }
        run_cli(&project, &args)
    };

    let finished = deploy(None);
    assert_eq!(finished.status.code(), Some(3), "{finished:?}");
    assert!(
        finished.stderr.contains("missing token"),
        "{}",
        finished.stderr
    );
    let finished = deploy(Some(READ_TOKEN));
    assert_eq!(finished.status.code(), Some(3), "{finished:?}");
    assert!(
        finished.stderr.contains("lacks the deploy scope"),
        "{}",
        finished.stderr
    );

    let finished = deploy(Some(DEPLOY_TOKEN));
    assert!(finished.status.success(), "{finished:?}");
    assert!(
        finished.stdout.contains("deployed site version 1"),
        "{}",
        finished.stdout
    );
    let client = HttpClient::http1();
    assert_eq!(
        client.get(&node.url("/a")).await.unwrap().text(),
        "Hello from site at /a!\n"
    );

    edit_greeting(&project, "Hello from", "Version two from");
    let finished = deploy(Some(DEPLOY_TOKEN));
    assert!(
        finished.stdout.contains("deployed site version 2"),
        "{finished:?}"
    );
    assert_eq!(
        client.get(&node.url("/a")).await.unwrap().text(),
        "Version two from site at /a!\n"
    );

    // Remote and token from the CLI's config file this time.
    let config = project.join(".config/outpost/config.toml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(
        &config,
        format!("remote = \"{remote}\"\ntoken = \"{READ_TOKEN}\"\n"),
    )
    .unwrap();
    let finished = run_cli(&project, &["versions", "--json"]);
    assert!(finished.status.success(), "{finished:?}");
    let versions: serde_json::Value = serde_json::from_str(&finished.stdout).unwrap();
    assert_eq!(versions["active"], 2);
    assert_eq!(versions["versions"].as_array().unwrap().len(), 2);

    let finished = run_cli(
        &project,
        &["rollback", "--remote", &remote, "--token", DEPLOY_TOKEN],
    );
    assert!(finished.status.success(), "{finished:?}");
    assert!(
        finished.stdout.contains("rolled back site to version 1"),
        "{}",
        finished.stdout
    );
    assert_eq!(
        client.get(&node.url("/a")).await.unwrap().text(),
        "Hello from site at /a!\n"
    );

    // tail: a subprocess streaming until killed.
    let mut tail = outpost_cli(
        &project,
        &["tail", "--remote", &remote, "--token", READ_TOKEN],
    );
    let tail = outpost_tests::Streaming::spawn(&mut tail).expect("tail starts");
    assert!(tail.wait_for_stderr("tailing site"), "{:?}", tail.output());
    assert_eq!(client.get(&node.url("/tailed")).await.unwrap().status, 200);
    assert!(
        tail.wait_for_stdout("GET /tailed 200"),
        "the request's line arrives: {:?}",
        tail.output()
    );
}

//! End to end: variables and secrets through `wasi:config/store` (the
//! `config-api` fixture). Variables come from the manifest; secrets are set
//! with `outpost secret put` (value on stdin), held by the node with mode
//! 0600, seen by the next request without a redeploy, and never appear in
//! an API answer, the audit log or the node's logs.

use bytes::Bytes;
use outpost_tests::{Outpost, Reply, TempDir, artifacts, serve_config, serve_dir};
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::process::{Command, Stdio};

const OUTPOST: &str = env!("CARGO_BIN_EXE_outpost");
const DEPLOY_TOKEN: &str = "op_vars_deploy_token";
const READ_TOKEN: &str = "op_vars_read_token";
const SECRET: &str = "s3cr3t-Value-that-must-not-leak";
const MANIFEST: &str = "schema = 1\nname = \"cfg\"\nroutes = [\"/\"]\n\
                        [variables]\ngreeting = \"hello\"\nregion = \"eu\"\n";

/// A node with an admin API, and the fixture deployed as app `cfg`.
fn start() -> (Outpost, TempDir) {
    let toml = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\nstate_dir = \"state\"\n\
         [[admin.tokens]]\nname = \"ci\"\nsha256 = \"{}\"\nscopes = [\"read\", \"deploy\"]\n\
         [[admin.tokens]]\nname = \"viewer\"\nsha256 = \"{}\"\nscopes = [\"read\"]\n\
         [apps.ops]\ncomponent = {:?}\nroutes = [\"ops.example/\"]\n[apps.ops.variables]\nowner = \"operator\"\n",
        outpost_store::sha256_hex(DEPLOY_TOKEN.as_bytes()),
        outpost_store::sha256_hex(READ_TOKEN.as_bytes()),
        artifacts::CONFIG_API,
    );
    let (node, dir) = serve_config(OUTPOST.as_ref(), &toml);
    node.deploy(
        DEPLOY_TOKEN,
        "cfg",
        MANIFEST,
        artifacts::CONFIG_API.as_ref(),
    );
    (node, dir)
}

/// `outpost secret ARGS` against the node, `stdin` on its standard input;
/// returns (success, stdout, stderr).
fn secret_cli(node: &Outpost, args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = Command::new(OUTPOST)
        .arg("secret")
        .args(args)
        .env("OUTPOST_REMOTE", node.admin_url(""))
        .env("OUTPOST_TOKEN", DEPLOY_TOKEN)
        .env("XDG_CONFIG_HOME", "/nonexistent")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The CLI may refuse (a bad name) and exit before it reads stdin.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let output = child.wait_with_output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn get(node: &Outpost, path: &str) -> Reply {
    node.request("GET", path, &[])
}

#[test]
fn handlers_read_variables_and_secrets_which_override_them_without_a_redeploy() {
    let (node, _dir) = start();
    assert_eq!(get(&node, "/get?name=greeting").text(), "hello");
    assert_eq!(get(&node, "/get?name=api_key").status, 404);

    let (ok, out, err) = secret_cli(&node, &["put", "cfg", "api_key"], &format!("{SECRET}\n"));
    assert!(ok, "{out}{err}");
    assert_eq!(
        get(&node, "/get?name=api_key").text(),
        SECRET,
        "one trailing newline dropped"
    );
    assert_eq!(
        get(&node, "/secret?name=api_key").text(),
        "(secret) Secret(..)",
        "the SDK's Secret prints no value"
    );
    // A secret overrides the manifest's variable of the same name.
    assert!(secret_cli(&node, &["put", "cfg", "greeting"], "override").0);
    assert_eq!(get(&node, "/get?name=greeting").text(), "override");
    assert_eq!(
        get(&node, "/all").text(),
        format!("api_key={SECRET}\ngreeting=override\nregion=eu\n")
    );

    let (ok, listed, _) = secret_cli(&node, &["list", "cfg"], "");
    assert!(ok);
    assert_eq!(listed, "api_key\ngreeting\n", "names only");
    assert!(secret_cli(&node, &["delete", "cfg", "greeting"], "").0);
    assert_eq!(
        get(&node, "/get?name=greeting").text(),
        "hello",
        "the variable again"
    );
}

#[test]
fn secrets_are_private_on_disk_survive_a_restart_and_never_leak() {
    let (node, dir) = start();
    assert!(secret_cli(&node, &["put", "cfg", "api_key"], SECRET).0);
    let path = dir.path().join("state/secrets/cfg/api_key");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // Nothing the node says or writes holds the value.
    let listed = node.admin("GET", "/v1/apps/cfg/secrets", READ_TOKEN, Bytes::new());
    assert_eq!(listed.status, 200);
    let listed: serde_json::Value = serde_json::from_slice(&listed.body).unwrap();
    assert_eq!(
        listed,
        serde_json::json!({"app": "cfg", "secrets": ["api_key"]})
    );
    let listed = listed.to_string();
    let stats = node.admin_stats(READ_TOKEN).to_string();
    let apps = node
        .admin("GET", "/v1/apps", READ_TOKEN, Bytes::new())
        .text();
    let audit = std::fs::read_to_string(dir.path().join("state/audit.log")).unwrap();
    assert!(audit.contains("secret-put"), "{audit}");
    for (what, text) in [
        ("secrets list", &listed),
        ("stats", &stats),
        ("apps", &apps),
        ("audit log", &audit),
    ] {
        assert!(
            !text.contains(SECRET),
            "the secret is in the {what}: {text}"
        );
    }

    // Refusals: a read token, a bad name, a value too large, binary.
    let refused = node.admin(
        "PUT",
        "/v1/apps/cfg/secrets/x",
        READ_TOKEN,
        Bytes::from_static(b"v"),
    );
    assert_eq!(refused.status, 403);
    let bad_name = node.admin(
        "PUT",
        "/v1/apps/cfg/secrets/Api-Key",
        DEPLOY_TOKEN,
        Bytes::from_static(b"v"),
    );
    assert_eq!(bad_name.status, 400, "{}", bad_name.text());
    let (ok, _, err) = secret_cli(&node, &["put", "cfg", "Api-Key"], "v");
    assert!(
        !ok && err.contains("not a valid variable or secret name"),
        "{err}"
    );
    let large = node.admin(
        "PUT",
        "/v1/apps/cfg/secrets/big",
        DEPLOY_TOKEN,
        Bytes::from(vec![b'x'; 70_000]),
    );
    assert_eq!(large.status, 413, "{}", large.text());
    let binary = node.admin(
        "PUT",
        "/v1/apps/cfg/secrets/bin",
        DEPLOY_TOKEN,
        Bytes::from_static(&[0xff, 0xfe]),
    );
    assert_eq!(binary.status, 400, "{}", binary.text());

    // A restart serves the stored secret again.
    let logs = node.logs();
    drop(node);
    assert!(!logs.contains(SECRET), "the secret is in the node's logs");
    let node = serve_dir(OUTPOST.as_ref(), dir.path());
    assert_eq!(get(&node, "/get?name=api_key").text(), SECRET);
}

#[test]
fn the_ab_test_example_splits_by_its_variables_and_keeps_a_visitor_on_one_variant() {
    let toml = format!(
        "[apps.all-b]\ncomponent = {0:?}\nroutes = [\"b.example/\"]\n\
         [apps.all-b.variables]\nweight_b = \"100\"\ntext_b = \"the new page\"\n\
         [apps.all-a]\ncomponent = {0:?}\nroutes = [\"a.example/\"]\n\
         [apps.all-a.variables]\nweight_b = \"0\"\n",
        artifacts::AB_TEST
    );
    let (node, _dir) = serve_config(OUTPOST.as_ref(), &toml);
    let new_visitor = node.request("GET", "/", &[("host", "b.example")]);
    assert_eq!(new_visitor.header("x-variant"), "b");
    assert_eq!(new_visitor.text(), "the new page\n");
    assert!(
        new_visitor
            .header("set-cookie")
            .starts_with("ab=b; Path=/; Max-Age=2592000"),
        "{}",
        new_visitor.header("set-cookie")
    );
    let returning = node.request(
        "GET",
        "/",
        &[("host", "b.example"), ("cookie", "x=1; ab=a")],
    );
    assert_eq!(
        returning.header("x-variant"),
        "a",
        "the cookie wins over the split"
    );
    assert!(returning.headers.get("set-cookie").is_none());
    assert_eq!(returning.text(), "variant a\n", "no text_a: the default");
    let other = node.request("GET", "/", &[("host", "a.example")]);
    assert_eq!(other.header("x-variant"), "a");
}

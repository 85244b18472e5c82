//! End to end: who the client is. The node believes `Forwarded` and
//! `X-Forwarded-For` only from `[http] trusted_proxies`, and everything
//! keyed by client (rate limits, handlers through `outpost:edge/client`)
//! sees the same resolved address.

use outpost_tests::{Outpost, TempDir, artifacts, serve_config};

const OUTPOST: &str = env!("CARGO_BIN_EXE_outpost");

/// The `config-api` fixture behind a one-request-a-minute limit per client
/// on `/limited`, with `trusted` as the node's trusted proxies.
fn start(trusted: &str) -> (Outpost, TempDir) {
    let toml = format!(
        "[http]\ntrusted_proxies = [{trusted}]\n\
         [apps.c]\ncomponent = {:?}\nroutes = [\"/\"]\n\
         [apps.c.rate_limits.per_client]\nrequests = 1\nperiod_s = 60\nburst = 1\n\
         [[apps.c.edge]]\npath = \"/limited\"\nrate_limit = \"per_client\"\n",
        artifacts::CONFIG_API
    );
    serve_config(OUTPOST.as_ref(), &toml)
}

#[test]
fn forwarding_fields_from_an_untrusted_peer_are_ignored() {
    let (node, _dir) = start("");
    let reply = node.request("GET", "/client", &[("x-forwarded-for", "203.0.113.9")]);
    let id = reply.header("x-request-id").to_owned();
    assert_eq!(
        reply.text(),
        format!("127.0.0.1 {id}"),
        "the socket's address and the request id"
    );
    // A client cannot escape its rate limit by claiming to be another.
    let spoofed = |ip: &str| {
        node.request("GET", "/limited", &[("x-forwarded-for", ip)])
            .status
    };
    assert_eq!([spoofed("203.0.113.1"), spoofed("203.0.113.2")], [200, 429]);
}

#[test]
fn behind_a_trusted_proxy_the_forwarded_client_is_the_client() {
    let (node, _dir) = start("\"127.0.0.0/8\", \"10.0.0.0/8\"");
    let text = |headers: &[(&str, &str)]| {
        let text = node.request("GET", "/client", headers).text();
        text.split(' ').next().unwrap().to_owned()
    };
    // The nearest address that is not a trusted proxy: what the client
    // wrote itself (6.6.6.6) lies beyond it.
    assert_eq!(
        text(&[("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.1.2.3")]),
        "203.0.113.9"
    );
    assert_eq!(
        text(&[("forwarded", "for=\"[2001:db8::7]:4711\";proto=https")]),
        "2001:db8::7"
    );
    assert_eq!(text(&[]), "127.0.0.1", "no field: the proxy itself");
    // Each forwarded client has its own rate limit.
    let from = |ip: &str| {
        node.request("GET", "/limited", &[("x-forwarded-for", ip)])
            .status
    };
    assert_eq!([from("203.0.113.1"), from("203.0.113.2")], [200, 200]);
    assert_eq!(from("203.0.113.1"), 429);
}

#[test]
fn a_bad_trusted_range_is_refused_at_start_naming_the_line() {
    let dir = outpost_tests::temp_dir();
    let config = outpost_tests::write_config(
        dir.path(),
        "[http]\ntrusted_proxies = [\"10.0.0.0/33\"]\n[apps.c]\ncomponent = \"x.wasm\"\nroutes = [\"/\"]\n",
    );
    let (status, stderr) = outpost_tests::run_to_exit(
        OUTPOST.as_ref(),
        &["serve", "--config", config.to_str().unwrap()],
    )
    .unwrap();
    assert!(!status.success());
    assert!(
        stderr.contains("node.toml:2: http.trusted_proxies: \"10.0.0.0/33\" is not a CIDR range"),
        "{stderr}"
    );
}

#[test]
fn handlers_learn_where_clients_are_from_the_operators_maxmind_databases() {
    use outpost_tests::mmdb::{Value, database};
    let dir = outpost_tests::temp_dir();
    let city = database(vec![
        (
            "81.2.69.0",
            24,
            Value::Map(vec![
                (
                    "city",
                    Value::Map(vec![(
                        "names",
                        Value::Map(vec![("en", Value::Str("London"))]),
                    )]),
                ),
                ("continent", Value::Map(vec![("code", Value::Str("EU"))])),
                ("country", Value::Map(vec![("iso_code", Value::Str("GB"))])),
            ]),
        ),
        (
            "2001:db8::",
            32,
            Value::Map(vec![(
                "country",
                Value::Map(vec![("iso_code", Value::Str("JP"))]),
            )]),
        ),
    ]);
    let asn = database(vec![(
        "81.2.69.0",
        24,
        Value::Map(vec![
            ("autonomous_system_number", Value::U32(64_512)),
            ("autonomous_system_organization", Value::Str("Test Net")),
        ]),
    )]);
    std::fs::write(dir.path().join("city.mmdb"), city).unwrap();
    std::fs::write(dir.path().join("asn.mmdb"), asn).unwrap();
    outpost_tests::write_config(
        dir.path(),
        &format!(
            "[geo]\ndatabases = [\"city.mmdb\", \"asn.mmdb\"]\n\
             [http]\ntrusted_proxies = [\"127.0.0.1\"]\n\
             [apps.c]\ncomponent = {:?}\nroutes = [\"/\"]\n\
             [apps.geo]\ncomponent = {:?}\nroutes = [\"geo.example/\"]\n\
             [apps.geo.variables]\ndeny_countries = \"KP, GB\"\n",
            artifacts::CONFIG_API,
            artifacts::GEO_BLOCK
        ),
    );
    let node = outpost_tests::serve_dir(OUTPOST.as_ref(), dir.path());
    let geo = |ip: &str| {
        node.request("GET", "/geo", &[("x-forwarded-for", ip)])
            .text()
    };
    assert_eq!(
        geo("81.2.69.160"),
        "GB EU London 64512 Test Net",
        "both databases, merged"
    );
    assert_eq!(geo("2001:db8:1::5"), "JP - - - -");
    assert_eq!(geo("198.51.100.1"), "none", "listed in neither");
    assert_eq!(node.request("GET", "/geo", &[]).text(), "none", "127.0.0.1");
    // The geo-block example, denying GB, on another host.
    let blocked = |ip: &str| {
        node.request(
            "GET",
            "/",
            &[("host", "geo.example"), ("x-forwarded-for", ip)],
        )
    };
    let refused = blocked("81.2.69.160");
    assert_eq!(refused.status, 403);
    assert_eq!(refused.text(), "not available from GB\n");
    assert_eq!(blocked("2001:db8::1").text(), "welcome from JP: /\n");
    assert_eq!(blocked("198.51.100.1").status, 200, "unknown = allow");
    drop(node);

    // A database that is not one stops the start, naming it.
    std::fs::write(dir.path().join("asn.mmdb"), b"not a database").unwrap();
    let (status, stderr) = outpost_tests::run_to_exit(
        OUTPOST.as_ref(),
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--config",
            dir.path().join("node.toml").to_str().unwrap(),
        ],
    )
    .unwrap();
    assert!(!status.success());
    assert!(
        stderr.contains("asn.mmdb: not a readable MaxMind database"),
        "{stderr}"
    );
}

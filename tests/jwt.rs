//! End to end: JWT policies, checked by `[[edge]]` rules before any
//! instance exists and by handlers through `outpost:edge/jwt` (the
//! `jwt-api` fixture). Every token and public JWK here is made by PyJWT
//! (`tests/jose/mint.py`), not by the crate the node verifies with.

use outpost_tests::jose::{mint, mint_one};
use outpost_tests::origin::Origin;
use outpost_tests::{Outpost, Reply, TempDir, artifacts, serve_config};
use serde_json::{Value, json};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const OUTPOST: &str = env!("CARGO_BIN_EXE_outpost");
const TOKEN: &str = "op_jwt_test_token";
const ISSUER: &str = "https://auth.example.com/";
const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../host/src/jwt/testdata");

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims every policy here accepts, for subject `sub`.
fn claims(sub: &str) -> Value {
    json!({"iss": ISSUER, "aud": "api", "sub": sub, "exp": now() + 600})
}

/// `claims("user-1")` with `field` set to `value`.
fn claims_with(field: &str, value: Value) -> Value {
    let mut claims = claims("user-1");
    claims[field] = value;
    claims
}

fn public_pem(name: &str) -> String {
    std::fs::read_to_string(format!("{KEYS}/{name}.pub")).unwrap()
}

/// node.toml's admin section and the `[apps.j]` head, with extra config
/// before the apps.
fn node_toml(before_apps: &str, app: &str) -> String {
    format!(
        "{before_apps}\
         [admin]\nlisten = \"127.0.0.1:0\"\nstate_dir = \"state\"\n\
         [[admin.tokens]]\nname = \"ci\"\nsha256 = \"{}\"\nscopes = [\"read\", \"deploy\"]\n\
         [apps.j]\ncomponent = {:?}\nroutes = [\"/\"]\n{app}",
        outpost_store::sha256_hex(TOKEN.as_bytes()),
        artifacts::JWT_API,
    )
}

/// App `j` with policy `main` (inline keys for RS256, PS256, ES256 and
/// EdDSA, claims forwarded) over `/api`, policy `cookie` (token from a
/// cookie) over `/cookie`, and a per-subject rate limit over `/limited`.
fn start() -> (Outpost, TempDir) {
    let key = |kid: &str, alg: &str, file: &str| {
        format!(
            "{{ kid = {kid:?}, alg = {alg:?}, pem = {:?} }}",
            public_pem(file)
        )
    };
    let app = format!(
        "[apps.j.jwt.main]\nissuer = {ISSUER:?}\naudiences = [\"api\"]\n\
         algorithms = [\"RS256\", \"PS256\", \"ES256\", \"EdDSA\"]\n\
         keys = [{}, {}, {}, {}]\n\
         required_claims = [\"sub\"]\nforward_claims = \"x-jwt-claims\"\nleeway_s = 30\n\
         [apps.j.jwt.cookie]\nissuer = {ISSUER:?}\naudiences = [\"api\"]\nalgorithms = [\"ES256\"]\n\
         keys = [{}]\ntoken = \"cookie:session\"\n\
         [apps.j.rate_limits.per_subject]\nrequests = 1\nperiod_s = 60\nburst = 2\nkey = \"jwt:sub\"\n\
         [[apps.j.edge]]\npath = \"/api\"\njwt = \"main\"\n\
         [[apps.j.edge]]\npath = \"/cookie\"\njwt = \"cookie\"\n\
         [[apps.j.edge]]\npath = \"/limited\"\njwt = \"main\"\nrate_limit = \"per_subject\"\n",
        key("r", "RS256", "rsa"),
        key("p", "PS256", "rsa"),
        key("e", "ES256", "ec"),
        key("d", "EdDSA", "ed"),
        key("e", "ES256", "ec"),
    );
    serve_config(OUTPOST.as_ref(), &node_toml("", &app))
}

fn bearer(node: &Outpost, path: &str, token: &str) -> Reply {
    node.request(
        "GET",
        path,
        &[("authorization", &format!("Bearer {token}"))],
    )
}

/// Requests app `j`'s handler has served (instances run).
fn handled(node: &Outpost) -> u64 {
    node.admin_stats(TOKEN)["apps"][0]["requests"]
        .as_u64()
        .expect("a request count")
}

#[test]
fn valid_tokens_of_every_algorithm_pass_and_their_claims_reach_the_handler_unforgeably() {
    let (node, _dir) = start();
    let tokens = mint(&json!([
        {"sign": "RS256", "key": "rsa", "kid": "r", "claims": claims("rs")},
        {"sign": "PS256", "key": "rsa", "kid": "p", "claims": claims("ps")},
        {"sign": "ES256", "key": "ec", "kid": "e", "claims": claims("es")},
        {"sign": "EdDSA", "key": "ed", "kid": "d", "claims": claims("ed")},
    ]));
    for (token, sub) in tokens.iter().zip(["rs", "ps", "es", "ed"]) {
        let reply = node.request(
            "GET",
            "/api/claims",
            &[
                ("authorization", &format!("Bearer {token}")),
                ("x-jwt-claims", r#"{"sub":"admin"}"#),
            ],
        );
        assert_eq!(reply.status, 200, "{sub}: {}", reply.text());
        let forwarded: Value = serde_json::from_str(&reply.text()).expect("claims as JSON");
        assert_eq!(
            forwarded["sub"], sub,
            "the verified claims, not the client's"
        );
        assert_eq!(forwarded["iss"], ISSUER);
    }
    // Outside every rule, a client's copy of the header is removed too.
    let open = node.request(
        "GET",
        "/open/claims",
        &[("x-jwt-claims", r#"{"sub":"admin"}"#)],
    );
    assert_eq!(open.text(), "none");
    // A token in the cookie the policy names.
    let cookie = format!("theme=dark; session={}", tokens[2]);
    let reply = node.request("GET", "/cookie/x", &[("cookie", &cookie)]);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let bearer_only = bearer(&node, "/cookie/x", &tokens[2]);
    assert_eq!(
        bearer_only.status, 401,
        "the cookie policy reads the cookie"
    );
}

#[test]
fn missing_and_hostile_tokens_get_401_with_a_challenge_before_any_instance() {
    let (node, _dir) = start();
    let missing = node.request("GET", "/api/x", &[]);
    assert_eq!(missing.status, 401);
    assert_eq!(missing.header("www-authenticate"), "Bearer realm=\"main\"");
    assert_eq!(missing.header("x-request-id").len(), 16);

    let attacks = [
        (
            "alg none",
            json!({"forge": "none", "alg": "none", "kid": "r", "claims": claims("x")}),
        ),
        (
            "alg None",
            json!({"forge": "none", "alg": "None", "kid": "r", "claims": claims("x")}),
        ),
        (
            "alg NONE",
            json!({"forge": "none", "alg": "NONE", "kid": "r", "claims": claims("x")}),
        ),
        (
            "HS256 with the RSA public key as secret",
            json!({"forge": "hmac-with-rsa-public", "alg": "HS256", "kid": "r", "claims": claims("x")}),
        ),
        (
            "expired beyond the leeway",
            json!({"sign": "ES256", "key": "ec", "kid": "e", "claims": claims_with("exp", json!(now() - 120))}),
        ),
        (
            "not yet valid beyond the leeway",
            json!({"sign": "ES256", "key": "ec", "kid": "e", "claims": claims_with("nbf", json!(now() + 600))}),
        ),
        (
            "wrong audience",
            json!({"sign": "ES256", "key": "ec", "kid": "e", "claims": claims_with("aud", json!("other"))}),
        ),
        (
            "wrong issuer",
            json!({"sign": "ES256", "key": "ec", "kid": "e", "claims": claims_with("iss", json!("https://evil.example/"))}),
        ),
        (
            "unknown kid",
            json!({"sign": "ES256", "key": "ec", "kid": "nobody", "claims": claims("x")}),
        ),
        (
            "a key offered by jwk",
            json!({"sign": "ES256", "key": "ec", "kid": "e", "claims": claims("x"),
                   "headers": {"jwk": {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}}}),
        ),
        (
            "a key offered by jku",
            json!({"sign": "ES256", "key": "ec", "kid": "e", "claims": claims("x"),
                   "headers": {"jku": "https://evil.example/jwks.json"}}),
        ),
        (
            "a key offered by x5u",
            json!({"sign": "ES256", "key": "ec", "kid": "e", "claims": claims("x"),
                   "headers": {"x5u": "https://evil.example/cert.pem"}}),
        ),
        (
            "a crit extension",
            json!({"sign": "ES256", "key": "ec", "kid": "e", "claims": claims("x"),
                   "headers": {"crit": ["exp-ext"], "exp-ext": 1}}),
        ),
        (
            "duplicate claims",
            json!({"raw_payload": format!(
                "{{\"iss\":\"{ISSUER}\",\"aud\":\"api\",\"sub\":\"user\",\"sub\":\"admin\",\"exp\":{}}}",
                now() + 600
            ), "sign": "ES256", "key": "ec", "kid": "e"}),
        ),
        (
            "no sub although required",
            json!({"sign": "ES256", "key": "ec", "kid": "e", "claims": {"iss": ISSUER, "aud": "api", "exp": now() + 600}}),
        ),
        (
            "an algorithm the policy does not pin",
            json!({"sign": "HS256", "key": "secret:a-secret-the-policy-never-heard-of", "kid": "e", "claims": claims("x")}),
        ),
        (
            "over 8 KiB",
            json!({"sign": "ES256", "key": "ec", "kid": "e", "claims": claims_with("pad", json!("x".repeat(9000)))}),
        ),
    ];
    let jobs: Vec<Value> = attacks.iter().map(|(_, job)| job.clone()).collect();
    let tokens = mint(&Value::Array(jobs));
    let mut malformed: Vec<(&str, String)> = vec![
        ("not base64", "@@@.@@@.@@@".into()),
        ("two parts", "abc.def".into()),
        (
            "not JSON",
            format!("{}.{}.sig", base64_url("nope"), base64_url("{}")),
        ),
    ];
    let mut all: Vec<(&str, String)> = attacks.iter().map(|(name, _)| *name).zip(tokens).collect();
    all.append(&mut malformed);
    for (name, token) in &all {
        let reply = bearer(&node, "/api/x", token);
        assert_eq!(reply.status, 401, "{name}: {}", reply.text());
        let challenge = reply.header("www-authenticate");
        assert!(
            challenge.starts_with(
                "Bearer realm=\"main\", error=\"invalid_token\", error_description=\""
            ),
            "{name}: {challenge}"
        );
    }
    assert_eq!(handled(&node), 0, "no instance ran for a refused token");
    assert!(
        node.logs().lines().count() < 50,
        "refusals are not logged one by one:\n{}",
        node.logs()
    );
}

fn base64_url(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

#[test]
fn a_rate_limit_keyed_by_a_claim_counts_each_subject_apart_after_the_token_is_verified() {
    let (node, _dir) = start();
    let tokens = mint(&json!([
        {"sign": "ES256", "key": "ec", "kid": "e", "claims": claims("alice")},
        {"sign": "ES256", "key": "ec", "kid": "e", "claims": claims("bob")},
        {"sign": "ES256", "key": "ec", "kid": "e", "claims": claims_with("exp", json!(now() - 3600))},
    ]));
    let status = |token: &str| bearer(&node, "/limited/x", token).status.as_u16();
    // An invalid token is refused before the limit counts it.
    assert_eq!([status(&tokens[2]), status(&tokens[2])], [401, 401]);
    assert_eq!(
        [status(&tokens[0]), status(&tokens[0]), status(&tokens[0])],
        [200, 200, 429]
    );
    assert_eq!(status(&tokens[1]), 200, "another subject has its own burst");
    let refused = bearer(&node, "/limited/x", &tokens[0]);
    assert_eq!(
        refused.header("ratelimit-policy"),
        "\"per_subject\";q=1;w=60"
    );
}

#[test]
fn jwks_keys_are_fetched_on_first_use_and_again_for_a_new_kid_at_most_once_per_interval() {
    let origin = Origin::http();
    let jwk = |file: &str, kid: &str| -> Value {
        serde_json::from_str(&mint_one(json!({"jwk": file, "kid": kid}))).unwrap()
    };
    let (rsa, ec) = (jwk("rsa", "k1"), jwk("ec", "k2"));
    origin.set_jwks(&json!({"keys": [rsa.clone()]}).to_string());
    let app = format!(
        "[apps.j.jwt.main]\nissuer = {ISSUER:?}\naudiences = [\"api\"]\nalgorithms = [\"RS256\", \"ES256\"]\n\
         jwks_url = \"http://{}/jwks\"\njwks_refresh_min_s = 1\n\
         [[apps.j.edge]]\npath = \"/api\"\njwt = \"main\"\n",
        origin.addr()
    );
    let (node, _dir) = serve_config(
        OUTPOST.as_ref(),
        &node_toml("[outbound]\nallow_private = [\"127.0.0.0/8\"]\n", &app),
    );
    let tokens = mint(&json!([
        {"sign": "RS256", "key": "rsa", "kid": "k1", "claims": claims("one")},
        {"sign": "ES256", "key": "ec", "kid": "k2", "claims": claims("two")},
    ]));
    assert_eq!(
        origin.jwks_fetches(),
        0,
        "fetched on first use, not at load"
    );
    assert_eq!(bearer(&node, "/api/x", &tokens[0]).status, 200);
    assert_eq!(origin.jwks_fetches(), 1);
    assert_eq!(bearer(&node, "/api/x", &tokens[0]).status, 200);
    assert_eq!(origin.jwks_fetches(), 1, "the set is kept while fresh");

    // Rotation: k2 appears in the set. Within the interval an unknown kid
    // is refused without asking again; after it, one fetch finds k2.
    origin.set_jwks(&json!({"keys": [rsa, ec]}).to_string());
    assert_eq!(bearer(&node, "/api/x", &tokens[1]).status, 401);
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(bearer(&node, "/api/x", &tokens[1]).status, 200);
    assert_eq!(origin.jwks_fetches(), 2);

    // A flood of made-up kids costs the identity provider at most one
    // fetch per interval.
    std::thread::sleep(Duration::from_millis(1100));
    let flood: Vec<Value> = (0..20)
        .map(|i| json!({"sign": "ES256", "key": "ec", "kid": format!("made-up-{i}"), "claims": claims("x")}))
        .collect();
    for token in mint(&Value::Array(flood)) {
        assert_eq!(bearer(&node, "/api/x", &token).status, 401);
    }
    assert!(
        origin.jwks_fetches() <= 4,
        "{} fetches",
        origin.jwks_fetches()
    );
}

#[test]
fn a_jwks_on_a_private_address_is_not_fetched_unless_the_operator_allows_it() {
    let origin = Origin::http();
    origin.set_jwks(
        &json!({"keys": [serde_json::from_str::<Value>(&mint_one(json!({"jwk": "ec", "kid": "k"}))).unwrap()]})
            .to_string(),
    );
    let app = format!(
        "[apps.j.jwt.main]\nalgorithms = [\"ES256\"]\njwks_url = \"http://{}/jwks\"\n\
         [[apps.j.edge]]\npath = \"/\"\njwt = \"main\"\n",
        origin.addr()
    );
    let (node, _dir) = serve_config(OUTPOST.as_ref(), &node_toml("", &app));
    let token = mint_one(json!({"sign": "ES256", "key": "ec", "kid": "k", "claims": claims("x")}));
    let reply = bearer(&node, "/x", &token);
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert!(
        reply.text().contains("keys of JWT policy \"main\""),
        "{}",
        reply.text()
    );
    assert_eq!(reply.header("retry-after"), "5");
    assert_eq!(origin.accepted(), 0, "no connection to the private address");
    assert!(node.wait_for_log("private"), "{}", node.logs());
}

#[test]
fn handlers_verify_tokens_through_outpost_edge_jwt_and_hs_secrets_come_from_the_node() {
    let (node, _dir) = start();
    let tokens = mint(&json!([
        {"sign": "EdDSA", "key": "ed", "kid": "d", "claims": claims("guest-user")},
        {"sign": "EdDSA", "key": "ed", "kid": "d", "claims": claims_with("exp", json!(now() - 3600))},
    ]));
    let verify = |policy: &str, token: &str| {
        node.request(
            "GET",
            &format!("/open/verify?policy={policy}"),
            &[("x-token", token)],
        )
    };
    let ok = verify("main", &tokens[0]);
    assert_eq!(
        (ok.status.as_u16(), ok.text()),
        (200, "sub=guest-user\n".into())
    );
    let expired = verify("main", &tokens[1]);
    assert_eq!(
        (expired.status.as_u16(), expired.text()),
        (401, "the token has expired\n".into())
    );
    let unknown = verify("nope", &tokens[0]);
    assert_eq!(unknown.status, 503);
    assert!(
        unknown.text().contains("no JWT policy \"nope\""),
        "{}",
        unknown.text()
    );

    // An HS policy's key is a secret the node holds: deployed with the
    // policy, the app answers 503 until the secret is set.
    let manifest = "schema = 1\nname = \"hs\"\nroutes = [\"hs.example/\"]\n\
                    [jwt.hs]\nalgorithms = [\"HS256\"]\nhs_secret = \"secret:jwt_key\"\n\
                    [[edge]]\njwt = \"hs\"\n";
    node.deploy(TOKEN, "hs", manifest, artifacts::JWT_API.as_ref());
    let secret = "a-shared-secret-of-32-bytes-long";
    let hs = mint(&json!([
        {"sign": "HS256", "key": format!("secret:{secret}"), "claims": {"sub": "h", "exp": now() + 600}},
        {"sign": "HS256", "key": "secret:another-secret-of-32-bytes-long", "claims": {"sub": "h", "exp": now() + 600}},
    ]));
    let on_hs = |token: &str| {
        node.request(
            "GET",
            "/x",
            &[
                ("host", "hs.example"),
                ("authorization", &format!("Bearer {token}")),
            ],
        )
    };
    let unset = on_hs(&hs[0]);
    assert_eq!(unset.status, 503, "{}", unset.text());
    let put = node.admin("PUT", "/v1/apps/hs/secrets/jwt_key", TOKEN, secret);
    assert!(put.status.is_success(), "{}", put.text());
    assert_eq!(on_hs(&hs[0]).status, 200);
    assert_eq!(on_hs(&hs[1]).status, 401, "signed with another secret");
    assert!(
        !node.logs().contains(secret),
        "the secret never reaches a log"
    );
}

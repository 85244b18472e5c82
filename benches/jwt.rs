//! Per-call cost of JWT verification, in-process: what a `[[edge]]` JWT
//! rule will add to a request (header and claims parsing with the
//! duplicate checks, key selection, signature, time/iss/aud checks).
//!
//!     cargo bench -p outpost-benches --bench jwt
//!     cargo bench -p outpost-benches --bench jwt -- --rust-crypto
//!
//! The node checks signatures with its own ring-backed provider
//! (`outpost_host::jwt::crypto`); `--rust-crypto` measures jsonwebtoken's
//! RustCrypto provider instead, for comparison.
//!
//! Keys are the verifier's test keys (`runtime/host/src/jwt/testdata`).

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode, get_current_timestamp};
use outpost_host::jwt::{DEFAULT_MAX_TOKEN_BYTES, JwtVerifier, VerifyingKey};
use std::hint::black_box;
use std::time::Instant;

const RUNS: usize = 5;
const SECRET: &[u8] = b"a-test-secret-of-32-bytes-length";
const RSA_PRIVATE: &str = include_str!("../runtime/host/src/jwt/testdata/rsa.pem");
const RSA_PUBLIC: &str = include_str!("../runtime/host/src/jwt/testdata/rsa.pub");
const EC_PRIVATE: &str = include_str!("../runtime/host/src/jwt/testdata/ec.pem");
const EC_PUBLIC: &str = include_str!("../runtime/host/src/jwt/testdata/ec.pub");
const ED_PRIVATE: &str = include_str!("../runtime/host/src/jwt/testdata/ed.pem");
const ED_PUBLIC: &str = include_str!("../runtime/host/src/jwt/testdata/ed.pub");

fn main() {
    if std::env::args().any(|arg| arg == "--rust-crypto") {
        jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER
            .install_default()
            .expect("no provider is installed yet");
    } else {
        outpost_host::jwt::crypto::install();
    }
    let cases = [
        (
            "HS256",
            Algorithm::HS256,
            EncodingKey::from_secret(SECRET).unwrap(),
            VerifyingKey::from_secret(Some("k".into()), Algorithm::HS256, SECRET).unwrap(),
            200_000,
        ),
        (
            "RS256 (2048-bit)",
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
            VerifyingKey::from_pem(Some("k".into()), Algorithm::RS256, RSA_PUBLIC).unwrap(),
            20_000,
        ),
        (
            "ES256",
            Algorithm::ES256,
            EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap(),
            VerifyingKey::from_pem(Some("k".into()), Algorithm::ES256, EC_PUBLIC).unwrap(),
            5_000,
        ),
        (
            "EdDSA (Ed25519)",
            Algorithm::EdDSA,
            EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()).unwrap(),
            VerifyingKey::from_pem(Some("k".into()), Algorithm::EdDSA, ED_PUBLIC).unwrap(),
            20_000,
        ),
    ];
    let claims = serde_json::json!({
        "iss": "https://auth.example.com/",
        "aud": "api",
        "sub": "user-1",
        "exp": get_current_timestamp() + 3600,
    });
    println!("{:<20}{:>14}", "algorithm", "µs per verify");
    for (name, alg, signing, verifying, calls) in cases {
        let header = Header {
            kid: Some("k".into()),
            ..Header::new(alg)
        };
        let token = encode(&header, &claims, &signing).unwrap();
        let verifier = JwtVerifier {
            issuer: Some("https://auth.example.com/".into()),
            audiences: vec!["api".into()],
            algorithms: vec![alg],
            keys: vec![verifying],
            leeway_s: 30,
            required_claims: vec!["sub".into()],
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
        };
        verifier.verify(&token).expect("the token verifies");
        let mut runs: Vec<f64> = (0..RUNS)
            .map(|_| {
                let started = Instant::now();
                for _ in 0..calls {
                    black_box(verifier.verify(black_box(&token)).is_ok());
                }
                started.elapsed().as_secs_f64() * 1e6 / f64::from(calls)
            })
            .collect();
        runs.sort_by(f64::total_cmp);
        println!("{name:<20}{:>14.2}", runs[RUNS / 2]);
    }
}

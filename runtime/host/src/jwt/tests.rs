//! The verifier against tokens minted here with `jsonwebtoken`'s signer
//! (and, for what a well-behaved signer will not produce, by hand).

use super::*;
use jsonwebtoken::{EncodingKey, Header, encode, get_current_timestamp};
use serde_json::json;

const SECRET: &[u8] = b"a-test-secret-of-32-bytes-length";
const RSA_PRIVATE: &str = include_str!("testdata/rsa.pem");
const RSA_PUBLIC: &str = include_str!("testdata/rsa.pub");
const EC_PRIVATE: &str = include_str!("testdata/ec.pem");
const EC_PUBLIC: &str = include_str!("testdata/ec.pub");
const ED_PRIVATE: &str = include_str!("testdata/ed.pem");
const ED_PUBLIC: &str = include_str!("testdata/ed.pub");

fn verifier() -> JwtVerifier {
    crypto::install();
    JwtVerifier {
        issuer: Some("https://auth.example.com/".into()),
        audiences: vec!["api".into()],
        algorithms: vec![
            Algorithm::HS256,
            Algorithm::RS256,
            Algorithm::PS256,
            Algorithm::ES256,
            Algorithm::EdDSA,
        ],
        keys: vec![
            VerifyingKey::from_secret(Some("hs".into()), Algorithm::HS256, SECRET).unwrap(),
            VerifyingKey::from_pem(Some("rsa".into()), Algorithm::RS256, RSA_PUBLIC).unwrap(),
            VerifyingKey::from_pem(Some("pss".into()), Algorithm::PS256, RSA_PUBLIC).unwrap(),
            VerifyingKey::from_pem(Some("ec".into()), Algorithm::ES256, EC_PUBLIC).unwrap(),
            VerifyingKey::from_pem(Some("ed".into()), Algorithm::EdDSA, ED_PUBLIC).unwrap(),
        ],
        leeway_s: 30,
        required_claims: vec!["sub".into()],
        max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
    }
}

fn claims() -> Value {
    json!({
        "iss": "https://auth.example.com/",
        "aud": "api",
        "sub": "user-1",
        "exp": get_current_timestamp() + 600,
    })
}

fn mint(alg: Algorithm, kid: &str, claims: &Value) -> String {
    let key = match alg {
        Algorithm::HS256 => EncodingKey::from_secret(SECRET).unwrap(),
        Algorithm::RS256 | Algorithm::PS256 => {
            EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap()
        }
        Algorithm::ES256 => EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap(),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()).unwrap(),
        other => panic!("no test key for {other:?}"),
    };
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    crypto::install();
    encode(&header, claims, &key).unwrap()
}

/// A token with exactly this header and payload text, HS256-signed with
/// the test secret.
fn by_hand(header: &str, payload: &str) -> String {
    crypto::install();
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let signature = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &EncodingKey::from_secret(SECRET).unwrap(),
        Algorithm::HS256,
    )
    .unwrap();
    format!("{message}.{signature}")
}

#[test]
fn valid_tokens_of_every_pinned_algorithm_are_accepted() {
    let verifier = verifier();
    for (alg, kid) in [
        (Algorithm::HS256, "hs"),
        (Algorithm::RS256, "rsa"),
        (Algorithm::PS256, "pss"),
        (Algorithm::ES256, "ec"),
        (Algorithm::EdDSA, "ed"),
    ] {
        let claims = verifier.verify(&mint(alg, kid, &claims())).unwrap();
        assert_eq!(claims["sub"], "user-1", "{alg:?}");
    }
}

#[test]
fn none_in_any_spelling_and_unpinned_algorithms_are_refused() {
    let verifier = verifier();
    let payload = claims().to_string();
    for none in ["none", "None", "NONE", "nOnE"] {
        let token = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(format!("{{\"alg\":\"{none}\"}}")),
            URL_SAFE_NO_PAD.encode(&payload)
        );
        assert_eq!(
            verifier.verify(&token),
            Err(JwtError::AlgorithmNotAllowed),
            "{none}"
        );
    }
    let mut only_rs = JwtVerifier {
        algorithms: vec![Algorithm::RS256],
        ..verifier
    };
    assert_eq!(
        only_rs.verify(&mint(Algorithm::HS256, "hs", &claims())),
        Err(JwtError::AlgorithmNotAllowed)
    );
    only_rs.algorithms.push(Algorithm::ES256);
    assert!(
        only_rs
            .verify(&mint(Algorithm::ES256, "ec", &claims()))
            .is_ok()
    );
}

#[test]
fn an_hs256_token_signed_with_the_rsa_public_key_finds_no_key() {
    let verifier = verifier();
    let header = Header {
        kid: Some("rsa".into()),
        ..Header::new(Algorithm::HS256)
    };
    let forged = encode(
        &header,
        &claims(),
        &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()).unwrap(),
    )
    .unwrap();
    assert_eq!(verifier.verify(&forged), Err(JwtError::UnknownKey));
}

#[test]
fn keys_offered_by_the_token_and_unknown_kids_are_refused() {
    let verifier = verifier();
    assert_eq!(
        verifier.verify(&mint(Algorithm::RS256, "other", &claims())),
        Err(JwtError::UnknownKey)
    );
    let payload = claims().to_string();
    for field in [
        r#""jku":"https://evil.example/jwks""#,
        r#""x5u":"https://evil.example/cert""#,
        r#""jwk":{"kty":"oct","k":"c2VjcmV0"}"#,
        r#""x5c":["MIIB"]"#,
    ] {
        let token = by_hand(
            &format!(r#"{{"alg":"HS256","kid":"hs",{field}}}"#),
            &payload,
        );
        assert_eq!(
            verifier.verify(&token),
            Err(JwtError::UnknownKey),
            "{field}"
        );
    }
    let crit = by_hand(r#"{"alg":"HS256","kid":"hs","crit":["exp"]}"#, &payload);
    assert!(
        matches!(verifier.verify(&crit), Err(JwtError::Malformed(why)) if why.contains("crit"))
    );
    // The hand-made signer is right: without the extra field it passes.
    assert!(
        verifier
            .verify(&by_hand(r#"{"alg":"HS256","kid":"hs"}"#, &payload))
            .is_ok()
    );
}

#[test]
fn time_issuer_audience_and_required_claims_are_checked() {
    let verifier = verifier();
    let now = get_current_timestamp();
    let with = |field: &str, value: Value| {
        let mut claims = claims();
        claims[field] = value;
        mint(Algorithm::ES256, "ec", &claims)
    };
    assert_eq!(
        verifier.verify(&with("exp", json!(now - 120))),
        Err(JwtError::Expired)
    );
    assert!(
        verifier.verify(&with("exp", json!(now - 10))).is_ok(),
        "within the leeway"
    );
    assert_eq!(
        verifier.verify(&with("nbf", json!(now + 120))),
        Err(JwtError::NotYetValid)
    );
    assert_eq!(
        verifier.verify(&with("iss", json!("https://evil.example/"))),
        Err(JwtError::BadIssuer)
    );
    assert_eq!(
        verifier.verify(&with("aud", json!("other"))),
        Err(JwtError::BadAudience)
    );
    assert!(
        verifier
            .verify(&with("aud", json!(["other", "api"])))
            .is_ok()
    );
    let mut no_sub = claims();
    no_sub.as_object_mut().unwrap().remove("sub");
    assert_eq!(
        verifier.verify(&mint(Algorithm::ES256, "ec", &no_sub)),
        Err(JwtError::Malformed("no `sub` claim".into()))
    );
}

#[test]
fn bad_signatures_malformed_parts_duplicates_and_oversized_tokens_are_refused() {
    let verifier = verifier();
    let token = mint(Algorithm::RS256, "rsa", &claims());
    let (body, signature) = token.rsplit_once('.').unwrap();
    let flipped = if signature.starts_with('A') { "B" } else { "A" };
    let tampered = format!("{body}.{flipped}{}", &signature[1..]);
    assert_eq!(verifier.verify(&tampered), Err(JwtError::BadSignature));
    for malformed in ["abc", "a.b", "a.b.c.d", "!!!.e30.sig", "e30.!!!.sig"] {
        assert!(
            matches!(verifier.verify(malformed), Err(JwtError::Malformed(_))),
            "{malformed}"
        );
    }
    let payload = claims().to_string();
    let duplicated = payload.replacen(
        "\"sub\":\"user-1\"",
        "\"sub\":\"user-1\",\"sub\":\"admin\"",
        1,
    );
    let token = by_hand(r#"{"alg":"HS256","kid":"hs"}"#, &duplicated);
    assert!(
        matches!(verifier.verify(&token), Err(JwtError::Malformed(why)) if why.contains("twice")),
        "{:?}",
        verifier.verify(&token)
    );
    let twice_alg = by_hand(r#"{"alg":"HS256","alg":"none","kid":"hs"}"#, &payload);
    assert!(matches!(
        verifier.verify(&twice_alg),
        Err(JwtError::Malformed(_))
    ));
    let mut big = claims();
    big["pad"] = json!("x".repeat(9000));
    assert!(matches!(
        verifier.verify(&mint(Algorithm::HS256, "hs", &big)),
        Err(JwtError::Malformed(why)) if why.contains("longer than 8192")
    ));
}

#[test]
fn keys_load_from_jwk_with_their_own_algorithm() {
    let jwk = json!({
        "kty": "oct", "alg": "HS256", "kid": "j1",
        "k": URL_SAFE_NO_PAD.encode(SECRET),
    });
    let key = VerifyingKey::from_jwk(&jwk.to_string()).unwrap();
    assert_eq!(
        (key.kid.as_deref(), key.alg),
        (Some("j1"), Algorithm::HS256)
    );
    let no_alg = json!({"kty": "oct", "k": URL_SAFE_NO_PAD.encode(SECRET)});
    assert!(
        VerifyingKey::from_jwk(&no_alg.to_string())
            .unwrap_err()
            .contains("pinned")
    );
    assert!(VerifyingKey::from_pem(None, Algorithm::HS256, RSA_PUBLIC).is_err());
    assert!(VerifyingKey::from_pem(None, Algorithm::ES256, RSA_PUBLIC).is_err());
}

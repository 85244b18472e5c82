//! Signature checks for jsonwebtoken on `ring`, the library rustls already
//! links for TLS: one crypto library in the binary, and much faster checks
//! than RustCrypto's (P-256 several times over). Signing and JWK key
//! utilities, which the node never uses on the request path, stay with
//! jsonwebtoken's RustCrypto provider.

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{ErrorKind, Result};
use jsonwebtoken::jwk::{EllipticCurve, ThumbprintHash};
use jsonwebtoken::signature::{Error as SignatureError, Verifier};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::{hmac, signature};

/// The provider: verifiers on ring, the rest on RustCrypto.
static RING_PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: new_signer,
    verifier_factory: new_verifier,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key,
        rsa_pub_components_from_public_key,
        ec_pub_components_from_private_key,
        ed_pub_components_from_private_key,
        compute_digest,
    },
};

/// Makes [`RING_PROVIDER`] jsonwebtoken's provider for the process, unless
/// one is installed already (then that one stays: jsonwebtoken allows one).
pub fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = RING_PROVIDER.install_default();
    });
}

/// A key checked against one algorithm.
struct RingVerifier {
    alg: Algorithm,
    key: DecodingKey,
}

fn new_verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    if key.family() != alg.family() {
        return Err(ErrorKind::InvalidKeyFormat.into());
    }
    Ok(Box::new(RingVerifier {
        alg: *alg,
        key: key.clone(),
    }))
}

impl RingVerifier {
    fn public(
        &self,
        params: &'static dyn signature::VerificationAlgorithm,
        msg: &[u8],
        sig: &[u8],
    ) -> bool {
        let Ok(bytes) = self.key.try_get_as_bytes() else {
            return false;
        };
        signature::UnparsedPublicKey::new(params, bytes)
            .verify(msg, sig)
            .is_ok()
    }

    fn rsa(&self, params: &'static signature::RsaParameters, msg: &[u8], sig: &[u8]) -> bool {
        match self.key.kind() {
            DecodingKeyKind::SecretOrDer(der) => signature::UnparsedPublicKey::new(params, der)
                .verify(msg, sig)
                .is_ok(),
            DecodingKeyKind::RsaModulusExponent { n, e } => {
                signature::RsaPublicKeyComponents { n, e }
                    .verify(params, msg, sig)
                    .is_ok()
            }
        }
    }

    fn hmac(&self, alg: hmac::Algorithm, msg: &[u8], sig: &[u8]) -> bool {
        let Ok(secret) = self.key.try_get_as_bytes() else {
            return false;
        };
        hmac::verify(&hmac::Key::new(alg, secret), msg, sig).is_ok()
    }
}

impl Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, msg: &[u8], sig: &Vec<u8>) -> std::result::Result<(), SignatureError> {
        let valid = match self.alg {
            Algorithm::HS256 => self.hmac(hmac::HMAC_SHA256, msg, sig),
            Algorithm::HS384 => self.hmac(hmac::HMAC_SHA384, msg, sig),
            Algorithm::HS512 => self.hmac(hmac::HMAC_SHA512, msg, sig),
            Algorithm::ES256 => self.public(&signature::ECDSA_P256_SHA256_FIXED, msg, sig),
            Algorithm::ES384 => self.public(&signature::ECDSA_P384_SHA384_FIXED, msg, sig),
            Algorithm::EdDSA => self.public(&signature::ED25519, msg, sig),
            Algorithm::RS256 => self.rsa(&signature::RSA_PKCS1_2048_8192_SHA256, msg, sig),
            Algorithm::RS384 => self.rsa(&signature::RSA_PKCS1_2048_8192_SHA384, msg, sig),
            Algorithm::RS512 => self.rsa(&signature::RSA_PKCS1_2048_8192_SHA512, msg, sig),
            Algorithm::PS256 => self.rsa(&signature::RSA_PSS_2048_8192_SHA256, msg, sig),
            Algorithm::PS384 => self.rsa(&signature::RSA_PSS_2048_8192_SHA384, msg, sig),
            Algorithm::PS512 => self.rsa(&signature::RSA_PSS_2048_8192_SHA512, msg, sig),
            _ => false,
        };
        if valid {
            Ok(())
        } else {
            Err(SignatureError::new())
        }
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

// What the node does not do on the request path, delegated to RustCrypto.

fn rust_crypto() -> &'static CryptoProvider {
    &jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER
}

fn new_signer(alg: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    (rust_crypto().signer_factory)(alg, key)
}

fn rsa_pub_components_from_private_key(der: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    (rust_crypto().key_utils.rsa_pub_components_from_private_key)(der)
}

fn rsa_pub_components_from_public_key(der: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    (rust_crypto().key_utils.rsa_pub_components_from_public_key)(der)
}

fn ec_pub_components_from_private_key(
    der: &[u8],
    alg: Algorithm,
) -> Result<(EllipticCurve, Vec<u8>, Vec<u8>)> {
    (rust_crypto().key_utils.ec_pub_components_from_private_key)(der, alg)
}

fn ed_pub_components_from_private_key(der: &[u8], curve: &EllipticCurve) -> Result<Vec<u8>> {
    (rust_crypto().key_utils.ed_pub_components_from_private_key)(der, curve)
}

fn compute_digest(data: &[u8], hash: ThumbprintHash) -> Result<Vec<u8>> {
    (rust_crypto().key_utils.compute_digest)(data, hash)
}

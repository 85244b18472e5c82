"""Mints JWTs and JWKs for Outpost's end-to-end tests with PyJWT, an
implementation independent of the Rust crate the node verifies with.

Reads a JSON list of jobs on stdin and writes a JSON list of strings:

  {"sign": ALG, "key": "rsa"|"ec"|"ed"|"secret:TEXT", "kid": K, "claims": {...}, "headers": {...}}
      a token PyJWT signs;
  {"forge": "none"|"hmac-with-rsa-public", "alg": A, "kid": K, "claims": {...}}
      a token no honest signer makes: unsigned, or HMAC-signed with the
      RSA public key's PEM as the secret (key confusion);
  {"raw_payload": TEXT, "sign": ALG, "key": ..., "kid": K}
      a token PyJWT signs over a payload given verbatim (duplicate claims);
  {"jwk": "rsa"|"ec"|"ed", "kid": K, "alg": A}
      the public key as a JWK (JSON text).
"""

import base64
import hashlib
import hmac
import json
import pathlib
import sys

import jwt
from cryptography.hazmat.primitives import serialization
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

KEYS = pathlib.Path(__file__).resolve().parents[2] / "runtime/host/src/jwt/testdata"


def private(name):
    return serialization.load_pem_private_key((KEYS / f"{name}.pem").read_bytes(), None)


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signing_key(key):
    if key.startswith("secret:"):
        return key[len("secret:"):]
    return private(key)


def job(spec):
    if "jwk" in spec:
        public = private(spec["jwk"]).public_key()
        algorithm = {"rsa": RSAAlgorithm, "ec": ECAlgorithm, "ed": OKPAlgorithm}[spec["jwk"]]
        jwk = json.loads(algorithm.to_jwk(public))
        jwk["kid"] = spec["kid"]
        if spec.get("alg"):
            jwk["alg"] = spec["alg"]
        return json.dumps(jwk)
    if "forge" in spec:
        header = {"alg": spec["alg"], "typ": "JWT"}
        if spec.get("kid"):
            header["kid"] = spec["kid"]
        signing_input = (
            b64(json.dumps(header).encode()) + "." + b64(json.dumps(spec["claims"]).encode())
        )
        if spec["forge"] == "none":
            return signing_input + "."
        secret = (KEYS / "rsa.pub").read_bytes()
        signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        return signing_input + "." + b64(signature)
    if "raw_payload" in spec:
        return jwt.api_jws.encode(
            spec["raw_payload"].encode(),
            signing_key(spec["key"]),
            algorithm=spec["sign"],
            headers={"kid": spec["kid"]},
        )
    headers = dict(spec.get("headers", {}))
    if spec.get("kid"):
        headers["kid"] = spec["kid"]
    return jwt.encode(spec["claims"], signing_key(spec["key"]), algorithm=spec["sign"], headers=headers)


print(json.dumps([job(spec) for spec in json.load(sys.stdin)]))

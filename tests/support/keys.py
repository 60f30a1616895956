"""Signing keys generated in the test: an identity provider's private keys and its JWKS."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm


__all__ = ["SigningKey", "claims", "hs256_by_hand", "new_key", "write_jwks"]

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


@dataclass(frozen=True)
class SigningKey:
    kid: str
    algorithm: str
    private: PrivateKey

    def sign(self, payload: dict[str, Any], *, kid: str | None = "", **header: Any) -> str:
        """A token signed with this key; its header names this key unless ``kid`` says."""
        fields = {"kid": self.kid if kid == "" else kid, **header}
        fields = {name: value for name, value in fields.items() if value is not None}
        return jwt.encode(payload, self.private, algorithm=self.algorithm, headers=fields)

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def jwk(self) -> dict[str, Any]:
        public = self.private.public_key()
        if isinstance(public, rsa.RSAPublicKey):
            entry = RSAAlgorithm.to_jwk(public, as_dict=True)
        elif isinstance(public, ec.EllipticCurvePublicKey):
            entry = ECAlgorithm.to_jwk(public, as_dict=True)
        else:
            entry = OKPAlgorithm.to_jwk(public, as_dict=True)
        return {**entry, "kid": self.kid, "alg": self.algorithm, "use": "sig"}


def new_key(algorithm: str, kid: str) -> SigningKey:
    """A fresh private key for RS256, ES256 or EdDSA."""
    private: PrivateKey
    if algorithm == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif algorithm == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    elif algorithm == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
    else:
        raise ValueError(algorithm)
    return SigningKey(kid, algorithm, private)


def claims(user: str, *, ttl: float = 3600.0, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": user, "iat": now, "exp": now + int(ttl), **extra}


def write_jwks(path: Path, keys: list[SigningKey]) -> None:
    """Replace the JWKS file in one rename, as a deployment tool should."""
    staging = path.with_name(path.name + ".new")
    staging.write_text(json.dumps({"keys": [key.jwk() for key in keys]}))
    os.replace(staging, path)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_by_hand(header: dict[str, Any], payload: dict[str, Any], secret: bytes) -> str:
    """An HS256 token made without PyJWT, which refuses a PEM as an HMAC secret."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"

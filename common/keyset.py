"""The keys that verify client tokens, each pinned to one algorithm (pure: parses, no I/O).

A :class:`KeySet` holds an HS256 secret and public keys of an identity provider (RS, PS, ES
or EdDSA, from a PEM file or a JWKS document), by key id (``kid``). A token names its key in
its header; its ``alg`` must then be the one that key is pinned to, so that a token cannot
choose how it is checked: no ``none``, and no HS256 token "signed" with a public key's PEM.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from common.errors import ConfigError, ErrorCode, ProtocolError
from common.settings import Secret


__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "HMAC_ALGORITHM",
    "KeySet",
    "VerificationKey",
    "hmac_key",
    "key_from_pem",
    "keys_from_jwks",
]

#: What an identity provider's public key may be pinned to.
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
HMAC_ALGORITHM = "HS256"


@dataclass(frozen=True, slots=True)
class VerificationKey:
    #: The ``kid`` tokens name it by; None for a key that tokens without a ``kid`` use.
    kid: str | None
    algorithm: str
    #: What PyJWT verifies with: the secret's bytes, or a ``cryptography`` public key.
    key: Any

    def __repr__(self) -> str:
        # The HS256 key is the secret itself.
        return f"VerificationKey(kid={self.kid!r}, algorithm={self.algorithm!r})"


def hmac_key(secret: Secret, kid: str | None = None) -> VerificationKey:
    return VerificationKey(kid, HMAC_ALGORITHM, secret.reveal().encode())


def key_from_pem(data: bytes, kid: str | None, *, source: str) -> VerificationKey:
    """A public key in PEM, pinned to RS256, ES256/384/512 or EdDSA by its type.

    Raises:
        ConfigError: not a PEM public key of a supported type (``source`` names the file).
    """
    # Imported here: only a gateway configured with public keys pays for it.
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(data)
    except (ValueError, TypeError):
        raise ConfigError(f"{source} is not a PEM public key") from None
    if isinstance(key, rsa.RSAPublicKey):
        algorithm = "RS256"
    elif isinstance(key, ed25519.Ed25519PublicKey):
        algorithm = "EdDSA"
    elif isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in _EC_ALGORITHMS:
        algorithm = _EC_ALGORITHMS[key.curve.name]
    else:
        raise ConfigError(f"{source}: unsupported key type {type(key).__name__}")
    return VerificationKey(kid, algorithm, key)


_EC_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}


def keys_from_jwks(text: str, *, source: str) -> list[VerificationKey]:
    """The signing keys of a JWKS document (``{"keys": [...]}``), each with its ``kid``.

    A key's algorithm is its ``alg``, or follows from its type and curve (RSA: RS256, EC
    P-256: ES256, OKP Ed25519: EdDSA). Keys whose ``use`` is not ``sig`` are skipped.

    Raises:
        ConfigError: not a JWKS, or a key without ``kid``, symmetric, or not usable.
    """
    try:
        document = json.loads(text)
    except ValueError:
        raise ConfigError(f"{source} is not JSON") from None
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ConfigError(f"{source} is not a JWKS: no 'keys' array")
    keys = []
    for index, entry in enumerate(entries):
        where = f"{source}: key {index}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} is not an object")
        if entry.get("use", "sig") != "sig":
            continue
        kid = entry.get("kid")
        if not isinstance(kid, str) or not kid:
            raise ConfigError(f"{where} has no 'kid'")
        if entry.get("kty") == "oct":
            # A JWKS is public: a shared secret there is a leak, and RT_JWT_SECRET its place.
            raise ConfigError(f"{where} ({kid!r}) is a symmetric key: not allowed in a JWKS")
        algorithm = entry.get("alg")
        if algorithm is not None and algorithm not in ASYMMETRIC_ALGORITHMS:
            raise ConfigError(f"{where} ({kid!r}) has an unsupported 'alg'")
        try:
            jwk = jwt.PyJWK(entry)
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError, KeyError):
            # PyJWK's messages quote the key: public, but long and of no help here.
            raise ConfigError(f"{where} ({kid!r}) is not a usable key") from None
        if jwk.algorithm_name not in ASYMMETRIC_ALGORITHMS:
            raise ConfigError(f"{where} ({kid!r}) has an unsupported key type")
        keys.append(VerificationKey(kid, jwk.algorithm_name, jwk.key))
    return keys


class KeySet:
    """Keys by ``kid``; at most one key without a ``kid``. Immutable once built.

    Raises:
        ConfigError: two keys with the same ``kid``, or two without one.
    """

    __slots__ = ("_by_kid", "_only")

    def __init__(self, keys: Iterable[VerificationKey]) -> None:
        by_kid: dict[str | None, VerificationKey] = {}
        for key in keys:
            if key.kid in by_kid:
                what = "two keys without a kid" if key.kid is None else f"two keys {key.kid!r}"
                raise ConfigError(f"the token keys are ambiguous: {what}")
            by_kid[key.kid] = key
        self._by_kid: Mapping[str | None, VerificationKey] = by_kid
        self._only = next(iter(by_kid.values())) if len(by_kid) == 1 else None

    def __len__(self) -> int:
        return len(self._by_kid)

    def __repr__(self) -> str:
        return f"KeySet({sorted(map(str, self._by_kid))})"

    @property
    def kids(self) -> frozenset[str | None]:
        return frozenset(self._by_kid)

    def select(self, header: Mapping[str, Any]) -> VerificationKey:
        """The key that checks a token with this (unverified) header.

        The ``kid`` names it; a token without one uses the key without one, or the only key.
        Its ``alg`` must be the key's.

        Raises:
            ProtocolError: ``unauthenticated``: no such key, or another algorithm.
        """
        kid = header.get("kid")
        if kid is None:
            key = self._by_kid.get(None) or self._only
        elif isinstance(kid, str):
            key = self._by_kid.get(kid)
        else:
            key = None
        if key is None:
            raise ProtocolError(ErrorCode.UNAUTHENTICATED, "the token's key is not known")
        if header.get("alg") != key.algorithm:
            raise ProtocolError(ErrorCode.UNAUTHENTICATED, "the token's algorithm is not its key's")
        return key

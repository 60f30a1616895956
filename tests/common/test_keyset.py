"""Tokens of an identity provider: public keys from PEM or JWKS, chosen by kid, pinned alg."""

from __future__ import annotations

import json
from typing import Any

import jwt
import pytest

from common.auth import ClaimRules, verify_token
from common.errors import ConfigError, ErrorCode, ProtocolError
from common.keyset import KeySet, VerificationKey, hmac_key, key_from_pem, keys_from_jwks
from common.settings import Secret
from tests.support.keys import SigningKey, claims, hs256_by_hand, new_key


SECRET = Secret("9c1f0e7a5b3d42e8a6f1c0b9d8e7a6f5c4b3a29180f7e6d5c4b3a2918f7e6d5c")
RSA = new_key("RS256", "rsa-1")
EC = new_key("ES256", "ec-1")
ED = new_key("EdDSA", "ed-1")
STRANGER = new_key("RS256", "rsa-1")  # the same kid as RSA, another private key


def _jwks(*keys: SigningKey) -> list[VerificationKey]:
    return keys_from_jwks(json.dumps({"keys": [key.jwk() for key in keys]}), source="test")


def _keys(*keys: SigningKey, secret: bool = True) -> KeySet:
    return KeySet([*([hmac_key(SECRET)] if secret else []), *_jwks(*keys)])


NO_RULES = ClaimRules()


def _refused(keys: KeySet, token: str, rules: ClaimRules = NO_RULES) -> str:
    with pytest.raises(ProtocolError) as caught:
        verify_token(keys, token, rules)
    assert caught.value.code is ErrorCode.UNAUTHENTICATED
    assert token not in str(caught.value)
    return caught.value.message


@pytest.mark.parametrize("key", [RSA, EC, ED], ids=lambda k: k.algorithm)
def test_token_signed_by_a_jwks_key_verifies(key: SigningKey) -> None:
    """RS256, ES256 and EdDSA tokens verify with the JWKS key their kid names."""
    identity = verify_token(_keys(RSA, EC, ED), key.sign(claims("alice", jti="j-1")))
    assert (identity.user, identity.jti) == ("alice", "j-1")


def test_hs256_token_without_kid_still_verifies_beside_public_keys() -> None:
    """The secret is the key of tokens without a kid, so HS256 tokens keep working."""
    token = jwt.encode(claims("alice"), SECRET.reveal(), algorithm="HS256")
    assert verify_token(_keys(RSA, EC), token).user == "alice"


@pytest.mark.parametrize("key", [RSA, EC, ED], ids=lambda k: k.algorithm)
def test_token_signed_by_a_pem_key_verifies(key: SigningKey) -> None:
    """A PEM public key is pinned to its type's algorithm; kid-less tokens use it."""
    keys = KeySet([key_from_pem(key.public_pem(), None, source="test")])
    assert verify_token(keys, key.sign(claims("bob"), kid=None)).user == "bob"
    assert "not known" in _refused(keys, key.sign(claims("bob"), kid="another"))


def test_alg_none_is_refused() -> None:
    """An unsigned token (alg none) naming a real key's kid is refused."""
    token = jwt.encode(claims("mallory"), "", algorithm="none", headers={"kid": "rsa-1"})
    assert "algorithm" in _refused(_keys(RSA), token)
    unsigned = jwt.encode(claims("mallory"), "", algorithm="none")
    assert "algorithm" in _refused(_keys(RSA), unsigned)
    assert "algorithm" in _refused(_keys(RSA, secret=False), unsigned)


def test_hs256_token_signed_with_the_rsa_public_key_is_refused() -> None:
    """HS/RS confusion: an HS256 token whose secret is the RSA key's public PEM is refused."""
    pem = RSA.public_pem()
    payload = claims("mallory")
    # Naming the RSA key: the key is pinned to RS256.
    named = hs256_by_hand({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}, payload, pem)
    assert "algorithm" in _refused(_keys(RSA), named)
    # Naming no key: the secret checks it, and the PEM is not the secret.
    unnamed = hs256_by_hand({"alg": "HS256", "typ": "JWT"}, payload, pem)
    assert _refused(_keys(RSA), unnamed) == "the token is not valid"
    # Only the PEM key, pinned to RS256: no HS256 at all.
    only_pem = KeySet([key_from_pem(pem, None, source="test")])
    assert "algorithm" in _refused(only_pem, unnamed)


def test_token_naming_an_unknown_kid_is_refused() -> None:
    """A kid that no configured key has is refused, even when the signature is fine."""
    token = new_key("ES256", "ec-unknown").sign(claims("mallory"))
    assert _refused(_keys(RSA, EC), token) == "the token's key is not known"


def test_token_claiming_another_keys_algorithm_is_refused() -> None:
    """An ES256 token that names the RSA key's kid is refused before any signature check."""
    token = EC.sign(claims("mallory"), kid="rsa-1")
    assert "algorithm" in _refused(_keys(RSA, EC), token)


def test_token_signed_by_another_private_key_is_refused() -> None:
    """A token with the right kid and alg but a stranger's signature is refused."""
    assert _refused(_keys(RSA), STRANGER.sign(claims("mallory"))) == "the token is not valid"


@pytest.mark.parametrize("key", [RSA, EC, ED], ids=lambda k: k.algorithm)
def test_claims_are_checked_for_public_key_tokens_too(key: SigningKey) -> None:
    """Expired, not yet valid, wrong iss and wrong aud are refused whatever the algorithm."""
    keys = _keys(RSA, EC, ED)
    rules = ClaimRules(issuer="https://id.example", audience="realtime", leeway=5)
    good: dict[str, Any] = {"iss": "https://id.example", "aud": "realtime"}
    assert verify_token(keys, key.sign(claims("alice", **good)), rules).user == "alice"
    assert "expired" in _refused(keys, key.sign(claims("alice", ttl=-1, **good)), rules)
    future = claims("alice", **good)
    future["nbf"] = future["iat"] + 60
    assert "not yet valid" in _refused(keys, key.sign(future), rules)
    wrong_iss = claims("alice", iss="https://evil.example", aud="realtime")
    assert "issuer" in _refused(keys, key.sign(wrong_iss), rules)
    wrong_aud = claims("alice", iss="https://id.example", aud="elsewhere")
    assert "audience" in _refused(keys, key.sign(wrong_aud), rules)


# Building key sets.


def _jwks_error(document: object) -> str:
    with pytest.raises(ConfigError) as caught:
        keys_from_jwks(json.dumps(document), source="RT_JWT_JWKS_FILE")
    return str(caught.value)


def test_jwks_with_a_symmetric_key_is_refused() -> None:
    """A JWKS is public: an oct (shared secret) key there is refused, without quoting it."""
    document = {"keys": [{"kty": "oct", "kid": "hs", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQ"}]}
    message = _jwks_error(document)
    assert "symmetric" in message
    assert "c2VjcmV0" not in message


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        pytest.param({"keys": [{**RSA.jwk(), "kid": None}]}, "no 'kid'", id="no-kid"),
        pytest.param({"keys": [{**RSA.jwk(), "alg": "HS256"}]}, "unsupported 'alg'", id="hs-alg"),
        pytest.param({"keys": [{**RSA.jwk(), "alg": "none"}]}, "unsupported 'alg'", id="none-alg"),
        pytest.param({"keys": [{**RSA.jwk(), "alg": "ES256"}]}, "not a usable key", id="mismatch"),
        pytest.param({"keys": [{"kty": "RSA", "kid": "x", "n": "AQAB"}]}, "usable", id="broken"),
        pytest.param({"nokeys": []}, "no 'keys'", id="not-jwks"),
        pytest.param(["x"], "no 'keys'", id="a-list"),
    ],
)
def test_jwks_with_an_unusable_key_is_refused(document: object, reason: str) -> None:
    """Each malformed or unsafe JWKS key is a ConfigError that says which key and why."""
    assert reason in _jwks_error(document)


def test_jwks_keys_for_encryption_are_skipped() -> None:
    """Keys whose use is not sig do not verify tokens."""
    keys = keys_from_jwks(json.dumps({"keys": [{**RSA.jwk(), "use": "enc"}]}), source="t")
    assert keys == []


def test_ambiguous_key_sets_are_refused() -> None:
    """Two keys with one kid, or two keys without a kid, cannot be told apart."""
    with pytest.raises(ConfigError, match="two keys 'rsa-1'"):
        KeySet(_jwks(RSA, STRANGER))
    with pytest.raises(ConfigError, match="without a kid"):
        KeySet([hmac_key(SECRET), key_from_pem(RSA.public_pem(), None, source="t")])


def test_not_a_pem_public_key_is_refused() -> None:
    """A file that is not a PEM public key (a private key, say) is a ConfigError."""
    with pytest.raises(ConfigError, match="not a PEM public key"):
        key_from_pem(b"-----BEGIN NOTHING-----\n", None, source="RT_JWT_PUBLIC_KEY_FILE")


def test_key_reprs_hide_the_secret() -> None:
    """Neither a key nor a key set shows the HS256 secret in its repr."""
    keys = KeySet([hmac_key(SECRET, "hs")])
    assert SECRET.reveal() not in repr(keys)
    assert SECRET.reveal() not in repr(hmac_key(SECRET))

"""JWT tokens: issue and verify, and every way a token is refused (HS256 secrets here; the
keys of an identity provider in test_keyset.py)."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from common.auth import ClaimRules, Identity, issue_token, verify_token
from common.errors import ErrorCode, ProtocolError
from common.keyset import KeySet, hmac_key
from common.settings import Secret


# 64 characters, so that PyJWT does not warn about a short key for HS384/HS512 either.
SECRET = Secret("a-test-secret-long-enough-for-any-hmac-algorithm-pyjwt-supports!")
OTHER = Secret("another-secret-long-enough-for-any-hmac-algorithm-pyjwt-supports")
KEYS = KeySet([hmac_key(SECRET)])


def _sign(claims: dict[str, Any], key: str = SECRET.reveal(), algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


NO_RULES = ClaimRules()


def _refusal(token: object, keys: KeySet = KEYS, rules: ClaimRules = NO_RULES) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        verify_token(keys, token, rules)
    error = caught.value
    if isinstance(token, str) and token:
        assert token not in error.message, "the error echoes the token"
        assert token not in str(error)
        assert token not in repr(error)
        # A chained decoder exception would carry the token into tracebacks.
        assert error.__cause__ is None
        assert error.__context__ is None or error.__suppress_context__
    return error


def test_issue_and_verify_round_trip() -> None:
    """A token issued for a user verifies as that user, expiring ttl seconds from now."""
    before = time.time()
    token = issue_token(SECRET, "alice", ttl=600)
    identity = verify_token(KEYS, token)
    assert identity == Identity("alice", identity.expires_at, issued_at=identity.issued_at)
    assert before + 599 <= identity.expires_at <= time.time() + 601


def test_token_from_another_issuer_with_the_same_secret_verifies() -> None:
    """Any HS256 token with sub and exp signed with the secret is accepted."""
    token = _sign({"sub": "bob", "exp": int(time.time()) + 60, "role": "admin"})
    assert verify_token(KEYS, token).user == "bob"


def test_expired_token_is_unauthenticated() -> None:
    """A token past its exp is refused as unauthenticated, saying it expired."""
    error = _refusal(issue_token(SECRET, "alice", ttl=-10))
    assert error.code is ErrorCode.UNAUTHENTICATED
    assert "expired" in error.message


def test_token_signed_with_another_secret_is_unauthenticated() -> None:
    """A token whose signature does not match the secret is refused."""
    error = _refusal(issue_token(OTHER, "alice"))
    assert error.code is ErrorCode.UNAUTHENTICATED
    assert "expired" not in error.message


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param({"sub": "alice"}, id="no-exp"),
        pytest.param({"exp": 4_000_000_000}, id="no-sub"),
        pytest.param({"sub": "alice", "exp": "tomorrow"}, id="exp-not-a-number"),
        pytest.param({"sub": "alice", "exp": True}, id="exp-bool"),
        pytest.param({"sub": 42, "exp": 4_000_000_000}, id="sub-not-a-string"),
        pytest.param({"sub": "", "exp": 4_000_000_000}, id="sub-empty"),
        pytest.param({"sub": "u" * 129, "exp": 4_000_000_000}, id="sub-too-long"),
        pytest.param({"sub": "alice", "exp": 4_000_000_000, "nbf": 4_000_000_000}, id="not-yet"),
    ],
)
def test_token_with_bad_claims_is_unauthenticated(claims: dict[str, Any]) -> None:
    """A correctly signed token without a valid sub and exp is refused."""
    assert _refusal(_sign(claims)).code is ErrorCode.UNAUTHENTICATED


_LATER = 4_000_000_000


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param({"sub": "alice", "exp": str(_LATER)}, id="exp-numeric-string"),
        pytest.param({"sub": "alice", "exp": 10**400}, id="exp-beyond-float"),
        pytest.param({"sub": "alice", "exp": _LATER, "nbf": "0"}, id="nbf-numeric-string"),
        pytest.param({"sub": "alice", "exp": _LATER, "nbf": True}, id="nbf-bool"),
        pytest.param({"sub": "alice", "exp": _LATER, "nbf": -(10**400)}, id="nbf-beyond-float"),
        pytest.param({"sub": "alice", "exp": _LATER, "iat": "0"}, id="iat-numeric-string"),
        pytest.param({"sub": "alice", "exp": _LATER, "iat": True}, id="iat-bool"),
        pytest.param({"sub": "alice", "exp": _LATER, "iat": -(10**400)}, id="iat-beyond-float"),
    ],
)
def test_token_with_a_time_claim_of_the_wrong_type_is_unauthenticated(
    claims: dict[str, Any],
) -> None:
    """A validly signed token whose exp, nbf or iat is not a finite number is refused."""
    error = _refusal(_sign(claims))
    assert error.code is ErrorCode.UNAUTHENTICATED
    assert "must be a number" in error.message


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param({"sub": "alice", "exp": _LATER + 0.5}, id="fractional-exp"),
        pytest.param({"sub": "alice", "exp": _LATER, "nbf": 0.5, "iat": 1.5}, id="fractional"),
        pytest.param({"sub": "alice", "exp": _LATER, "nbf": 0, "iat": 0}, id="integers"),
    ],
)
def test_token_with_numeric_time_claims_is_accepted(claims: dict[str, Any]) -> None:
    """NumericDate claims may be integers or fractions (RFC 7519), and exp is kept exactly."""
    identity = verify_token(KEYS, _sign(claims))
    assert (identity.user, identity.expires_at) == ("alice", float(claims["exp"]))


def test_subject_of_128_characters_is_accepted() -> None:
    """The longest user name allowed verifies."""
    user = "u" * 128
    assert verify_token(KEYS, issue_token(SECRET, user)).user == user


@pytest.mark.parametrize("algorithm", ["HS384", "HS512"])
def test_token_with_another_algorithm_is_unauthenticated(algorithm: str) -> None:
    """Only HS256 is accepted, even when the signature is right for the other algorithm."""
    token = _sign({"sub": "alice", "exp": int(time.time()) + 60}, algorithm=algorithm)
    assert _refusal(token).code is ErrorCode.UNAUTHENTICATED


def test_unsigned_token_is_unauthenticated() -> None:
    """An alg=none token is refused."""
    # Key "" (pyjwt's none algorithm takes it as None): the stubs accept no None once
    # cryptography is installed.
    token = jwt.encode({"sub": "alice", "exp": int(time.time()) + 60}, "", algorithm="none")
    assert _refusal(token).code is ErrorCode.UNAUTHENTICATED


@pytest.mark.parametrize(
    "token",
    ["garbage", "a.b.c", "eyJhbGciOiJIUzI1NiJ9.e30.", "x" * 5000, "é.é.é"],
)
def test_malformed_token_is_unauthenticated(token: str) -> None:
    """A string that is not a JWT is refused as unauthenticated without echoing it."""
    assert _refusal(token).code is ErrorCode.UNAUTHENTICATED


def test_tampered_token_is_unauthenticated() -> None:
    """Changing the payload of a valid token breaks its signature."""
    header, _, signature = issue_token(SECRET, "alice").split(".")
    forged = jwt.encode({"sub": "mallory", "exp": 4_000_000_000}, "x" * 32).split(".")[1]
    assert _refusal(f"{header}.{forged}.{signature}").code is ErrorCode.UNAUTHENTICATED


@pytest.mark.parametrize("token", [None, "", 42, True, ["a.b.c"], {"token": "a.b.c"}, b"a.b.c"])
def test_token_that_is_not_a_string_is_a_bad_request(token: object) -> None:
    """A missing, empty or non-string token is a bad_request rather than a failed login."""
    assert _refusal(token).code is ErrorCode.BAD_REQUEST


def test_error_messages_never_contain_the_token() -> None:
    """No refusal reason, for any kind of bad token, includes the token's text."""
    tokens = [
        issue_token(SECRET, "alice", ttl=-10),
        issue_token(OTHER, "alice"),
        _sign({"sub": "alice"}),
        "not-a-jwt-but-possibly-a-password",
    ]
    for token in tokens:
        error = _refusal(token)
        for part in token.split("."):
            if len(part) >= 8:
                assert part not in error.message


def test_token_id_and_issue_time_are_part_of_the_identity() -> None:
    """A token's jti and iat come back in its identity, for revocations to match."""
    identity = verify_token(KEYS, issue_token(SECRET, "alice", jti="t-1"))
    assert identity.jti == "t-1"
    assert identity.issued_at is not None
    assert abs(identity.issued_at - time.time()) < 5


@pytest.mark.parametrize("jti", [42, "", "j" * 257, ["t-1"]])
def test_token_with_an_invalid_jti_is_unauthenticated(jti: object) -> None:
    """A jti that is not a string of 1-256 characters is refused."""
    token = _sign({"sub": "alice", "exp": _LATER, "jti": jti})
    assert _refusal(token).code is ErrorCode.UNAUTHENTICATED


def test_a_token_that_has_just_expired_gets_no_leeway() -> None:
    """exp is exact, whatever the leeway: the gateway would close the connection at once."""
    token = _sign({"sub": "alice", "exp": int(time.time()) - 1})
    error = _refusal(token, rules=ClaimRules(leeway=30))
    assert "expired" in error.message


def test_not_yet_valid_token_is_refused_beyond_the_leeway() -> None:
    """A token whose nbf is beyond the clock-skew leeway is refused as not yet valid."""
    now = int(time.time())
    token = _sign({"sub": "alice", "exp": now + 600, "nbf": now + 60})
    assert "not yet valid" in _refusal(token, rules=ClaimRules(leeway=5)).message


def test_not_yet_valid_token_within_the_leeway_is_accepted() -> None:
    """An issuer's clock a few seconds ahead does not lock users out: nbf gets the leeway."""
    now = int(time.time())
    token = _sign({"sub": "alice", "exp": now + 600, "nbf": now + 3, "iat": now + 3})
    assert verify_token(KEYS, token, ClaimRules(leeway=5)).user == "alice"
    assert _refusal(token).code is ErrorCode.UNAUTHENTICATED


_RULES = ClaimRules(issuer="https://id.example", audience="realtime")


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        pytest.param({"aud": "realtime"}, "no 'iss'", id="no-iss"),
        pytest.param({"iss": "https://evil.example", "aud": "realtime"}, "issuer", id="wrong-iss"),
        pytest.param({"iss": "https://id.example"}, "no 'aud'", id="no-aud"),
        pytest.param({"iss": "https://id.example", "aud": "other"}, "audience", id="wrong-aud"),
        pytest.param(
            {"iss": "https://id.example", "aud": ["other", "more"]}, "audience", id="wrong-auds"
        ),
    ],
)
def test_token_of_another_issuer_or_audience_is_refused(extra: dict[str, Any], reason: str) -> None:
    """With an issuer and an audience configured, a token must carry both, and they must match."""
    token = _sign({"sub": "alice", "exp": _LATER, **extra})
    assert reason in _refusal(token, rules=_RULES).message


def test_token_of_the_configured_issuer_and_audience_is_accepted() -> None:
    """iss equal to the issuer and aud naming the audience (alone or in a list) verify."""
    for audience in ("realtime", ["other", "realtime"]):
        token = _sign({"sub": "alice", "exp": _LATER, "iss": "https://id.example", "aud": audience})
        assert verify_token(KEYS, token, _RULES).user == "alice"

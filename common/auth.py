"""JWT tokens: ``sub`` names the user, ``exp`` is required and checked.

The key comes from a :class:`~common.keyset.KeySet`, chosen by the token's ``kid`` and pinned
to one algorithm. ``iss`` and ``aud`` are checked when :class:`ClaimRules` names them; a
token carrying ``aud`` when no audience is configured is refused. ``nbf`` and ``iat`` get a
small leeway for the issuer's clock; ``exp`` gets none, because the gateway closes a
connection at its token's ``exp`` and must not accept a token it would close at once.

Claims of the wrong type are refused: ``exp``, ``nbf`` and ``iat`` must be finite numbers and
``sub`` a non-empty string, ``jti`` a string when present. PyJWT alone passes ``"exp":
"4000000000"`` (it converts with ``int()``) and ``"nbf": true``, so those checks are made
here after it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import jwt

from common.errors import ErrorCode, ProtocolError
from common.keyset import HMAC_ALGORITHM, KeySet
from common.settings import Secret


__all__ = ["ClaimRules", "Identity", "issue_token", "verify_token"]

_MAX_USER_LENGTH = 128
_MAX_JTI_LENGTH = 256
_TIME_CLAIMS = ("exp", "nbf", "iat")


@dataclass(frozen=True, slots=True)
class Identity:
    user: str
    #: Seconds since the epoch when the token stops being valid.
    expires_at: float
    #: The token's ``jti``, by which one token can be revoked.
    jti: str | None = None
    #: The token's ``iat``: a user's revocation refuses tokens issued before it.
    issued_at: float | None = None


@dataclass(frozen=True, slots=True)
class ClaimRules:
    issuer: str | None = None
    audience: str | None = None
    #: Seconds of clock skew allowed to ``nbf`` and ``iat``.
    leeway: float = 0.0


def issue_token(secret: Secret, user: str, ttl: float = 3600.0, *, jti: str | None = None) -> str:
    """A signed HS256 token for ``user`` valid for ``ttl`` seconds (dev mode and tests)."""
    now = int(time.time())
    claims: dict[str, object] = {"sub": user, "iat": now, "exp": now + int(ttl)}
    if jti is not None:
        claims["jti"] = jti
    return jwt.encode(claims, secret.reveal(), algorithm=HMAC_ALGORITHM)


def verify_token(keys: KeySet, token: object, rules: ClaimRules = ClaimRules()) -> Identity:
    """The identity a token proves.

    Raises:
        ProtocolError: ``unauthenticated``, with a reason that never echoes the token.
    """
    if not isinstance(token, str) or not token:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "'token' must be a non-empty string")
    try:
        key = keys.select(jwt.get_unverified_header(token))
        claims = jwt.decode(
            token,
            key.key,
            algorithms=[key.algorithm],
            issuer=rules.issuer,
            audience=rules.audience,
            leeway=rules.leeway,
            options={"require": ["exp", "sub"], "verify_exp": False},
        )
    except jwt.MissingRequiredClaimError as exc:
        raise _refused(f"the token has no {exc.claim!r} claim") from None
    except jwt.ImmatureSignatureError:
        raise _refused("the token is not yet valid") from None
    except jwt.InvalidAudienceError:
        raise _refused("the token's audience is not accepted") from None
    except jwt.InvalidIssuerError:
        raise _refused("the token's issuer is not accepted") from None
    except jwt.InvalidTokenError:
        raise _refused("the token is not valid") from None
    for name in _TIME_CLAIMS:
        if name in claims and not _is_numeric_date(claims[name]):
            raise _refused(f"the token's {name!r} claim must be a number")
    user = claims["sub"]
    if not isinstance(user, str) or not 0 < len(user) <= _MAX_USER_LENGTH:
        raise _refused("the token's subject is not valid")
    jti = claims.get("jti")
    if jti is not None and not (isinstance(jti, str) and 0 < len(jti) <= _MAX_JTI_LENGTH):
        raise _refused("the token's 'jti' claim is not valid")
    expires_at = float(claims["exp"])
    if expires_at <= time.time():
        raise _refused("the token has expired")
    issued_at = claims.get("iat")
    return Identity(
        user=user,
        expires_at=expires_at,
        jti=jti,
        issued_at=None if issued_at is None else float(issued_at),
    )


def _refused(reason: str) -> ProtocolError:
    return ProtocolError(ErrorCode.UNAUTHENTICATED, reason)


def _is_numeric_date(value: object) -> bool:
    """Whether a claim is a JWT NumericDate: a JSON number (not a bool) that is a finite float."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an integer beyond any float, which PyJWT compares happily
        return False

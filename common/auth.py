"""JWT (HS256) tokens: ``sub`` names the user, ``exp`` is required and checked.

Claims of the wrong type are refused: ``exp``, ``nbf`` and ``iat`` must be finite numbers and
``sub`` a non-empty string. PyJWT alone passes ``"exp": "4000000000"`` (it converts with
``int()``) and ``"nbf": true``, so those checks are made here after it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import jwt

from common.errors import ErrorCode, ProtocolError
from common.settings import Secret


__all__ = ["Identity", "issue_token", "verify_token"]

_ALGORITHM = "HS256"
_MAX_USER_LENGTH = 128
_TIME_CLAIMS = ("exp", "nbf", "iat")


@dataclass(frozen=True, slots=True)
class Identity:
    user: str
    #: Seconds since the epoch when the token stops being valid.
    expires_at: float


def issue_token(secret: Secret, user: str, ttl: float = 3600.0) -> str:
    """A signed token for ``user`` valid for ``ttl`` seconds (dev mode and tests)."""
    now = int(time.time())
    claims = {"sub": user, "iat": now, "exp": now + int(ttl)}
    return jwt.encode(claims, secret.reveal(), algorithm=_ALGORITHM)


def verify_token(secret: Secret, token: object) -> Identity:
    """The identity a token proves.

    Raises:
        ProtocolError: ``unauthenticated``, with a reason that never echoes the token.
    """
    if not isinstance(token, str) or not token:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "'token' must be a non-empty string")
    try:
        claims = jwt.decode(
            token,
            secret.reveal(),
            algorithms=[_ALGORITHM],
            options={"require": ["exp", "sub"]},
        )
    except jwt.ExpiredSignatureError:
        raise ProtocolError(ErrorCode.UNAUTHENTICATED, "the token has expired") from None
    except jwt.InvalidTokenError:
        raise ProtocolError(ErrorCode.UNAUTHENTICATED, "the token is not valid") from None
    for name in _TIME_CLAIMS:
        if name in claims and not _is_numeric_date(claims[name]):
            raise ProtocolError(
                ErrorCode.UNAUTHENTICATED, f"the token's {name!r} claim must be a number"
            )
    user = claims["sub"]
    if not isinstance(user, str) or not 0 < len(user) <= _MAX_USER_LENGTH:
        raise ProtocolError(ErrorCode.UNAUTHENTICATED, "the token's subject is not valid")
    return Identity(user=user, expires_at=float(claims["exp"]))


def _is_numeric_date(value: object) -> bool:
    """Whether a claim is a JWT NumericDate: a JSON number (not a bool) that is a finite float."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an integer beyond any float, which PyJWT compares happily
        return False

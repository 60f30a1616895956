"""Revoked users and tokens (pure): the bus message, and a bounded set of what stands.

A revocation names a user or a token id (``jti``) and lasts until ``until``. For a user it
refuses the tokens issued before it (``iat`` earlier than its ``ts``, or no ``iat``): "log
out everywhere" ends every session, and the user's next login works. For a ``jti`` it
refuses that one token. docs/bus.md specifies the message.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any

from common.auth import Identity
from common.envelope import BUS_VERSION, new_id, now_ms
from common.errors import ErrorCode, ProtocolError


__all__ = ["MAX_REVOCATIONS", "Revocation", "RevocationSet"]

KIND = "revocation"
#: Revocations a gateway keeps in memory; beyond it, those that end soonest are forgotten.
MAX_REVOCATIONS = 100_000
_MAX_NAME = 256


@dataclass(frozen=True, slots=True)
class Revocation:
    """Exactly one of ``user`` and ``jti``; times in milliseconds since the epoch."""

    user: str | None
    jti: str | None
    #: When it was made: a user's tokens issued before this are refused.
    ts: int
    #: When it ends: after this, the tokens it names have expired anyway.
    until: int
    id: str = ""

    @classmethod
    def of_user(cls, user: str, *, lasting: float) -> Revocation:
        now = now_ms()
        return cls(user, None, now, now + int(lasting * 1000), new_id())

    @classmethod
    def of_token(cls, jti: str, *, lasting: float) -> Revocation:
        now = now_ms()
        return cls(None, jti, now, now + int(lasting * 1000), new_id())

    @property
    def key(self) -> tuple[str, str]:
        return ("user", self.user) if self.user is not None else ("jti", self.jti or "")

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "v": BUS_VERSION,
            "kind": KIND,
            "id": self.id,
            "ts": self.ts,
            "until": self.until,
        }
        if self.user is not None:
            wire["user"] = self.user
        else:
            wire["jti"] = self.jti
        return wire

    @classmethod
    def from_wire(cls, wire: dict[str, Any]) -> Revocation:
        """Raises: ProtocolError: not a valid revocation message."""
        if wire.get("v") != BUS_VERSION or wire.get("kind") != KIND:
            raise _invalid("v or kind")
        user, jti = wire.get("user"), wire.get("jti")
        if (user is None) == (jti is None):
            raise _invalid("user or jti (exactly one)")
        for name, value in (("user", user), ("jti", jti)):
            if value is not None and not (isinstance(value, str) and 0 < len(value) <= _MAX_NAME):
                raise _invalid(name)
        times = [wire.get("ts"), wire.get("until")]
        if not all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in times):
            raise _invalid("ts or until")
        identifier = wire.get("id")
        identifier = identifier if isinstance(identifier, str) else ""
        return cls(user, jti, wire["ts"], wire["until"], identifier)

    def refuses(self, identity: Identity) -> bool:
        """Whether this revocation refuses a token with this identity (at any time before
        ``until``)."""
        if self.jti is not None:
            return identity.jti == self.jti
        if identity.user != self.user:
            return False
        return identity.issued_at is None or identity.issued_at * 1000 < self.ts


def _invalid(what: str) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_REQUEST, f"revocation: invalid {what}")


class RevocationSet:
    """The revocations in force, one per user or ``jti`` (the latest and longest wins)."""

    __slots__ = ("_capacity", "_entries")

    def __init__(self, capacity: int = MAX_REVOCATIONS) -> None:
        self._capacity = capacity
        self._entries: dict[tuple[str, str], Revocation] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, revocation: Revocation, now: int) -> None:
        """Keep ``revocation`` (merged with one for the same name) unless it has ended."""
        if revocation.until <= now:
            return
        known = self._entries.get(revocation.key)
        if known is not None:
            revocation = Revocation(
                revocation.user,
                revocation.jti,
                max(known.ts, revocation.ts),
                max(known.until, revocation.until),
                revocation.id,
            )
        self._entries[revocation.key] = revocation
        if len(self._entries) > self._capacity:
            self._shrink(now)

    def _shrink(self, now: int) -> None:
        # Rare (a flood of revocations): the ended go first, then those that end soonest.
        self._entries = {k: r for k, r in self._entries.items() if r.until > now}
        excess = len(self._entries) - self._capacity
        if excess > 0:
            for key, _ in heapq.nsmallest(excess, self._entries.items(), key=lambda i: i[1].until):
                del self._entries[key]

    def refuses(self, identity: Identity, now: int) -> bool:
        """Whether a revocation in force refuses this token."""
        if identity.jti is not None and self._refused_by(("jti", identity.jti), identity, now):
            return True
        return self._refused_by(("user", identity.user), identity, now)

    def _refused_by(self, key: tuple[str, str], identity: Identity, now: int) -> bool:
        revocation = self._entries.get(key)
        return revocation is not None and revocation.until > now and revocation.refuses(identity)

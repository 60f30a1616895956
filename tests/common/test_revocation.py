"""Revocations: the bus message, what each refuses, and the bounded set a gateway keeps."""

from __future__ import annotations

from typing import Any

import pytest

from common.auth import Identity
from common.codec import load_bus, pack_bus
from common.errors import ProtocolError
from common.revocation import Revocation, RevocationSet


T = 1_800_000_000_000  # ms


def _user(user: str, ts: int = T, until: int = T + 60_000) -> Revocation:
    return Revocation(user, None, ts, until, "r")


def _jti(jti: str, ts: int = T, until: int = T + 60_000) -> Revocation:
    return Revocation(None, jti, ts, until, "r")


def _identity(user: str = "alice", jti: str | None = None, iat: float | None = None) -> Identity:
    return Identity(user, T / 1000 + 3600, jti=jti, issued_at=iat)


def test_revocation_round_trips_through_msgpack() -> None:
    """A revocation packed for the bus reads back equal."""
    for revocation in (
        Revocation.of_user("alice", lasting=60),
        Revocation.of_token("t", lasting=1),
    ):
        assert Revocation.from_wire(load_bus(pack_bus(revocation.to_wire()))) == revocation


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"v": 2}, id="version"),
        pytest.param({"kind": "event"}, id="kind"),
        pytest.param({"jti": "t"}, id="user-and-jti"),
        pytest.param({"user": None}, id="neither"),
        pytest.param({"user": ""}, id="empty-user"),
        pytest.param({"user": 7}, id="user-not-a-string"),
        pytest.param({"until": "later"}, id="until-not-a-number"),
        pytest.param({"ts": True}, id="ts-bool"),
        pytest.param({"until": -1}, id="until-negative"),
    ],
)
def test_invalid_revocation_messages_are_refused(change: dict[str, Any]) -> None:
    """A message that is not exactly one user or jti with integer times is refused."""
    wire = {**_user("alice").to_wire(), **change}
    wire = {key: value for key, value in wire.items() if value is not None}
    with pytest.raises(ProtocolError):
        Revocation.from_wire(wire)


def test_user_revocation_refuses_tokens_issued_before_it() -> None:
    """A user's revocation refuses the user's older or iat-less tokens, not newer ones."""
    revocation = _user("alice")
    assert revocation.refuses(_identity(iat=T / 1000 - 1))
    assert revocation.refuses(_identity(iat=None))
    assert not revocation.refuses(_identity(iat=T / 1000 + 1))
    assert not revocation.refuses(_identity("bob", iat=T / 1000 - 1))


def test_jti_revocation_refuses_that_token_only() -> None:
    """A jti's revocation refuses the token with that id, whoever it names."""
    revocation = _jti("t-1")
    assert revocation.refuses(_identity(jti="t-1", iat=T / 1000 + 10))
    assert not revocation.refuses(_identity(jti="t-2"))
    assert not revocation.refuses(_identity())


def test_set_refuses_until_the_revocation_ends() -> None:
    """A kept revocation refuses until its until, and one already ended is not kept."""
    kept = RevocationSet()
    kept.add(_user("alice"), now=T)
    kept.add(_jti("old", until=T - 1), now=T)
    assert len(kept) == 1
    assert kept.refuses(_identity(iat=0), now=T + 59_999)
    assert not kept.refuses(_identity(iat=0), now=T + 60_000)
    assert not kept.refuses(_identity("bob", jti="old"), now=T)


def test_set_merges_revocations_of_one_user() -> None:
    """A second revocation of a user moves its time and end later, never earlier."""
    kept = RevocationSet()
    kept.add(_user("alice", ts=T, until=T + 100_000), now=T)
    kept.add(_user("alice", ts=T + 5_000, until=T + 10_000), now=T)
    assert len(kept) == 1
    assert kept.refuses(_identity(iat=(T + 4_000) / 1000), now=T + 50_000)


def test_set_is_bounded_and_forgets_those_ending_soonest() -> None:
    """Past its capacity the set keeps the revocations that last longest."""
    kept = RevocationSet(capacity=3)
    for n in range(5):
        kept.add(_jti(f"t-{n}", until=T + 1000 * (n + 1)), now=T)
    assert len(kept) == 3
    assert [kept.refuses(_identity(jti=f"t-{n}"), now=T) for n in range(5)] == [
        False,
        False,
        True,
        True,
        True,
    ]

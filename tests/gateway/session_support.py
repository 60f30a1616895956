"""A session driven by hand: fake ports, a clock that moves only when told, actions kept."""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson

from common.auth import Identity, issue_token, verify_token
from common.envelope import Reply
from common.keyset import KeySet, hmac_key
from common.registry import RegistryView
from common.settings import BusSettings, Secret
from realtime_gateway.limits import Ticket
from realtime_gateway.session import Action, Call, Close, Join, Send, Session
from realtime_gateway.settings import GatewaySettings, TokenSettings
from tests.support.registry import built_in_view


__all__ = [
    "SECRET",
    "Driven",
    "FakeGate",
    "FakeLink",
    "code_of",
    "error_of",
    "messages",
    "reply",
    "settings",
    "token",
]

SECRET = Secret("session-test-5c1d83f0a2e94b67d8c03e1f9a4b52d7")
_KEYS = KeySet([hmac_key(SECRET)])


def token(user: str = "alice", ttl: float = 3600.0, *, jti: str | None = None) -> str:
    return issue_token(SECRET, user, ttl, jti=jti)


def reply(data: dict[str, Any] | None = None, **fields: Any) -> Reply:
    """A service's reply (to no request in particular: the session reads only its content)."""
    return Reply("request-id", "gw-test.1", data=data, **fields)


def messages(actions: list[Action]) -> list[dict[str, Any]]:
    """The client frames among ``actions``, in order."""
    return [action.message for action in actions if isinstance(action, Send)]


@dataclass
class FakeLink:
    """The outbox as the session reads it: closed once a Close ran (or when a test says)."""

    closed: bool = False
    close_code: int | None = None


@dataclass
class FakeGate:
    """The gateway as a session asks it: real token checks, edge verdicts set by the test."""

    revoked_users: set[str] = field(default_factory=set)
    may_try: bool = True
    admits: bool = True
    failures: int = 0
    counted: Counter[str] = field(default_factory=Counter)
    refused: list[str] = field(default_factory=list)
    admitted: list[str] = field(default_factory=list)
    #: The built-ins announced and alive (with the stubs' types); a test may replace it.
    registry: RegistryView = field(default_factory=built_in_view)

    def verify(self, token: object) -> Identity:
        return verify_token(_KEYS, token)

    def is_revoked(self, identity: Identity) -> bool:
        return identity.user in self.revoked_users

    def may_authenticate(self, ticket: Ticket | None) -> bool:
        return self.may_try

    def auth_failed(self, ticket: Ticket | None) -> None:
        self.failures += 1

    def admit_user(self, ticket: Ticket | None, user: str) -> bool:
        if self.admits:
            self.admitted.append(user)
        return self.admits

    def count_message(self, kind: str) -> None:
        self.counted[kind] += 1

    def refuse(self, reason: str) -> None:
        self.refused.append(reason)


def settings(**changes: Any) -> GatewaySettings:
    """Gateway settings for a session test (the bus is never reached)."""
    tokens = TokenSettings(secret=SECRET, expiring_notice=changes.pop("expiring_notice", 60.0))
    base = GatewaySettings(
        bus=BusSettings(Secret("redis://127.0.0.1:1/0")), tokens=tokens, gateway_id="gw-test"
    )
    return dataclasses.replace(base, **changes)


class Driven:
    """One session, its fake ports and clock; every action it returns is also kept."""

    def __init__(self, **changes: Any) -> None:
        self.settings = settings(**changes)
        self.link = FakeLink()
        self.gate = FakeGate()
        self.now = 0.0
        self.session = Session(self.settings, self.gate, self.link, "gw-test.1", now=self.now)

    def run(self, actions: list[Action]) -> list[Action]:
        """Apply what the outbox would (a close closes it) and return ``actions``."""
        for action in actions:
            if isinstance(action, Close) and not self.link.closed:
                self.link.closed, self.link.close_code = True, action.code
        return actions

    def send(self, frame: dict[str, Any] | str, *, after: float = 0.0) -> list[Action]:
        """The client sends ``frame`` (an object, or raw text) ``after`` seconds from now."""
        self.now += after
        text = frame if isinstance(frame, str) else orjson.dumps(frame).decode()
        return self.run(self.session.receive_text(text, self.now))

    def open(self, bearer: str | None = None) -> list[Action]:
        return self.run(self.session.open(bearer))

    def authenticate(self, user: str = "alice", **token_args: Any) -> list[Action]:
        """Open the session and authenticate it as ``user`` (the welcome is checked)."""
        self.open()
        actions = self.send({"type": "auth", "ref": "a", "token": token(user, **token_args)})
        assert messages(actions)[0]["type"] == "welcome"
        return actions

    def call(self, frame: dict[str, Any]) -> Call:
        """The client sends a service request; the one Call it becomes."""
        (call,) = [action for action in self.send(frame) if isinstance(action, Call)]
        return call

    def join(self, channel: str, **fields: Any) -> Join:
        """The client subscribes to ``channel``: the Join it asks (the last action)."""
        actions = self.send({"type": "subscribe", "ref": "s", "channel": channel, **fields})
        join = actions[-1]
        assert isinstance(join, Join), actions
        return join

    def fired(self) -> list[Action]:
        return self.run(self.session.timer_fired())


def error_of(actions: list[Action]) -> dict[str, Any]:
    """The error of the one refusal among ``actions``."""
    (message,) = messages(actions)
    assert message["type"] == "reply", message
    assert message["ok"] is False, message
    error: dict[str, Any] = message["error"]
    return error


def code_of(actions: list[Action]) -> str:
    return str(error_of(actions)["code"])

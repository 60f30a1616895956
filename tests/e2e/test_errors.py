"""Every error path of protocol v1: an error reply that keeps the connection open, or a close."""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
import pytest
from websockets.asyncio.client import ClientConnection

from tests.e2e.conftest import Launcher
from tests.support.client import (
    assert_open,
    authenticate,
    connect,
    connect_user,
    expect_close,
    make_token,
    recv_json,
    send_json,
)
from tests.support.processes import JWT_SECRET, ManagedProcess


AUTH_TIMEOUT = 1.5


@pytest.fixture(scope="module")
def gateway(launcher: Launcher) -> ManagedProcess:
    """A gateway with a short authentication timeout and no service behind it."""
    return launcher.gateway({"RT_AUTH_TIMEOUT": str(AUTH_TIMEOUT)})


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def _error_of(ws: ClientConnection, frame: str | dict[str, Any]) -> dict[str, Any]:
    """Send ``frame`` (raw text or an object); return the error reply and check it is one."""
    if isinstance(frame, str):
        await ws.send(frame)
    else:
        await send_json(ws, frame)
    reply = await recv_json(ws)
    assert reply["type"] == "reply", reply
    assert reply["ok"] is False, reply
    assert set(reply) == {"type", "ref", "ok", "error"}, reply
    assert isinstance(reply["error"]["message"], str), reply
    return reply


async def test_malformed_json_is_bad_request(gateway: ManagedProcess) -> None:
    """A frame that is not JSON gets bad_request with a null ref and the connection stays open."""
    async with await connect_user(gateway.ws_url, "alice") as ws:
        reply = await _error_of(ws, '{"type": "ping", ')
        assert (reply["ref"], reply["error"]["code"]) == (None, "bad_request")
        await assert_open(ws)


async def test_non_object_json_is_bad_request(gateway: ManagedProcess) -> None:
    """A JSON value that is not an object gets bad_request and the connection stays open."""
    async with await connect_user(gateway.ws_url, "alice") as ws:
        for text in ('["ping"]', '"ping"', "42", "null"):
            reply = await _error_of(ws, text)
            assert (reply["ref"], reply["error"]["code"]) == (None, "bad_request")
        await assert_open(ws)


async def test_missing_type_is_bad_request(gateway: ManagedProcess) -> None:
    """An object without a type gets bad_request echoing its ref; the connection stays open."""
    async with await connect_user(gateway.ws_url, "alice") as ws:
        reply = await _error_of(ws, {"ref": "m1", "channel": "presence:x"})
        assert (reply["ref"], reply["error"]["code"]) == ("m1", "bad_request")
        await assert_open(ws)


async def test_non_string_type_is_bad_request(gateway: ManagedProcess) -> None:
    """A type that is not a string gets bad_request and the connection stays open."""
    async with await connect_user(gateway.ws_url, "alice") as ws:
        reply = await _error_of(ws, {"type": 7, "ref": "t"})
        assert (reply["ref"], reply["error"]["code"]) == ("t", "bad_request")
        await assert_open(ws)


async def test_unknown_type_is_unknown_type(gateway: ManagedProcess) -> None:
    """A type that names no message gets unknown_type and the connection stays open."""
    async with await connect_user(gateway.ws_url, "alice") as ws:
        for kind in ("frobnicate", "chat", "chat.", ".echo"):
            reply = await _error_of(ws, {"type": kind, "ref": kind})
            assert (reply["ref"], reply["error"]["code"]) == (kind, "unknown_type")
        await assert_open(ws)


async def test_request_to_unknown_service_is_unknown_type(gateway: ManagedProcess) -> None:
    """A ``<service>.<action>`` naming no known service gets unknown_type, not a bus request."""
    async with await connect_user(gateway.ws_url, "alice") as ws:
        reply = await _error_of(ws, {"type": "weather.forecast", "ref": "w"})
        assert (reply["ref"], reply["error"]["code"]) == ("w", "unknown_type")
        await assert_open(ws)


async def test_missing_field_is_bad_request(gateway: ManagedProcess) -> None:
    """A subscribe or unsubscribe without a channel gets bad_request; the connection stays open."""
    async with await connect_user(gateway.ws_url, "alice") as ws:
        for kind in ("subscribe", "unsubscribe"):
            reply = await _error_of(ws, {"type": kind, "ref": kind})
            assert (reply["ref"], reply["error"]["code"]) == (kind, "bad_request")
            assert "channel" in reply["error"]["message"]
        await assert_open(ws)


async def test_wrong_field_type_is_bad_request(gateway: ManagedProcess) -> None:
    """A channel, since or token of the wrong type gets bad_request; the connection stays open."""
    async with await connect_user(gateway.ws_url, "alice") as ws:
        frames: list[dict[str, Any]] = [
            {"type": "subscribe", "channel": 42, "ref": 1},
            {"type": "subscribe", "channel": ["presence:x"], "ref": 2},
            {"type": "subscribe", "channel": "chat:x", "since": 5, "ref": 3},
            {"type": "unsubscribe", "channel": {"name": "x"}, "ref": 4},
            {"type": "auth", "token": 12345, "ref": 5},
        ]
        for frame in frames:
            reply = await _error_of(ws, frame)
            assert (reply["ref"], reply["error"]["code"]) == (frame["ref"], "bad_request")
        await assert_open(ws)


async def test_invalid_ref_is_bad_request_with_null_ref(gateway: ManagedProcess) -> None:
    """A ref that is neither a short string nor a safe integer gets bad_request with a null ref."""
    async with await connect_user(gateway.ws_url, "alice") as ws:
        for ref in ({"a": 1}, [1], True, 1.5, 2**60, "r" * 129):
            reply = await _error_of(ws, {"type": "ping", "ref": ref})
            assert (reply["ref"], reply["error"]["code"]) == (None, "bad_request"), ref
        await assert_open(ws)


async def test_invalid_channel_is_invalid_channel(gateway: ManagedProcess) -> None:
    """A malformed channel name gets invalid_channel and the connection stays open."""
    async with await connect_user(gateway.ws_url, "alice") as ws:
        for channel in ("lobby", "presence:", ":lobby", "presence:a b", "Presence:x", ""):
            reply = await _error_of(ws, {"type": "subscribe", "channel": channel, "ref": "c"})
            assert reply["error"]["code"] == "invalid_channel", channel
        await assert_open(ws)


async def test_unknown_namespace_is_invalid_channel(gateway: ManagedProcess) -> None:
    """A channel in an unknown namespace gets invalid_channel naming the namespace."""
    async with await connect_user(gateway.ws_url, "alice") as ws:
        reply = await _error_of(ws, {"type": "subscribe", "channel": "weather:paris", "ref": "n"})
        assert (reply["ref"], reply["error"]["code"]) == ("n", "invalid_channel")
        assert "weather" in reply["error"]["message"]
        await assert_open(ws)


async def test_second_subscribe_is_already_subscribed(gateway: ManagedProcess) -> None:
    """Subscribing twice to a channel gets already_subscribed and the connection stays open."""
    channel = _name("presence:twice")
    async with await connect_user(gateway.ws_url, "alice") as ws:
        await send_json(ws, {"type": "subscribe", "channel": channel, "ref": "s1"})
        assert (await recv_json(ws))["ok"] is True
        reply = await _error_of(ws, {"type": "subscribe", "channel": channel, "ref": "s2"})
        assert (reply["ref"], reply["error"]["code"]) == ("s2", "already_subscribed")
        await assert_open(ws)


async def test_unsubscribe_without_subscription_is_not_subscribed(gateway: ManagedProcess) -> None:
    """Unsubscribing from a channel not subscribed gets not_subscribed; stays open."""
    async with await connect_user(gateway.ws_url, "alice") as ws:
        reply = await _error_of(ws, {"type": "unsubscribe", "channel": "presence:never", "ref": 9})
        assert (reply["ref"], reply["error"]["code"]) == (9, "not_subscribed")
        await assert_open(ws)


async def test_messages_before_auth_are_unauthenticated(gateway: ManagedProcess) -> None:
    """Before auth, subscribe, unsubscribe and requests get unauthenticated; auth still works."""
    async with await connect(gateway.ws_url) as ws:
        frames: list[dict[str, Any]] = [
            {"type": "subscribe", "channel": "presence:early", "ref": "a"},
            {"type": "unsubscribe", "channel": "presence:early", "ref": "b"},
            {"type": "chat.echo", "ref": "c"},
        ]
        for frame in frames:
            reply = await _error_of(ws, frame)
            assert (reply["ref"], reply["error"]["code"]) == (frame["ref"], "unauthenticated")
        await assert_open(ws)
        await authenticate(ws, make_token("alice"))


async def test_bad_token_is_unauthenticated(gateway: ManagedProcess) -> None:
    """A garbage token or one signed with another secret gets unauthenticated; stays open."""
    forged = make_token("alice", secret="another-secret-of-at-least-32-characters")
    async with await connect(gateway.ws_url) as ws:
        for token in ("not-a-jwt", forged):
            reply = await _error_of(ws, {"type": "auth", "token": token, "ref": "t"})
            assert (reply["ref"], reply["error"]["code"]) == ("t", "unauthenticated")
            assert token not in reply["error"]["message"]
        await assert_open(ws)
        await authenticate(ws, make_token("alice"))


async def test_second_auth_as_another_user_is_forbidden(gateway: ManagedProcess) -> None:
    """An auth for another user on an authenticated connection gets forbidden; stays open."""
    async with await connect_user(gateway.ws_url, "alice") as ws:
        token = make_token("mallory")
        reply = await _error_of(ws, {"type": "auth", "token": token, "ref": "switch"})
        assert (reply["ref"], reply["error"]["code"]) == ("switch", "forbidden")
        await assert_open(ws)


async def test_token_without_exp_is_unauthenticated(gateway: ManagedProcess) -> None:
    """A correctly signed token without an exp claim gets unauthenticated."""
    token = jwt.encode({"sub": "alice"}, JWT_SECRET, algorithm="HS256")
    async with await connect(gateway.ws_url) as ws:
        reply = await _error_of(ws, {"type": "auth", "token": token, "ref": "t"})
        assert reply["error"]["code"] == "unauthenticated"
        await assert_open(ws)


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param({"exp": "4000000000"}, id="exp-string"),
        pytest.param({"exp": 4_000_000_000, "nbf": True}, id="nbf-bool"),
        pytest.param({"exp": 4_000_000_000, "iat": "0"}, id="iat-string"),
    ],
)
async def test_token_with_a_claim_of_the_wrong_type_is_unauthenticated(
    gateway: ManagedProcess, claims: dict[str, Any]
) -> None:
    """A validly signed token whose time claim is not a number gets unauthenticated, no welcome."""
    token = jwt.encode({"sub": "alice", **claims}, JWT_SECRET, algorithm="HS256")
    async with await connect(gateway.ws_url) as ws:
        reply = await _error_of(ws, {"type": "auth", "token": token, "ref": "typed"})
        assert (reply["ref"], reply["error"]["code"]) == ("typed", "unauthenticated")
        # Still unauthenticated: a request is refused as such rather than routed.
        reply = await _error_of(ws, {"type": "subscribe", "channel": "presence:x", "ref": "s"})
        assert (reply["ref"], reply["error"]["code"]) == ("s", "unauthenticated")


async def test_expired_token_is_unauthenticated(gateway: ManagedProcess) -> None:
    """An expired token gets unauthenticated saying so, and the connection stays open."""
    async with await connect(gateway.ws_url) as ws:
        reply = await _error_of(ws, {"type": "auth", "token": make_token("alice", -60), "ref": 1})
        assert (reply["ref"], reply["error"]["code"]) == (1, "unauthenticated")
        assert "expired" in reply["error"]["message"]
        await assert_open(ws)


async def test_expired_token_in_header_closes_4401(gateway: ManagedProcess) -> None:
    """An expired Bearer token on the upgrade gets an error reply, then close 4401."""
    async with await connect(gateway.ws_url, token=make_token("alice", -60)) as ws:
        reply = await recv_json(ws)
        assert reply["error"]["code"] == "unauthenticated"
        code, _ = await expect_close(ws)
    assert code == 4401


async def test_three_bad_tokens_close_4401(gateway: ManagedProcess) -> None:
    """The third failed authentication closes the connection with 4401."""
    async with await connect(gateway.ws_url) as ws:
        for attempt in range(2):
            reply = await _error_of(ws, {"type": "auth", "token": "bad", "ref": attempt})
            assert reply["error"]["code"] == "unauthenticated"
        await send_json(ws, {"type": "auth", "token": "bad", "ref": 2})
        reply = await recv_json(ws)
        assert reply["error"]["code"] == "unauthenticated"
        code, _ = await expect_close(ws)
    assert code == 4401


async def test_auth_timeout_closes_4401(gateway: ManagedProcess) -> None:
    """A connection that does not authenticate within RT_AUTH_TIMEOUT is closed with 4401."""
    started = time.monotonic()
    async with await connect(gateway.ws_url) as ws:
        code, _ = await expect_close(ws, within=AUTH_TIMEOUT + 5)
    assert code == 4401
    assert time.monotonic() - started >= AUTH_TIMEOUT - 0.1


async def test_token_expiry_while_connected_closes_4401(gateway: ManagedProcess) -> None:
    """An authenticated connection is closed with 4401 when its token expires."""
    async with await connect(gateway.ws_url) as ws:
        await authenticate(ws, make_token("alice", ttl=2))
        await assert_open(ws)
        code, _ = await expect_close(ws, within=6)
    assert code == 4401


async def test_binary_frame_is_bad_request(gateway: ManagedProcess) -> None:
    """A binary frame gets bad_request with a null ref and the connection stays open."""
    async with await connect_user(gateway.ws_url, "alice") as ws:
        await ws.send(b'{"type": "ping", "ref": 1}')
        reply = await recv_json(ws)
        assert reply["type"] == "reply"
        assert (reply["ok"], reply["ref"], reply["error"]["code"]) == (False, None, "bad_request")
        await assert_open(ws)

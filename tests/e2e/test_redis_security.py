"""Processes on a Redis with ACL users: each connects as its own, and forgeries are refused."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import cast

import pytest
from redis.asyncio import Redis
from redis.exceptions import NoPermissionError

from common import acl
from common.codec import load_bus, pack_bus
from common.envelope import Reply, Request, parse_envelope
from common.keys import reply_channel, request_stream
from devtools.redis_server import RedisServer
from tests.e2e.conftest import Launcher
from tests.support.client import DEADLINE, call, connect_user, recv_json, send_json
from tests.support.processes import START_TIMEOUT, ManagedProcess, wait_all_ready
from tests.support.redis_users import TestUsers, acl_enabled, acl_refusals
from tests.support.waiting import wait_until


pytestmark = pytest.mark.skipif(
    not acl_enabled(), reason="REALTIME_TEST_ACL=0: processes run as the default user"
)


@pytest.fixture(scope="module")
def users(redis_users: TestUsers | None) -> TestUsers:
    assert redis_users is not None
    return redis_users


@pytest.fixture(scope="module")
def stack(launcher: Launcher) -> tuple[ManagedProcess, ManagedProcess]:
    """A gateway and a real chat service (no bids service: bids requests stay unanswered)."""
    gateway = launcher.gateway(wait=False)
    chat = launcher.service("chat_service", "chat", {"RT_CLAIM_INTERVAL": "0.2"}, wait=False)
    wait_all_ready([gateway, chat])
    return gateway, chat


def _as(server: RedisServer, users: TestUsers, name: str) -> Redis:
    return Redis.from_url(server.url, username=name, password=users.password(name))


async def test_each_process_connects_as_its_own_user(
    stack: tuple[ManagedProcess, ManagedProcess], bus: Redis
) -> None:
    """Every connection of the gateway is rt-gateway's and every one of chat is rt-chat's."""
    gateway = stack[0]
    async with await connect_user(gateway.ws_url, "alice") as ws:
        joined = await call(ws, {"type": "chat.join", "room": "acl", "ref": 1})
        assert joined["ok"], joined
        sent = await call(
            ws, {"type": "chat.send", "room": "acl", "text": "hi", "client_id": "c1", "ref": 2}
        )
        assert sent["ok"], sent
    clients = await bus.client_list()
    users = {
        (client["name"].split("-")[0], client["user"])
        for client in clients
        if client["name"].startswith(("gw-redis_security", "chat-chat-redis_security"))
    }
    assert users == {("gw", "rt-gateway"), ("chat", "rt-chat")}


async def test_a_forged_reply_is_accepted_from_default_but_refused_from_a_gateway(
    stack: tuple[ManagedProcess, ManagedProcess],
    bus: Redis,
    redis_server: RedisServer,
    users: TestUsers,
) -> None:
    """The attack: a publish on a gateway's reply channel is a reply to its client; as the
    gateway user (a compromised gateway) it is refused with NOPERM and the client never sees it."""
    gateway = stack[0]
    assert acl_refusals(redis_server) == []  # none so far that this test would hide
    forger = _as(redis_server, users, acl.username("gateway"))
    seen: set[str] = set()
    async with await connect_user(gateway.ws_url, "mallory-victim") as ws:
        for ref, publisher in (("by-default", bus), ("by-gateway", forger)):
            # No bids service runs: only a forgery can answer this request.
            await send_json(ws, {"type": "bids.get", "auction": "a1", "ref": ref})
            request = await _last_request(bus, "bids", ref, seen)
            forged = Reply(request.id, request.connection, data={"forged": True})
            channel = reply_channel(request.gateway)
            if publisher is bus:
                assert await bus.publish(channel, pack_bus(forged.to_wire())) == 1
                # Without ACLs, this is what anyone on Redis can do.
                assert await recv_json(ws) == {
                    "type": "reply",
                    "ref": ref,
                    "ok": True,
                    "data": {"forged": True},
                }
            else:
                with pytest.raises(NoPermissionError):
                    await forger.publish(channel, pack_bus(forged.to_wire()))
                reply = await recv_json(ws, within=DEADLINE)
                assert reply["ref"] == ref
                assert reply["error"]["code"] == "service_unavailable"
    await forger.aclose()
    assert acl_refusals(redis_server, reset=True) == ["rt-gateway: command publish"]


async def _last_request(bus: Redis, service: str, ref: str, seen: set[str]) -> Request:
    """The newest request in ``service``'s stream not in ``seen`` (waiting for it)."""
    found: list[Request] = []

    async def appended() -> bool:
        entries = await bus.xrevrange(request_stream(service, 0), count=1)
        if entries:
            fields = cast("dict[bytes, bytes]", entries[0][1])
            value = parse_envelope(load_bus(fields[b"e"]))
            if isinstance(value, Request) and value.id not in seen:
                found.append(value)
        return bool(found)

    what = f"a request of {ref!r} in {request_stream(service, 0)}"
    await wait_until(appended, what, within=DEADLINE, interval=0.02)
    seen.add(found[0].id)
    return found[0]


async def test_no_log_shows_a_redis_password(
    stack: tuple[ManagedProcess, ManagedProcess],
    launcher: Launcher,
    redis_server: RedisServer,
    users: TestUsers,
    log_dir: Path,
) -> None:
    """No process log holds a Redis password, not even a refused one's, nor /metrics."""
    assert acl_refusals(redis_server) == []
    wrong = "wrong-password-" + "7" * 24
    refused = launcher.gateway(
        {"RT_REDIS_USERNAME": acl.username("gateway"), "RT_REDIS_PASSWORD": wrong}, wait=False
    )
    try:
        # Up (it serves HTTP while Redis refuses it), logging the refusal, and not ready.
        async def refused_and_logged() -> bool:
            return (await refused.get_async("/readyz"))[0] == 503 and (
                "AuthenticationError" in refused.log_tail(200)
            )

        try:
            await wait_until(
                refused_and_logged, "/readyz 503, refusal logged", within=START_TIMEOUT
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {refused.describe()}") from None
    finally:
        refused.stop()
    expected = {"rt-gateway: auth HELLO", "rt-gateway: auth AUTH"}
    assert set(acl_refusals(redis_server, reset=True)) <= expected
    passwords = {wrong, *(users.password(account.name) for account in users.accounts)}
    for process in stack:
        status, metrics = await process.get_async("/metrics")
        assert status == 200
        assert not [password for password in passwords if password in metrics]
    assert not await asyncio.to_thread(_logs_holding, log_dir, passwords)


def _logs_holding(log_dir: Path, secrets: set[str]) -> list[str]:
    logs = list(log_dir.glob("*.log"))
    assert logs
    return [
        path.name
        for path in logs
        if any(secret in path.read_text(errors="replace") for secret in secrets)
    ]

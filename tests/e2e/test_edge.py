"""Attacks at the edge, through real sockets against real gateway processes.

Cross-site origins, slowloris request heads, oversized heads, idle unauthenticated sockets,
connection floods per address and per user, token brute force, oversized requests. Per-address
rules are tested from several loopback addresses (127.0.0.0/8) by binding the client's end.
"""

from __future__ import annotations

import functools
import json
import time
import uuid

import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import InvalidStatus

from common.keys import request_stream
from tests.e2e.conftest import Launcher
from tests.support.client import (
    DEADLINE,
    assert_open,
    authenticate,
    call,
    connect,
    connect_user,
    expect_close,
    make_token,
    recv_json,
    recv_until,
    send_json,
    wait_for,
)
from tests.support.processes import ManagedProcess, wait_all_ready
from tests.support.raw import RawClient, upgrade_request
from tests.support.stub_service import channel_key, handled_key


HANDSHAKE_TIMEOUT = 1.0
MAX_HEADER_BYTES = 4096
MAX_HEADERS = 16
HALF_OPEN = 12


async def refused_status(url: str, **options: object) -> int:
    """The HTTP status of an upgrade the gateway refuses (fails if it opens)."""
    try:
        ws = await connect(url, **options)  # type: ignore[arg-type]
    except InvalidStatus as exc:
        return int(exc.response.status_code)
    await ws.close()
    raise AssertionError("the upgrade was accepted")


def _has_ref(ref: object, frame: dict[str, object]) -> bool:
    return frame.get("ref") == ref


async def refused(gateway: ManagedProcess, reason: str) -> float:
    return await gateway.metric("rt_gateway_refused_total", {"reason": reason})


async def unauthenticated(gateway: ManagedProcess, stage: str) -> float:
    return await gateway.metric("rt_gateway_unauthenticated", {"stage": stage})


async def idle(gateway: ManagedProcess) -> None:
    """Wait until the connections of earlier tests are gone from the gateway's counts."""

    async def quiet() -> bool:
        return (
            await gateway.metric("rt_gateway_connections") == 0
            and await unauthenticated(gateway, "websocket") == 0
            and await unauthenticated(gateway, "handshake") == 0
        )

    await wait_for(quiet, what="no connection left")


# Origins.


@pytest.fixture(scope="module")
def origin_gateway(launcher: Launcher) -> ManagedProcess:
    return launcher.gateway({"RT_ALLOWED_ORIGINS": "https://app.example.com, *.example.org"})


@pytest.fixture(scope="module")
def dev_gateway(launcher: Launcher) -> ManagedProcess:
    return launcher.gateway({"RT_DEV": "1"})


async def test_cross_site_origin_is_refused_403_before_the_upgrade(
    origin_gateway: ManagedProcess,
) -> None:
    """An upgrade from a page of another site is answered HTTP 403, and counted."""
    before = await refused(origin_gateway, "origin")
    for origin in (
        "http://evil.example",
        "https://example.org",  # the pattern wants a subdomain
        "http://app.example.org",  # patterns without a scheme are https only
        "https://app.example.com:8443",  # another port is another origin
        "null",
    ):
        assert await refused_status(origin_gateway.ws_url, origin=origin) == 403, origin
    assert await refused(origin_gateway, "origin") == before + 5


async def test_listed_origins_no_origin_and_own_origin_are_allowed(
    origin_gateway: ManagedProcess,
) -> None:
    """Listed origins and patterns open; so do clients without Origin and the gateway's own page."""
    own = f"http://127.0.0.1:{origin_gateway.port}"
    for origin in (None, "https://app.example.com", "https://a.b.example.org", own):
        ws = await connect(origin_gateway.ws_url, origin=origin)
        try:
            await authenticate(ws, make_token("origin-user"))
        finally:
            await ws.close()


async def test_dev_mode_allows_loopback_origins_on_any_port(dev_gateway: ManagedProcess) -> None:
    """With RT_DEV, pages on localhost, 127.0.0.1 and [::1] open on any port; others do not."""
    for origin in ("http://localhost:5173", "http://127.0.0.1:3000", "http://[::1]:8080"):
        ws = await connect(dev_gateway.ws_url, origin=origin)
        await ws.close()
    assert await refused_status(dev_gateway.ws_url, origin="http://evil.example") == 403


# The request head.


@pytest.fixture(scope="module")
def head_gateway(launcher: Launcher) -> ManagedProcess:
    return launcher.gateway(
        {
            "RT_HANDSHAKE_TIMEOUT": str(HANDSHAKE_TIMEOUT),
            "RT_MAX_HEADER_BYTES": str(MAX_HEADER_BYTES),
            "RT_MAX_HEADERS": str(MAX_HEADERS),
            "RT_MAX_UNAUTHENTICATED": str(HALF_OPEN),
            "RT_BUSY_AUTH_TIMEOUT": "30",
        }
    )


async def test_slowloris_handshake_is_closed_within_the_handshake_timeout(
    head_gateway: ManagedProcess,
) -> None:
    """A handshake sent a byte at a time is answered 408 and closed after RT_HANDSHAKE_TIMEOUT."""
    await idle(head_gateway)
    client = await RawClient.open(head_gateway.port, "127.0.0.2")
    started = time.monotonic()
    try:
        for byte in upgrade_request("127.0.0.1"):
            if time.monotonic() - started > HANDSHAKE_TIMEOUT + DEADLINE:
                raise AssertionError("the slow handshake is still open")
            if not await client.send(bytes([byte])):
                break
            # Paced below the timeout per byte, like the attack: each byte alone is "on time".
            if await client.closed_within(0.1):
                break
        answer = await client.read_until_closed()
    finally:
        client.close()
    elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert HANDSHAKE_TIMEOUT - 0.1 <= elapsed <= HANDSHAKE_TIMEOUT + 1.0, elapsed
    assert await refused(head_gateway, "handshake_timeout") >= 1


async def test_half_open_sockets_are_counted_bounded_and_closed(
    head_gateway: ManagedProcess,
) -> None:
    """Sockets holding half a request line show in /metrics, fill the pool, and are all closed."""
    await idle(head_gateway)
    clients = [await RawClient.open(head_gateway.port, "127.0.0.3") for _ in range(HALF_OPEN)]
    try:
        for client in clients:
            assert await client.send(b"GET /ws HTT")

        async def counted() -> bool:
            return await unauthenticated(head_gateway, "handshake") == HALF_OPEN

        await wait_for(counted, what=f"{HALF_OPEN} half-open sockets counted")
        # The pool is full: an upgrade now is refused, while /metrics (above) still answers.
        assert await refused_status(head_gateway.ws_url) == 503
        for client in clients:
            assert (await client.read_until_closed()).startswith(b"HTTP/1.1 408 ")
    finally:
        for client in clients:
            client.close()

    async def released() -> bool:
        return await unauthenticated(head_gateway, "handshake") == 0

    await wait_for(released, what="the half-open sockets released")
    assert await refused(head_gateway, "unauthenticated_full") >= 1


async def test_an_unfinished_oversized_header_is_refused_431(head_gateway: ManagedProcess) -> None:
    """A header that grows past RT_MAX_HEADER_BYTES without ending is answered 431 and closed."""
    await idle(head_gateway)
    client = await RawClient.open(head_gateway.port, "127.0.0.4")
    try:
        await client.send(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: ")
        sent = 0
        while sent < 64 * MAX_HEADER_BYTES and await client.send(b"a" * 1024):
            sent += 1024
            if await client.closed_within(0.01):
                break
        answer = await client.read_until_closed()
    finally:
        client.close()
    assert answer.startswith(b"HTTP/1.1 431 "), answer
    assert sent <= 2 * MAX_HEADER_BYTES
    assert await refused(head_gateway, "header_too_large") >= 1


async def test_too_many_header_lines_are_refused_431(head_gateway: ManagedProcess) -> None:
    """An upgrade with more than RT_MAX_HEADERS header lines is answered 431."""
    await idle(head_gateway)
    extra = "".join(f"X-H{n}: v\r\n" for n in range(MAX_HEADERS))
    client = await RawClient.open(head_gateway.port, "127.0.0.4")
    try:
        await client.send(upgrade_request("127.0.0.1", extra=extra))
        answer = await client.read_until_closed()
    finally:
        client.close()
    assert answer.startswith(b"HTTP/1.1 431 "), answer
    assert await refused(head_gateway, "too_many_headers") >= 1


# Unauthenticated sockets.


@pytest.fixture(scope="module")
def small_gateway(launcher: Launcher) -> ManagedProcess:
    """Five connection slots, at most three of them unauthenticated, evicted at once if full."""
    return launcher.gateway(
        {
            "RT_MAX_CONNECTIONS": "5",
            "RT_MAX_UNAUTHENTICATED": "3",
            "RT_BUSY_AUTH_TIMEOUT": "0",
        }
    )


@pytest.fixture(scope="module")
def per_ip_gateway(launcher: Launcher) -> ManagedProcess:
    return launcher.gateway({"RT_MAX_UNAUTHENTICATED_PER_IP": "3"})


async def test_idle_unauthenticated_sockets_cannot_starve_a_user(
    small_gateway: ManagedProcess,
) -> None:
    """With the cap at 5, five idle sockets leave a slot for a user who authenticates."""
    await idle(small_gateway)
    idle_sockets: list[ClientConnection] = []
    try:
        for n in range(5):
            try:
                idle_sockets.append(
                    await connect(small_gateway.ws_url, local_addr=(f"127.0.1.{n + 1}", 0))
                )
            except InvalidStatus:
                pass
        user = await connect_user(small_gateway.ws_url, "starved")
        await assert_open(user)
        await user.close()
        # The oldest idle sockets made room: closed with 1013 (try again later).
        code, _ = await expect_close(idle_sockets[0])
        assert code == 1013
        assert await refused(small_gateway, "evicted") >= 3
    finally:
        for ws in idle_sockets:
            await ws.close()


async def test_unauthenticated_sockets_are_capped_per_address(
    per_ip_gateway: ManagedProcess,
) -> None:
    """A fourth idle socket from one address is refused (503); other addresses still connect."""
    await idle(per_ip_gateway)
    held = [await connect(per_ip_gateway.ws_url, local_addr=("127.0.2.1", 0)) for _ in range(3)]
    try:
        status = await refused_status(per_ip_gateway.ws_url, local_addr=("127.0.2.1", 0))
        assert status == 503
        other = await connect(per_ip_gateway.ws_url, local_addr=("127.0.2.2", 0))
        await authenticate(other, make_token("neighbour"))
        await other.close()
        # An authenticated socket no longer counts against its address.
        await authenticate(held[0], make_token("held"))
        again = await connect(per_ip_gateway.ws_url, local_addr=("127.0.2.1", 0))
        await again.close()
        assert await refused(per_ip_gateway, "unauthenticated_per_ip") >= 1
    finally:
        for ws in held:
            await ws.close()


# Users and authentication failures.


@pytest.fixture(scope="module")
def user_gateway(launcher: Launcher) -> ManagedProcess:
    """Two connections per user, three failed tokens per address and then two a second;
    a chat stub behind it whose requests may have 2 KiB."""
    gateway = launcher.gateway(
        {
            "RT_MAX_CONNECTIONS_PER_USER": "2",
            "RT_AUTH_FAILURE_BURST": "3",
            "RT_AUTH_FAILURE_RATE": "2",
            "RT_MAX_REQUEST_BYTES": "chat=2048",
        },
        wait=False,
    )
    stubs = [launcher.stub("chat", wait=False), launcher.stub("bids", wait=False)]
    wait_all_ready([gateway, *stubs])
    return gateway


async def test_concurrent_connections_per_user_are_capped(user_gateway: ManagedProcess) -> None:
    """A user's third connection is refused (rate_limited, 4429); a freed one makes room."""
    user = f"many-{uuid.uuid4().hex[:6]}"
    first = await connect_user(user_gateway.ws_url, user)
    second = await connect_user(user_gateway.ws_url, user)
    try:
        third = await connect(user_gateway.ws_url)
        await send_json(third, {"type": "auth", "token": make_token(user), "ref": "a"})
        reply = await recv_json(third)
        assert reply["error"]["code"] == "rate_limited", reply
        code, _ = await expect_close(third)
        assert code == 4429
        other = await connect_user(user_gateway.ws_url, "someone-else")
        await other.close()
        await first.close()

        async def room() -> bool:
            try:
                ws = await connect_user(user_gateway.ws_url, user)
            except AssertionError:
                return False
            await ws.close()
            return True

        await wait_for(room, what="a connection of the user freed")
        assert (
            await user_gateway.metric("rt_gateway_refused_total", {"reason": "user_connections"})
            >= 1
        )
    finally:
        await first.close()
        await second.close()


async def test_token_brute_force_is_slowed_per_address(user_gateway: ManagedProcess) -> None:
    """After three bad tokens from an address, its tries are refused unchecked for a while;
    users at other addresses are not affected."""
    attacker = ("127.0.3.1", 0)
    ws = await connect(user_gateway.ws_url, local_addr=attacker)
    for n in range(3):
        await send_json(ws, {"type": "auth", "token": f"guess-{n}", "ref": n})
        assert (await recv_json(ws))["error"]["code"] == "unauthenticated"
    assert (await expect_close(ws))[0] == 4401
    # Even a valid token is not checked now: the address must wait.
    ws = await connect(user_gateway.ws_url, local_addr=attacker)
    await send_json(ws, {"type": "auth", "token": make_token("attacker"), "ref": "x"})
    reply = await recv_json(ws)
    assert reply["error"]["code"] == "rate_limited", reply
    assert (await expect_close(ws))[0] == 4429
    legit = await connect_user(user_gateway.ws_url, "legit", local_addr=("127.0.3.2", 0))
    await legit.close()
    assert await user_gateway.metric("rt_gateway_refused_total", {"reason": "auth_failures"}) >= 1

    async def forgiven() -> bool:
        try:
            ws = await connect_user(user_gateway.ws_url, "attacker", local_addr=attacker)
        except AssertionError:
            return False
        await ws.close()
        return True

    await wait_for(forgiven, what="the address allowed to try again")


# Requests.


async def test_a_request_beyond_its_services_size_is_refused(user_gateway: ManagedProcess) -> None:
    """A chat request above its 2 KiB (in UTF-8 bytes) gets too_large; the connection stays."""
    async with await connect_user(user_gateway.ws_url, "big") as ws:
        small = await call(ws, {"type": "chat.echo", "text": "x" * 1500, "ref": 1})
        assert small["ok"] is True
        for ref, text in ((2, "x" * 2100), (3, "é" * 1100)):  # 1100 characters, 2200 bytes
            # Not escaped to ASCII: the gateway counts bytes of UTF-8, not characters.
            await ws.send(
                json.dumps({"type": "chat.echo", "text": text, "ref": ref}, ensure_ascii=False)
            )
            reply, _ = await recv_until(ws, functools.partial(_has_ref, ref))
            assert reply["ok"] is False
            assert reply["error"]["code"] == "too_large"
            assert reply["error"]["limit"] == 2048
        # bids keeps its default of 1 KiB.
        reply = await call(ws, {"type": "bids.echo", "pad": "x" * 1100, "ref": 4})
        assert reply["error"]["code"] == "too_large"
        await assert_open(ws)
    assert (
        await user_gateway.metric("rt_gateway_refused_total", {"reason": "request_too_large"}) >= 3
    )


async def test_unknown_fields_and_types_never_reach_the_bus(
    user_gateway: ManagedProcess, bus: Redis
) -> None:
    """A field its service does not read, or an action it does not have, is refused at the
    gateway: the service never sees the request, and the stream never holds it."""
    user = f"fields-{uuid.uuid4().hex[:6]}"
    async with await connect_user(user_gateway.ws_url, user) as ws:
        send = {"type": "chat.send", "room": "r", "text": "hi", "client_id": "c1"}
        padded = await call(ws, {**send, "pad": "x" * 1500, "ref": 1})
        assert padded["error"]["code"] == "bad_request"
        assert padded["error"]["field"] == "pad"
        unknown = await call(ws, {"type": "chat.shout", "room": "r", "ref": 2})
        assert unknown["error"]["code"] == "unknown_type"
        assert "chat.send" in unknown["error"]["message"]
        # Sent last on the same stream: once it is handled, the others would have been.
        assert (await call(ws, {"type": "chat.echo", "ref": 3}))["ok"] is True
        await assert_open(ws)
    handled = [json.loads(raw) for raw in await bus.lrange(handled_key("chat"), 0, -1)]
    assert [record["type"] for record in handled if record["user"] == user] == ["chat.echo"]


async def test_handled_requests_are_trimmed_from_the_stream(
    user_gateway: ManagedProcess, bus: Redis
) -> None:
    """Once handled, requests leave the service's stream: it holds what is pending."""
    stream = request_stream("chat")
    count = 200
    async with await connect_user(user_gateway.ws_url, "streamer") as ws:
        for n in range(count):
            await send_json(ws, {"type": "chat.echo", "pad": "x" * 1500, "ref": n})
        replies = 0
        while replies < count:
            frame = await recv_json(ws)
            replies += frame.get("type") == "reply"

    async def trimmed() -> bool:
        return int(await bus.xlen(stream)) <= 1

    await wait_for(trimmed, what="the handled requests trimmed")
    assert int(await bus.xlen(stream)) <= 1


# Channel authorization (docs/security.md): who may subscribe to what.

#: Names no client may subscribe to, whatever follows: the bus's own and unknown namespaces.
REFUSED_CHANNELS = [
    ("gw:leases", "invalid_channel"),
    ("gw:gw-edge-1:replies", "invalid_channel"),
    ("svc:chat:requests", "invalid_channel"),
    ("ch:chat:general", "invalid_channel"),
    ("ch:presence:lobby", "invalid_channel"),
    ("bids:auction:1", "invalid_channel"),  # a service's own keys are no namespace
    ("secret:x", "invalid_channel"),
    ("Chat:general", "invalid_channel"),
    ("chat", "invalid_channel"),
    ("chat:", "invalid_channel"),
    ("chat:a b", "invalid_channel"),
]


async def test_channel_authorization_table(user_gateway: ManagedProcess, bus: Redis) -> None:
    """Each namespace's rule holds through a real gateway; bus names are never subscribable."""
    room = f"chat:private-{uuid.uuid4().hex[:6]}"
    await bus.set(channel_key("chat", room), json.dumps({"deny": True}))
    async with await connect(user_gateway.ws_url) as anonymous:
        reply = await call(anonymous, {"type": "subscribe", "channel": "presence:x", "ref": 0})
        assert reply["error"]["code"] == "unauthenticated"
    async with await connect_user(user_gateway.ws_url, "reader") as ws:
        for n, (channel, code) in enumerate(REFUSED_CHANNELS):
            reply = await call(ws, {"type": "subscribe", "channel": channel, "ref": n})
            assert (reply["ok"], reply.get("error", {}).get("code")) == (False, code), channel
        allowed = [
            "presence:lobby",  # any authenticated user
            "auction:a1",  # any authenticated user; the owner gives the position
            "chat:open",  # the owner (chat) decides, and allows
            "presence:chat:open",  # while subscribed to chat:open
            "presence:auction:a1",  # auctions are not guarded
        ]
        for channel in allowed:
            reply = await call(ws, {"type": "subscribe", "channel": channel, "ref": channel})
            assert reply["ok"] is True, (channel, reply)
        guarded = [
            (room, "forbidden"),  # the owner refuses this user
            (f"presence:{room}", "forbidden"),  # not without the room itself
        ]
        for channel, code in guarded:
            reply = await call(ws, {"type": "subscribe", "channel": channel, "ref": channel})
            assert reply["error"]["code"] == code, (channel, reply)

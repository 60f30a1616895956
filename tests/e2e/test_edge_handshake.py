"""Attacks at the edge on the handshake, through real sockets against real gateway processes.

Cross-site origins, slowloris request heads, half-open sockets, oversized heads. Per-address
rules are tested from several loopback addresses (127.0.0.0/8) by binding the client's end.
"""

from __future__ import annotations

import time

import pytest

from tests.e2e.conftest import Launcher
from tests.e2e.edge_support import idle, refused, refused_status, unauthenticated
from tests.support.client import DEADLINE, authenticate, connect, make_token
from tests.support.processes import ManagedProcess
from tests.support.raw import RawClient, upgrade_request
from tests.support.waiting import wait_until


HANDSHAKE_TIMEOUT = 1.0
MAX_HEADER_BYTES = 4096
MAX_HEADERS = 16
HALF_OPEN = 12


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

        await wait_until(counted, what=f"{HALF_OPEN} half-open sockets counted")
        # The pool is full: an upgrade now is refused, while /metrics (above) still answers.
        assert await refused_status(head_gateway.ws_url) == 503
        for client in clients:
            assert (await client.read_until_closed()).startswith(b"HTTP/1.1 408 ")
    finally:
        for client in clients:
            client.close()

    async def released() -> bool:
        return await unauthenticated(head_gateway, "handshake") == 0

    await wait_until(released, what="the half-open sockets released")
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

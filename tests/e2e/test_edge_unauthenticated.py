"""Idle unauthenticated sockets at the edge: they cannot starve users, and are capped per
address (several loopback addresses of 127.0.0.0/8, by binding the client's end).
"""

from __future__ import annotations

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import InvalidStatus

from tests.e2e.conftest import Launcher
from tests.e2e.edge_support import idle, refused, refused_status
from tests.support.client import (
    assert_open,
    authenticate,
    connect,
    connect_user,
    expect_close,
    make_token,
)
from tests.support.processes import ManagedProcess


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

"""A poll service started after the gateway is routed to without a gateway restart: the
gateway learns of it from the namespace registry within RT_REGISTRY_POLL."""

from __future__ import annotations

import asyncio

from tests.polls.support import Launcher
from tests.support.client import call, connect_user
from tests.support.waiting import wait_until


async def test_a_service_started_after_the_gateway_is_routed_to(launcher: Launcher) -> None:
    """poll.get is unknown before the service runs, and answered by it after it announced."""
    gateway = await asyncio.to_thread(launcher.gateway, {"RT_REGISTRY_POLL": "0.2"})
    alice = await connect_user(gateway.ws_url, "alice")
    try:
        before = await call(alice, {"type": "poll.get", "poll": "0123456789abcdef", "ref": 1})
        assert before["error"]["code"] == "unknown_type"
        await asyncio.to_thread(launcher.poll)
        refs = iter(range(2, 10_000))

        async def routed() -> bool:
            message = {"type": "poll.get", "poll": "0123456789abcdef", "ref": next(refs)}
            reply = await call(alice, message)
            return bool(reply["error"]["code"] == "poll_not_found")

        # The service is ready once announced; the gateway reads the registry every 0.2 s.
        await wait_until(routed, "the gateway routing poll.get to the new service")
    finally:
        await alice.close()

"""What the edge tests share: refused upgrades, the gateway's refusal and connection counts."""

from __future__ import annotations

from websockets.exceptions import InvalidStatus

from tests.support.client import connect
from tests.support.processes import ManagedProcess
from tests.support.waiting import wait_until


__all__ = [
    "idle",
    "refused",
    "refused_status",
    "unauthenticated",
]


async def refused_status(url: str, **options: object) -> int:
    """The HTTP status of an upgrade the gateway refuses (fails if it opens)."""
    try:
        ws = await connect(url, **options)  # type: ignore[arg-type]
    except InvalidStatus as exc:
        return int(exc.response.status_code)
    await ws.close()
    raise AssertionError("the upgrade was accepted")


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

    await wait_until(quiet, what="no connection left")

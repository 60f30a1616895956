"""Liveness, readiness and metrics endpoints, the same on every process.

``/livez`` answers while the process runs. ``/readyz`` answers 200 only while Redis answers
and the bus listener is alive. Neither says more than that: health endpoints are often
reachable from outside, so they carry no internal details.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Gauge,
    disable_created_metrics,
    generate_latest,
)
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from common.redis_client import RedisClient


__all__ = ["ReadinessCheck", "health_routes", "redis_answers"]

# A `_created` timestamp beside every counter doubles the scrape for no use here.
disable_created_metrics()  # type: ignore[no-untyped-call]

#: Returns whether the process can do its work now.
ReadinessCheck = Callable[[], Awaitable[bool]]

#: Checked at every scrape, so that an alert sees a process that answers /metrics but is
#: not ready (Redis unreachable) without anyone having to probe /readyz.
_READY = Gauge("rt_ready", "1 when /readyz would answer 200 (checked at each scrape), else 0.")


async def redis_answers(redis: RedisClient) -> bool:
    """Whether Redis answers a PING within a second."""
    try:
        async with asyncio.timeout(1.0):
            return bool(await redis.ping())
    except (RedisError, OSError, TimeoutError):
        return False


def health_routes(ready: ReadinessCheck) -> list[Route]:
    """The ``/livez``, ``/readyz`` and ``/metrics`` routes."""

    async def livez(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def readyz(request: Request) -> Response:
        if await ready():
            return PlainTextResponse("ready\n")
        return PlainTextResponse("not ready\n", status_code=503)

    async def metrics(request: Request) -> Response:
        _READY.set(1 if await ready() else 0)
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return [
        Route("/livez", livez, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]

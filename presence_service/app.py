"""The presence service: gateway notifications in, join/leave events and queries out.

Each read of a request stream is handled as one batch (handlers.py), each request in the
partition of its channel. A background sweeper, in every instance, releases the connections of
dead gateways and of restart graces that ran out, partition by partition; the scripts make
each release happen once however many instances sweep.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from redis.exceptions import RedisError

from common.announcer import RegistryReader
from common.bus.backoff import Backoff
from common.bus.worker import Outcome
from common.envelope import Request
from common.keys import Partitions
from common.redis_client import RedisClient
from common.service import Service
from common.tasks import raise_if_cancelled
from presence_service.handlers import PresenceHandlers
from presence_service.metrics import PresenceMetrics
from presence_service.settings import PresenceSettings
from presence_service.store import PresenceStore


__all__ = ["PresenceService", "service_factory"]

logger = logging.getLogger(__name__)


class PresenceService(Service):
    def __init__(
        self,
        redis: RedisClient,
        settings: PresenceSettings,
        partitions: Partitions,
        metrics: PresenceMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.store = PresenceStore(
            redis,
            partitions,
            grace=settings.grace,
            tombstone_ttl=settings.tombstone_ttl,
            batch=settings.sweep_batch,
        )
        self.metrics = metrics or PresenceMetrics()
        #: The namespace registry, read as the gateways read it: the policy (presence kept,
        #: owner access) of every service's channels.
        self.registry = RegistryReader(redis, settings.registry_poll)
        self.handlers = PresenceHandlers(
            self.store,
            self.metrics,
            list_limit=settings.list_limit,
            registry=self.registry.view,
        )
        # The first sweep is due at once; each one that succeeds makes the next due one
        # interval after it started. Read at each scrape, so a sweeper that fails or hangs
        # shows as a growing lag, not as a stale value.
        self._sweep_due = time.monotonic()
        self.metrics.sweep_lag.set_function(lambda: max(0.0, time.monotonic() - self._sweep_due))

    async def setup(self) -> None:
        try:
            await self.store.load()
        except (RedisError, OSError) as exc:
            # Not fatal: scripts are loaded on first use, once Redis answers.
            logger.warning("could not load the presence scripts", extra={"error": repr(exc)})
        try:
            await self.registry.read()
        except (RedisError, OSError) as exc:
            # Not fatal either: the reader reads again every RT_REGISTRY_POLL seconds.
            logger.warning("could not read the namespace registry", extra={"error": repr(exc)})

    async def handle_batch(self, requests: list[Request]) -> list[Outcome]:
        return await self.handlers.handle_batch(requests)

    # The sweeper.

    async def background(self) -> None:
        """Read the registry and sweep, for the life of the process."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self.registry.run(), name="presence-registry")
            group.create_task(self._sweeper(), name="presence-sweeper")

    async def _sweeper(self) -> None:
        """Sweep every ``sweep_interval`` seconds, for the life of the process."""
        backoff = Backoff(maximum=max(2.0, self.settings.sweep_interval))
        while True:
            raise_if_cancelled()
            started = time.monotonic()
            try:
                await self.sweep()
            except (RedisError, OSError) as exc:
                self.metrics.sweep_errors.inc()
                delay = backoff.next_delay()
                logger.warning(
                    "presence sweep failed; retrying",
                    extra={"error": repr(exc), "retry_in": round(delay, 3)},
                )
                await asyncio.sleep(delay)
                continue
            backoff.reset()
            self._sweep_due = started + self.settings.sweep_interval
            raise_if_cancelled()
            elapsed = time.monotonic() - started
            await asyncio.sleep(max(0.0, self.settings.sweep_interval - elapsed))

    async def sweep(self) -> None:
        """Release dead gateways' connections and ended restart graces; refresh the gauges."""
        started = time.perf_counter()
        reaped = await self.store.reap_dead_gateways()
        self.metrics.reaped(reaped)
        for gateway in reaped.gateways:
            logger.info("released the connections of a dead gateway", extra={"gateway": gateway})
        released, leaves = await self.store.expire_lingering()
        self.metrics.lingering_expired.inc(released)
        self.metrics.published(0, leaves)
        self.metrics.state(await self.store.stats())
        if reaped.connections or released:
            logger.info(
                "presence sweep",
                extra={
                    "reaped_connections": reaped.connections,
                    "lingering_released": released,
                    "leaves": reaped.leaves + leaves,
                    "seconds": round(time.perf_counter() - started, 4),
                },
            )


def service_factory(
    settings: PresenceSettings,
) -> Callable[[RedisClient, Partitions], PresenceService]:
    """The factory ``run_service`` calls once Redis is connected."""

    def factory(redis: RedisClient, partitions: Partitions) -> PresenceService:
        return PresenceService(redis, settings, partitions)

    return factory

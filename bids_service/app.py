"""The bids service: the bus handlers, the admin API, and the loop that closes auctions."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

from redis.exceptions import RedisError
from starlette.routing import BaseRoute

from bids_service.admin import admin_routes
from bids_service.handlers import BidsHandlers
from bids_service.metrics import BidsMetrics
from bids_service.seed import seed_demo
from bids_service.settings import BidsSettings
from bids_service.store import BidStore
from common.bus.backoff import Backoff
from common.bus.worker import Outcome
from common.envelope import Request
from common.keys import Partitions
from common.redis_client import RedisClient
from common.service import Service
from common.tasks import raise_if_cancelled


__all__ = ["CLOSE_BATCH", "BidsService", "service_factory"]

logger = logging.getLogger(__name__)

#: Most auctions one pass of the closer closes; a full pass is followed by another at once.
CLOSE_BATCH = 100


class BidsService(Service):
    """The bids service on ``partitions`` (``RT_BIDS_PARTITIONS``): its keys, its events and
    the closer's sweep are split over them (bids_service/keys.py)."""

    def __init__(
        self,
        redis: RedisClient,
        partitions: Partitions,
        settings: BidsSettings,
        metrics: BidsMetrics,
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self.store = BidStore(
            redis,
            partitions,
            key_ttl_ms=round(settings.key_ttl * 1000),
            history_maxlen=settings.history_maxlen,
            replay_limit=settings.replay_limit,
            refusal_ttl_ms=round(settings.refusal_ttl * 1000),
            bid_rate=settings.bid_rate,
            bid_burst=settings.bid_burst,
        )
        self._handlers = BidsHandlers(self.store, metrics, list_limit=settings.list_limit)
        self._seeded = not settings.seed_demo

    async def setup(self) -> None:
        # Redis may be down at start: the worker waits for it, scripts load on first NOSCRIPT
        # and the background task seeds later, so the process still starts and reports unready.
        try:
            await self.store.load()
            await self._seed()
        except (RedisError, OSError) as exc:
            logger.warning("Redis unavailable at start-up", extra={"error": repr(exc)})

    async def _seed(self) -> None:
        if self._seeded:
            return
        created = await seed_demo(self.store, self._settings)
        self._seeded = True
        if created:
            logger.info("demo auctions created", extra={"auctions": ",".join(created)})

    async def handle_batch(self, requests: list[Request]) -> list[Outcome]:
        return await self._handlers.handle_batch(requests)

    def routes(self) -> list[BaseRoute]:
        return list(admin_routes(self.store, self._settings))

    async def background(self) -> None:
        """Close auctions whose end has passed, in every partition, every ``close_interval``,
        until cancelled.

        Every instance runs this loop; close.lua makes each close happen exactly once.
        """
        backoff = Backoff()
        interval = self._settings.close_interval
        while True:
            raise_if_cancelled()
            try:
                await self._seed()
                due = await self.store.due(CLOSE_BATCH)
                if due:
                    closed = await self.store.close(due)
                    if closed:
                        self._metrics.closed.inc(len(closed))
                        for late in closed.values():
                            self._metrics.close_lag.observe(late)
                        logger.info("auctions closed", extra={"auctions": ",".join(closed)})
                self._metrics.closer_runs.inc()
                backoff.reset()
                # Jittered, so that instances do not all look at the same instant.
                delay = 0.0 if len(due) == CLOSE_BATCH else interval * random.uniform(0.5, 1.5)
            except (RedisError, OSError) as exc:
                self._metrics.close_errors.inc()
                delay = backoff.next_delay()
                logger.warning(
                    "closing auctions failed; retrying",
                    extra={"error": repr(exc), "retry_in": round(delay, 3)},
                )
            await asyncio.sleep(delay)


def service_factory(settings: BidsSettings) -> Callable[[RedisClient, Partitions], BidsService]:
    """The factory ``run_service`` calls once Redis is connected."""
    # Created once per process: Prometheus metrics register globally.
    metrics = BidsMetrics()

    def factory(redis: RedisClient, partitions: Partitions) -> BidsService:
        return BidsService(redis, partitions, settings, metrics)

    return factory

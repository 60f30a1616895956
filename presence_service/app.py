"""The presence service: gateway notifications in, join/leave events and queries out.

Each read of the request stream is handled as one batch: every notification and query in
it becomes one script call of one pipeline (a single round trip). A background sweeper,
in every instance, releases the connections of dead gateways and of restart graces that
ran out; the scripts make each release happen once however many instances sweep.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from common.bus.backoff import Backoff
from common.bus.worker import Outcome, traced
from common.envelope import Request, now_ms
from common.errors import ErrorCode, ServiceError
from common.service import Service
from common.tasks import raise_if_cancelled
from presence_service.handlers import (
    NOTIFICATIONS,
    QUERIES,
    count_reply,
    list_reply,
    parse_change,
    parse_prior,
    parse_query,
    subscribe_reply,
)
from presence_service.metrics import PresenceMetrics
from presence_service.model import Applied, Change, Listing, Query
from presence_service.settings import PresenceSettings
from presence_service.store import PresenceStore


__all__ = ["PresenceService"]

logger = logging.getLogger(__name__)


class PresenceService(Service):
    def __init__(
        self,
        redis: Redis,
        settings: PresenceSettings,
        metrics: PresenceMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.store = PresenceStore(
            redis,
            grace=settings.grace,
            tombstone_ttl=settings.tombstone_ttl,
            batch=settings.sweep_batch,
        )
        self.metrics = metrics or PresenceMetrics()

    async def setup(self) -> None:
        try:
            await self.store.load()
        except (RedisError, OSError) as exc:
            # Not fatal: scripts are loaded on first use, once Redis answers.
            logger.warning("could not load the presence scripts", extra={"error": repr(exc)})

    async def handle_batch(self, requests: list[Request]) -> list[Outcome]:
        """Handle one read's requests in one pipeline; one outcome per request, in order.

        A query's prior notifications run just before it, in the same pipeline.
        """
        outcomes: list[Outcome | None] = [None] * len(requests)
        operations: list[Change | Query] = []
        #: For each operation, the request it answers; None for a prior notification.
        places: list[int | None] = []
        for index, request in enumerate(requests):
            try:
                if request.type in NOTIFICATIONS:
                    prior: list[Change] = []
                    operation: Change | Query = parse_change(request)
                elif request.type in QUERIES:
                    prior = parse_prior(request)
                    operation = parse_query(request, self.settings.list_limit)
                else:
                    raise ServiceError(
                        ErrorCode.UNKNOWN_TYPE, f"unknown message type {request.type!r}"
                    )
            except ServiceError as exc:
                if request.noreply:
                    with traced(request):
                        logger.error(
                            "dropping a malformed notification",
                            extra={"type": request.type, "error": exc.message},
                        )
                outcomes[index] = exc
                continue
            operations += prior
            places += [None] * len(prior)
            operations.append(operation)
            places.append(index)
        results = await self.store.run(operations)
        applied_at = now_ms()
        for place, operation, result in zip(places, operations, results, strict=True):
            if place is None:
                self._outcome(operation, result)
            else:
                request = requests[place]
                outcomes[place] = self._outcome(operation, result, request)
                if isinstance(operation, Change):
                    self.metrics.lag.observe(max(0.0, (applied_at - request.ts) / 1000))
        return [outcome if outcome is not None else {} for outcome in outcomes]

    def _outcome(
        self,
        operation: Change | Query,
        result: Applied | Listing | ResponseError,
        request: Request | None = None,
    ) -> Outcome:
        """The outcome of one operation; ``request`` is None for a prior notification."""
        kind = request.type if request is not None else "prior"
        if isinstance(result, ResponseError):
            with traced(request) if request is not None else contextlib.nullcontext():
                logger.error("a presence script failed", extra={"type": kind, "error": str(result)})
            return ServiceError(ErrorCode.INTERNAL_ERROR, "internal error")
        if isinstance(operation, Query):
            assert isinstance(result, Listing)
            try:
                if kind == "presence.list":
                    return list_reply(operation, result)
                if kind == "subscribe":
                    return subscribe_reply(operation, result)
                return count_reply(operation, result)
            except ServiceError as exc:
                return exc
        assert isinstance(result, Applied)
        self.metrics.notifications.labels(
            operation.kind, "applied" if result.applied else "stale"
        ).inc()
        self.metrics.published(result.joins, result.leaves)
        return {}

    # The sweeper.

    async def background(self) -> None:
        """Sweep every ``sweep_interval`` seconds, for the life of the process."""
        backoff = Backoff(maximum=max(2.0, self.settings.sweep_interval))
        loop = asyncio.get_running_loop()
        while True:
            raise_if_cancelled()
            started = loop.time()
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
            raise_if_cancelled()
            elapsed = loop.time() - started
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

"""The presence service's batch handler: each read of the request stream in one pipeline.

Every notification and query of a read becomes a script call (a drop one per partition it
names) of one pipeline, a single round trip, each in the partition of its channel: a read's
requests may be of several partitions. A query's prior notifications run just before it.
"""

from __future__ import annotations

import contextlib
import logging

from redis.exceptions import ResponseError

from common.bus.worker import Outcome, traced
from common.envelope import Request, now_ms
from common.errors import ErrorCode, ServiceError
from common.registry import RegistryView
from presence_service.metrics import PresenceMetrics
from presence_service.rules import (
    NOTIFICATIONS,
    QUERIES,
    Applied,
    Change,
    Listing,
    Query,
    count_reply,
    list_reply,
    parse_change,
    parse_prior,
    parse_query,
    subscribe_reply,
)
from presence_service.store import PresenceStore


__all__ = ["PresenceHandlers"]

logger = logging.getLogger(__name__)


class PresenceHandlers:
    def __init__(
        self,
        store: PresenceStore,
        metrics: PresenceMetrics,
        *,
        list_limit: int,
        registry: RegistryView,
    ) -> None:
        self.store = store
        #: The namespace registry: the policy of every service's channels.
        self._registry = registry
        self.metrics = metrics
        self._list_limit = list_limit

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
                registry = self._registry.current
                if request.type in NOTIFICATIONS:
                    prior: list[Change] = []
                    operation: Change | Query = parse_change(request, registry)
                elif request.type in QUERIES:
                    prior = parse_prior(request, registry)
                    operation = parse_query(request, self._list_limit, registry)
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

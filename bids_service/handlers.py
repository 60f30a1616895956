"""Requests from clients (through gateways): ``bids.place``, ``bids.get``, ``bids.list``, subscribe.

The bids of one read of the request stream are judged together, in one Redis round trip: one
pipeline of place-script calls, one call per partition of their auctions (and chunk), since
a read may hold requests of several partitions (see :meth:`BidsHandlers.handle_batch`).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError, TimeoutError as RedisTimeout

from bids_service.metrics import BidsMetrics
from bids_service.rules import (
    PlaceCommand,
    parse_get,
    parse_list,
    parse_place,
    parse_subscribe,
    verdict_outcome,
)
from bids_service.store import BidStore
from common.bus.worker import Outcome, traced
from common.envelope import Request
from common.errors import ErrorCode, ServiceError


__all__ = ["BidsHandlers"]

logger = logging.getLogger(__name__)

#: Failures after which the whole read is left unacknowledged, to be handled again (the
#: verdicts stored under idempotency keys make that harmless).
_RETRYABLE = (RedisConnectionError, RedisTimeout, OSError)


def _bidder(request: Request) -> str:
    if request.user is None:
        raise ServiceError(ErrorCode.UNAUTHENTICATED, "send 'auth' with a token first")
    return request.user


class BidsHandlers:
    def __init__(self, store: BidStore, metrics: BidsMetrics, *, list_limit: int) -> None:
        self._store = store
        self._metrics = metrics
        self._list_limit = list_limit

    async def handle_batch(self, requests: list[Request]) -> list[Outcome]:
        """Every request of one read, in order: the bids in one pipeline, then the rest."""
        outcomes: list[Outcome | None] = [None] * len(requests)
        bids: list[tuple[int, PlaceCommand, str]] = []
        placed = self._metrics.placed
        for index, request in enumerate(requests):
            if request.type != "bids.place":
                continue
            try:
                bids.append((index, parse_place(request.data), _bidder(request)))
            except ServiceError as exc:
                outcomes[index] = exc
                placed[exc.code if exc.code in placed else ErrorCode.BAD_REQUEST].inc()
        if bids:
            await self._place(requests, bids, outcomes)
        for index, request in enumerate(requests):
            if outcomes[index] is None:
                outcomes[index] = await self._one(request)
        return [outcome for outcome in outcomes if outcome is not None]

    async def _place(
        self,
        requests: list[Request],
        bids: list[tuple[int, PlaceCommand, str]],
        outcomes: list[Outcome | None],
    ) -> None:
        metrics = self._metrics
        started = time.perf_counter()
        verdicts = await self._store.place([(command, bidder) for _, command, bidder in bids])
        metrics.batch_seconds.observe(time.perf_counter() - started)
        metrics.batch_size.observe(len(bids))
        now_ms = time.time() * 1000
        queue_seconds = metrics.queue_seconds
        for (index, command, _), (verdict, fresh) in zip(bids, verdicts, strict=True):
            outcome = verdict_outcome(verdict, command)
            outcomes[index] = outcome
            if isinstance(outcome, ServiceError):
                metrics.placed[outcome.code].inc()
            else:
                metrics.placed["accepted"].inc()
            if not fresh:
                metrics.replayed.inc()
            elif verdict.extended:
                metrics.extended.inc()
            queue_seconds.observe(max(0.0, now_ms - requests[index].ts) / 1000)

    async def _one(self, request: Request) -> Outcome:
        try:
            return await self._read(request)
        except ServiceError as exc:
            return exc
        except _RETRYABLE:
            raise
        except Exception:
            with traced(request):
                logger.exception("request handler failed", extra={"type": request.type})
            return ServiceError(ErrorCode.INTERNAL_ERROR, "internal error")

    async def _read(self, request: Request) -> dict[str, Any]:
        """A request other than ``bids.place``; raises ServiceError to refuse."""
        kind = request.type
        if kind == "bids.get":
            auction = parse_get(request.data)
            view = await self._store.get(auction)
            if view is None:
                raise ServiceError(ErrorCode.AUCTION_NOT_FOUND, f"no auction {auction!r}")
            return view
        if kind == "bids.list":
            parse_list(request.data)
            return {"auctions": await self._store.list_open(self._list_limit)}
        if kind == "subscribe":
            return await self._subscribe(request)
        raise ServiceError(
            ErrorCode.UNKNOWN_TYPE,
            f"unknown message type {kind[:64]!r}: the bids service has bids.place, "
            "bids.get and bids.list",
        )

    async def _subscribe(self, request: Request) -> dict[str, Any]:
        """Any authenticated user may follow an auction; ``since`` replays what was missed."""
        auction, since = parse_subscribe(request.data)
        replay = await self._store.replay(auction, since)
        if replay is None:
            raise ServiceError(ErrorCode.AUCTION_NOT_FOUND, f"no auction {auction!r}")
        answer: dict[str, Any] = {"position": str(replay.position)}
        if since is not None:
            answer["recovered"] = replay.events is not None
            answer["events"] = [
                {"event": event["event"], "position": event["position"], "data": event["data"]}
                for event in replay.events or ()
            ]
        return answer

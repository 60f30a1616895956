"""The service side of the bus: a consumer-group member that handles requests and replies.

Entries are acknowledged only after they are handled and the reply is published. Entries
left pending by a dead instance are claimed (XAUTOCLAIM) once idle for ``claim_idle_ms``, so
each request is handled at least once; services make the effect idempotent (an idempotency
key, a client id) so that it happens exactly once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, cast

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from common.bus.backoff import Backoff
from common.codec import load_bus, pack_bus
from common.envelope import Reply, Request, parse_envelope
from common.errors import ErrorCode, ProtocolError, ServiceError
from common.keys import reply_channel, request_stream
from common.log import trace_id
from common.settings import ServiceSettings


__all__ = ["RequestHandler", "ServiceWorker", "WorkerObserver"]

logger = logging.getLogger(__name__)

#: Handles one request: returns the reply data, or raises :class:`ServiceError`.
RequestHandler = Callable[[Request], Awaitable["dict[str, Any] | Reply"]]


class WorkerObserver(Protocol):
    """Where a worker reports what it does (metrics)."""

    def handled(self, request_type: str, result: str, seconds: float) -> None: ...

    def backlog(self, pending: int, lag: int) -> None: ...

    def bus_error(self) -> None: ...


class _NoObserver:
    def handled(self, request_type: str, result: str, seconds: float) -> None:
        pass

    def backlog(self, pending: int, lag: int) -> None:
        pass

    def bus_error(self) -> None:
        pass


class ServiceWorker:
    """Reads a service's request stream as one consumer of the service's group."""

    def __init__(
        self,
        redis: Redis,
        settings: ServiceSettings,
        handler: RequestHandler,
        observer: WorkerObserver | None = None,
    ) -> None:
        self._redis = redis
        self._settings = settings
        self._handler = handler
        self._observer = observer or _NoObserver()
        self.stream = request_stream(settings.service)
        self.group = settings.service
        self.consumer = f"{settings.service}-{settings.instance}"
        self.alive = False

    async def run(self) -> None:
        """Consume until cancelled; reconnect with backoff after Redis failures."""
        backoff = Backoff()
        loop = asyncio.get_running_loop()
        block_ms = max(1, int(self._settings.claim_interval * 1000))
        while True:
            try:
                await self._ensure_group()
                self.alive = True
                next_claim = 0.0
                while True:
                    if loop.time() >= next_claim:
                        await self._claim_stale()
                        await self._report_backlog()
                        next_claim = loop.time() + self._settings.claim_interval
                    response = await self._redis.xreadgroup(
                        self.group,
                        self.consumer,
                        {self.stream: ">"},
                        count=self._settings.batch,
                        block=block_ms,
                    )
                    backoff.reset()
                    for _stream, entries in cast("list[Any]", response or []):
                        await self._process(entries)
            except ResponseError as exc:
                if "NOGROUP" in str(exc):
                    # Redis lost the group (a restart without persistence): create it again.
                    logger.warning("consumer group missing; creating it again")
                    continue
                await self._pause_after(exc, backoff)
            except (RedisError, OSError) as exc:
                await self._pause_after(exc, backoff)

    async def _pause_after(self, exc: BaseException, backoff: Backoff) -> None:
        self.alive = False
        self._observer.bus_error()
        delay = backoff.next_delay()
        logger.warning(
            "request stream unavailable; retrying",
            extra={"error": repr(exc), "retry_in": round(delay, 3)},
        )
        await asyncio.sleep(delay)

    async def _ensure_group(self) -> None:
        try:
            # From id 0, so that requests sent before any instance ever ran are handled.
            await self._redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _claim_stale(self) -> None:
        start = "0-0"
        while True:
            result = await self._redis.xautoclaim(
                self.stream,
                self.group,
                self.consumer,
                min_idle_time=self._settings.claim_idle_ms,
                start_id=start,
                count=self._settings.batch,
            )
            start, entries = result[0], result[1]
            if entries:
                logger.info("claimed stale requests", extra={"count": len(entries)})
                await self._process(entries)
            if start in (b"0-0", "0-0"):
                return

    async def _report_backlog(self) -> None:
        for group in await self._redis.xinfo_groups(self.stream):
            if group["name"] in (self.group, self.group.encode()):
                self._observer.backlog(int(group["pending"]), int(group.get("lag") or 0))

    async def _process(self, entries: list[Any]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        entry_ids = []
        for entry_id, fields in entries:
            entry_ids.append(entry_id)
            if fields is None:  # trimmed from the stream while pending
                continue
            answer = await self._handle(fields)
            if answer is not None:
                gateway, reply = answer
                pipe.publish(reply_channel(gateway), pack_bus(reply.to_wire()))
        pipe.xack(self.stream, self.group, *entry_ids)
        await pipe.execute()

    async def _handle(self, fields: dict[bytes, bytes]) -> tuple[str, Reply] | None:
        try:
            request = parse_envelope(load_bus(fields[b"e"]))
        except (KeyError, ProtocolError) as exc:
            # Nobody to answer: acknowledge, so that it is not retried forever.
            logger.error("dropping an undecodable request", extra={"error": str(exc)})
            self._observer.handled("undecodable", "dropped", 0.0)
            return None
        if not isinstance(request, Request):
            logger.error("dropping a non-request on the request stream")
            return None
        token = trace_id.set(request.trace)
        started = time.perf_counter()
        try:
            answer = await self._handler(request)
        except ServiceError as exc:
            reply = Reply(request.id, request.connection, error=exc.to_error())
            result = exc.code
        except Exception:
            logger.exception("request handler failed", extra={"type": request.type})
            error = {"code": ErrorCode.INTERNAL_ERROR.value, "message": "internal error"}
            reply = Reply(request.id, request.connection, error=error)
            result = ErrorCode.INTERNAL_ERROR.value
        else:
            if isinstance(answer, Reply):
                reply = answer
            else:
                reply = Reply(request.id, request.connection, data=answer)
            result = "ok" if reply.ok else str(reply.error and reply.error.get("code"))
        finally:
            trace_id.reset(token)
        self._observer.handled(request.type, result, time.perf_counter() - started)
        return request.gateway, reply

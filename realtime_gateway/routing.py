"""Requests from connections to services, and the replies coming back.

Each request waits at most ``timeout`` seconds. A reply that arrives later is dropped (and
counted): the client already got ``service_unavailable`` for that ``ref``, and every ref gets
exactly one reply. The request itself stays in the service's stream and is handled when an
instance is back, which is why services make effects idempotent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from redis.exceptions import OutOfMemoryError

from common.bus.producer import RequestProducer
from common.codec import load_bus, pack_bus
from common.envelope import Reply, ReplyAddress, ReplyBatch, Request, parse_envelope
from common.errors import ErrorCode, ProtocolError, ServiceError
from common.keys import request_stream
from common.registry import RegistryView
from realtime_gateway.metrics import GatewayMetrics


__all__ = ["Caller", "ReplyCallback", "Router"]

logger = logging.getLogger(__name__)

#: Called with the reply, or with None when the service did not answer in time.
ReplyCallback = Callable[[Reply | None, str], None]


class Caller(Protocol):
    """Whom a request is from: a connection, named in the request for the reply's way back."""

    @property
    def id(self) -> str: ...

    @property
    def user(self) -> str | None: ...


@dataclass(slots=True)
class _Pending:
    service: str
    on_reply: ReplyCallback
    #: The event loop's clock when the request was sent.
    started: float
    deadline: float


class Router:
    def __init__(
        self,
        gateway_id: str,
        producer_factory: Callable[[Callable[[list[str], BaseException], None]], RequestProducer],
        *,
        timeout: float,
        metrics: GatewayMetrics,
        registry: RegistryView | None = None,
    ) -> None:
        """``registry``: the services' partitions, which say the stream of each request."""
        self.gateway_id = gateway_id
        self._registry = registry or RegistryView()
        self._producer = producer_factory(self._failed)
        self._timeout = timeout
        self._metrics = metrics
        # In the order sent, which is the order of the deadlines (one timeout for all): one
        # timer, for the oldest, rather than a timer per request.
        self._pending: dict[str, _Pending] = {}
        self._sweeper: asyncio.TimerHandle | None = None

    @property
    def pending(self) -> int:
        return len(self._pending)

    def request(
        self,
        connection: Caller,
        service: str,
        request_type: str,
        data: dict[str, Any],
        on_reply: ReplyCallback,
        *,
        prior: tuple[dict[str, Any], ...] = (),
        entity: str | None = None,
    ) -> None:
        """Send a request to ``service``; ``on_reply`` is called exactly once.

        It goes to the stream of the partition of ``entity`` (a ``subscribe``'s channel
        entity), else of the entity the service announced for ``request_type``.
        ``prior``: notifications the service must have applied before it handles this one.
        """
        request = Request(
            type=request_type,
            data=data,
            gateway=self.gateway_id,
            connection=connection.id,
            user=connection.user,
            prior=prior,
            batch=True,
        )
        loop = asyncio.get_running_loop()
        try:
            body = pack_bus(request.to_wire())
            reply_to = pack_bus(ReplyAddress.of(request).to_wire())
        except (TypeError, ValueError, OverflowError) as exc:
            # Protocol checks keep client data packable (depth, JSON types); should one slip
            # through, the client still gets its one reply, and at once.
            logger.error("a request could not be encoded", extra={"error": repr(exc)})
            self._metrics.requests(service, "error").inc()
            error = ServiceError(ErrorCode.BAD_REQUEST, "the request cannot be encoded")
            reply = Reply(request.id, connection.id, error=error.to_error())
            loop.call_soon(on_reply, reply, "")
            return
        now = loop.time()
        self._pending[request.id] = _Pending(service, on_reply, now, now + self._timeout)
        if self._sweeper is None:
            self._sweeper = loop.call_at(now + self._timeout, self._sweep)
        registry = self._registry.current
        stream = (
            registry.request_stream(service, request_type, data)
            if entity is None
            else registry.entity_stream(service, entity)
        )
        self._producer.send(stream, request.id, body, reply_to=reply_to)

    def notify(
        self,
        connection: Caller,
        service: str,
        request_type: str,
        data: dict[str, Any],
        *,
        partition: int = 0,
    ) -> None:
        """Send a notification to partition ``partition`` of ``service``: handled by the
        service, never answered."""
        request = Request(
            type=request_type,
            data=data,
            gateway=self.gateway_id,
            connection=connection.id,
            user=connection.user,
            noreply=True,
        )
        # Kept and sent again if Redis is unreachable: a lost one would leave the service wrong.
        partitioned = self._registry.current.partitions(service) is not None
        stream = request_stream(service, partition if partitioned else None)
        self._producer.send(stream, request.id, pack_bus(request.to_wire()), retry=True)

    def on_message(self, body: bytes) -> None:
        """Handle one message from this gateway's reply channel."""
        try:
            envelope = parse_envelope(load_bus(body))
        except ProtocolError as exc:
            self._metrics.bus_errors.inc()
            logger.error("dropping an undecodable reply", extra={"error": exc.message})
            return
        if isinstance(envelope, Reply):
            self._answer(envelope)
        elif isinstance(envelope, ReplyBatch):
            for reply in envelope.replies:
                self._answer(reply)
        else:
            self._metrics.bus_errors.inc()
            logger.error("dropping a non-reply on the reply channel")

    def _answer(self, reply: Reply) -> None:
        pending = self._pending.pop(reply.request_id, None)
        if pending is None:
            self._metrics.late_replies.inc()
            return
        self._metrics.requests(pending.service, "ok" if reply.ok else "error").inc()
        self._metrics.request_seconds(pending.service).observe(
            asyncio.get_running_loop().time() - pending.started
        )
        pending.on_reply(reply, "")

    def _sweep(self) -> None:
        """Expire every request past its deadline; wait for the next one's."""
        self._sweeper = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        while self._pending:
            request_id, oldest = next(iter(self._pending.items()))
            if oldest.deadline > now:
                if self._sweeper is not None:  # armed by a request sent from a callback
                    self._sweeper.cancel()
                self._sweeper = loop.call_at(oldest.deadline, self._sweep)
                return
            self._expire(request_id, "did not answer in time")

    def _expire(self, request_id: str, why: str) -> None:
        pending = self._pending.pop(request_id, None)
        if pending is None:
            return
        self._metrics.requests(pending.service, "unavailable").inc()
        pending.on_reply(None, f"service {pending.service!r} {why}")

    def _failed(self, request_ids: list[str], exc: BaseException) -> None:
        self._metrics.bus_errors.inc()
        logger.warning("could not append requests", extra={"error": repr(exc)})
        # A full Redis (maxmemory with noeviction) refuses the append: say so, as it is no
        # outage and retrying at once will not help.
        why = (
            "is unavailable: Redis is out of memory"
            if isinstance(exc, OutOfMemoryError)
            else "is unreachable: the bus is down"
        )
        for request_id in request_ids:
            self._expire(request_id, why)

    async def aclose(self) -> None:
        await self._producer.aclose()

"""The service side of the bus: a consumer-group member that handles requests and replies.

Entries are acknowledged (and deleted) only after they are handled and the reply is
published. Entries left pending by a dead instance are claimed (XAUTOCLAIM) once idle for
``claim_idle_ms``, so each request is handled at least once; services make the effect
idempotent (an idempotency key, a client id) so that it happens exactly once.

Each read's requests go to the service's batch handler together (one Redis round trip for
all of them, say); each request is then counted with its result and its share of the
batch's time, and the worker's log lines about one request carry its trace id. A handler
that logs about one request binds its trace id with :func:`traced`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from redis.exceptions import (
    ConnectionError as RedisConnectionError,
    RedisError,
    ResponseError,
    TimeoutError as RedisTimeoutError,
)

from common.bus.backoff import Backoff
from common.bus.nodes import NodeConnections, is_redirect
from common.codec import load_bus, pack_bus, pack_bus_with_packed
from common.envelope import Reply, ReplyAddress, ReplyBatch, Request, parse_envelope
from common.errors import ErrorCode, ServiceError
from common.keys import Partitions, reply_channel
from common.log import trace_id
from common.redis_client import COMMAND_TIMEOUT, MAX_BLOCK, RedisClient
from common.resp import command
from common.settings import ServiceSettings
from common.tasks import raise_if_cancelled


__all__ = ["Backlog", "BatchHandler", "Outcome", "ServiceWorker", "WorkerObserver", "traced"]

logger = logging.getLogger(__name__)

#: What handling one request comes to: reply data, a whole reply, or a refusal.
Outcome = dict[str, Any] | Reply | ServiceError

#: Handles the requests of one read together (one Redis round trip for all, say), in order;
#: returns one outcome per request. Raising a connection error leaves the whole read to be
#: handled again; raising anything else answers every request ``internal_error``.
BatchHandler = Callable[[list[Request]], Awaitable[list[Outcome]]]


@contextlib.contextmanager
def traced(request: Request) -> Iterator[None]:
    """Bind ``request``'s trace id to every log line written inside (:data:`trace_id`)."""
    token = trace_id.set(request.trace)
    try:
        yield
    finally:
        trace_id.reset(token)


@dataclass(frozen=True, slots=True)
class Backlog:
    """The request stream as one sample of ``XLEN``, ``XINFO GROUPS`` and ``XINFO CONSUMERS``.

    ``lag`` is None when Redis cannot tell (entries deleted past the group's position).
    ``consumers`` counts the group's consumers seen within ``claim_idle_ms``: a dead
    instance's consumer stays in the group forever, and counts as gone when its pending
    entries may be claimed.
    """

    length: int
    pending: int
    lag: int | None
    consumers: int


class WorkerObserver(Protocol):
    """Where a worker reports what it does (metrics)."""

    def handled(self, request_type: str, result: str, seconds: float) -> None: ...

    def backlog(self, backlog: Backlog) -> None: ...

    def bus_error(self) -> None: ...


class _NoObserver:
    def handled(self, request_type: str, result: str, seconds: float) -> None:
        pass

    def backlog(self, backlog: Backlog) -> None:
        pass

    def bus_error(self) -> None:
        pass


class ServiceWorker:
    """Reads a service's request streams, one per partition, as one consumer of the
    service's group: each stream has a reader of its own (its own connection, its own
    blocking read, its own claims), and each read's requests go to the handler together."""

    def __init__(
        self,
        redis: RedisClient,
        settings: ServiceSettings,
        handler: BatchHandler,
        observer: WorkerObserver | None = None,
    ) -> None:
        observer = observer or _NoObserver()
        self.streams = tuple(Partitions(settings.service, settings.partitions).streams())
        self.group = settings.service
        self.consumer = f"{settings.service}-{settings.instance}"
        self._backlogs: dict[str, Backlog] = {}
        self._observer = observer
        self._readers = [
            _StreamReader(redis, settings, handler, observer, stream, self._sampled)
            for stream in self.streams
        ]

    @property
    def alive(self) -> bool:
        """Whether every stream is being read (false after a Redis failure, until the next
        read succeeds)."""
        return all(reader.alive for reader in self._readers)

    async def run(self) -> None:
        """Consume every stream until cancelled; reconnect with backoff after Redis failures."""
        async with asyncio.TaskGroup() as group:
            for reader in self._readers:
                group.create_task(reader.run(), name=f"{self.consumer} {reader.stream}")

    def _sampled(self, stream: str, backlog: Backlog) -> None:
        """One stream's sample; the service's backlog is that of all its streams."""
        self._backlogs[stream] = backlog
        samples = self._backlogs.values()
        lags = [sample.lag for sample in samples]
        self._observer.backlog(
            Backlog(
                length=sum(sample.length for sample in samples),
                pending=sum(sample.pending for sample in samples),
                lag=None if None in lags else sum(lag or 0 for lag in lags),
                consumers=max(sample.consumers for sample in samples),
            )
        )


class _StreamReader:
    """One stream of a service, read as one consumer of the service's group."""

    def __init__(
        self,
        redis: RedisClient,
        settings: ServiceSettings,
        handler: BatchHandler,
        observer: WorkerObserver,
        stream: str,
        on_backlog: Callable[[str, Backlog], None],
    ) -> None:
        self._redis = redis
        self._settings = settings
        self._handler = handler
        self._observer = observer
        self._on_backlog = on_backlog
        self.stream = stream
        self.group = settings.service
        self.consumer = f"{settings.service}-{settings.instance}"
        self.alive = False
        # Reads and acknowledgements, one after the other, on a connection of the reader's
        # own that skips redis-py's per-command work (common/resp.py); handlers use redis.
        # On a cluster: to the node of the stream, and replies to the nodes of their
        # gateways' channels.
        self._connections = NodeConnections(redis)
        self._publishers = NodeConnections(redis)

    async def run(self) -> None:
        try:
            await self._consume()
        finally:
            self._connections.close()
            self._publishers.close()

    async def _consume(self) -> None:
        backoff = Backoff()
        loop = asyncio.get_running_loop()
        block_ms = max(1, int(min(self._settings.claim_interval, MAX_BLOCK) * 1000))
        read = command(
            *("XREADGROUP", "GROUP", self.group, self.consumer, "COUNT", self._settings.batch),
            *("BLOCK", block_ms, "STREAMS", self.stream, ">"),
        )
        while True:
            try:
                await self._ensure_group()
                self.alive = True
                next_claim = 0.0
                # The replies and acknowledgements of the last read, sent with the next read
                # in one round trip: they go out as soon as they would alone.
                done = _NOTHING
                while True:
                    if loop.time() >= next_claim:
                        await self._send(done)
                        done = _NOTHING
                        await self._claim_stale()
                        await self._report_backlog()
                        next_claim = loop.time() + self._settings.claim_interval
                    replies = await self._send(done, read, block_ms / 1000)
                    done = _NOTHING
                    raise_if_cancelled()
                    backoff.reset()
                    for _stream, entries in replies[-1] or ():
                        done = await self._process([(id_, _fields(raw)) for id_, raw in entries])
            except ResponseError as exc:
                if "NOGROUP" in str(exc) or "no such key" in str(exc):
                    # Redis lost the group (a restart without persistence, a FLUSHALL):
                    # create it again.
                    logger.warning("consumer group missing; creating it again")
                    continue
                await self._pause_after(exc, backoff)
            except (RedisError, OSError) as exc:
                await self._pause_after(exc, backoff)

    async def _send(self, done: _Done, then: bytes | None = None, block: float = 0.0) -> list[Any]:
        """Publish ``done``'s replies, then acknowledge and delete its entries, then send
        ``then`` (the next read): on one Redis, all in one round trip. Their replies, or the
        first error among them raised (as a redis-py pipeline does)."""
        commands = list(done.acks)
        if self._connections.cluster:
            await self._publish(done.publishes)
        else:
            publishes = [command(b"PUBLISH", channel, body) for channel, body in done.publishes]
            commands = publishes + commands
        if then is not None:
            commands.append(then)
        if not commands:
            return []
        return await self._execute(
            self._connections, self.stream, b"".join(commands), len(commands), block
        )

    async def _publish(self, publishes: list[tuple[str, bytes]]) -> None:
        """On a cluster: each reply with SPUBLISH on the node of its gateway's channel (the
        gateway listens there), before anything is acknowledged."""
        by_channel: dict[str, list[bytes]] = {}
        for channel, body in publishes:
            by_channel.setdefault(channel, []).append(command(b"SPUBLISH", channel, body))
        await asyncio.gather(
            *(
                self._execute(self._publishers, channel, b"".join(each), len(each))
                for channel, each in by_channel.items()
            )
        )

    @staticmethod
    async def _execute(
        connections: NodeConnections, key: str, payload: bytes, count: int, block: float = 0.0
    ) -> list[Any]:
        """Send ``count`` commands to the node of ``key``; their replies, or the first error
        among them raised. A lost connection or a redirection has the slot map read again
        before the next try."""
        connection = await connections.for_key(key)
        try:
            replies = await connection.execute(payload, count, block + COMMAND_TIMEOUT)
        except (RedisConnectionError, TimeoutError):
            connections.stale()
            raise
        for reply in replies:
            if isinstance(reply, Exception):
                if is_redirect(reply):
                    connections.stale()
                raise reply
        return replies

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
                await self._send(await self._process(entries))
            if start in (b"0-0", "0-0"):
                return

    async def _report_backlog(self) -> None:
        # Once per claim pass, not per request: three reads in one round trip.
        pipe = self._redis.pipeline(transaction=False)
        pipe.xlen(self.stream)
        pipe.xinfo_groups(self.stream)
        pipe.xinfo_consumers(self.stream, self.group)
        length, groups, consumers = await pipe.execute()
        for group in groups:
            if group["name"] in (self.group, self.group.encode()):
                lag = group.get("lag")
                # This instance counts itself: it is reading, even before its first read
                # makes Redis list it.
                seen = 1 + sum(
                    1
                    for each in consumers
                    if each["name"] not in (self.consumer, self.consumer.encode())
                    and int(each["idle"]) < self._settings.claim_idle_ms
                )
                self._on_backlog(
                    self.stream,
                    Backlog(
                        length=int(length),
                        pending=int(group["pending"]),
                        lag=None if lag is None else int(lag),
                        consumers=seen,
                    ),
                )

    async def _process(self, entries: list[Any]) -> _Done:
        """Handle a read's entries; their replies to publish, and the commands that then
        acknowledge and delete them, for the caller to send (in one round trip)."""
        entry_ids = []
        requests = []
        refusals = []
        for entry_id, fields in entries:
            entry_ids.append(entry_id)
            if fields is None:  # trimmed from the stream while pending
                continue
            decoded = self._decode(fields)
            if isinstance(decoded, Request):
                requests.append(decoded)
            elif decoded is not None:
                refusals.append(decoded)
        # A lost connection propagates from here: nothing is acknowledged, and the entries
        # are claimed again once idle, which idempotent handlers make harmless.
        started = time.perf_counter()
        outcomes = await self._run_batch(requests)
        each = (time.perf_counter() - started) / max(1, len(requests))
        debug = logger.isEnabledFor(logging.DEBUG)
        for request, outcome in zip(requests, outcomes, strict=True):
            result = _result(outcome)
            self._observer.handled(request.type, result, each)
            if debug:
                with traced(request):
                    logger.debug(
                        "request handled",
                        extra={"type": request.type, "result": result, "seconds": each},
                    )
        publishes: list[tuple[str, bytes]] = []
        batches: dict[str, list[bytes]] = {}
        for request, outcome in zip(requests, outcomes, strict=True):
            if request.noreply:
                continue
            packed = _packed_reply(request, outcome)
            if request.batch:
                batches.setdefault(request.gateway, []).append(packed)
            else:
                publishes.append((reply_channel(request.gateway), packed))
        for gateway, replies in batches.items():
            publishes.append((reply_channel(gateway), _packed_batch(replies)))
        publishes += refusals
        acks = (
            command("XACK", self.stream, self.group, *entry_ids),
            # Then gone: the stream holds what is pending, not history (one group reads it,
            # and XACKDEL is Redis 8.2). Entries the producer's MAXLEN trimmed meanwhile are
            # no-ops.
            command("XDEL", self.stream, *entry_ids),
        )
        return _Done(publishes, acks)

    def _decode(self, fields: dict[bytes, bytes]) -> Request | _Refusal | None:
        """The entry's request; else the refusal to publish, or None when nobody can get one.

        Either way an entry that is not a request is acknowledged, so that it is not retried
        forever, and logged once.
        """
        try:
            request = parse_envelope(load_bus(fields[b"e"]))
        except Exception as exc:  # whatever a stranger wrote must not stop the worker
            problem = str(exc) or repr(exc)
        else:
            if isinstance(request, Request):
                return request
            problem = f"a {type(request).__name__.lower()} on the request stream"
        address = _reply_address(fields.get(b"r"))
        if address is None:
            logger.error("dropping an undecodable request", extra={"error": problem})
            self._observer.handled("undecodable", "dropped", 0.0)
            return None
        logger.error(
            "refusing an undecodable request",
            extra={"error": problem, "gateway": address.gateway, "request": address.request_id},
        )
        self._observer.handled("undecodable", ErrorCode.BAD_REQUEST, 0.0)
        error = ServiceError(ErrorCode.BAD_REQUEST, "the service could not decode the request")
        reply = Reply(address.request_id, address.connection, error=error.to_error())
        return reply_channel(address.gateway), pack_bus(reply.to_wire())

    async def _run_batch(self, requests: list[Request]) -> list[Outcome]:
        if not requests:
            return []
        try:
            outcomes = await self._handler(requests)
        except _RETRYABLE:
            raise
        except Exception:
            logger.exception("batch handler failed", extra=_batch(requests))
            return [_internal_error() for _ in requests]
        if len(outcomes) != len(requests):
            logger.error(
                "batch handler returned the wrong number of outcomes", extra=_batch(requests)
            )
            return [_internal_error() for _ in requests]
        return outcomes


#: Failures after which an entry is left unacknowledged, to be handled again later. A
#: ResponseError is not among them: it is a bug that a retry would only repeat.
_RETRYABLE = (RedisConnectionError, RedisTimeoutError, OSError)


#: A reply to an entry that is not a request: the reply channel, and the packed reply.
_Refusal = tuple[str, bytes]


@dataclass(frozen=True, slots=True)
class _Done:
    """What a read's handling leaves to send: replies to publish (channel, body), then the
    commands that acknowledge and delete its entries."""

    publishes: list[tuple[str, bytes]]
    acks: tuple[bytes, ...]


_NOTHING = _Done([], ())


def _reply_address(field: bytes | None) -> ReplyAddress | None:
    """The ``r`` field of an entry, or None when it is absent or not a valid address."""
    if field is None:
        return None
    try:
        return ReplyAddress.from_wire(load_bus(field))
    except Exception:  # as untrusted as the rest of the entry
        return None


def _batch(requests: list[Request]) -> dict[str, Any]:
    """What a log line about a whole batch says of it: its size and its trace ids."""
    return {"count": len(requests), "traces": ",".join(request.trace for request in requests)}


def _packed_reply(request: Request, outcome: Outcome) -> bytes:
    try:
        return pack_bus(_reply(request, outcome).to_wire())
    except (TypeError, ValueError, OverflowError):
        with traced(request):
            logger.exception("a reply could not be encoded", extra={"type": request.type})
        return pack_bus(_reply(request, _internal_error()).to_wire())


def _fields(raw: list[bytes] | None) -> dict[bytes, bytes] | None:
    """A stream entry's fields from RESP's flat list; None for an entry trimmed meanwhile."""
    if raw is None:
        return None
    pairs = iter(raw)
    return dict(zip(pairs, pairs, strict=True))


def _packed_batch(replies: list[bytes]) -> bytes:
    """One message for the replies of one read to one gateway (a lone reply goes as is)."""
    if len(replies) == 1:
        return replies[0]
    return pack_bus_with_packed(ReplyBatch(()).head(), "replies", replies)


def _internal_error() -> ServiceError:
    return ServiceError(ErrorCode.INTERNAL_ERROR, "internal error")


def _result(outcome: Outcome) -> str:
    if isinstance(outcome, ServiceError):
        return outcome.code
    if isinstance(outcome, Reply) and outcome.error is not None:
        return str(outcome.error.get("code"))
    return "ok"


def _reply(request: Request, outcome: Outcome) -> Reply:
    if isinstance(outcome, Reply):
        return outcome
    if isinstance(outcome, ServiceError):
        return Reply(request.id, request.connection, error=outcome.to_error())
    return Reply(request.id, request.connection, data=outcome)

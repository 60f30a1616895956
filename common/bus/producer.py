"""Requests from gateways to services: appended to each service's stream, in batches."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError, RedisError

from common.bus.backoff import Backoff
from common.bus.nodes import NodeConnections, is_redirect
from common.redis_client import COMMAND_TIMEOUT, RedisClient
from common.resp import LazyConnection, bulk, command_head


__all__ = ["RequestProducer"]

logger = logging.getLogger(__name__)

#: Told the ids of requests that could not be appended, and why.
FailureCallback = Callable[[list[str], BaseException], None]


#: Notifications a producer keeps for another try while Redis is unreachable; past this the
#: oldest are dropped (and logged): memory stays bounded through any outage.
RETRY_LIMIT = 10_000


class RequestProducer:
    """Appends requests to service streams.

    Every append made during one event-loop turn goes out in one pipeline, so that a busy
    gateway pays one round trip per batch rather than one per request. The pipeline is
    written on a connection of the producer's own (a :class:`~common.resp.RespConnection`,
    made like ``redis``'s), each XADD encoded once when it is sent: redis-py's pipelines
    cost the gateway more per request than the rest of its handling. A batch whose
    connection is lost is sent once more on a new one (requests are at least once).

    A request that cannot be appended is reported to ``on_failure`` (its client is waiting
    for an answer). A notification sent with ``retry=True`` is instead kept and appended
    again, with backoff, once Redis answers: nobody waits for it, but a lost one would leave
    the service wrong (a presence ``drop`` that never arrives).
    """

    def __init__(self, redis: RedisClient, *, maxlen: int, on_failure: FailureCallback) -> None:
        self._redis = redis
        self._maxlen = maxlen
        self._on_failure = on_failure
        self._connections = NodeConnections(redis)
        #: Each stream's XADD up to the body, with and without a reply address.
        self._heads: dict[str, tuple[bytes, bytes]] = {}
        #: Pipelines written: one round trip each.
        self.round_trips = 0
        self._batch: list[_Entry] = []
        self._flusher: asyncio.Task[None] | None = None
        self._retry: deque[_Entry] = deque()
        self._retrier: asyncio.Task[None] | None = None
        self.dropped = 0

    def send(
        self,
        stream: str,
        request_id: str,
        body: bytes,
        *,
        retry: bool = False,
        reply_to: bytes | None = None,
    ) -> None:
        """Queue one request for ``stream`` (a service's, or one of its partitions'); it is
        appended within this loop turn, or reported or retried.

        ``reply_to``, a packed :class:`~common.envelope.ReplyAddress`, goes in field ``r``
        beside ``e``: a service that cannot decode ``e`` can still refuse the request.
        """
        heads = self._heads.get(stream) or self._head(stream)
        if reply_to is None:
            payload = heads[0] + bulk(body)
        else:
            payload = heads[1] + bulk(body) + _REPLY_FIELD + bulk(reply_to)
        self._queue(_Entry(payload, request_id, retry, stream))

    def _head(self, stream: str) -> tuple[bytes, bytes]:
        start = (b"XADD", stream, b"MAXLEN", b"~", self._maxlen, b"*", b"e")
        heads = self._heads[stream] = (
            command_head(len(start) + 1, *start),
            command_head(len(start) + 3, *start),
        )
        return heads

    def _queue(self, entry: _Entry) -> None:
        self._batch.append(entry)
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        try:
            while self._batch:
                batch, self._batch = self._batch, []
                await self._send(batch)
        finally:
            self._flusher = None

    async def _send(self, batch: list[_Entry]) -> None:
        """Append ``batch``: one pipeline per node (the one Redis: one pipeline). Entries
        whose connection was lost, or that reached a node that no longer serves their
        stream, are sent once more, where the slot map then says."""
        for last_try in (False, True):
            try:
                groups = await self._by_connection(batch)
            except (RedisError, OSError) as exc:
                self._failed(batch, exc)
                return
            outcomes = await asyncio.gather(
                *(self._round_trip(connection, entries) for connection, entries in groups)
            )
            again: list[_Entry] = []
            for (_, entries), results in zip(groups, outcomes, strict=True):
                if isinstance(results, BaseException):
                    if isinstance(results, RedisConnectionError) and not last_try:
                        again += entries
                    else:
                        self._failed(entries, results)
                    continue
                failed: list[_Entry] = []
                first_error: Exception | None = None
                for entry, result in zip(entries, results, strict=True):
                    if not isinstance(result, Exception):
                        continue
                    if is_redirect(result) and not last_try:
                        again.append(entry)
                    else:
                        failed.append(entry)
                        first_error = first_error or result
                if failed and first_error is not None:
                    self._failed(failed, first_error)
            if not again:
                return
            # Lost under the batch (a Redis restart, a failover): once more.
            self._connections.stale()
            batch = again

    async def _by_connection(
        self, batch: list[_Entry]
    ) -> list[tuple[LazyConnection, list[_Entry]]]:
        single = self._connections.single
        if single is not None:
            return [(single, batch)]
        groups: dict[LazyConnection, list[_Entry]] = {}
        for entry in batch:
            groups.setdefault(await self._connections.for_key(entry.stream), []).append(entry)
        return list(groups.items())

    async def _round_trip(
        self, connection: LazyConnection, entries: list[_Entry]
    ) -> list[Any] | BaseException:
        """The replies to ``entries``, or what failed them all."""
        self.round_trips += 1
        payload = b"".join([entry.payload for entry in entries])
        try:
            return await connection.execute(payload, len(entries), COMMAND_TIMEOUT)
        except (RedisError, OSError) as exc:
            return exc

    def _failed(self, entries: list[_Entry], exc: BaseException) -> None:
        reported = [entry.request_id for entry in entries if not entry.retry]
        if reported:
            self._on_failure(reported, exc)
        for entry in entries:
            if entry.retry:
                if len(self._retry) >= RETRY_LIMIT:
                    self._retry.popleft()
                    self.dropped += 1
                self._retry.append(entry)
        if self._retry and self._retrier is None:
            self._retrier = asyncio.get_running_loop().create_task(self._retry_later())

    async def _retry_later(self) -> None:
        backoff = Backoff(initial=0.1, maximum=2.0)
        try:
            while self._retry:
                await asyncio.sleep(backoff.next_delay())
                try:
                    await self._redis.ping()
                except (RedisError, OSError):
                    continue
                if self.dropped:
                    logger.error(
                        "notifications dropped during an outage", extra={"count": self.dropped}
                    )
                    self.dropped = 0
                while self._retry:
                    self._queue(self._retry.popleft())
                # Failures of this round come back to self._retry through _failed.
                if self._flusher is not None:
                    await asyncio.shield(self._flusher)
        finally:
            self._retrier = None

    async def aclose(self) -> None:
        if self._flusher is not None:
            await asyncio.shield(self._flusher)
        if self._retrier is not None:
            self._retrier.cancel()
        self._connections.close()


_REPLY_FIELD = bulk(b"r")
#: A connection, and the entries of a batch it carries.
_Group = tuple[LazyConnection, list["_Entry"]]


@dataclass(frozen=True, slots=True)
class _Entry:
    #: The whole XADD, encoded.
    payload: bytes
    request_id: str
    retry: bool
    stream: str

"""Requests from gateways to services: appended to each service's stream, in batches."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError
from redis.typing import EncodableT, FieldT

from common.bus.backoff import Backoff
from common.keys import request_stream


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
    gateway pays one round trip per batch rather than one per request.

    A request that cannot be appended is reported to ``on_failure`` (its client is waiting
    for an answer). A notification sent with ``retry=True`` is instead kept and appended
    again, with backoff, once Redis answers: nobody waits for it, but a lost one would leave
    the service wrong (a presence ``drop`` that never arrives).
    """

    def __init__(self, redis: Redis, *, maxlen: int, on_failure: FailureCallback) -> None:
        self._redis = redis
        self._maxlen = maxlen
        self._on_failure = on_failure
        self._batch: list[_Entry] = []
        self._flusher: asyncio.Task[None] | None = None
        self._retry: deque[_Entry] = deque()
        self._retrier: asyncio.Task[None] | None = None
        self.dropped = 0

    def send(
        self,
        service: str,
        request_id: str,
        body: bytes,
        *,
        retry: bool = False,
        reply_to: bytes | None = None,
    ) -> None:
        """Queue one request; it is appended within this loop turn, or reported or retried.

        ``reply_to``, a packed :class:`~common.envelope.ReplyAddress`, goes in field ``r``
        beside ``e``: a service that cannot decode ``e`` can still refuse the request.
        """
        fields: dict[FieldT, EncodableT] = {b"e": body}
        if reply_to is not None:
            fields[b"r"] = reply_to
        self._queue(_Entry(request_stream(service), request_id, fields, retry))

    def _queue(self, entry: _Entry) -> None:
        self._batch.append(entry)
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        try:
            while self._batch:
                batch, self._batch = self._batch, []
                pipe = self._redis.pipeline(transaction=False)
                for entry in batch:
                    pipe.xadd(entry.stream, entry.fields, maxlen=self._maxlen, approximate=True)
                try:
                    results = await pipe.execute(raise_on_error=False)
                except (RedisError, OSError) as exc:
                    self._failed(batch, exc)
                    continue
                failed = [
                    e
                    for e, result in zip(batch, results, strict=True)
                    if isinstance(result, Exception)
                ]
                if failed:
                    errors = [r for r in results if isinstance(r, Exception)]
                    self._failed(failed, errors[0])
        finally:
            self._flusher = None

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


@dataclass(frozen=True, slots=True)
class _Entry:
    stream: str
    request_id: str
    fields: dict[FieldT, EncodableT]
    retry: bool

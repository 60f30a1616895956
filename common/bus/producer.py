"""Requests from gateways to services: appended to each service's stream, in batches."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from common.keys import request_stream


__all__ = ["RequestProducer"]

logger = logging.getLogger(__name__)

#: Told the ids of requests that could not be appended, and why.
FailureCallback = Callable[[list[str], BaseException], None]


class RequestProducer:
    """Appends requests to service streams.

    Every append made during one event-loop turn goes out in one pipeline, so that a busy
    gateway pays one round trip per batch rather than one per request.
    """

    def __init__(self, redis: Redis, *, maxlen: int, on_failure: FailureCallback) -> None:
        self._redis = redis
        self._maxlen = maxlen
        self._on_failure = on_failure
        self._batch: list[tuple[str, str, bytes]] = []
        self._flusher: asyncio.Task[None] | None = None

    def send(self, service: str, request_id: str, body: bytes) -> None:
        """Queue one request; it is appended within this loop turn or reported failed."""
        self._batch.append((request_stream(service), request_id, body))
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        try:
            while self._batch:
                batch, self._batch = self._batch, []
                pipe = self._redis.pipeline(transaction=False)
                for stream, _, body in batch:
                    pipe.xadd(stream, {b"e": body}, maxlen=self._maxlen, approximate=True)
                try:
                    results = await pipe.execute(raise_on_error=False)
                except (RedisError, OSError) as exc:
                    self._on_failure([request_id for _, request_id, _ in batch], exc)
                    continue
                failed = [
                    request_id
                    for (_, request_id, _), result in zip(batch, results, strict=True)
                    if isinstance(result, Exception)
                ]
                if failed:
                    errors = [r for r in results if isinstance(r, Exception)]
                    self._on_failure(failed, errors[0])
        finally:
            self._flusher = None

    async def aclose(self) -> None:
        if self._flusher is not None:
            await asyncio.shield(self._flusher)

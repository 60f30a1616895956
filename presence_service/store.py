"""Presence state in Redis: every change is one Lua script (lua/*.lua), so it is atomic.

The scripts publish the ``join`` and ``leave`` events themselves, in the same script as the
change, so that the order of events on a channel is the order of the changes.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, ResponseError

from common.keys import EVENT_CHANNEL_PREFIX, GATEWAY_LEASES, service_prefix
from presence_service.model import (
    PRESENCE_CHANNEL_PREFIX,
    Applied,
    Change,
    Listing,
    Query,
    Reaped,
    Stats,
)


__all__ = ["PresenceStore"]

#: Scripts that run with lib.lua prepended; ``list`` stands alone.
_WITH_PRELUDE = ("track", "untrack", "drop", "reap", "expire")


class PresenceStore:
    """Presence kept under the service's prefix on one Redis.

    Args:
        redis: the client (decoding off: the scripts return bytes).
        grace: seconds a connection closed for a gateway restart keeps its user present.
        tombstone_ttl: seconds a closed connection refuses its late notifications.
        batch: connections or lingering records released per sweep script call.
    """

    def __init__(self, redis: Redis, *, grace: float, tombstone_ttl: int, batch: int = 500) -> None:
        self._redis = redis
        self._grace_ms = int(grace * 1000)
        self._tombstone_ttl = tombstone_ttl
        self._batch = batch
        self.prefix = service_prefix("presence")
        self._sources = _read_scripts()
        self._shas: dict[str, str] = {}

    async def load(self) -> None:
        """Load every script into Redis (again after a Redis restart emptied its cache)."""
        for name, source in self._sources.items():
            self._shas[name] = str(await self._redis.script_load(source))

    # Keys.

    def channel_key(self, channel: str) -> str:
        return f"{self.prefix}ch:{channel}"

    def connection_key(self, connection: str) -> str:
        return f"{self.prefix}conn:{connection}"

    # Changes and reads, pipelined.

    async def run(
        self, operations: Sequence[Change | Query]
    ) -> list[Applied | Listing | ResponseError]:
        """Apply changes and answer reads in order, in one round trip.

        A script that fails (a bug) gives its ResponseError in place of its result.

        Raises:
            redis.exceptions.ConnectionError: Redis is unreachable; nothing is known to be
                applied or not, and applying again is harmless (a change older than what
                was applied for its connection and channel is refused).
        """
        if not operations:
            return []
        if not self._shas:
            await self.load()
        results = await self._execute(operations)
        if any(isinstance(result, NoScriptError) for result in results):
            # Redis lost its script cache (a restart): load, and run the batch again.
            await self.load()
            results = await self._execute(operations)
        outcomes: list[Applied | Listing | ResponseError] = []
        for operation, result in zip(operations, results, strict=True):
            if isinstance(result, ResponseError):
                outcomes.append(result)
            elif isinstance(operation, Query):
                outcomes.append(_listing(result))
            else:
                outcomes.append(_applied(result))
        return outcomes

    async def _execute(self, operations: Sequence[Change | Query]) -> list[Any]:
        pipe = self._redis.pipeline(transaction=False)
        for operation in operations:
            if isinstance(operation, Query):
                self._queue_query(pipe, operation)
            else:
                self._queue_change(pipe, operation)
        return list(await pipe.execute(raise_on_error=False))

    def _common_args(self) -> list[str]:
        return [self.prefix, PRESENCE_CHANNEL_PREFIX, EVENT_CHANNEL_PREFIX, secrets.token_hex(12)]

    def _queue_change(self, pipe: Any, change: Change) -> None:
        args = [
            *self._common_args(),
            change.connection,
            change.gateway,
            change.user,
            str(change.seq),
            str(change.ts),
        ]
        if change.kind == "drop":
            args += ["1" if change.restart else "0", str(self._grace_ms), str(self._tombstone_ttl)]
        else:
            args.append(change.channel)
        pipe.evalsha(self._shas[change.kind], 1, self.connection_key(change.connection), *args)

    def _queue_query(self, pipe: Any, query: Query) -> None:
        key = self.channel_key(query.channel)
        pipe.evalsha(self._shas["list"], 1, key, query.member or "", str(query.limit))

    # Sweeps.

    async def reap_dead_gateways(self, max_calls: int = 100) -> Reaped:
        """Release the connections of gateways whose lease expired (at most ``max_calls``
        script calls of ``batch`` connections each; the next sweep goes on)."""
        gateways: list[str] = []
        connections = leaves = 0
        dead_key = self.prefix + "dead"
        remember_ms = self._tombstone_ttl * 1000
        for _ in range(max_calls):
            result = await self._call(
                "reap",
                [GATEWAY_LEASES, dead_key],
                [str(self._batch), str(self._tombstone_ttl), str(remember_ms)],
            )
            gateway = _text(result[0])
            if not gateway:
                break
            connections += int(result[1])
            leaves += int(result[3])
            if int(result[2]) and gateway not in gateways:
                gateways.append(gateway)
        return Reaped(tuple(gateways), connections, leaves)

    async def expire_lingering(self, max_calls: int = 100) -> tuple[int, int]:
        """Release connections whose restart grace is over; return (released, leaves)."""
        released = leaves = 0
        for _ in range(max_calls):
            result = await self._call("expire", [self.prefix + "lingering"], [str(self._batch)])
            released += int(result[0])
            leaves += int(result[1])
            if int(result[0]) < self._batch:
                break
        return released, leaves

    async def stats(self) -> Stats:
        pipe = self._redis.pipeline(transaction=False)
        pipe.scard(self.prefix + "channels")
        pipe.hlen(self.prefix + "users")
        pipe.zcard(self.prefix + "lingering")
        pipe.zcard(GATEWAY_LEASES)
        channels, users, lingering, gateways = await pipe.execute()
        return Stats(int(channels), int(users), int(lingering), int(gateways))

    async def _call(self, name: str, keys: list[str], args: list[str]) -> Any:
        if not self._shas:
            await self.load()
        argv = [*self._common_args(), *args]
        try:
            return await self._redis.evalsha(self._shas[name], len(keys), *keys, *argv)
        except NoScriptError:
            await self.load()
            return await self._redis.evalsha(self._shas[name], len(keys), *keys, *argv)


def _read_scripts() -> dict[str, str]:
    folder = resources.files("presence_service") / "lua"
    prelude = (folder / "lib.lua").read_text()
    sources = {}
    for name in (*_WITH_PRELUDE, "list"):
        text = (folder / f"{name}.lua").read_text()
        sources[name] = prelude + "\n" + text if name in _WITH_PRELUDE else text
    return sources


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _applied(result: Any) -> Applied:
    return Applied(bool(int(result[0])), int(result[1]), int(result[2]))


def _listing(result: Any) -> Listing:
    if not int(result[0]):
        return Listing(allowed=False)
    flat = result[3:]
    users = tuple((_text(flat[i]), int(flat[i + 1])) for i in range(0, len(flat), 2))
    return Listing(True, int(result[1]), bool(int(result[2])), users)

"""Presence state in Redis: every change is one Lua script (lua/*.lua), so it is atomic.

The scripts publish the ``join`` and ``leave`` events themselves, in the same script as the
change, so that the order of events on a channel is the order of the changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from common.keys import EVENT_CHANNEL_PREFIX, GATEWAY_LEASES, service_prefix
from common.lua import ScriptCall, Scripts, id_nonce, text
from common.partitions import partition_tag
from presence_service.rules import (
    PRESENCE_CHANNEL_PREFIX,
    Applied,
    Change,
    Listing,
    Query,
    Reaped,
    Stats,
)


__all__ = ["PresenceStore"]

#: Events go to partition 0's channels: the service has one partition until it takes
#: its Partitions (docs/bus.md "Partitions").
_TAG: Final = partition_tag("presence", 0)

_SCRIPTS = ("track", "untrack", "drop", "reap", "expire", "list")
#: ``list`` runs without lib.lua, whose common arguments it does not take.
_BARE = ("list",)


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
        self._scripts = Scripts(redis, "presence_service", _SCRIPTS, bare=_BARE)

    async def load(self) -> None:
        """Load the scripts (at start-up; they are loaded again on NOSCRIPT)."""
        await self._scripts.load()

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
        calls = [
            self._query_call(operation)
            if isinstance(operation, Query)
            else self._change_call(operation)
            for operation in operations
        ]
        results = await self._scripts.pipeline(calls)
        outcomes: list[Applied | Listing | ResponseError] = []
        for operation, result in zip(operations, results, strict=True):
            if isinstance(result, ResponseError):
                outcomes.append(result)
            elif isinstance(operation, Query):
                outcomes.append(_listing(result))
            else:
                outcomes.append(_applied(result))
        return outcomes

    def _common_args(self) -> list[str]:
        return [self.prefix, PRESENCE_CHANNEL_PREFIX, f"{EVENT_CHANNEL_PREFIX}{_TAG}:", id_nonce()]

    def _change_call(self, change: Change) -> ScriptCall:
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
        return ScriptCall(change.kind, (self.connection_key(change.connection),), args)

    def _query_call(self, query: Query) -> ScriptCall:
        key = self.channel_key(query.channel)
        return ScriptCall("list", (key,), (query.member or "", str(query.limit)))

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
            gateway = text(result[0])
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
        return await self._scripts.call(name, keys, [*self._common_args(), *args])


def _applied(result: Any) -> Applied:
    return Applied(bool(int(result[0])), int(result[1]), int(result[2]))


def _listing(result: Any) -> Listing:
    if not int(result[0]):
        return Listing(allowed=False)
    flat = result[3:]
    users = tuple((text(flat[i]), int(flat[i + 1])) for i in range(0, len(flat), 2))
    return Listing(True, int(result[1]), bool(int(result[2])), users)

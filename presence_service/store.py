"""Presence state in Redis: every change is one Lua script (lua/*.lua), so it is atomic.

The state is split into partitions (``RT_PRESENCE_PARTITIONS``): a tracked channel, its
members and its events live in the partition of the channel, and each script call works in
one partition only, under its hash tag, so that it touches one slot of a Redis Cluster. A
connection has a record in each partition it was tracked in; its drop runs in each.

The scripts publish the ``join`` and ``leave`` events themselves, in the same script as the
change, so that the order of events on a channel is the order of the changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.exceptions import ResponseError

from common.keys import GATEWAY_LEASES, Partitions, event_channel
from common.lua import ScriptCall, Scripts, id_nonce, text
from common.redis_client import RedisClient
from presence_service.rules import (
    PRESENCE_CHANNEL_PREFIX,
    Applied,
    Change,
    Listing,
    Query,
    Reaped,
    Stats,
    partitions_of,
)


__all__ = ["BARE", "SCRIPTS", "PresenceStore"]

SCRIPTS = ("track", "untrack", "drop", "reap", "expire", "list", "expired_leases", "remove_lease")
#: Scripts that run without lib.lua, whose common arguments they do not take.
BARE = ("list", "expired_leases", "remove_lease")


class PresenceStore:
    """Presence kept in the service's partitions.

    Args:
        redis: the client (decoding off: the scripts return bytes).
        partitions: the service's partitions.
        grace: seconds a connection closed for a gateway restart keeps its user present.
        tombstone_ttl: seconds a closed connection refuses its late notifications.
        batch: connections or lingering records released per sweep script call.
    """

    def __init__(
        self,
        redis: RedisClient,
        partitions: Partitions,
        *,
        grace: float,
        tombstone_ttl: int,
        batch: int = 500,
    ) -> None:
        self._redis = redis
        self.partitions = partitions
        self._grace_ms = int(grace * 1000)
        self._tombstone_ttl = tombstone_ttl
        self._batch = batch
        self._scripts = Scripts(redis, "presence_service", SCRIPTS, bare=BARE)

    async def load(self) -> None:
        """Load the scripts (at start-up; they are loaded again on NOSCRIPT)."""
        await self._scripts.load()

    # Keys.

    def key(self, partition: int, name: str) -> str:
        """Key ``name`` of one partition (``channels``, ``conn:<id>``...: lua/lib.lua)."""
        return self.partitions.prefix(partition) + name

    def channel_key(self, channel: str) -> str:
        return self.key(self.partitions.of(channel), f"ch:{channel}")

    # Changes and reads, pipelined.

    async def run(
        self, operations: Sequence[Change | Query]
    ) -> list[Applied | Listing | ResponseError]:
        """Apply changes and answer reads, in one round trip: each in its partition, in order
        within it (the calls are grouped by partition, as a cluster pipeline sends them).

        A drop runs in each partition it names; its result sums theirs. A script that fails
        (a bug) gives its ResponseError in place of its result.

        Raises:
            redis.exceptions.ConnectionError: RedisClient is unreachable; nothing is known to be
                applied or not, and applying again is harmless (a change older than what
                was applied for its connection and channel is refused).
        """
        planned = self.calls(operations)
        results = await self._scripts.pipeline([call for _, call in planned])
        by_operation: list[list[Any]] = [[] for _ in operations]
        for (index, _), result in zip(planned, results, strict=True):
            by_operation[index].append(result)
        outcomes: list[Applied | Listing | ResponseError] = []
        for operation, parts in zip(operations, by_operation, strict=True):
            failed = next((part for part in parts if isinstance(part, ResponseError)), None)
            if failed is not None:
                outcomes.append(failed)
            elif isinstance(operation, Query):
                outcomes.append(_listing(parts[0]))
            else:
                outcomes.append(_applied(parts))
        return outcomes

    def calls(self, operations: Sequence[Change | Query]) -> list[tuple[int, ScriptCall]]:
        """The script calls of ``operations``, each with the index of its operation: one per
        partition an operation runs in, grouped by partition, in order within each."""
        planned = sorted(
            (
                (partition, index, self._call_of(operation, partition))
                for index, operation in enumerate(operations)
                for partition in partitions_of(operation, self.partitions)
            ),
            key=lambda item: item[0],
        )
        return [(index, call) for _, index, call in planned]

    def _common_args(self, partition: int) -> list[str]:
        return [
            self.partitions.prefix(partition),
            PRESENCE_CHANNEL_PREFIX,
            # The pub/sub prefix of the partition's events: ch:{presence.<n>}:presence:<C>.
            event_channel("", self.partitions.tag(partition)),
            id_nonce(),
        ]

    def _call_of(self, operation: Change | Query, partition: int) -> ScriptCall:
        if isinstance(operation, Query):
            key = self.channel_key(operation.channel)
            return ScriptCall("list", (key,), (operation.member or "", str(operation.limit)))
        args = [
            *self._common_args(partition),
            operation.connection,
            operation.gateway,
            operation.user,
            str(operation.seq),
            str(operation.ts),
        ]
        if operation.kind == "drop":
            restart = "1" if operation.restart else "0"
            args += [restart, str(self._grace_ms), str(self._tombstone_ttl)]
        else:
            args.append(operation.channel)
        key = self.key(partition, f"conn:{operation.connection}")
        return ScriptCall(operation.kind, (key,), args)

    # Sweeps: each partition in turn, the calls of one round in one pipeline.

    async def reap_dead_gateways(self, max_calls: int = 100) -> Reaped:
        """Release the connections of gateways whose lease expired, in every partition, then
        remove each one's lease (unless it was renewed meanwhile). At most ``max_calls``
        script calls of ``batch`` connections each; the next sweep goes on."""
        lapsed = await self._scripts.call("expired_leases", [GATEWAY_LEASES], [str(max_calls)])
        gateways: list[str] = []
        connections = leaves = spent = 0
        for i in range(0, len(lapsed), 2):
            gateway, expiry = text(lapsed[i]), text(lapsed[i + 1])
            pending = list(self.partitions)
            while pending and spent < max_calls:
                # Renewed (or reaped and removed by another instance) since it was read:
                # left alone from here on.
                if await self._redis.zscore(GATEWAY_LEASES, gateway) != float(expiry):
                    break
                results = await self._sweep_round(
                    [self.reap_call(n, gateway, expiry) for n in pending]
                )
                spent += len(pending)
                connections += sum(int(result[0]) for result in results)
                leaves += sum(int(result[2]) for result in results)
                pending = [n for n, result in zip(pending, results, strict=True) if not result[1]]
            if pending:
                continue
            if await self._scripts.call("remove_lease", [GATEWAY_LEASES], [gateway, expiry]):
                gateways.append(gateway)
        return Reaped(tuple(gateways), connections, leaves)

    async def expire_lingering(self, max_calls: int = 100) -> tuple[int, int]:
        """Release connections whose restart grace is over, in every partition; return
        (released, leaves)."""
        released = leaves = spent = 0
        pending = list(self.partitions)
        while pending and spent < max_calls:
            results = await self._sweep_round([self.expire_call(n) for n in pending])
            spent += len(pending)
            released += sum(int(result[0]) for result in results)
            leaves += sum(int(result[1]) for result in results)
            pending = [
                n
                for n, result in zip(pending, results, strict=True)
                if int(result[0]) == self._batch
            ]
        return released, leaves

    def reap_call(self, partition: int, gateway: str, expiry: str) -> ScriptCall:
        """One batch of a dead gateway's connections released in one partition."""
        args = [gateway, expiry, str(self._batch), str(self._tombstone_ttl)]
        keys = (self.key(partition, f"gw:{gateway}"), self.key(partition, "dead"))
        remember_ms = self._tombstone_ttl * 1000
        return ScriptCall("reap", keys, (*self._common_args(partition), *args, str(remember_ms)))

    def expire_call(self, partition: int) -> ScriptCall:
        """One batch of one partition's ended restart graces released."""
        keys = (self.key(partition, "lingering"),)
        return ScriptCall("expire", keys, (*self._common_args(partition), str(self._batch)))

    async def _sweep_round(self, calls: list[ScriptCall]) -> list[Any]:
        """One round of a sweep: ``calls`` (one per partition) in one pipeline.

        Raises:
            redis.exceptions.ResponseError: a script failed (a bug).
        """
        results = await self._scripts.pipeline(calls)
        for result in results:
            if isinstance(result, ResponseError):
                raise result
        return results

    async def stats(self) -> Stats:
        """The gauges, summed over the partitions (see docs/presence.md "Metrics": a user
        present in channels of two partitions counts in each)."""
        pipe = self._redis.pipeline(transaction=False)
        for partition in self.partitions:
            pipe.scard(self.key(partition, "channels"))
            pipe.hlen(self.key(partition, "users"))
            pipe.zcard(self.key(partition, "lingering"))
        pipe.zcard(GATEWAY_LEASES)
        *counts, gateways = await pipe.execute()
        channels, users, lingering = (sum(int(n) for n in counts[i::3]) for i in range(3))
        return Stats(channels, users, lingering, int(gateways))


def _applied(results: list[Any]) -> Applied:
    """One change's result: a drop's sums those of its partitions."""
    return Applied(
        any(int(result[0]) for result in results),
        sum(int(result[1]) for result in results),
        sum(int(result[2]) for result in results),
    )


def _listing(result: Any) -> Listing:
    if not int(result[0]):
        return Listing(allowed=False)
    flat = result[3:]
    users = tuple((text(flat[i]), int(flat[i + 1])) for i in range(0, len(flat), 2))
    return Listing(True, int(result[1]), bool(int(result[2])), users)

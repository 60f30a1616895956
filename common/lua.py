"""A service's Lua scripts: read once, sent by SHA1, loaded again when Redis has lost them.

Each script runs as one chunk: the shared prelude (``common/prelude.lua``: the event
envelope, event ids, ``now_ms``), then the service's library (its ``lua/lib.lua``, if it has
one and the script is not ``bare``), then the script's own file with its KEYS/ARGV header.

One retry rule, for single calls and pipelines alike: a call that meets ``NOSCRIPT`` (a Redis
that restarted, or flushed its script cache) did nothing, so every script is loaded again
(``SCRIPT LOAD``, one pipeline) and the calls that met it are sent again, once, in their
order. Only ``EVALSHA`` and ``SCRIPT LOAD`` are sent: what the services' ACL users allow
(``common/acl.py``). redis-py's ``register_script`` is not used: in a pipeline it sends
``SCRIPT EXISTS`` first, a second round trip for every batch.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import NoScriptError

from common.bus.nodes import is_redirect, node_of, refresh
from common.redis_client import RedisClient
from common.resp import command, execute_encoded


__all__ = ["ScriptCall", "Scripts", "id_nonce", "source", "text"]

logger = logging.getLogger(__name__)

#: An argument of a script call (redis-py sends each as a string).
Arg = str | bytes | int | float


@dataclass(frozen=True, slots=True)
class ScriptCall:
    """One call of a script, to be sent in a pipeline: the script's name, keys and arguments."""

    script: str
    keys: Sequence[str]
    args: Sequence[Arg]


#: The prelude's line that names the command events are published with.
_PUBLISH_LINE = "local PUBLISH = 'PUBLISH'"


def source(package: str, name: str, *, bare: bool = False, sharded: bool = False) -> str:
    """The chunk that runs as script ``name`` of ``package``: the prelude, the package's
    ``lua/lib.lua`` (if any, and unless ``bare``), then ``lua/<name>.lua``. ``sharded``:
    events are published with SPUBLISH (on a Redis Cluster, where a PUBLISH reaches every
    node)."""
    prelude = (resources.files("common") / "prelude.lua").read_text()
    if sharded:
        if _PUBLISH_LINE not in prelude:
            raise RuntimeError(f"common/prelude.lua must say {_PUBLISH_LINE!r}")
        prelude = prelude.replace(_PUBLISH_LINE, "local PUBLISH = 'SPUBLISH'")
    folder = resources.files(package) / "lua"
    library = folder / "lib.lua"
    shared = "" if bare or not library.is_file() else library.read_text()
    return "\n".join((prelude, shared, (folder / f"{name}.lua").read_text()))


class Scripts:
    """The scripts in ``<package>/lua/<name>.lua``, for one Redis client.

    Args:
        redis: the client (decoding off: scripts return bytes).
        package: the service package whose ``lua/`` folder holds the scripts.
        names: the scripts to load.
        bare: scripts that run without the service's ``lib.lua`` (the prelude still comes
            first).
    """

    def __init__(
        self, redis: RedisClient, package: str, names: Iterable[str], *, bare: Collection[str] = ()
    ) -> None:
        self._redis = redis
        # Told apart once: isinstance of a Union-typed client costs on every batch.
        self._cluster = redis if isinstance(redis, RedisCluster) else None
        self._one = redis if isinstance(redis, Redis) else None
        sharded = self._cluster is not None
        self.sources = {
            name: source(package, name, bare=name in bare, sharded=sharded) for name in names
        }
        self._shas = {
            name: hashlib.sha1(chunk.encode()).hexdigest() for name, chunk in self.sources.items()
        }

    async def load(self) -> None:
        """SCRIPT LOAD every script, in one round trip (at start-up, and after NOSCRIPT); on
        a cluster, on every primary (a promoted replica has none of them)."""
        if isinstance(self._redis, RedisCluster):
            for chunk in self.sources.values():
                await self._redis.execute_command(
                    "SCRIPT LOAD", chunk, target_nodes=RedisCluster.PRIMARIES
                )
            return
        pipe = self._redis.pipeline(transaction=False)
        for chunk in self.sources.values():
            pipe.script_load(chunk)
        await pipe.execute()

    async def call(self, script: str, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        """Run one script and return its result.

        Raises:
            redis.exceptions.ResponseError: the script failed.
            redis.exceptions.ConnectionError: Redis is unreachable.
        """
        sha = self._shas[script]
        try:
            return await self._redis.evalsha(sha, len(keys), *keys, *args)
        except NoScriptError:
            await self._reload(1)
            return await self._redis.evalsha(sha, len(keys), *keys, *args)

    async def pipeline(self, calls: Sequence[ScriptCall]) -> list[Any]:
        """Run ``calls`` in one pipeline, in order; each result is a value or its ResponseError.

        Raises:
            redis.exceptions.ConnectionError: Redis is unreachable; which calls ran is unknown.
        """
        if not calls:
            return []
        results = await self._execute(calls)
        missing = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
        if missing:
            await self._reload(len(missing))
            again = await self._execute([calls[i] for i in missing])
            for i, result in zip(missing, again, strict=True):
                results[i] = result
        return results

    async def _reload(self, calls: int) -> None:
        logger.warning("Redis had lost the Lua scripts; loading them", extra={"calls": calls})
        await self.load()

    async def _execute(self, calls: Sequence[ScriptCall]) -> list[Any]:
        # Encoded here, once: a batch's calls carry many arguments (several per bid), which
        # redis-py's pipeline would encode one by one at a greater cost than the call.
        shas = self._shas
        encoded = [
            command(b"EVALSHA", shas[call.script], len(call.keys), *call.keys, *call.args)
            for call in calls
        ]
        if self._one is not None:
            return await execute_encoded(self._one, b"".join(encoded), len(calls))
        redis = self._cluster
        assert redis is not None
        results = await _on_nodes(redis, calls, encoded)
        redirected = [i for i, result in enumerate(results) if is_redirect(result)]
        if redirected:
            # A failover or a slot migration meanwhile: where the slot map now says, once.
            await refresh(redis)
            again = await _on_nodes(
                redis, [calls[i] for i in redirected], [encoded[i] for i in redirected]
            )
            for i, result in zip(redirected, again, strict=True):
                results[i] = result
        return results


def id_nonce() -> str:
    """24 random hex digits: the prelude's ``event_ids`` start a call's event ids with them."""
    return secrets.token_hex(12)


def text(value: bytes | str | int) -> str:
    """A string of a script's result (Redis gives strings as bytes, counts as integers)."""
    return value.decode() if isinstance(value, bytes) else str(value)


async def _on_nodes(
    redis: RedisCluster, calls: Sequence[ScriptCall], encoded: Sequence[bytes]
) -> list[Any]:
    """Send each call to the node of its first key (one pipeline per node, side by side);
    the results in the calls' order."""
    by_node: dict[ClusterNode, list[int]] = {}
    for i, call in enumerate(calls):
        by_node.setdefault(await node_of(redis, call.keys[0]), []).append(i)
    results: list[Any] = [None] * len(calls)

    async def run(node: ClusterNode, indexes: list[int]) -> None:
        replies = await execute_encoded(node, b"".join([encoded[i] for i in indexes]), len(indexes))
        for i, reply in zip(indexes, replies, strict=True):
            results[i] = reply

    await asyncio.gather(*(run(node, indexes) for node, indexes in by_node.items()))
    return results

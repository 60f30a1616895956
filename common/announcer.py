"""The namespace registry's I/O: a service announcing itself, a gateway reading them all.

:class:`Announcer` runs the announce script (``common/lua/announce.lua``) at start and every
``RT_REGISTRY_TTL``/3 seconds; :class:`RegistryReader` reads the three keys in one pipeline
every ``RT_REGISTRY_POLL`` seconds into a :class:`~common.registry.RegistryView`. The rules
are in :mod:`common.registry`; docs/bus.md "Namespace registry" is normative.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from redis.exceptions import RedisError, ResponseError

from common.bus.backoff import Backoff
from common.bus.nodes import execute_on_slot
from common.errors import RealtimeError
from common.keys import REGISTRY_ALIVE, REGISTRY_KEYS, REGISTRY_OWNERS, REGISTRY_SERVICES
from common.lua import Scripts, text
from common.redis_client import RedisClient
from common.registry import Announcement, Offer, Registry, RegistryView, build_registry
from common.resp import command
from common.tasks import raise_if_cancelled


__all__ = ["AnnouncementRefused", "Announcer", "RegistryReader"]

logger = logging.getLogger(__name__)

#: The prefix of the script's refusal (another service owns a namespace).
_OWNED = "OWNED "


class AnnouncementRefused(RealtimeError):
    """The registry refused an announcement: another service owns one of its namespaces."""


class Announcer:
    """Announces one service instance: :meth:`announce` once, then :meth:`run` to refresh.

    Args:
        redis: a client with decoding off.
        offer: what the service announces.
        instance: the instance's id (informative: it is in the announcement, for logs).
        ttl: the lease in seconds (``RT_REGISTRY_TTL``); refreshed every third of it.
    """

    def __init__(self, redis: RedisClient, offer: Offer, instance: str, *, ttl: float) -> None:
        self._scripts = Scripts(redis, "common", ["announce"])
        self._offer = offer
        self._instance = instance
        self._ttl_ms = max(1, int(ttl * 1000))
        self._loaded = False
        self.ttl = ttl

    async def announce(self) -> int:
        """Run the announce script once; returns the lease's new expiry (ms, Redis's clock).

        Raises:
            AnnouncementRefused: another service owns one of the namespaces (nothing written).
            redis.exceptions.RedisError: Redis failed or is unreachable.
        """
        if not self._loaded:
            # Loaded first, so that the first call does not meet NOSCRIPT (and log it).
            await self._scripts.load()
            self._loaded = True
        offer = self._offer
        body = Announcement(offer, self._instance).encode()
        args: list[str | bytes | int] = [offer.service, body, self._ttl_ms, *offer.namespace_names]
        try:
            expiry = await self._scripts.call("announce", REGISTRY_KEYS, args)
        except ResponseError as exc:
            message = str(exc)
            if message.startswith(_OWNED):
                raise AnnouncementRefused(message[len(_OWNED) :]) from None
            raise
        return int(text(expiry))

    async def first(self) -> None:
        """Announce, trying again with backoff while Redis fails (each failure logged).

        Raises:
            AnnouncementRefused: another service owns one of the namespaces.
        """
        backoff = Backoff(initial=0.1, maximum=2.0)
        while True:
            raise_if_cancelled()
            try:
                await self.announce()
                return
            except (RedisError, OSError) as exc:
                logger.warning(
                    "could not announce the service; retrying",
                    extra={"service": self._offer.service, "error": repr(exc)},
                )
            await asyncio.sleep(backoff.next_delay())

    async def run(self) -> None:
        """Refresh the announcement every ttl/3 seconds until cancelled; a refusal or a
        failure is logged as an error, and the service keeps serving."""
        while True:
            await asyncio.sleep(self.ttl / 3)
            raise_if_cancelled()
            try:
                await self.announce()
            except (AnnouncementRefused, RedisError, OSError) as exc:
                logger.error(
                    "could not refresh the service's announcement in the registry",
                    extra={"service": self._offer.service, "error": repr(exc)},
                )


class RegistryReader:
    """Reads the registry into :attr:`view` every ``interval`` seconds.

    Args:
        redis: a client with decoding off.
        interval: seconds between reads (``RT_REGISTRY_POLL``): the bound on how long a
            change takes to be in force here.
        on_error: called once per failed read and per ignored announcement (a metric).
    """

    def __init__(
        self,
        redis: RedisClient,
        interval: float,
        *,
        on_error: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = redis
        self._interval = interval
        self._on_error = on_error
        self._clock = clock
        self.view = RegistryView()
        #: The ignored announcements (service, reason) already logged: each is logged once.
        self._logged: set[tuple[str, str]] = set()

    async def read(self) -> None:
        """One read; the view is replaced only when it succeeds.

        Raises:
            redis.exceptions.RedisError: Redis failed (the last registry stays in force).
        """
        # Encoded here and sent to the registry's node: a cluster client refuses TIME in a
        # pipeline, and Redis's clock must be that of the node that keeps the leases.
        owners, services, alive, (seconds, micros) = await execute_on_slot(
            self._redis, REGISTRY_OWNERS, _READ, 4
        )
        read_at = self._clock()
        registry, refusals = build_registry(
            {text(ns): text(owner) for ns, owner in _pairs(owners)},
            {text(service): body for service, body in _pairs(services)},
            [(text(service), float(score)) for service, score in _pairs(alive)],
            int(seconds) * 1000 + int(micros) // 1000,
            read_at,
            self.view.current,
        )
        refused = {(refusal.service, refusal.reason) for refusal in refusals}
        for service, reason in sorted(refused - self._logged):
            self._on_error()
            logger.error(
                "ignoring an invalid announcement in the registry",
                extra={"service": service, "error": reason},
            )
        # Forgotten once mended, so that breaking again is logged again.
        self._logged = refused
        _log_new_services(self.view.current, registry)
        _log_owner_changes(self.view.current, registry)
        self.view.current = registry
        self.view.loaded = True

    async def run(self) -> None:
        """Read every ``interval`` seconds until cancelled (the first read at once)."""
        while True:
            raise_if_cancelled()
            try:
                await self.read()
            except (RedisError, OSError) as exc:
                self._on_error()
                logger.warning(
                    "could not read the registry; keeping the last one",
                    extra={"error": repr(exc)},
                )
            await asyncio.sleep(self._interval)


def _log_new_services(before: Registry, after: Registry) -> None:
    """One line per service this process reads for the first time (a new service joining, or
    every service at the first read)."""
    for service in sorted(after.announcements.keys() - before.announcements.keys()):
        offer = after.announcements[service].offer
        logger.info(
            "a service is announced in the registry",
            extra={
                "service": service,
                "namespaces": [ns for ns in offer.namespace_names if ns in after.namespaces],
                "requests": len(offer.requests),
            },
        )


def _log_owner_changes(before: Registry, after: Registry) -> None:
    """Warn of a namespace that changed owner: only an operator's release (``HDEL``) and a
    new claim do that, or a service's credentials misused (docs/security.md)."""
    for name, namespace in after.namespaces.items():
        earlier = before.namespaces.get(name)
        if earlier is not None and earlier.service != namespace.service:
            logger.warning(
                "a namespace changed owner in the registry",
                extra={"namespace": name, "was": earlier.service, "now": namespace.service},
            )


#: One read of the registry: its three keys (one slot: ``{registry}``) and Redis's clock.
_READ = b"".join(
    [
        command("HGETALL", REGISTRY_OWNERS),
        command("HGETALL", REGISTRY_SERVICES),
        command("ZRANGE", REGISTRY_ALIVE, 0, -1, "WITHSCORES"),
        command("TIME"),
    ]
)


def _pairs(reply: Any) -> Iterator[tuple[Any, Any]]:
    """A reply of HGETALL or ZRANGE WITHSCORES as pairs, whichever RESP the connection
    speaks: a flat ``[k1, v1, k2, v2, ...]`` (RESP2), or a map or ``[[k1, v1], ...]``
    (RESP3, which redis-py may negotiate)."""
    if isinstance(reply, dict):
        return iter(reply.items())
    if reply and isinstance(reply[0], list):
        return ((key, value) for key, value in reply)
    values = iter(reply)
    return zip(values, values, strict=True)

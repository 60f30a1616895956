"""Announcing a service in the namespace registry from tooling, as the service would.

For a gateway run with no service behind it (the fan-out benchmark subscribes to
``presence:`` channels, tests time requests out): the gateway routes by the registry, so the
services it is to route to are announced first, with a long lease. The same script as the
services' (``common/lua/announce.lua``), sent with ``EVAL`` by a client with every right.
"""

from __future__ import annotations

import redis
from prometheus_client.parser import text_string_to_metric_families

from common.keys import REGISTRY_KEYS
from common.lua import source
from common.registry import Announcement, Offer
from devtools.processes import http_get


__all__ = ["LONG_LEASE_MS", "announce", "routes_to"]

#: An hour: longer than any test or benchmark, so that no stand-in lease passes during one.
LONG_LEASE_MS = 3_600_000


def announce(
    client: redis.Redis | redis.RedisCluster, offer: Offer, *, lease_ms: int = LONG_LEASE_MS
) -> int:
    """Run the announce script for ``offer``; the lease's expiry (ms, Redis's clock).

    Raises:
        redis.exceptions.ResponseError: the registry refused it (``OWNED ...``).
    """
    body = Announcement(offer, "devtools").encode()
    args: list[str | bytes | int] = [offer.service, body, lease_ms, *offer.namespace_names]
    script = source("common", "announce")
    return int(client.eval(script, len(REGISTRY_KEYS), *REGISTRY_KEYS, *args))


def routes_to(gateway_url: str, services: int) -> bool:
    """Whether the gateway at ``gateway_url`` (``http://host:port``) answers ready and has
    read at least ``services`` live services in the registry (``rt_gateway_registry_services``).

    A gateway is ready once it has read the registry, which may be up to ``RT_REGISTRY_POLL``
    before services started beside it announced themselves: what starts a whole system waits
    for this too before it sends requests. A ready gateway without that metric, one from
    before the registry, routes by its own table and counts as routing.
    """
    if http_get(f"{gateway_url}/readyz", 1.0)[0] != 200:
        return False
    status, text = http_get(f"{gateway_url}/metrics", 1.0)
    if status != 200:
        return False
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "rt_gateway_registry_services":
                return sample.value >= services
    # A gateway from before the registry (the REF side of bench-bids --compare) routes by
    # its built-in table from the start.
    return True

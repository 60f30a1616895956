"""The namespace registry in tests: the built-in services' offers, and announcing them.

Tests that start a gateway with no service behind it (protocol tests, timeouts, fan-out)
relied on the gateway's hard-coded table before the registry. :func:`announce_built_ins`
announces what the built-ins (and the stubs standing in for them) offer, as they would,
with a long lease, so that such a gateway routes as it did: a request is appended to the
stream and times out when no instance reads it. Real services announce themselves too and
replace these announcements (same service, same namespaces).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from bids_service.rules import OFFER as BIDS
from chat_service.rules import OFFER as CHAT
from common.registry import Announcement, Offer, Registry, RegistryView, build_registry
from devtools.registry import LONG_LEASE_MS, announce
from presence_service.rules import OFFER as PRESENCE
from tests.support.bus_redis import client


__all__ = [
    "BUILT_IN_OFFERS",
    "LONG_LEASE_MS",
    "announce",
    "announce_built_ins",
    "built_in_view",
    "registry_of",
    "stub_offer",
]

BUILT_IN_OFFERS: Mapping[str, Offer] = MappingProxyType(
    {offer.service: offer for offer in (CHAT, BIDS, PRESENCE)}
)
#: The stub service's request types (tests/support/stub_service.py), per action.
STUB_ACTIONS: Mapping[str, frozenset[str] | None] = MappingProxyType(
    {
        "echo": None,
        "slow": frozenset({"delay"}),
        "fail": frozenset({"code"}),
        "join": frozenset({"channel", "channels", "position"}),
    }
)


def stub_offer(service: str) -> Offer:
    """What the stub standing in for built-in ``service`` offers: the real service's request
    types and namespaces, plus the stub's own types (``chat.join`` takes the fields of both)."""
    real = BUILT_IN_OFFERS[service]
    requests = dict(real.requests)
    for action, fields in STUB_ACTIONS.items():
        kind = f"{service}.{action}"
        known = requests.get(kind, frozenset())
        requests[kind] = None if fields is None or known is None else known | fields
    return Offer(
        service, MappingProxyType(requests), real.namespaces, real.partitions, real.entities
    )


def announce_built_ins(redis_url: str) -> None:
    """Announce every built-in service (with the stubs' types) for an hour on ``redis_url``
    (a cluster's too)."""
    with client(redis_url) as redis:
        for service in BUILT_IN_OFFERS:
            announce(redis, stub_offer(service))


def registry_of(offers: Iterable[Offer], *, expired: Iterable[str] = ()) -> Registry:
    """The registry a gateway reads when ``offers`` are announced, each alive at monotonic
    time 0 for an hour, but those ``expired`` (their lease passed): for pure tests."""
    offers = list(offers)
    gone = set(expired)
    owners = {name: offer.service for offer in offers for name in offer.namespace_names}
    services = {offer.service: Announcement(offer, "test").encode() for offer in offers}
    alive = [(offer.service, 0.0 if offer.service in gone else LONG_LEASE_MS) for offer in offers]
    registry, refusals = build_registry(owners, services, alive, redis_ms=1, read_at=0.0)
    assert not refusals
    return registry


def built_in_view() -> RegistryView:
    """A loaded view of the built-ins' registry (with the stubs' types), for pure tests."""
    view = RegistryView(registry_of(stub_offer(service) for service in BUILT_IN_OFFERS))
    view.loaded = True
    return view

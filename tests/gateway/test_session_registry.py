"""The session routes by the registry in force, with no I/O: new services, leases that pass."""

from __future__ import annotations

from types import MappingProxyType

from common.namespaces import Access, Namespace
from common.registry import Offer
from realtime_gateway.session import Call, Join
from tests.gateway.session_support import Driven, code_of, error_of
from tests.support.registry import BUILT_IN_OFFERS, registry_of


ORDERS = Offer(
    "orders",
    MappingProxyType({"orders.get": frozenset({"order"})}),
    (Namespace("orders", "orders", Access.OWNER, history=True, presence=True),),
)


def _driven(*, expired: tuple[str, ...] = ()) -> Driven:
    driven = Driven()
    driven.gate.registry.current = registry_of([*BUILT_IN_OFFERS.values(), ORDERS], expired=expired)
    driven.authenticate()
    return driven


def test_a_service_announced_later_is_routed_to_by_the_same_session() -> None:
    """The registry a session reads is replaced under it: a new service's request goes out."""
    driven = Driven()
    driven.authenticate()
    assert code_of(driven.send({"type": "orders.get", "ref": 1, "order": "42"})) == "unknown_type"
    driven.gate.registry.current = registry_of([*BUILT_IN_OFFERS.values(), ORDERS])
    (call,) = driven.send({"type": "orders.get", "ref": 2, "order": "42"})
    assert call == Call(2, "orders", "orders.get", {"order": "42"}, ())
    (join,) = driven.send({"type": "subscribe", "ref": 3, "channel": "orders:42"})
    assert join == Join("orders:42", "orders", True, 3, None, None)


def test_a_request_to_a_service_whose_lease_passed_is_refused_at_once() -> None:
    """No Call (nothing reaches the stream), and the client is told the service is not running."""
    driven = _driven(expired=("orders",))
    actions = driven.send({"type": "orders.get", "ref": 1, "order": "42"})
    assert error_of(actions) == {
        "code": "service_unavailable",
        "message": "service 'orders' is not running",
    }
    assert driven.session.inflight == 0


def test_a_lease_passes_between_two_reads() -> None:
    """Alive at the read, refused once the lease's end passes on the session's clock."""
    driven = _driven()
    assert isinstance(driven.send({"type": "orders.get", "ref": 1, "order": "1"})[0], Call)
    actions = driven.send({"type": "orders.get", "ref": 2, "order": "1"}, after=3600.0)
    assert code_of(actions) == "service_unavailable"


def test_a_subscribe_to_a_dead_owners_channel_is_refused_at_once() -> None:
    """The owner's lease passed: service_unavailable, with no join and no subscription."""
    driven = _driven(expired=("orders",))
    actions = driven.send({"type": "subscribe", "ref": 1, "channel": "orders:42"})
    assert error_of(actions)["message"] == "service 'orders' is not running"
    assert driven.session.subscriptions == {}


def test_fields_are_the_announced_ones() -> None:
    """A field the service did not announce is refused at the gateway, naming it."""
    driven = _driven()
    error = error_of(driven.send({"type": "orders.get", "ref": 1, "order": "1", "x": 2}))
    assert (error["code"], error["field"]) == ("bad_request", "x")
    assert error["message"] == "unknown field 'x': orders.get takes order"

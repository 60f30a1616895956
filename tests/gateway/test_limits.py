"""Edge accounting, pure: times are given, nothing sleeps."""

from __future__ import annotations

from realtime_gateway.limits import Buckets, EdgeLimits, address_key


def limits(**overrides: float) -> EdgeLimits:
    values: dict[str, float] = {
        "max_unauthenticated": 3,
        "max_unauthenticated_per_ip": 2,
        "busy_auth_timeout": 1.0,
        "max_connections_per_user": 2,
    }
    values.update(overrides)
    return EdgeLimits(
        max_unauthenticated=int(values["max_unauthenticated"]),
        max_unauthenticated_per_ip=int(values["max_unauthenticated_per_ip"]),
        busy_auth_timeout=values["busy_auth_timeout"],
        max_connections_per_user=int(values["max_connections_per_user"]),
        connects=Buckets(1.0, 2),
        auth_failures=Buckets(0.5, 2),
    )


def test_per_ip_cap_overflows_and_releases() -> None:
    """A third unauthenticated socket of one address goes to the overflow; a release frees it."""
    edge = limits()
    first, second = edge.admit("a", 0.0), edge.admit("a", 0.0)
    third = edge.admit("a", 0.0)
    assert third.ticket is not None
    assert third.ticket.overflow == "unauthenticated_per_ip"
    assert first.ticket is not None
    assert second.ticket is not None
    edge.release(first.ticket)
    assert edge.admit("a", 0.0).ticket.overflow is None  # type: ignore[union-attr]
    assert edge.unauthenticated(websocket=False) == 3  # two in the pool, one in the overflow


def test_full_pool_evicts_the_oldest_once_it_is_old_enough() -> None:
    """Under pressure the oldest socket older than busy_auth_timeout makes room."""
    edge = limits(max_unauthenticated_per_ip=10)
    tickets = [edge.admit(ip, 0.0).ticket for ip in "abc"]
    young = edge.admit("d", 0.5)
    assert young.ticket is not None
    assert young.ticket.overflow == "unauthenticated_full"
    old = edge.admit("e", 1.5)
    assert old.victim is tickets[0]
    assert old.ticket is not None
    assert old.ticket.overflow is None


def test_overflow_is_bounded_too() -> None:
    """When the pool and the overflow are full, a socket is refused outright."""
    edge = limits(max_unauthenticated=1, busy_auth_timeout=10.0)
    edge.admit("a", 0.0)
    assert edge.admit("b", 0.0).ticket is not None
    refused = edge.admit("c", 0.0)
    assert refused.ticket is None
    assert refused.refused == "unauthenticated_full"


def test_authenticated_sockets_leave_the_pool_and_count_per_user() -> None:
    """Authenticating frees the address's place; a user's third connection is refused."""
    edge = limits()
    tickets = [edge.admit("a", 0.0).ticket for _ in range(2)]
    assert all(t is not None and edge.authenticated(t, "alice") for t in tickets)
    third = edge.admit("a", 0.0).ticket
    assert third is not None
    assert third.overflow is None
    assert not edge.authenticated(third, "alice")
    assert edge.users == 1
    for ticket in tickets:
        assert ticket is not None
        edge.release(ticket)
        edge.release(ticket)  # idempotent
    assert edge.users == 0
    assert edge.authenticated(third, "alice")


def test_auth_failures_slow_an_address_and_recover() -> None:
    """After the burst of failures an address may not try until tokens come back."""
    edge = limits()
    for _ in range(2):
        assert edge.may_authenticate("a", 0.0)
        edge.auth_failed("a", 0.0)
    assert not edge.may_authenticate("a", 0.0)
    assert edge.may_authenticate("b", 0.0)
    assert edge.may_authenticate("a", 2.0)


def test_connect_rate_per_address() -> None:
    """Upgrades beyond the burst are refused until the rate refills."""
    edge = limits()
    assert edge.may_connect("a", 0.0)
    assert edge.may_connect("a", 0.0)
    assert not edge.may_connect("a", 0.0)
    assert edge.may_connect("a", 1.0)


def test_ipv6_addresses_count_by_their_64() -> None:
    """One IPv6 host owns a /64: its addresses share one key; IPv4-mapped ones are IPv4."""
    assert address_key("2001:db8::1") == address_key("2001:db8::ffff:2") == "2001:db8::/64"
    assert address_key("::ffff:10.0.0.1") == "10.0.0.1"
    assert address_key("10.0.0.1") == "10.0.0.1"

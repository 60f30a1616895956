"""Per-address and per-user accounting at the edge, pure: the caller does the I/O.

Every socket the gateway accepts holds a :class:`Ticket` from its first byte until it
authenticates (or closes): while it holds one it is *unauthenticated* and counts against
``max_unauthenticated`` in all and ``max_unauthenticated_per_ip`` for its address, whether
it is still sending its request head or is an open WebSocket that has sent no valid token.
That keeps ``RT_MAX_CONNECTIONS - RT_MAX_UNAUTHENTICATED`` WebSocket slots for users who
authenticate, however many idle sockets anyone opens. Under pressure (no unauthenticated
slot left) the oldest unauthenticated socket is evicted once it is older than
``busy_auth_timeout``: an idle socket is closed sooner, a fresh one gets its chance.

A socket refused a place (its address has too many, or the pool is full of young sockets)
is not closed at once: nobody knows yet whether it is a WebSocket upgrade or a health probe
or a metrics scrape, which must keep working under attack. It waits in an *overflow* of the
same size, as bounded in time and bytes as any request head; a plain HTTP request is then
served, a WebSocket upgrade refused (HTTP 503).

Rates are token buckets per address: WebSocket upgrades, and failed authentications (a
brute-forcer is refused further tries; a user who never fails never notices). Times are
given by the caller (``now``), so these rules are tested without sleeping.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Protocol


__all__ = [
    "Admission",
    "Buckets",
    "EdgeLimits",
    "Evictable",
    "Ticket",
    "address_key",
]

#: Addresses whose buckets are remembered; past this the least recently seen are forgotten
#: (their buckets are as good as full again): memory stays bounded under any spread of
#: addresses, and only an attacker with that many addresses gains from it.
MAX_TRACKED = 65_536


def address_key(host: str) -> str:
    """The key of a client address: itself for IPv4, its /64 network for IPv6.

    One IPv6 host commonly owns a whole /64, so counting single addresses would not limit
    it at all.
    """
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host  # a Unix socket path, or whatever the transport reports
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class Evictable(Protocol):
    """What holds a ticket: a socket that can be closed to make room."""

    def evict(self) -> None: ...


@dataclass(eq=False, slots=True)
class Ticket:
    """One socket's place in the accounting (identity equality: each is its own)."""

    ip: str
    since: float
    holder: Evictable | None = None
    #: Set once the socket authenticated: it left the unauthenticated pool for this user.
    user: str | None = None
    #: Whether the socket is a WebSocket (its request head was complete and an upgrade).
    websocket: bool = False
    released: bool = False
    #: Why the socket has no place in the pool (it is in the overflow), or None.
    overflow: str | None = None


@dataclass(frozen=True, slots=True)
class Admission:
    """The verdict on a new socket: its ticket, or why it is refused; maybe a socket to evict."""

    ticket: Ticket | None
    refused: str | None = None
    victim: Ticket | None = None


class Buckets:
    """Token buckets by key: ``burst`` tokens, refilled at ``rate`` per second."""

    __slots__ = ("_buckets", "burst", "rate")

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        #: key -> (tokens, when last refilled); insertion order is least recently seen first.
        self._buckets: dict[str, tuple[float, float]] = {}

    def _tokens(self, key: str, now: float) -> float:
        tokens, then = self._buckets.pop(key, (self.burst, now))
        return min(self.burst, tokens + (now - then) * self.rate)

    def take(self, key: str, now: float) -> bool:
        """Spend a token of ``key``; False (and nothing spent) when it has none."""
        tokens = self._tokens(key, now)
        allowed = tokens >= 1.0
        self._remember(key, tokens - 1.0 if allowed else tokens, now)
        return allowed

    def spend(self, key: str, now: float) -> None:
        """Spend a token even below zero: every failure counts, the wait grows with them."""
        self._remember(key, max(-self.burst, self._tokens(key, now) - 1.0), now)

    def has(self, key: str, now: float) -> bool:
        """Whether ``key`` has a token, without spending it."""
        tokens, then = self._buckets.get(key, (self.burst, now))
        return tokens + (now - then) * self.rate >= 1.0

    def _remember(self, key: str, tokens: float, now: float) -> None:
        if tokens >= self.burst:
            return  # a full bucket is the default: nothing to remember
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > MAX_TRACKED:
            del self._buckets[next(iter(self._buckets))]

    def __len__(self) -> int:
        return len(self._buckets)


@dataclass(slots=True)
class EdgeLimits:
    max_unauthenticated: int
    max_unauthenticated_per_ip: int
    busy_auth_timeout: float
    max_connections_per_user: int
    connects: Buckets
    auth_failures: Buckets
    #: Unauthenticated tickets, oldest first (a dict: ordered, O(1) removal).
    _waiting: dict[Ticket, None] = field(default_factory=dict)
    _per_ip: dict[str, int] = field(default_factory=dict)
    _per_user: dict[str, int] = field(default_factory=dict)
    _overflow: int = 0

    # Sockets.

    def admit(self, ip: str, now: float) -> Admission:
        """A new socket from ``ip`` (an :func:`address_key`), or a new request head on one."""
        if self._per_ip.get(ip, 0) >= self.max_unauthenticated_per_ip:
            return self._overflowing(ip, now, "unauthenticated_per_ip")
        victim = None
        if len(self._waiting) >= self.max_unauthenticated:
            oldest = next(iter(self._waiting))
            if now - oldest.since < self.busy_auth_timeout:
                return self._overflowing(ip, now, "unauthenticated_full")
            victim = oldest
            self._leave_pool(oldest)
        ticket = Ticket(ip, now)
        self._waiting[ticket] = None
        self._per_ip[ip] = self._per_ip.get(ip, 0) + 1
        return Admission(ticket, victim=victim)

    def _overflowing(self, ip: str, now: float, reason: str) -> Admission:
        if self._overflow >= self.max_unauthenticated:
            return Admission(None, reason)
        self._overflow += 1
        return Admission(Ticket(ip, now, overflow=reason))

    def authenticated(self, ticket: Ticket, user: str) -> bool:
        """The socket authenticated as ``user``; False when the user has too many already."""
        if self._per_user.get(user, 0) >= self.max_connections_per_user:
            return False
        self._leave_pool(ticket)
        ticket.user = user
        self._per_user[user] = self._per_user.get(user, 0) + 1
        return True

    def release(self, ticket: Ticket) -> None:
        """The socket is gone (or, for a plain HTTP request, its head is complete)."""
        if ticket.released:
            return
        ticket.released = True
        if ticket.overflow is not None:
            self._overflow -= 1
        self._leave_pool(ticket)
        if ticket.user is not None:
            _decrement(self._per_user, ticket.user)

    def _leave_pool(self, ticket: Ticket) -> None:
        if ticket in self._waiting:
            del self._waiting[ticket]
            _decrement(self._per_ip, ticket.ip)

    # Rates.

    def may_connect(self, ip: str, now: float) -> bool:
        """Spend one WebSocket upgrade of ``ip``'s rate."""
        return self.connects.take(ip, now)

    def may_authenticate(self, ip: str, now: float) -> bool:
        """Whether ``ip`` may try a token now (it has not failed too often lately)."""
        return self.auth_failures.has(ip, now)

    def auth_failed(self, ip: str, now: float) -> None:
        self.auth_failures.spend(ip, now)

    # Gauges.

    def unauthenticated(self, *, websocket: bool) -> int:
        """Sockets holding a place in the pool, WebSockets or request heads (overflow too)."""
        held = sum(1 for ticket in self._waiting if ticket.websocket is websocket)
        return held if websocket else held + self._overflow

    @property
    def users(self) -> int:
        return len(self._per_user)


def _decrement(counts: dict[str, int], key: str) -> None:
    left = counts[key] - 1
    if left:
        counts[key] = left
    else:
        del counts[key]

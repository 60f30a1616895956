"""What a session asks its shell to do (actions), and what it reads of the world (ports).

Each session method returns the actions its input caused, in the order the shell must run
them. Actions are values: a test reads them as they are, the shell
(:mod:`realtime_gateway.connection`) turns each into one call on the outbox, the router, the
hub or the event loop. The shell never feeds the session while it runs one action.

Actions are never changed once made, yet not frozen: a frozen dataclass's ``__init__`` pays
an ``object.__setattr__`` per field, and a request and its reply make two of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from common.auth import Identity
from common.envelope import Reply
from common.errors import CloseCode
from common.registry import RegistryView
from realtime_gateway.limits import Ticket
from realtime_gateway.protocol import Ref


__all__ = [
    "STOP_TIMER",
    "Action",
    "Activate",
    "AskOwner",
    "Call",
    "CatchUp",
    "Close",
    "Gatekeeper",
    "Join",
    "Joining",
    "Leave",
    "Link",
    "Notify",
    "Send",
    "ServerJoin",
    "StartTimer",
    "StopTimer",
]


# Ports: read or asked synchronously, never awaited.


class Link(Protocol):
    """What the session reads of its connection's outbox: whether (and how) it is closed.

    The outbox closes on its own too (a slow consumer, a lost socket, a shutdown), so the
    session asks rather than remembers.
    """

    @property
    def closed(self) -> bool: ...

    @property
    def close_code(self) -> int | None: ...


class Gatekeeper(Protocol):
    """What the session asks the gateway about tokens and the edge, and what it counts, and
    where it reads the namespace registry in force."""

    @property
    def registry(self) -> RegistryView: ...

    def verify(self, token: object) -> Identity:
        """The identity a token proves. Raises: ProtocolError: the token is refused."""
        ...

    def is_revoked(self, identity: Identity) -> bool: ...

    def may_authenticate(self, ticket: Ticket | None) -> bool: ...

    def auth_failed(self, ticket: Ticket | None) -> None: ...

    def admit_user(self, ticket: Ticket | None, user: str) -> bool:
        """Whether ``user`` may hold one more connection (then it holds this one)."""
        ...

    def count_message(self, kind: str) -> None: ...

    def refuse(self, reason: str) -> None: ...


# Actions.


@dataclass(slots=True)
class Send:
    """Queue one message (a client frame) to the connection."""

    message: dict[str, Any]


@dataclass(slots=True)
class Close:
    code: CloseCode
    reason: str


@dataclass(slots=True)
class Call:
    """A client's request to a service; its reply (or None) goes to ``Session.answered``."""

    ref: Ref
    service: str
    type: str
    data: dict[str, Any]
    #: Notifications the service must have applied first (see ``ChannelSession._prior``).
    prior: tuple[dict[str, Any], ...]


@dataclass(slots=True)
class AskOwner:
    """A ``subscribe`` request to a channel's owner; its answer goes to ``owner_answered``."""

    ref: Ref
    channel: str
    service: str
    since: str | None
    data: dict[str, Any]
    #: Identifies this subscribe among the channel's: an answer to an older one is stale.
    token: object


@dataclass(slots=True)
class Notify:
    """A notification to the presence service (``track``, ``untrack``, ``drop``)."""

    kind: str
    data: dict[str, Any]
    #: The presence partition it goes to (docs/bus.md "Partitions"): that of its channel
    #: for a track or untrack, one of those the connection was tracked in for a drop.
    partition: int = 0


@dataclass(slots=True)
class Join:
    """Add the connection to a channel's subscribers on the hub and await the bus, in line
    with the client's messages, at most ``request_timeout``; then ``joined`` (or
    ``join_timed_out``). Pending: the channel's events are held until ``Activate``.
    """

    channel: str
    #: The channel's owner.
    service: str
    pending: bool
    ref: Ref
    since: str | None
    #: For ``presence:<channel>`` of an owner-guarded channel: that channel.
    watched: str | None


@dataclass(eq=False, slots=True)
class Joining:
    """A server-side subscription under way: a service's reply naming channels to join."""

    service: str
    reply: Reply
    ref: Ref
    #: The channels of the reply not considered yet.
    channels: Iterator[str]
    #: The channels joined so far: (channel, whether it has history, its awaiting token).
    joined: list[tuple[str, bool, object]] = field(default_factory=list)


@dataclass(slots=True)
class ServerJoin:
    """In the background: join (pending) each channel ``next_join`` names, then call
    ``joins_done``."""

    joining: Joining


@dataclass(slots=True)
class Leave:
    channel: str


@dataclass(slots=True)
class Activate:
    """Make a pending subscription live: first its held events newer than ``after``."""

    channel: str
    after: str | None


@dataclass(slots=True)
class CatchUp:
    """Ask the owner for what ``channel`` published after ``since``, then make it live."""

    channel: str
    since: str


@dataclass(slots=True)
class StartTimer:
    """(Re)start the connection's one timer; when it fires, call ``timer_fired``."""

    #: Seconds from now.
    delay: float = 0.0
    #: Or, when set, the wall-clock time (``time.time()``) to fire at: a token's ``exp``.
    wall: float | None = None


@dataclass(slots=True)
class StopTimer:
    pass


STOP_TIMER = StopTimer()

Action = (
    Send
    | Close
    | Call
    | AskOwner
    | Notify
    | Join
    | ServerJoin
    | Leave
    | Activate
    | CatchUp
    | StartTimer
    | StopTimer
)

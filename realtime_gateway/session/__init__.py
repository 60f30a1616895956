"""A connection's session as pure code: messages, replies and ticks in, actions out.

:mod:`.core` holds the connection's own rules (authentication, limits, service calls),
:mod:`.channels` its subscriptions and presence notifications, :mod:`.actions` what goes out
and the ports the session reads. :mod:`realtime_gateway.connection` is the asyncio shell.
"""

from __future__ import annotations

from realtime_gateway.session.actions import (
    STOP_TIMER,
    Action,
    Activate,
    AskOwner,
    Call,
    CatchUp,
    Close,
    Gatekeeper,
    Join,
    Joining,
    Leave,
    Link,
    Notify,
    Send,
    ServerJoin,
    StartTimer,
    StopTimer,
)
from realtime_gateway.session.channels import MAX_REMEMBERED_UNTRACKS, PRESENCE
from realtime_gateway.session.core import MAX_AUTH_FAILURES, Session


__all__ = [
    "MAX_AUTH_FAILURES",
    "MAX_REMEMBERED_UNTRACKS",
    "PRESENCE",
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
    "Session",
    "StartTimer",
    "StopTimer",
]

"""Channel names and namespace policy: the syntax of ``<namespace>:<name>`` and what a
namespace's owner says about its channels.

Which namespaces exist, and who owns them, is no longer a table here: each service announces
its own (:mod:`common.registry`, docs/bus.md "Namespace registry").
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from common.errors import ErrorCode, ProtocolError


__all__ = ["NAME", "Access", "Namespace", "namespace_name"]

#: A namespace's (and a service's) name.
NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")


class Access(enum.Enum):
    """Who may subscribe to a namespace's channels."""

    #: Any authenticated user; the gateway decides alone.
    AUTHENTICATED = "authenticated"
    #: The owning service decides, per channel and user (private chat rooms).
    OWNER = "owner"


@dataclass(frozen=True, slots=True)
class Namespace:
    name: str
    #: The owning service: the one whose stream a ``subscribe`` goes to.
    service: str
    access: Access
    #: Whether the owner keeps history: a subscribe then asks the owner for the channel's
    #: position and, with ``since``, for a replay.
    history: bool
    #: Whether the presence service tracks who is subscribed (``presence:<channel>``).
    presence: bool = False


_CHANNEL = re.compile(r"([a-z][a-z0-9_]{0,31}):([A-Za-z0-9_.:\-]{1,200})")


def namespace_name(channel: object) -> str:
    """The namespace part of a client channel name ``<namespace>:<name>``.

    Raises:
        ProtocolError: the name is not a string (``bad_request``) or malformed
            (``invalid_channel``).
    """
    if not isinstance(channel, str):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "'channel' must be a string")
    match = _CHANNEL.fullmatch(channel)
    if match is None:
        raise ProtocolError(
            ErrorCode.INVALID_CHANNEL,
            "a channel is '<namespace>:<name>' with a name of 1-200 letters, digits or _.:-",
        )
    return match.group(1)

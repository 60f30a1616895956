"""Channel names and the namespace table: who owns a channel and who may subscribe."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from common.errors import ErrorCode, ProtocolError


__all__ = ["NAMESPACES", "SERVICES", "Access", "Namespace", "parse_channel"]


class Access(enum.Enum):
    """Who may subscribe to a namespace's channels."""

    #: Any authenticated user; the gateway decides alone.
    AUTHENTICATED = "authenticated"
    #: The owning service decides, per channel and user (private chat rooms).
    OWNER = "owner"


@dataclass(frozen=True, slots=True)
class Namespace:
    name: str
    service: str
    access: Access
    #: Whether the owner keeps history: a subscribe then asks the owner for the channel's
    #: position and, with ``since``, for a replay.
    history: bool
    #: Whether the presence service tracks who is subscribed (``presence:<channel>``).
    presence: bool = False


NAMESPACES: dict[str, Namespace] = {
    ns.name: ns
    for ns in (
        Namespace("chat", service="chat", access=Access.OWNER, history=True, presence=True),
        Namespace(
            "auction", service="bids", access=Access.AUTHENTICATED, history=True, presence=True
        ),
        Namespace("presence", service="presence", access=Access.AUTHENTICATED, history=False),
    )
}

#: The services that own namespaces: those a client request may name.
SERVICES = frozenset(ns.service for ns in NAMESPACES.values())

_CHANNEL = re.compile(r"([a-z][a-z0-9_]{0,31}):([A-Za-z0-9_.:\-]{1,200})")


def parse_channel(channel: object) -> Namespace:
    """The namespace of a client channel name ``<namespace>:<name>``.

    Raises:
        ProtocolError: the name is malformed (``invalid_channel``) or its namespace unknown.
    """
    if not isinstance(channel, str):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "'channel' must be a string")
    match = _CHANNEL.fullmatch(channel)
    if match is None:
        raise ProtocolError(
            ErrorCode.INVALID_CHANNEL,
            "a channel is '<namespace>:<name>' with a name of 1-200 letters, digits or _.:-",
        )
    namespace = NAMESPACES.get(match.group(1))
    if namespace is None:
        raise ProtocolError(
            ErrorCode.INVALID_CHANNEL,
            f"unknown namespace {match.group(1)!r}; known: {', '.join(sorted(NAMESPACES))}",
        )
    return namespace

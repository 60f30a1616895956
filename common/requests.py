"""The client requests each service answers, and the fields each may carry.

The gateway refuses any other request type or field before it reaches the bus: a stream
entry then costs Redis what its service reads and nothing more. The services check the
same table, so a field is added in one place. ``RT_CLIENT_REQUESTS`` adds types and fields
for a service that has grown ahead of the gateway's release.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Final

from common.errors import ConfigError


__all__ = [
    "CLIENT_REQUESTS",
    "RequestTable",
    "parse_request_table",
    "unknown_field",
    "unknown_field_message",
]

#: ``<service>.<action>`` to the fields its frame may carry besides ``type`` and ``ref``;
#: None: any field (a type an operator opened with ``*``).
RequestTable = Mapping[str, frozenset[str] | None]

CLIENT_REQUESTS: Final[Mapping[str, frozenset[str]]] = MappingProxyType(
    {
        "chat.create": frozenset({"room", "private", "members"}),
        "chat.join": frozenset({"room", "since"}),
        "chat.leave": frozenset({"room"}),
        "chat.send": frozenset({"room", "text", "client_id"}),
        "chat.history": frozenset({"room", "before", "limit"}),
        "chat.typing": frozenset({"room"}),
        "bids.place": frozenset({"auction", "amount", "key"}),
        "bids.get": frozenset({"auction"}),
        "bids.list": frozenset(),
        "presence.list": frozenset({"channel"}),
        "presence.count": frozenset({"channel"}),
    }
)

_TYPE = re.compile(r"[a-z][a-z0-9_]{0,31}\.[A-Za-z0-9_.\-]{1,31}")
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
#: Characters of a client's name quoted back in a message.
_MAX_SHOWN = 64
#: What every frame has, the gateway's and not the service's.
_FRAME = ("type", "ref")


def unknown_field(fields: Mapping[str, object], allowed: frozenset[str] | None) -> str | None:
    """The first field, in sorted order, that is not ``allowed``; None when all are."""
    if allowed is None or fields.keys() <= allowed:
        return None
    return min(fields.keys() - allowed)


def unknown_field_message(name: str, what: str, allowed: frozenset[str]) -> str:
    """What a client is told of field ``name``, which ``what`` (a request type) does not take."""
    shown = name if len(name) <= _MAX_SHOWN else name[:_MAX_SHOWN] + "..."
    return f"unknown field {shown!r}: {what} takes {', '.join(sorted(allowed)) or 'no fields'}"


def parse_request_table(entries: Iterable[str], services: frozenset[str]) -> RequestTable:
    """:data:`CLIENT_REQUESTS` with the ``type=field|field`` or ``type=*`` entries added.

    An entry for a built-in type adds fields to it; ``*`` lets any field through.

    Raises:
        ConfigError: an entry is malformed or names a service that is not in ``services``.
    """
    table: dict[str, frozenset[str] | None] = dict(CLIENT_REQUESTS)
    for entry in entries:
        kind, equals, raw = (part.strip() for part in entry.partition("="))
        where = f"RT_CLIENT_REQUESTS: {entry!r}"
        if not equals or not _TYPE.fullmatch(kind):
            raise ConfigError(f"{where} is not '<service>.<action>=<field>|<field>' or '=*'")
        service = kind.partition(".")[0]
        if service not in services:
            raise ConfigError(
                f"{where}: no service {service!r}; known: {', '.join(sorted(services))}"
            )
        if raw == "*":
            table[kind] = None
            continue
        fields = frozenset(name.strip() for name in raw.split("|") if name.strip())
        bad = sorted(name for name in fields if not _FIELD.fullmatch(name) or name in _FRAME)
        if bad:
            raise ConfigError(f"{where}: {bad[0]!r} is not a field name")
        known = table.get(kind, frozenset())
        table[kind] = None if known is None else known | fields
    return MappingProxyType(table)

"""Client request tables: the request types a service answers and the fields each carries.

Each service declares its own table and announces it (:mod:`common.registry`); the gateway
refuses any other request type or field before it reaches the bus, so that a stream entry
costs Redis what its service reads and nothing more. The service checks requests with the
same table, so that a field is added in one place.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from common.errors import ErrorCode, ServiceError


__all__ = [
    "FIELD",
    "FRAME_FIELDS",
    "REQUEST_TYPE",
    "RequestTable",
    "check_fields",
    "unknown_field",
    "unknown_field_message",
]

#: ``<service>.<action>`` to the fields its frame may carry besides ``type`` and ``ref``;
#: None: any field.
RequestTable = Mapping[str, frozenset[str] | None]

#: A request type, ``<service>.<action>``.
REQUEST_TYPE = re.compile(r"[a-z][a-z0-9_]{0,31}\.[A-Za-z0-9_.\-]{1,31}")
#: A field of a request.
FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
#: Characters of a client's name quoted back in a message.
_MAX_SHOWN = 64
#: What every frame has, the gateway's and not the service's.
FRAME_FIELDS = ("type", "ref")


def unknown_field(fields: Mapping[str, object], allowed: frozenset[str] | None) -> str | None:
    """The first field, in sorted order, that is not ``allowed``; None when all are."""
    if allowed is None or fields.keys() <= allowed:
        return None
    return min(fields.keys() - allowed)


def unknown_field_message(name: str, what: str, allowed: frozenset[str]) -> str:
    """What a client is told of field ``name``, which ``what`` (a request type) does not take."""
    shown = name if len(name) <= _MAX_SHOWN else name[:_MAX_SHOWN] + "..."
    return f"unknown field {shown!r}: {what} takes {', '.join(sorted(allowed)) or 'no fields'}"


def check_fields(requests: RequestTable, kind: str, data: Mapping[str, object]) -> None:
    """What a service checks of a request: the fields its table gives ``kind`` (a type not
    in ``requests``, as a gateway's ``subscribe``, is not checked here).

    Raises:
        ServiceError: ``bad_request`` naming the first unknown field.
    """
    if kind not in requests:
        return
    allowed = requests[kind]
    unknown = unknown_field(data, allowed)
    if unknown is not None:
        message = unknown_field_message(unknown, kind, allowed or frozenset())
        raise ServiceError(ErrorCode.BAD_REQUEST, message, field=unknown)

"""Every ``RT_*`` variable that something reads, so that a misspelt one is named at start.

A setting that is misspelt (``RT_JWT_SECERT_FILE``) would otherwise be ignored without a
word, and its default used. The names are global, not per process: ``scripts/run`` and
compose give one environment to several processes, so a service must not warn about the
gateway's settings. tests/common/test_variables.py checks that the process names below are
exactly those the settings classes read, and that every ``RT_*`` name in the repository is
known.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Iterable
from typing import NamedTuple


__all__ = [
    "KNOWN",
    "POLL_VARIABLES",
    "PROCESS_VARIABLES",
    "REMOVED",
    "TOOL_VARIABLES",
    "Unknown",
    "unknown",
    "warn_unknown",
]

logger = logging.getLogger(__name__)

_BUS = (
    "REDIS_URL REDIS_URL_FILE REDIS_USERNAME REDIS_PASSWORD REDIS_PASSWORD_FILE "
    "REDIS_CA_FILE REDIS_CERT_FILE REDIS_KEY_FILE STREAM_MAXLEN REGISTRY_POLL LOG_LEVEL "
    "LOG_FORMAT HOST PORT REDIS_CLUSTER"
)
_SERVICE = (
    "INSTANCE_ID SERVICE_BATCH CLAIM_IDLE_MS CLAIM_INTERVAL REGISTRY_TTL "
    "CHAT_PARTITIONS BIDS_PARTITIONS PRESENCE_PARTITIONS"
)
_GATEWAY = (
    "DEV GATEWAY_ID JWT_SECRET JWT_SECRET_FILE JWT_SECRET_KID JWT_JWKS_FILE "
    "JWT_PUBLIC_KEY_FILE JWT_PUBLIC_KEY_KID JWT_ISSUER JWT_AUDIENCE JWT_LEEWAY JWT_KEYS_POLL "
    "TOKEN_EXPIRING_NOTICE AUTH_TIMEOUT REQUEST_TIMEOUT MAX_MESSAGE_BYTES OUTBOX_MAX_MESSAGES "
    "OUTBOX_MAX_BYTES MAX_SUBSCRIPTIONS MAX_INFLIGHT RATE_LIMIT RATE_BURST MAX_CONNECTIONS "
    "SHUTDOWN_GRACE CLOSE_TIMEOUT PING_INTERVAL PING_TIMEOUT LEASE_TTL ALLOWED_ORIGINS "
    "HANDSHAKE_TIMEOUT MAX_HEADER_BYTES MAX_HEADERS MAX_UNAUTHENTICATED "
    "MAX_UNAUTHENTICATED_PER_IP BUSY_AUTH_TIMEOUT CONNECT_RATE CONNECT_BURST "
    "MAX_CONNECTIONS_PER_USER AUTH_FAILURE_RATE AUTH_FAILURE_BURST MAX_REQUEST_BYTES "
    "TLS_CERT_FILE TLS_KEY_FILE"
)
_CHAT = (
    "CHAT_RETENTION CHAT_JOIN_MESSAGES CHAT_REPLAY_LIMIT CHAT_MAX_TEXT CHAT_MAX_MEMBERS "
    "CHAT_MAX_ROOMS CHAT_CREATE_RATE CHAT_CREATE_BURST CHAT_EMPTY_ROOM_TTL "
    "CHAT_HISTORY_DEFAULT CHAT_HISTORY_MAX CHAT_SEND_RATE CHAT_SEND_BURST "
    "CHAT_TYPING_INTERVAL CHAT_DEDUPE_TTL"
)
_BIDS = (
    "BIDS_ADMIN_TOKEN BIDS_ADMIN_TOKEN_FILE BIDS_SEED_DEMO BIDS_CLOSE_INTERVAL BIDS_KEY_TTL "
    "BIDS_REFUSAL_TTL BIDS_BID_RATE BIDS_BID_BURST BIDS_HISTORY_MAXLEN BIDS_REPLAY_LIMIT "
    "BIDS_LIST_LIMIT BIDS_EXTEND_WINDOW BIDS_EXTEND_BY"
)
_PRESENCE = (
    "PRESENCE_SWEEP_INTERVAL PRESENCE_GRACE PRESENCE_TOMBSTONE_TTL PRESENCE_SWEEP_BATCH "
    "PRESENCE_LIST_LIMIT"
)
# The Node.js poll service (polls_service/src/settings.js reads these and the bus's and
# service's above; tests/common/test_variables.py checks that list against this one).
_POLL = (
    "POLL_TALLY_PER_SECOND POLL_KEY_TTL POLL_RETENTION POLL_CLOSE_INTERVAL "
    "POLL_MAX_DURATION POLL_HISTORY_MAXLEN"
)
# scripts/launch.py (the ports of each child, its private Redis), scripts/_venv.sh, and the
# JavaScript client's tests (tests/client/test_js_client.py gives them to node).
_TOOLS = (
    "CHAT_PORT BIDS_PORT PRESENCE_PORT POLL_PORT REDIS_PORT REDIS_MAXMEMORY VENV_EMBEDDED_REDIS "
    "TEST_GATEWAY_URL TEST_GATEWAY_HTTP TEST_JWT_SECRET TEST_CONTROL_URL TEST_CHAT_PID "
    "TEST_BIDS_PID TEST_BIDS_HTTP TEST_BIDS_ADMIN_TOKEN"
)


def _names(*groups: str) -> frozenset[str]:
    return frozenset("RT_" + name for group in groups for name in group.split())


#: What the settings classes of the gateway and the services read through ``Env``.
PROCESS_VARIABLES = _names(_BUS, _SERVICE, _GATEWAY, _CHAT, _BIDS, _PRESENCE)
#: What the Node.js poll service reads beyond the bus's and services' variables.
POLL_VARIABLES = _names(_POLL)
#: What the development and test tooling reads, which may sit in a process's environment.
TOOL_VARIABLES = _names(_TOOLS)
KNOWN = PROCESS_VARIABLES | POLL_VARIABLES | TOOL_VARIABLES
#: Variables of past releases that nothing reads any more, and what took their place.
REMOVED = {
    "RT_CLIENT_REQUESTS": "each service announces its request types in the namespace registry "
    "(docs/bus.md)",
}


#: ``RT_<SERVICE>_PARTITIONS``, which every service reads under its own name (also those
#: written elsewhere, which this repository does not list).
_PARTITIONS = re.compile(r"RT_[A-Z][A-Z0-9_]{0,31}_PARTITIONS")


class Unknown(NamedTuple):
    """An ``RT_*`` variable nothing reads, and the known name closest to it (None: none close)."""

    name: str
    closest: str | None


def unknown(names: Iterable[str]) -> list[Unknown]:
    """The ``RT_*`` names among ``names`` that nothing reads, sorted; other names are ignored."""
    return [
        Unknown(name, next(iter(difflib.get_close_matches(name, KNOWN, n=1, cutoff=0.8)), None))
        for name in sorted(names)
        if name.startswith("RT_") and name not in KNOWN and not _PARTITIONS.fullmatch(name)
    ]


def warn_unknown(names: Iterable[str]) -> None:
    """Log a warning for each unknown ``RT_*`` name of ``names`` (a process's environment)."""
    for variable in unknown(names):
        removed = REMOVED.get(variable.name)
        if removed is not None:
            hint = f": it was removed, {removed}"
        elif variable.closest:
            hint = f"; did you mean {variable.closest}?"
        else:
            hint = ""
        logger.warning(
            "unknown setting %s is ignored%s",
            variable.name,
            hint,
            extra={"variable": variable.name, "closest": variable.closest},
        )

"""The Redis ACL user of each process kind, built from the names in common/keys.py.

Pure: nothing here talks to Redis. Each user is a list of :class:`Grant`; the first is the
user's root permissions and each further one a Redis 7 selector ``(...)``, so that a command
is allowed only on the keys and channels of the same grant (the gateway may XADD to request
streams and ZADD to the lease set, not the other way round). Patterns come from the functions
that name things, called with ``*``, so a renamed key cannot leave a stale rule behind.

:func:`setuser_line` renders the ``ACL SETUSER`` line an operator runs (docs/security.md
prints them; a test checks they are the same), :func:`aclfile_line` the line of an ACL file
that the private servers of ``scripts/run`` and the tests load, with the password hashed.

Every process also needs the connection basics (PING for readiness, INFO for the version
check at start, CLIENT SETNAME). Not granted: SELECT (ACLs do not separate databases, so the
lines assume database 0), and redis-py's CLIENT SETINFO, which Redis 7.0 does not know as an
ACL rule and whose refusal redis-py ignores.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from common.keys import (
    EVENT_CHANNEL_PREFIX,
    GATEWAY_LEASES,
    REVOCATIONS,
    REVOKED,
    reply_channel,
    request_stream,
    service_prefix,
)
from common.namespaces import NAMESPACES


__all__ = [
    "BASICS",
    "KINDS",
    "PASSWORD_PLACEHOLDER",
    "SERVICE_BUS",
    "Grant",
    "User",
    "aclfile_line",
    "gateway_user",
    "service_user",
    "setuser_line",
    "user",
    "username",
    "users",
]

#: The process kinds, each with a user of its own (poll: the Node.js service, polls_service/).
KINDS = ("gateway", "chat", "bids", "presence", "poll")
#: Stands for the password in the lines printed for operators.
PASSWORD_PLACEHOLDER = "<password>"
ANY = "*"
#: The namespace registry's keys all start so (docs/bus.md).
REGISTRY_TAG = "{registry}"

BASICS = ("ping", "info", "client|setname")
#: What common/bus/worker.py sends on a service's request stream.
SERVICE_BUS = (
    *("xreadgroup", "xgroup|create", "xautoclaim", "xack", "xdel"),
    # The backlog the worker samples for its metrics.
    *("xlen", "xinfo|groups", "xinfo|consumers"),
)
#: What each service sends on its own keys: every command of its Lua scripts
#: (``*_service/lua/*.lua``; a test checks the list covers them) and its direct reads.
_SCRIPTING = ("evalsha", "script|load")
SERVICE_COMMANDS: dict[str, tuple[str, ...]] = {
    "chat": (
        *("get", "set", "hget", "hmget", "hset", "pexpire", "persist", "sadd", "scard"),
        *("sismember", "smembers", "srem", "time", "xadd", "xlen", "xrange", "xrevrange"),
    ),
    "bids": (
        *("exists", "get", "set", "hget", "hmget", "hset", "hgetall", "time", "xadd"),
        *("xrange", "zadd", "zrange", "zrangebyscore", "zrem"),
    ),
    "presence": (
        *("del", "exists", "expire", "hdel", "hexists", "hget", "hgetall", "hincrby", "hlen"),
        *("hmget", "hscan", "hset", "sadd", "scard", "smembers", "spop", "srem", "time"),
        *("zadd", "zcard", "zrangebyscore", "zrem", "zremrangebyscore", "zscore"),
    ),
    # polls_service/lua/*.lua, its announcement in the registry included.
    "poll": (
        *("get", "set", "hexists", "hget", "hgetall", "hincrby", "hmget", "hset"),
        *("pexpireat", "time", "xadd", "xrange", "xrevrange", "zadd", "zrangebyscore", "zrem"),
    ),
}
#: Keys a service touches outside its own prefix: presence reaps dead gateways' leases; the
#: poll service announces itself in the namespace registry (docs/bus.md).
_SHARED_KEYS: dict[str, tuple[str, ...]] = {
    "presence": (GATEWAY_LEASES,),
    "poll": (f"{REGISTRY_TAG}:{ANY}",),
}
#: Namespaces of services outside the table of common/namespaces.py, which announce them.
_ANNOUNCED_NAMESPACES: dict[str, tuple[str, ...]] = {"poll": ("poll",)}


@dataclass(frozen=True, slots=True)
class Grant:
    """Commands allowed on keys and channels: a user's root permissions or one selector.

    ``keys`` are ACL key rules (``~pattern``, ``%R~pattern``, ``%W~pattern``); ``channels``
    are pub/sub channel patterns (PUBLISH and SUBSCRIBE alike).
    """

    commands: tuple[str, ...]
    keys: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()

    def rules(self) -> list[str]:
        rules = [f"+{command}" for command in self.commands]
        rules += self.keys
        if self.channels:
            # A server whose acl-pubsub-default is allchannels gives a new selector every
            # channel: reset them first.
            rules += ["resetchannels", *(f"&{channel}" for channel in self.channels)]
        return rules


@dataclass(frozen=True, slots=True)
class User:
    kind: str
    name: str
    #: The root permissions, then the selectors.
    grants: tuple[Grant, ...]

    def rules(self, password_rule: str) -> list[str]:
        """Every ACL rule of the user, ``password_rule`` being ``>clear`` or ``#sha256``."""
        root, *selectors = self.grants
        # reset (and with it resetchannels) alone is not enough: under acl-pubsub-default
        # allchannels, reset grants every channel.
        rendered = ["reset", "on", password_rule, "resetchannels", *root.rules()]
        rendered += ["(" + " ".join(selector.rules()) + ")" for selector in selectors]
        return rendered


def username(kind: str) -> str:
    """The ACL user name of a process kind."""
    return f"rt-{kind}"


def _owned_channels(service: str) -> tuple[str, ...]:
    """The event channels of the namespaces ``service`` owns (common/namespaces.py, or
    announced)."""
    names = [ns.name for ns in NAMESPACES.values() if ns.service == service]
    names += _ANNOUNCED_NAMESPACES.get(service, ())
    return tuple(f"{EVENT_CHANNEL_PREFIX}{name}:{ANY}" for name in names)


def gateway_user() -> User:
    """Appends requests to any service, renews its lease, and subscribes to replies and events.

    It publishes nothing: it cannot forge a reply to another gateway or an event of a channel.
    """
    return User(
        "gateway",
        username("gateway"),
        (
            Grant(BASICS),
            Grant(("xadd",), keys=(f"%W~{request_stream(ANY)}",)),
            Grant(("zadd",), keys=(f"%W~{GATEWAY_LEASES}",)),
            # Revocations in force, read at start and after every reconnect (docs/bus.md);
            # publishing one is an operator's act (scripts/revoke), not a gateway's.
            Grant(("zrangebyscore",), keys=(f"%R~{REVOKED}",)),
            Grant(
                ("subscribe", "unsubscribe"),
                channels=(reply_channel(ANY), f"{EVENT_CHANNEL_PREFIX}{ANY}", REVOCATIONS),
            ),
        ),
    )


def service_user(
    service: str,
    commands: Sequence[str],
    *,
    name: str | None = None,
    shared_keys: Sequence[str] = (),
) -> User:
    """A service that reads its request stream, keeps its own keys, and publishes replies
    to any gateway and events on the channels of its own namespaces only."""
    return User(
        service,
        name or username(service),
        (
            Grant(BASICS),
            Grant(SERVICE_BUS, keys=(f"~{request_stream(service)}",)),
            Grant(("publish",), channels=(reply_channel(ANY), *_owned_channels(service))),
            # Scripts run with the caller's permissions: every command they call, on the
            # keys they touch, must be allowed here, beside EVALSHA itself.
            Grant(
                (*_SCRIPTING, *commands),
                keys=(f"~{service_prefix(service)}{ANY}", *(f"~{key}" for key in shared_keys)),
            ),
        ),
    )


def user(kind: str) -> User:
    """The user of one process kind.

    Raises:
        KeyError: ``kind`` is not one of :data:`KINDS`.
    """
    if kind == "gateway":
        return gateway_user()
    return service_user(kind, SERVICE_COMMANDS[kind], shared_keys=_SHARED_KEYS.get(kind, ()))


def users() -> list[User]:
    """Every process kind's user, in :data:`KINDS` order."""
    return [user(kind) for kind in KINDS]


def setuser_line(account: User, password: str = PASSWORD_PLACEHOLDER) -> str:
    """The ``ACL SETUSER`` command (redis-cli syntax) that creates or resets ``account``."""
    return " ".join(["ACL SETUSER", account.name, *account.rules(f">{password}")])


def aclfile_line(account: User, password: str) -> str:
    """The ACL file line of ``account``, the password stored only as its SHA-256."""
    digest = hashlib.sha256(password.encode()).hexdigest()
    return " ".join(["user", account.name, *account.rules(f"#{digest}")])

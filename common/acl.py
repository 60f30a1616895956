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
    REGISTRY_ALIVE,
    REGISTRY_OWNERS,
    REGISTRY_SERVICES,
    REVOCATIONS,
    REVOKED,
    reply_channel,
    request_stream,
    service_prefix,
)
from common.partitions import partition_tag


__all__ = [
    "BASICS",
    "BUILT_IN_KINDS",
    "GENERIC_SERVICE_COMMANDS",
    "KINDS",
    "PASSWORD_PLACEHOLDER",
    "REGISTRY_ANNOUNCE",
    "REGISTRY_READ",
    "SERVICE_BUS",
    "SERVICE_KINDS",
    "Grant",
    "ServiceKind",
    "User",
    "aclfile_line",
    "gateway_user",
    "service_user",
    "setuser_line",
    "user",
    "username",
    "users",
]


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


#: Stands for the password in the lines printed for operators.
PASSWORD_PLACEHOLDER = "<password>"
ANY = "*"

BASICS = (
    *("ping", "info", "client|setname"),
    # What a cluster client reads to route (RT_REDIS_CLUSTER): the slot map, and the
    # commands' key positions.
    *("cluster|slots", "cluster|shards", "command"),
)
#: What common/bus/worker.py sends on a service's request stream.
SERVICE_BUS = (
    *("xreadgroup", "xgroup|create", "xautoclaim", "xack", "xdel"),
    # The backlog the worker samples for its metrics.
    *("xlen", "xinfo|groups", "xinfo|consumers"),
)
#: What each service sends on its own keys: every command of its Lua scripts
#: (``*_service/lua/*.lua``; a test checks the list covers them) and its direct reads.
_SCRIPTING = ("evalsha", "script|load")
#: The announce script (common/lua/announce.lua) and the commands it calls, on the three
#: registry keys only: what every service may do there. No HDEL, DEL or ZREM: a service
#: cannot release a namespace or end another's lease.
REGISTRY_ANNOUNCE = Grant(
    (*_SCRIPTING, "hget", "hset", "zadd", "time"),
    keys=tuple(f"~{key}" for key in (REGISTRY_OWNERS, REGISTRY_SERVICES, REGISTRY_ALIVE)),
)
#: What common/announcer.py's RegistryReader sends: the gateways' and presence's read.
REGISTRY_READ = Grant(
    ("hgetall", "zrange", "time"),
    keys=tuple(f"%R~{key}" for key in (REGISTRY_OWNERS, REGISTRY_SERVICES, REGISTRY_ALIVE)),
)


@dataclass(frozen=True, slots=True)
class ServiceKind:
    """What one service kind's user may do beyond the bus: its commands on its own keys
    (``<service>:*``), the namespaces whose event channels it publishes on (``ch:<ns>:*``,
    those it announces), keys outside its prefix, and whether it reads the registry."""

    commands: tuple[str, ...]
    namespaces: tuple[str, ...]
    shared_keys: tuple[str, ...] = ()
    reads_registry: bool = False
    #: Whether it announces partitions (docs/bus.md "Partitions"): its streams and event
    #: channels then carry its partition tags, ``svc:{<service>.<n>}:requests``.
    partitioned: bool = True


#: What a service written in another language typically sends on its own keys (Lua scripts
#: or direct commands), for a kind whose exact list is not kept here.
GENERIC_SERVICE_COMMANDS = (
    *("del", "exists", "expire", "pexpire", "get", "set", "incr", "incrby", "time"),
    *("hget", "hmget", "hset", "hdel", "hgetall", "hincrby", "hlen"),
    *("sadd", "srem", "sismember", "smembers", "scard"),
    *("zadd", "zrem", "zscore", "zincrby", "zrange", "zrangebyscore", "zcard"),
    *("xadd", "xlen", "xrange", "xrevrange"),
)

#: Every service kind with a user of its own. A new kind is one line here.
SERVICE_KINDS: dict[str, ServiceKind] = {
    "chat": ServiceKind(
        (
            *("get", "set", "hget", "hmget", "hset", "pexpire", "persist", "sadd", "scard"),
            *("sismember", "smembers", "srem", "time", "xadd", "xlen", "xrange", "xrevrange"),
        ),
        namespaces=("chat",),
    ),
    "bids": ServiceKind(
        (
            *("exists", "get", "set", "hget", "hmget", "hset", "hgetall", "time", "xadd"),
            *("xrange", "zadd", "zrange", "zrangebyscore", "zrem"),
        ),
        namespaces=("auction",),
    ),
    "presence": ServiceKind(
        (
            *("del", "exists", "expire", "hdel", "hexists", "hget", "hgetall", "hincrby"),
            *("hlen", "hmget", "hscan", "hset", "sadd", "scard", "smembers", "spop", "srem"),
            *("time", "zadd", "zcard", "zrangebyscore", "zrem", "zremrangebyscore", "zscore"),
        ),
        namespaces=("presence",),
        # Presence reaps dead gateways' leases, and keeps the presence of every service's
        # channels by their namespaces' policy.
        shared_keys=(GATEWAY_LEASES,),
        reads_registry=True,
    ),
    # The Node.js poll service (polls_service/): every command of its Lua scripts
    # (polls_service/lua/*.lua; a test checks the list covers them).
    "poll": ServiceKind(
        (
            *("get", "set", "hexists", "hget", "hgetall", "hincrby", "hmget", "hset"),
            *("pexpireat", "time", "xadd", "xrange", "xrevrange", "zadd", "zrangebyscore"),
            "zrem",
        ),
        namespaces=("poll",),
        partitioned=False,
    ),
}
#: What each service kind sends on its own keys.
SERVICE_COMMANDS: dict[str, tuple[str, ...]] = {
    service: kind.commands for service, kind in SERVICE_KINDS.items()
}
#: The process kinds, each with a user of its own.
KINDS = ("gateway", *SERVICE_KINDS)
#: The kinds this repository runs (compose, scripts/run, Kubernetes' dev Redis): the gateway
#: and its services, the Node.js poll service included (it has no Deployment in deploy/k8s).
BUILT_IN_KINDS = ("gateway", "chat", "bids", "presence", "poll")


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


def _event_channels(service: str, kind: ServiceKind) -> tuple[str, ...]:
    """The event channels of the client channels of ``kind``'s namespaces."""
    tag = partition_tag(service, ANY) + ":" if kind.partitioned else ""
    return tuple(f"{EVENT_CHANNEL_PREFIX}{tag}{namespace}:{ANY}" for namespace in kind.namespaces)


def _streams(service: str, kind: ServiceKind) -> str:
    """The request streams of a service: one per partition, or its one stream."""
    if kind.partitioned:
        return request_stream(service, ANY)
    return request_stream(service)


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
            REGISTRY_READ,
            Grant(
                ("subscribe", "unsubscribe", "ssubscribe", "sunsubscribe"),
                channels=(reply_channel(ANY), f"{EVENT_CHANNEL_PREFIX}{ANY}", REVOCATIONS),
            ),
        ),
    )


def service_user(service: str, kind: ServiceKind, *, name: str | None = None) -> User:
    """A service that reads its request stream, keeps its own keys, announces itself in the
    registry, and publishes replies to any gateway and events on the channels of its own
    namespaces only."""
    keys = (f"~{service_prefix(service)}{ANY}", *(f"~{key}" for key in kind.shared_keys))
    return User(
        service,
        name or username(service),
        (
            Grant(BASICS),
            Grant(SERVICE_BUS, keys=(f"~{_streams(service, kind)}",)),
            Grant(
                ("publish", "spublish"),
                channels=(reply_channel(ANY), *_event_channels(service, kind)),
            ),
            # Scripts run with the caller's permissions: every command they call, on the
            # keys they touch, must be allowed here, beside EVALSHA itself.
            Grant((*_SCRIPTING, *kind.commands), keys=keys),
            REGISTRY_ANNOUNCE,
            *((REGISTRY_READ,) if kind.reads_registry else ()),
        ),
    )


def user(kind: str) -> User:
    """The user of one process kind.

    Raises:
        KeyError: ``kind`` is not one of :data:`KINDS`.
    """
    if kind == "gateway":
        return gateway_user()
    return service_user(kind, SERVICE_KINDS[kind])


def users(kinds: Sequence[str] = BUILT_IN_KINDS) -> list[User]:
    """The user of each of ``kinds``, in order: by default the kinds this repository deploys
    (compose, Kubernetes); :data:`KINDS` adds services that run elsewhere (none today)."""
    return [user(kind) for kind in kinds]


def setuser_line(account: User, password: str = PASSWORD_PLACEHOLDER) -> str:
    """The ``ACL SETUSER`` command (redis-cli syntax) that creates or resets ``account``."""
    return " ".join(["ACL SETUSER", account.name, *account.rules(f">{password}")])


def aclfile_line(account: User, password: str) -> str:
    """The ACL file line of ``account``, the password stored only as its SHA-256."""
    digest = hashlib.sha256(password.encode()).hexdigest()
    return " ".join(["user", account.name, *account.rules(f"#{digest}")])

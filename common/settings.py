"""Settings, read once from the environment (prefix ``RT_``); the only reader of os.environ.

Each secret ``RT_X`` may instead come from the file named by ``RT_X_FILE``, so that secrets
need not sit in the environment. Secrets are wrapped in :class:`Secret`, whose ``repr`` hides
the value, so that a settings object can be logged whole.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from common.errors import ConfigError
from common.partitions import MAX_PARTITIONS


__all__ = [
    "BusSettings",
    "Env",
    "LogSettings",
    "RedisTls",
    "Secret",
    "ServiceSettings",
    "redis_target",
]

PREFIX = "RT_"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class Secret:
    """A value that never shows in ``repr``, logs, or error messages."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    def __bool__(self) -> bool:
        return bool(self._value)


class Env:
    """Typed access to ``RT_*`` variables; every parse error names the variable."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = dict(os.environ if environ is None else environ)
        #: Every ``RT_*`` name asked for so far, set or not (tests compare it with
        #: :data:`common.variables.PROCESS_VARIABLES`).
        self.asked: set[str] = set()

    def _raw(self, name: str) -> str | None:
        self.asked.add(PREFIX + name)
        return self._environ.get(PREFIX + name)

    def variables(self) -> list[str]:
        """The ``RT_*`` names set in this environment, for :func:`common.variables.warn_unknown`."""
        return sorted(name for name in self._environ if name.startswith(PREFIX))

    def string(self, name: str, default: str) -> str:
        value = self._raw(name)
        return default if value is None else value

    def optional_string(self, name: str) -> str | None:
        value = self._raw(name)
        return value or None

    def optional_path(self, name: str) -> Path | None:
        value = self._raw(name)
        return Path(value) if value else None

    def integer(
        self, name: str, default: int, *, minimum: int = 0, maximum: int | None = None
    ) -> int:
        raw = self._raw(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{PREFIX}{name} must be an integer, got {raw!r}") from None
        if value < minimum:
            raise ConfigError(f"{PREFIX}{name} must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise ConfigError(f"{PREFIX}{name} must be at most {maximum}, got {value}")
        return value

    def number(self, name: str, default: float, *, minimum: float = 0.0) -> float:
        raw = self._raw(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{PREFIX}{name} must be a number, got {raw!r}") from None
        if not value >= minimum:
            raise ConfigError(f"{PREFIX}{name} must be at least {minimum}, got {raw}")
        return value

    def flag(self, name: str, default: bool) -> bool:
        raw = self._raw(name)
        if raw is None:
            return default
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise ConfigError(f"{PREFIX}{name} must be true or false, got {raw!r}")

    def strings(self, name: str) -> tuple[str, ...]:
        """A comma-separated list, blanks dropped."""
        raw = self._raw(name) or ""
        return tuple(item.strip() for item in raw.split(",") if item.strip())

    def sizes(
        self,
        name: str,
        defaults: Mapping[str, int],
        *,
        minimum: int = 0,
        keys: re.Pattern[str] | None = None,
    ) -> dict[str, int]:
        """``key=bytes,...`` over ``defaults``, each at least ``minimum``: only their keys, or
        any key that matches ``keys`` when given."""
        values = dict(defaults)
        for item in self.strings(name):
            key, _, raw = item.partition("=")
            key = key.strip()
            if keys is not None and not keys.fullmatch(key):
                raise ConfigError(f"{PREFIX}{name}: {key!r} is not a name")
            if keys is None and key not in defaults:
                known = ", ".join(sorted(defaults))
                raise ConfigError(f"{PREFIX}{name}: unknown key {key!r}, known: {known}")
            where = f"{PREFIX}{name}: {key}"
            try:
                value = int(raw)
            except ValueError:
                raise ConfigError(f"{where} must be an integer, got {raw!r}") from None
            if value < minimum:
                raise ConfigError(f"{where} must be at least {minimum}, got {value}")
            values[key] = value
        return values

    def secret(self, name: str) -> Secret | None:
        """``RT_<name>``, or the stripped content of the file ``RT_<name>_FILE`` names."""
        value = self._raw(name)
        path = self._raw(name + "_FILE")
        if value and path:
            raise ConfigError(f"set {PREFIX}{name} or {PREFIX}{name}_FILE, not both")
        if path:
            try:
                value = Path(path).read_text().strip()
            except OSError as exc:
                raise ConfigError(f"cannot read {PREFIX}{name}_FILE: {exc.strerror}") from None
            except UnicodeDecodeError:
                raise ConfigError(f"{PREFIX}{name}_FILE is not UTF-8 text") from None
        return Secret(value) if value else None


@dataclass(frozen=True, slots=True)
class RedisTls:
    """How a process checks a ``rediss://`` server, and the client certificate it shows."""

    #: PEM file of the CA that signed the server's certificate; None: the system's CAs.
    ca_file: str | None = None
    #: PEM files of a client certificate and its key, for a server that asks for one.
    cert_file: str | None = None
    key_file: str | None = None

    @classmethod
    def from_env(cls, env: Env) -> RedisTls:
        cert_file = env.optional_string("REDIS_CERT_FILE")
        key_file = env.optional_string("REDIS_KEY_FILE")
        if (cert_file is None) != (key_file is None):
            raise ConfigError("set both RT_REDIS_CERT_FILE and RT_REDIS_KEY_FILE, or neither")
        return cls(env.optional_string("REDIS_CA_FILE"), cert_file, key_file)

    @property
    def configured(self) -> bool:
        return any((self.ca_file, self.cert_file, self.key_file))


def redis_target(url: str) -> str:
    """``url`` without credentials or query, to be shown: ``redis://host:6379/0``.

    The query goes too: redis-py reads a ``password`` there as well.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None  # Not a number: redis-py refuses the URL when it connects.
    netloc = host if port is None else f"{host}:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


#: What a seed of a Redis Cluster may be: a cluster has one database, 0.
_CLUSTER_SCHEMES = ("redis", "rediss")


@dataclass(frozen=True, slots=True)
class BusSettings:
    redis_url: Secret
    #: Approximate cap of each request stream (XADD MAXLEN ~).
    stream_maxlen: int = 100_000
    #: The ACL user (docs/security.md); None: Redis's ``default`` user.
    redis_username: str | None = None
    redis_password: Secret | None = None
    redis_tls: RedisTls = field(default_factory=RedisTls)
    #: Seconds between two reads of the namespace registry (gateways, presence): the bound
    #: on how long an announcement takes to be in force.
    registry_poll: float = 1.0
    #: Whether Redis is a Redis Cluster (``RT_REDIS_CLUSTER``): ``redis_url`` then names one
    #: or more of its nodes, comma-separated, to learn the others from.
    cluster: bool = False

    @property
    def redis_urls(self) -> list[str]:
        """The URL, or in cluster mode each seed node's URL."""
        url = self.redis_url.reveal()
        return [part.strip() for part in url.split(",")] if self.cluster else [url]

    @property
    def redis_target(self) -> str:
        """The Redis URL without credentials or query (for logs): ``redis://host:6379/0``
        (each seed's, comma-separated, in cluster mode)."""
        return ",".join(redis_target(url) for url in self.redis_urls)

    @classmethod
    def from_env(cls, env: Env) -> BusSettings:
        """Read the bus settings.

        Raises:
            ConfigError: a password is given both in the URL and on its own, or TLS files
                are given for a URL that is not ``rediss://``.
        """
        url = env.secret("REDIS_URL") or Secret("redis://127.0.0.1:6379/0")
        password = env.secret("REDIS_PASSWORD")
        cluster = env.flag("REDIS_CLUSTER", False)
        seeds = url.reveal().split(",") if cluster else [url.reveal()]
        tls = RedisTls.from_env(env)
        for seed in seeds:
            parts = urlsplit(seed.strip())
            if password is not None and parts.password is not None:
                raise ConfigError("the Redis password is in RT_REDIS_URL and in RT_REDIS_PASSWORD")
            if tls.configured and parts.scheme != "rediss":
                raise ConfigError("RT_REDIS_CA_FILE and RT_REDIS_CERT_FILE need a rediss:// URL")
            if cluster and (
                parts.scheme not in ("redis", "rediss") or parts.path not in ("", "/0")
            ):
                raise ConfigError(
                    "with RT_REDIS_CLUSTER, RT_REDIS_URL names cluster nodes "
                    "(redis:// or rediss://, database 0), comma-separated"
                )
        return cls(
            redis_url=url,
            stream_maxlen=env.integer("STREAM_MAXLEN", 100_000, minimum=100),
            redis_username=env.optional_string("REDIS_USERNAME"),
            redis_password=password,
            redis_tls=tls,
            registry_poll=env.number("REGISTRY_POLL", 1.0, minimum=0.05),
            cluster=cluster,
        )


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    bus: BusSettings
    service: str
    instance: str
    host: str = "127.0.0.1"
    port: int = 0
    #: Stream entries read per XREADGROUP.
    batch: int = 64
    #: How long an entry may sit unacknowledged with a consumer before another claims it.
    claim_idle_ms: int = 15_000
    claim_interval: float = 5.0
    #: The lease of the service's announcement (seconds), refreshed every third of it.
    registry_ttl: float = 10.0
    #: Partitions of the service's requests and state (docs/bus.md "Partitions"), fixed
    #: for the life of its data: ``RT_<SERVICE>_PARTITIONS``.
    partitions: int = 1

    @classmethod
    def from_env(cls, service: str, default_port: int, env: Env | None = None) -> ServiceSettings:
        env = env or Env()
        return cls(
            bus=BusSettings.from_env(env),
            service=service,
            instance=env.optional_string("INSTANCE_ID") or secrets.token_hex(4),
            host=env.string("HOST", "127.0.0.1"),
            port=env.integer("PORT", default_port),
            batch=env.integer("SERVICE_BATCH", 64, minimum=1),
            claim_idle_ms=env.integer("CLAIM_IDLE_MS", 15_000, minimum=100),
            claim_interval=env.number("CLAIM_INTERVAL", 5.0, minimum=0.05),
            registry_ttl=env.number("REGISTRY_TTL", 10.0, minimum=0.3),
            partitions=env.integer(
                f"{service.upper()}_PARTITIONS", 1, minimum=1, maximum=MAX_PARTITIONS
            ),
        )


@dataclass(frozen=True, slots=True)
class LogSettings:
    level: str = "info"
    #: ``json``, ``console``, or ``auto`` (JSON unless stderr is a terminal).
    format: str = "auto"

    @classmethod
    def from_env(cls, env: Env) -> LogSettings:
        level = env.string("LOG_LEVEL", "info").lower()
        if level not in ("debug", "info", "warning", "error"):
            raise ConfigError(f"RT_LOG_LEVEL must be debug, info, warning or error, got {level!r}")
        fmt = env.string("LOG_FORMAT", "auto").lower()
        if fmt not in ("auto", "json", "console"):
            raise ConfigError(f"RT_LOG_FORMAT must be auto, json or console, got {fmt!r}")
        return cls(level=level, format=fmt)

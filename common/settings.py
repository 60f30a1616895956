"""Settings, read once from the environment (prefix ``RT_``); the only reader of os.environ.

Each secret ``RT_X`` may instead come from the file named by ``RT_X_FILE``, so that secrets
need not sit in the environment. Secrets are wrapped in :class:`Secret`, whose ``repr`` hides
the value, so that a settings object can be logged whole.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from urllib.parse import urlsplit

from common.entropy import weakness
from common.errors import ConfigError
from common.namespaces import SERVICES
from common.requests import CLIENT_REQUESTS, RequestTable, parse_request_table


__all__ = [
    "BusSettings",
    "Env",
    "GatewaySettings",
    "LogSettings",
    "RedisTls",
    "Secret",
    "ServiceSettings",
    "TlsFiles",
    "TokenSettings",
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

    def _raw(self, name: str) -> str | None:
        return self._environ.get(PREFIX + name)

    def string(self, name: str, default: str) -> str:
        value = self._raw(name)
        return default if value is None else value

    def optional_string(self, name: str) -> str | None:
        value = self._raw(name)
        return value or None

    def optional_path(self, name: str) -> Path | None:
        value = self._raw(name)
        return Path(value) if value else None

    def integer(self, name: str, default: int, *, minimum: int = 0) -> int:
        raw = self._raw(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{PREFIX}{name} must be an integer, got {raw!r}") from None
        if value < minimum:
            raise ConfigError(f"{PREFIX}{name} must be at least {minimum}, got {value}")
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

    def sizes(self, name: str, defaults: Mapping[str, int], *, minimum: int = 0) -> dict[str, int]:
        """``key=bytes,...`` over ``defaults``: only their keys, each at least ``minimum``."""
        values = dict(defaults)
        for item in self.strings(name):
            key, _, raw = item.partition("=")
            key = key.strip()
            if key not in defaults:
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


@dataclass(frozen=True, slots=True)
class BusSettings:
    redis_url: Secret
    #: Approximate cap of each request stream (XADD MAXLEN ~).
    stream_maxlen: int = 100_000
    #: The ACL user (docs/security.md); None: Redis's ``default`` user.
    redis_username: str | None = None
    redis_password: Secret | None = None
    redis_tls: RedisTls = field(default_factory=RedisTls)

    @classmethod
    def from_env(cls, env: Env) -> BusSettings:
        """Read the bus settings.

        Raises:
            ConfigError: a password is given both in the URL and on its own, or TLS files
                are given for a URL that is not ``rediss://``.
        """
        url = env.secret("REDIS_URL") or Secret("redis://127.0.0.1:6379/0")
        password = env.secret("REDIS_PASSWORD")
        parts = urlsplit(url.reveal())
        if password is not None and parts.password is not None:
            raise ConfigError("the Redis password is in RT_REDIS_URL and in RT_REDIS_PASSWORD")
        tls = RedisTls.from_env(env)
        if tls.configured and parts.scheme != "rediss":
            raise ConfigError("RT_REDIS_CA_FILE and RT_REDIS_CERT_FILE need a rediss:// URL")
        return cls(
            redis_url=url,
            stream_maxlen=env.integer("STREAM_MAXLEN", 100_000, minimum=100),
            redis_username=env.optional_string("REDIS_USERNAME"),
            redis_password=password,
            redis_tls=tls,
        )


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """The certificate (chain) and private key, PEM files, a server presents."""

    cert_file: str
    key_file: str

    @classmethod
    def from_env(cls, env: Env) -> TlsFiles | None:
        """``RT_TLS_CERT_FILE`` and ``RT_TLS_KEY_FILE``; None when neither is set."""
        cert_file = env.optional_string("TLS_CERT_FILE")
        key_file = env.optional_string("TLS_KEY_FILE")
        if cert_file is None and key_file is None:
            return None
        if cert_file is None or key_file is None:
            raise ConfigError("set both RT_TLS_CERT_FILE and RT_TLS_KEY_FILE, or neither")
        return cls(cert_file, key_file)


#: The largest request each service accepts, in bytes of the client's frame (docs/security.md).
DEFAULT_MAX_REQUEST_BYTES: Mapping[str, int] = MappingProxyType(
    {"chat": 8 * 1024, "bids": 1024, "presence": 1024}
)


@dataclass(frozen=True, slots=True)
class TokenSettings:
    """Where the keys that verify tokens come from, and the claims required of tokens."""

    #: HS256 secret; None when only public keys verify tokens.
    secret: Secret | None
    #: The ``kid`` of tokens signed with the secret (None: tokens without a ``kid``).
    secret_kid: str | None = None
    #: A JWKS document of the identity provider's public keys, re-read when it changes.
    jwks_file: Path | None = None
    #: One public key in PEM, re-read when it changes, and its ``kid`` (None: no ``kid``).
    public_key_file: Path | None = None
    public_key_kid: str | None = None
    issuer: str | None = None
    audience: str | None = None
    #: Seconds of clock skew allowed to ``nbf`` and ``iat``.
    leeway: float = 5.0
    #: Seconds between two looks at the key files' modification times.
    keys_poll: float = 5.0
    #: Seconds before ``exp`` that a connection is sent ``token_expiring`` (0: never).
    expiring_notice: float = 60.0

    @classmethod
    def from_env(cls, env: Env, *, dev: bool) -> TokenSettings:
        """Raises: ConfigError: no key at all outside dev mode, or a weak secret."""
        secret = env.secret("JWT_SECRET")
        jwks_file = env.optional_path("JWT_JWKS_FILE")
        public_key_file = env.optional_path("JWT_PUBLIC_KEY_FILE")
        if secret is None and dev:
            secret = Secret(secrets.token_hex(32))
        elif secret is None and jwks_file is None and public_key_file is None:
            raise ConfigError(
                "no token key: set RT_JWT_SECRET (or RT_JWT_SECRET_FILE), RT_JWT_JWKS_FILE "
                "or RT_JWT_PUBLIC_KEY_FILE (or RT_DEV=1 for a throw-away development secret)"
            )
        elif secret is not None and not dev and (reason := weakness(secret.reveal())):
            raise ConfigError(
                f"the JWT secret is too weak: {reason}; use at least 32 random characters, "
                "e.g. the output of 'openssl rand -hex 32'"
            )
        return cls(
            secret=secret,
            secret_kid=env.optional_string("JWT_SECRET_KID"),
            jwks_file=jwks_file,
            public_key_file=public_key_file,
            public_key_kid=env.optional_string("JWT_PUBLIC_KEY_KID"),
            issuer=env.optional_string("JWT_ISSUER"),
            audience=env.optional_string("JWT_AUDIENCE"),
            leeway=env.number("JWT_LEEWAY", 5.0),
            keys_poll=env.number("JWT_KEYS_POLL", 5.0, minimum=0.05),
            expiring_notice=env.number("TOKEN_EXPIRING_NOTICE", 60.0),
        )


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    bus: BusSettings
    tokens: TokenSettings
    host: str = "127.0.0.1"
    port: int = 8000
    dev: bool = False
    gateway_id: str = field(default_factory=lambda: "gw-" + secrets.token_hex(4))
    auth_timeout: float = 30.0
    request_timeout: float = 5.0
    max_message_bytes: int = 64 * 1024
    outbox_max_messages: int = 1000
    outbox_max_bytes: int = 1024 * 1024
    max_subscriptions: int = 100
    max_inflight: int = 64
    rate_limit: float = 100.0
    rate_burst: int = 200
    max_connections: int = 20_000
    shutdown_grace: float = 10.0
    close_timeout: float = 5.0
    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    #: How long this gateway's lease lasts without renewal (renewed every third of it).
    lease_ttl: float = 20.0
    # The edge (docs/security.md): origins, the request head, unauthenticated sockets.
    allowed_origins: tuple[str, ...] = ()
    handshake_timeout: float = 10.0
    max_header_bytes: int = 16 * 1024
    max_headers: int = 64
    #: Sockets that have not authenticated (request heads under way included); by default
    #: half of ``max_connections``, so that the other half is kept for authenticated users.
    max_unauthenticated: int = 10_000
    max_unauthenticated_per_ip: int = 64
    busy_auth_timeout: float = 2.0
    connect_rate: float = 20.0
    connect_burst: int = 200
    max_connections_per_user: int = 32
    auth_failure_rate: float = 0.2
    auth_failure_burst: int = 10
    max_request_bytes: Mapping[str, int] = field(default_factory=lambda: DEFAULT_MAX_REQUEST_BYTES)
    #: The request types clients may send and their fields; nothing else reaches the bus.
    client_requests: RequestTable = field(default_factory=lambda: CLIENT_REQUESTS)
    #: When set, the gateway serves HTTPS and wss:// only.
    tls: TlsFiles | None = None

    @classmethod
    def from_env(cls, env: Env | None = None) -> GatewaySettings:
        """Read the gateway's settings.

        Raises:
            ConfigError: a value does not parse, no token key is set outside dev mode, or
                the JWT secret is too weak.
        """
        env = env or Env()
        dev = env.flag("DEV", False)
        tokens = TokenSettings.from_env(env, dev=dev)
        # Every run gets its own id, even under a fixed prefix: a gateway that crashed and came
        # back at once must not renew the lease (and own the connections) of its past life.
        gateway_id = (env.optional_string("GATEWAY_ID") or "gw") + "-" + secrets.token_hex(4)
        max_connections = env.integer("MAX_CONNECTIONS", 20_000, minimum=1)
        return cls(
            bus=BusSettings.from_env(env),
            tokens=tokens,
            host=env.string("HOST", "127.0.0.1"),
            port=env.integer("PORT", 8000),
            dev=dev,
            gateway_id=gateway_id,
            auth_timeout=env.number("AUTH_TIMEOUT", 30.0, minimum=0.1),
            request_timeout=env.number("REQUEST_TIMEOUT", 5.0, minimum=0.05),
            max_message_bytes=env.integer("MAX_MESSAGE_BYTES", 64 * 1024, minimum=256),
            outbox_max_messages=env.integer("OUTBOX_MAX_MESSAGES", 1000, minimum=1),
            outbox_max_bytes=env.integer("OUTBOX_MAX_BYTES", 1024 * 1024, minimum=1024),
            max_subscriptions=env.integer("MAX_SUBSCRIPTIONS", 100, minimum=1),
            max_inflight=env.integer("MAX_INFLIGHT", 64, minimum=1),
            rate_limit=env.number("RATE_LIMIT", 100.0, minimum=0.1),
            rate_burst=env.integer("RATE_BURST", 200, minimum=1),
            max_connections=max_connections,
            shutdown_grace=env.number("SHUTDOWN_GRACE", 10.0),
            close_timeout=env.number("CLOSE_TIMEOUT", 5.0, minimum=0.1),
            ping_interval=env.number("PING_INTERVAL", 20.0, minimum=1.0),
            ping_timeout=env.number("PING_TIMEOUT", 20.0, minimum=1.0),
            lease_ttl=env.number("LEASE_TTL", 20.0, minimum=0.3),
            allowed_origins=env.strings("ALLOWED_ORIGINS"),
            handshake_timeout=env.number("HANDSHAKE_TIMEOUT", 10.0, minimum=0.1),
            max_header_bytes=env.integer("MAX_HEADER_BYTES", 16 * 1024, minimum=1024),
            max_headers=env.integer("MAX_HEADERS", 64, minimum=8),
            max_unauthenticated=env.integer(
                "MAX_UNAUTHENTICATED", max(1, max_connections // 2), minimum=1
            ),
            max_unauthenticated_per_ip=env.integer("MAX_UNAUTHENTICATED_PER_IP", 64, minimum=1),
            busy_auth_timeout=env.number("BUSY_AUTH_TIMEOUT", 2.0),
            connect_rate=env.number("CONNECT_RATE", 20.0, minimum=0.01),
            connect_burst=env.integer("CONNECT_BURST", 200, minimum=1),
            max_connections_per_user=env.integer("MAX_CONNECTIONS_PER_USER", 32, minimum=1),
            auth_failure_rate=env.number("AUTH_FAILURE_RATE", 0.2, minimum=0.001),
            auth_failure_burst=env.integer("AUTH_FAILURE_BURST", 10, minimum=1),
            max_request_bytes=MappingProxyType(
                env.sizes("MAX_REQUEST_BYTES", DEFAULT_MAX_REQUEST_BYTES, minimum=64)
            ),
            client_requests=parse_request_table(env.strings("CLIENT_REQUESTS"), SERVICES),
            tls=TlsFiles.from_env(env),
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

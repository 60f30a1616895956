"""The gateway's settings (``RT_*``), read once in ``__main__`` from :class:`common.settings.Env`.

The environment itself is read only by ``common/settings.py``; what only the gateway reads
(tokens, the edge, its TLS files) is declared here.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from common.entropy import weakness
from common.errors import ConfigError
from common.namespaces import NAME
from common.settings import BusSettings, Env, Secret


__all__ = ["DEFAULT_MAX_REQUEST_BYTES", "GatewaySettings", "TlsFiles", "TokenSettings"]


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
                # Any service's name: services join by announcing themselves.
                env.sizes("MAX_REQUEST_BYTES", DEFAULT_MAX_REQUEST_BYTES, minimum=64, keys=NAME)
            ),
            tls=TlsFiles.from_env(env),
        )

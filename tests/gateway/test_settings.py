"""The gateway's settings from the environment: defaults, parsing, token keys and TLS."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import pytest

from common.errors import ConfigError
from common.settings import Env, ServiceSettings
from realtime_gateway.settings import GatewaySettings, TlsFiles


SECRET = "s3cr3t-9f2c41d07be85a63e1d4c9b072f8a5e6"


def _gateway(**env: str) -> GatewaySettings:
    return GatewaySettings.from_env(Env({"RT_JWT_SECRET": SECRET, **env}))


def _secret(settings: GatewaySettings) -> str:
    assert settings.tokens.secret is not None
    return settings.tokens.secret.reveal()


# Defaults.


def test_gateway_defaults() -> None:
    """With only a secret set, every gateway setting has its documented default."""
    settings = _gateway()
    assert settings.bus.redis_url.reveal() == "redis://127.0.0.1:6379/0"
    assert settings.bus.stream_maxlen == 100_000
    assert _secret(settings) == SECRET
    assert settings.host == "127.0.0.1"
    assert settings.port == 8000
    assert settings.dev is False
    assert re.fullmatch(r"gw-[0-9a-f]{8}", settings.gateway_id)
    assert settings.auth_timeout == 30.0
    assert settings.request_timeout == 5.0
    assert settings.max_message_bytes == 65536
    assert settings.outbox_max_messages == 1000
    assert settings.outbox_max_bytes == 1024 * 1024
    assert settings.max_subscriptions == 100
    assert settings.max_inflight == 64
    assert settings.rate_limit == 100.0
    assert settings.rate_burst == 200
    assert settings.max_connections == 20_000
    assert settings.shutdown_grace == 10.0
    assert settings.close_timeout == 5.0
    assert settings.ping_interval == 20.0
    assert settings.ping_timeout == 20.0
    assert settings.lease_ttl == 20.0


def test_gateway_ids_differ_between_processes() -> None:
    """Two gateways started without RT_GATEWAY_ID get different ids."""
    assert _gateway().gateway_id != _gateway().gateway_id


def test_gateway_reads_every_variable() -> None:
    """Each RT_ variable sets its gateway setting."""
    settings = _gateway(
        RT_REDIS_URL="redis://127.0.0.1:7000/2",
        RT_STREAM_MAXLEN="5000",
        RT_HOST="0.0.0.0",
        RT_PORT="9000",
        RT_GATEWAY_ID="gw-east-1",
        RT_AUTH_TIMEOUT="2.5",
        RT_REQUEST_TIMEOUT="0.5",
        RT_MAX_MESSAGE_BYTES="1024",
        RT_OUTBOX_MAX_MESSAGES="10",
        RT_OUTBOX_MAX_BYTES="2048",
        RT_MAX_SUBSCRIPTIONS="3",
        RT_MAX_INFLIGHT="4",
        RT_RATE_LIMIT="5.5",
        RT_RATE_BURST="6",
        RT_MAX_CONNECTIONS="7",
        RT_SHUTDOWN_GRACE="0",
        RT_CLOSE_TIMEOUT="1",
        RT_PING_INTERVAL="3",
        RT_PING_TIMEOUT="4",
        RT_LEASE_TTL="0.5",
    )
    assert settings.bus.redis_url.reveal() == "redis://127.0.0.1:7000/2"
    assert settings.bus.stream_maxlen == 5000
    assert (settings.host, settings.port) == ("0.0.0.0", 9000)
    # RT_GATEWAY_ID is a prefix: each run adds a suffix of its own.
    assert re.fullmatch(r"gw-east-1-[0-9a-f]{8}", settings.gateway_id)
    assert (settings.auth_timeout, settings.request_timeout) == (2.5, 0.5)
    assert (settings.max_message_bytes, settings.outbox_max_messages) == (1024, 10)
    assert (settings.outbox_max_bytes, settings.max_subscriptions) == (2048, 3)
    assert (settings.max_inflight, settings.rate_limit, settings.rate_burst) == (4, 5.5, 6)
    assert (settings.max_connections, settings.shutdown_grace) == (7, 0.0)
    assert (settings.close_timeout, settings.ping_interval, settings.ping_timeout) == (1, 3, 4)
    assert settings.lease_ttl == 0.5


def test_env_reads_only_prefixed_variables() -> None:
    """A variable without the RT_ prefix is not a setting."""
    assert _gateway(PORT="1234").port == 8000


# Typed parse errors name the variable.


_GATEWAY_ERRORS = [
    ("RT_PORT", "eighty"),
    ("RT_PORT", "-1"),
    ("RT_PORT", "80.5"),
    ("RT_DEV", "maybe"),
    ("RT_STREAM_MAXLEN", "10"),
    ("RT_STREAM_MAXLEN", "lots"),
    ("RT_AUTH_TIMEOUT", "soon"),
    ("RT_AUTH_TIMEOUT", "0"),
    ("RT_REQUEST_TIMEOUT", "nan"),
    ("RT_REQUEST_TIMEOUT", "-5"),
    ("RT_MAX_MESSAGE_BYTES", "100"),
    ("RT_MAX_MESSAGE_BYTES", "64k"),
    ("RT_OUTBOX_MAX_MESSAGES", "0"),
    ("RT_OUTBOX_MAX_BYTES", "1.5"),
    ("RT_MAX_SUBSCRIPTIONS", "none"),
    ("RT_MAX_INFLIGHT", "0"),
    ("RT_RATE_LIMIT", "fast"),
    ("RT_RATE_LIMIT", "0"),
    ("RT_RATE_BURST", "0"),
    ("RT_MAX_CONNECTIONS", "many"),
    ("RT_SHUTDOWN_GRACE", "-1"),
    ("RT_SHUTDOWN_GRACE", "ten"),
    ("RT_CLOSE_TIMEOUT", "x"),
    ("RT_PING_INTERVAL", "0.5"),
    ("RT_PING_TIMEOUT", ""),
    ("RT_LEASE_TTL", "0.1"),
    ("RT_LEASE_TTL", "long"),
]


@pytest.mark.parametrize(("name", "raw"), _GATEWAY_ERRORS)
def test_gateway_parse_errors_name_the_variable(name: str, raw: str) -> None:
    """A gateway variable that does not parse or is out of range is a ConfigError naming it."""
    with pytest.raises(ConfigError) as caught:
        _gateway(**{name: raw})
    assert name in str(caught.value)


# Secrets.


def test_secret_is_read_from_a_file(tmp_path: Path) -> None:
    """RT_X_FILE names a file whose stripped content is the secret."""
    path = tmp_path / "jwt"
    path.write_text(f"  {SECRET}\n")
    settings = GatewaySettings.from_env(Env({"RT_JWT_SECRET_FILE": str(path)}))
    assert _secret(settings) == SECRET


def test_secret_and_its_file_both_set_is_an_error(tmp_path: Path) -> None:
    """Setting both RT_X and RT_X_FILE is ambiguous and refused, naming both."""
    path = tmp_path / "jwt"
    path.write_text(SECRET)
    with pytest.raises(ConfigError) as caught:
        GatewaySettings.from_env(Env({"RT_JWT_SECRET": SECRET, "RT_JWT_SECRET_FILE": str(path)}))
    assert "RT_JWT_SECRET" in str(caught.value)
    assert "RT_JWT_SECRET_FILE" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_empty_secret_file_counts_as_unset(tmp_path: Path) -> None:
    """A secret file holding only whitespace is no secret, so the gateway refuses to start."""
    path = tmp_path / "jwt"
    path.write_text("\n  \n")
    assert Env({"RT_JWT_SECRET_FILE": str(path)}).secret("JWT_SECRET") is None
    with pytest.raises(ConfigError, match="no token key"):
        GatewaySettings.from_env(Env({"RT_JWT_SECRET_FILE": str(path)}))


def test_settings_repr_hides_secrets() -> None:
    """A settings object can be logged whole: its repr holds neither secret."""
    password_url = "redis://:hunter2-password@127.0.0.1:7000/0"
    gateway = _gateway(RT_REDIS_URL=password_url)
    service = ServiceSettings.from_env("chat", 8101, Env({"RT_REDIS_URL": password_url}))
    for text in (repr(gateway), str(gateway), repr(service), repr(gateway.bus)):
        assert SECRET not in text
        assert "hunter2" not in text
    assert "Secret(" in repr(gateway)


def test_gateway_refuses_to_start_without_a_secret() -> None:
    """Outside dev mode a gateway with no JWT secret is a ConfigError telling what to set."""
    with pytest.raises(ConfigError) as caught:
        GatewaySettings.from_env(Env({}))
    assert "RT_JWT_SECRET" in str(caught.value)


def test_empty_secret_counts_as_unset() -> None:
    """RT_JWT_SECRET set to the empty string is no secret."""
    with pytest.raises(ConfigError, match="RT_JWT_SECRET"):
        GatewaySettings.from_env(Env({"RT_JWT_SECRET": ""}))


def test_dev_mode_makes_a_throwaway_secret() -> None:
    """In dev mode a gateway without a secret gets a random one of full strength."""
    first = GatewaySettings.from_env(Env({"RT_DEV": "1"}))
    second = GatewaySettings.from_env(Env({"RT_DEV": "1"}))
    assert first.dev
    assert len(_secret(first)) >= 32
    assert _secret(first) != _secret(second)


@pytest.mark.parametrize("length", [1, 16, 31])
def test_short_secret_is_refused(length: int) -> None:
    """A JWT secret shorter than 32 characters is refused outside dev mode, without echoing it."""
    short = "Q" * length
    with pytest.raises(ConfigError, match="32") as caught:
        GatewaySettings.from_env(Env({"RT_JWT_SECRET": short}))
    assert "Q" not in str(caught.value)


def test_short_secret_is_allowed_in_dev_mode() -> None:
    """Dev mode accepts a short secret, so that local tools can sign tokens with a simple one."""
    settings = GatewaySettings.from_env(Env({"RT_DEV": "1", "RT_JWT_SECRET": "dev"}))
    assert _secret(settings) == "dev"


def test_random_secret_of_32_hex_digits_is_accepted() -> None:
    """32 random hex digits (128 bits) are strong enough."""
    secret = secrets.token_hex(16)
    assert _secret(GatewaySettings.from_env(Env({"RT_JWT_SECRET": secret}))) == secret


@pytest.mark.parametrize(
    "weak",
    [
        pytest.param(" " * 32, id="32-spaces"),
        pytest.param("k" * 32, id="one-character"),
        pytest.param("changeme" * 4, id="a-word-repeated"),
        pytest.param("0123456789abcdef" * 2, id="a-pattern-repeated"),
        pytest.param("ab" * 15 + "abc", id="two-characters"),
        pytest.param("0" * 30 + "1234", id="mostly-zeros"),
    ],
)
def test_weak_secret_is_refused_at_start_up(weak: str) -> None:
    """A long secret of too little entropy is refused outside dev mode, saying what to use."""
    with pytest.raises(ConfigError) as caught:
        GatewaySettings.from_env(Env({"RT_JWT_SECRET": weak}))
    message = str(caught.value)
    assert "too weak" in message
    assert "openssl rand -hex 32" in message
    assert weak not in message


def test_weak_secret_is_allowed_in_dev_mode() -> None:
    """Dev mode does not judge the secret: local tools may use any."""
    assert _secret(GatewaySettings.from_env(Env({"RT_DEV": "1", "RT_JWT_SECRET": " " * 32})))


def test_token_settings_defaults() -> None:
    """With only a secret, tokens use it alone, with the documented leeway, poll and notice."""
    tokens = _gateway().tokens
    assert (tokens.jwks_file, tokens.public_key_file, tokens.issuer, tokens.audience) == (
        None,
        None,
        None,
        None,
    )
    assert (tokens.leeway, tokens.keys_poll, tokens.expiring_notice) == (5.0, 5.0, 60.0)


def test_public_keys_alone_need_no_secret(tmp_path: Path) -> None:
    """A gateway trusting an identity provider's JWKS starts without an HS256 secret."""
    jwks = tmp_path / "keys.jwks"
    tokens = GatewaySettings.from_env(
        Env({"RT_JWT_JWKS_FILE": str(jwks), "RT_JWT_AUDIENCE": "rt", "RT_JWT_ISSUER": "idp"})
    ).tokens
    assert tokens.secret is None
    assert (tokens.jwks_file, tokens.audience, tokens.issuer) == (jwks, "rt", "idp")


# TLS.


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RT_REDIS_CA_FILE": "/ca.pem"}, "rediss://"),
        ({"RT_REDIS_URL": "rediss://h:1/0", "RT_REDIS_CERT_FILE": "/c.pem"}, "RT_REDIS_KEY_FILE"),
        ({"RT_JWT_SECRET": SECRET, "RT_TLS_CERT_FILE": "/c.pem"}, "RT_TLS_KEY_FILE"),
    ],
)
def test_incomplete_tls_settings_are_errors(env: dict[str, str], message: str) -> None:
    """A TLS file without its pair, or for a redis:// URL, stops the process at start."""
    with pytest.raises(ConfigError, match=message):
        GatewaySettings.from_env(Env({"RT_JWT_SECRET": SECRET, **env}))


def test_gateway_tls_files_are_read() -> None:
    """RT_TLS_CERT_FILE and RT_TLS_KEY_FILE together turn the gateway's TLS on."""
    settings = _gateway(RT_TLS_CERT_FILE="/c.pem", RT_TLS_KEY_FILE="/k.pem")
    assert settings.tls == TlsFiles("/c.pem", "/k.pem")
    assert _gateway().tls is None


def test_request_sizes_name_any_service() -> None:
    """RT_MAX_REQUEST_BYTES bounds a service that announced itself as well as a built-in."""
    sizes = _gateway(RT_MAX_REQUEST_BYTES="poll=2048, chat=4096").max_request_bytes
    assert (sizes["poll"], sizes["chat"], sizes["bids"]) == (2048, 4096, 1024)
    for raw in ("Poll=2048", "poll=10", "poll=big"):
        with pytest.raises(ConfigError, match="RT_MAX_REQUEST_BYTES"):
            _gateway(RT_MAX_REQUEST_BYTES=raw)


def test_registry_poll_defaults_to_one_second() -> None:
    """RT_REGISTRY_POLL: how often the gateway reads the namespace registry."""
    assert _gateway().bus.registry_poll == 1.0
    assert _gateway(RT_REGISTRY_POLL="0.25").bus.registry_poll == 0.25

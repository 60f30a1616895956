"""Settings from the environment: defaults, typed parsing, secrets and their files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from common.errors import ConfigError
from common.settings import BusSettings, Env, LogSettings, Secret, ServiceSettings


SECRET = "s3cr3t-9f2c41d07be85a63e1d4c9b072f8a5e6"


# Defaults.


def test_service_defaults() -> None:
    """A service's settings default sensibly and take the port the service passes."""
    settings = ServiceSettings.from_env("chat", 8101, Env({}))
    assert settings.service == "chat"
    assert settings.port == 8101
    assert settings.host == "127.0.0.1"
    assert re.fullmatch(r"[0-9a-f]{8}", settings.instance)
    assert settings.batch == 64
    assert settings.claim_idle_ms == 15_000
    assert settings.claim_interval == 5.0
    assert settings.registry_ttl == 10.0
    assert settings.bus.registry_poll == 1.0
    assert settings.bus.redis_url.reveal() == "redis://127.0.0.1:6379/0"


def test_service_reads_its_variables() -> None:
    """Each RT_ variable of a service sets its setting."""
    settings = ServiceSettings.from_env(
        "bids",
        8102,
        Env(
            {
                "RT_INSTANCE_ID": "b-1",
                "RT_PORT": "0",
                "RT_SERVICE_BATCH": "8",
                "RT_CLAIM_IDLE_MS": "500",
                "RT_CLAIM_INTERVAL": "0.25",
                "RT_REGISTRY_TTL": "1.5",
                "RT_REGISTRY_POLL": "0.5",
            }
        ),
    )
    assert (settings.instance, settings.port, settings.batch) == ("b-1", 0, 8)
    assert (settings.claim_idle_ms, settings.claim_interval) == (500, 0.25)
    assert (settings.registry_ttl, settings.bus.registry_poll) == (1.5, 0.5)


def test_log_defaults_and_case() -> None:
    """Log settings default to info/auto and accept any letter case."""
    assert LogSettings.from_env(Env({})) == LogSettings("info", "auto")
    assert LogSettings.from_env(Env({"RT_LOG_LEVEL": "DEBUG", "RT_LOG_FORMAT": "Json"})) == (
        LogSettings("debug", "json")
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        *[("1", True), ("true", True), ("YES", True), ("on", True)],
        *[("0", False), ("false", False), ("No", False), ("off", False), ("", False)],
    ],
)
def test_flags(raw: str, expected: bool) -> None:
    """Boolean variables accept the usual spellings in any case."""
    assert Env({"RT_DEV": raw}).flag("DEV", not expected) is expected


def test_unset_variables_fall_back_to_defaults() -> None:
    """Env returns the given default for every type when the variable is unset."""
    env = Env({})
    assert env.string("X", "d") == "d"
    assert env.optional_string("X") is None
    assert env.integer("X", 3) == 3
    assert env.number("X", 1.5) == 1.5
    assert env.flag("X", True) is True
    assert env.secret("X") is None


# Typed parse errors name the variable.


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("RT_PORT", "http"),
        ("RT_SERVICE_BATCH", "0"),
        ("RT_SERVICE_BATCH", "all"),
        ("RT_CLAIM_IDLE_MS", "50"),
        ("RT_CLAIM_IDLE_MS", "1.5"),
        ("RT_CLAIM_INTERVAL", "often"),
        ("RT_CLAIM_INTERVAL", "0"),
        ("RT_STREAM_MAXLEN", "-1"),
        ("RT_REGISTRY_TTL", "0.1"),
        ("RT_REGISTRY_TTL", "long"),
        ("RT_REGISTRY_POLL", "0"),
    ],
)
def test_service_parse_errors_name_the_variable(name: str, raw: str) -> None:
    """A service variable that does not parse or is out of range is a ConfigError naming it."""
    with pytest.raises(ConfigError) as caught:
        ServiceSettings.from_env("chat", 8101, Env({name: raw}))
    assert name in str(caught.value)


@pytest.mark.parametrize(("name", "raw"), [("RT_LOG_LEVEL", "loud"), ("RT_LOG_FORMAT", "xml")])
def test_log_parse_errors_name_the_variable(name: str, raw: str) -> None:
    """An unknown log level or format is a ConfigError naming the variable."""
    with pytest.raises(ConfigError) as caught:
        LogSettings.from_env(Env({name: raw}))
    assert name in str(caught.value)


# Secrets.


def test_redis_url_may_come_from_a_file(tmp_path: Path) -> None:
    """The Redis URL, which may hold a password, can come from a file too."""
    path = tmp_path / "redis-url"
    path.write_text("redis://:pw@127.0.0.1:7000/0\n")
    bus = BusSettings.from_env(Env({"RT_REDIS_URL_FILE": str(path)}))
    assert bus.redis_url.reveal() == "redis://:pw@127.0.0.1:7000/0"


def test_missing_secret_file_is_an_error_naming_the_variable(tmp_path: Path) -> None:
    """A secret file that cannot be read is a ConfigError naming the variable."""
    with pytest.raises(ConfigError, match="RT_JWT_SECRET_FILE"):
        Env({"RT_JWT_SECRET_FILE": str(tmp_path / "absent")}).secret("JWT_SECRET")
    with pytest.raises(ConfigError, match="RT_JWT_SECRET_FILE"):
        Env({"RT_JWT_SECRET_FILE": str(tmp_path)}).secret("JWT_SECRET")


def test_undecodable_secret_file_is_an_error_naming_the_variable(tmp_path: Path) -> None:
    """A secret file that is not UTF-8 text is a ConfigError naming the variable."""
    path = tmp_path / "jwt"
    path.write_bytes(b"\xff\xfe" + b"x" * 40)
    with pytest.raises(ConfigError, match="RT_JWT_SECRET_FILE"):
        Env({"RT_JWT_SECRET_FILE": str(path)}).secret("JWT_SECRET")


def test_secret_repr_hides_the_value() -> None:
    """Neither repr nor str of a Secret shows its value, which reveal() returns."""
    secret = Secret(SECRET)
    assert SECRET not in repr(secret)
    assert SECRET not in str(secret)
    assert SECRET not in f"{secret!r} {secret}"
    assert secret.reveal() == SECRET
    assert secret
    assert not Secret("")


# Redis credentials and TLS.


def test_redis_user_and_password_file_are_read(tmp_path: Path) -> None:
    """RT_REDIS_USERNAME and RT_REDIS_PASSWORD_FILE give the ACL user; repr hides the password."""
    path = tmp_path / "password"
    path.write_text("s3cret-redis-password\n")
    bus = BusSettings.from_env(
        Env({"RT_REDIS_USERNAME": "rt-chat", "RT_REDIS_PASSWORD_FILE": str(path)})
    )
    assert bus.redis_username == "rt-chat"
    assert bus.redis_password is not None
    assert bus.redis_password.reveal() == "s3cret-redis-password"
    assert "s3cret" not in repr(bus)


def test_a_password_in_the_url_and_on_its_own_is_an_error() -> None:
    """Two passwords for one connection is a ConfigError, not a silent choice."""
    with pytest.raises(ConfigError, match="RT_REDIS_PASSWORD"):
        BusSettings.from_env(
            Env({"RT_REDIS_URL": "redis://:a@127.0.0.1:6379/0", "RT_REDIS_PASSWORD": "b"})
        )

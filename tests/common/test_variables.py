"""The registry of ``RT_*`` names: complete, and what it says of a misspelt one."""

from __future__ import annotations

import logging
import re

import pytest

from bids_service.settings import BidsSettings
from chat_service.settings import ChatSettings
from common.settings import BusSettings, Env, LogSettings, Secret, ServiceSettings
from common.variables import (
    KNOWN,
    POLL_VARIABLES,
    PROCESS_VARIABLES,
    REMOVED,
    Unknown,
    unknown,
    warn_unknown,
)
from presence_service.settings import PresenceSettings
from realtime_gateway.settings import GatewaySettings
from tests.support.processes import REPO_ROOT


#: ``RT_*`` words of the repository that are no variable: a placeholder, and a typo in docs.
NOT_VARIABLES = {"RT_X", "RT_X_FILE", "RT_JWT_SECERT_FILE"}
#: The tests that misspell names, or make some up, on purpose.
_TYPOS = {
    "tests/common/test_variables.py",
    "tests/e2e/test_startup_logs.py",
    "tests/deploy/test_k8s.py",
    "tests/test_kustomize.py",
}
_NAME = re.compile(r"\bRT_[A-Z0-9_]*[A-Z0-9]\b")
_SCANNED = ("*.py", "*.sh", "*.md", "*.yml", "*.yaml", "*.toml", "Dockerfile", "*.js", "*.ts")


def test_process_names_are_what_the_settings_read() -> None:
    """Every name the settings classes read is known, and no process name is stale."""
    env = Env({"RT_DEV": "1"})
    GatewaySettings.from_env(env)
    LogSettings.from_env(env)
    for service in ("chat", "bids", "presence"):
        ServiceSettings.from_env(service, 8101, env)
    ChatSettings.from_env(env)
    BidsSettings.from_env(env)
    PresenceSettings.from_env(env)
    assert env.asked == PROCESS_VARIABLES


def test_every_name_in_the_repository_is_known() -> None:
    """Each RT_ name in the code, scripts and docs is read by a process or a tool."""
    found: dict[str, str] = {}
    for pattern in _SCANNED:
        for path in REPO_ROOT.rglob(pattern):
            relative = path.relative_to(REPO_ROOT)
            parts = relative.parts
            if parts[0].startswith(".") or "node_modules" in parts or "egg-info" in parts[0]:
                continue
            if relative.as_posix() in _TYPOS:
                continue
            for name in _NAME.findall(path.read_text(errors="replace")):
                found.setdefault(name, relative.as_posix())
    strangers = {
        name: where
        for name, where in found.items()
        if name not in KNOWN | NOT_VARIABLES | REMOVED.keys()
    }
    assert not strangers, f"add these to common/variables.py (or fix them): {strangers}"


def test_a_misspelt_name_is_named_with_the_closest_known_one() -> None:
    """A typo is reported with the name it was probably meant to be."""
    assert unknown(["RT_JWT_SECERT_FILE"]) == [Unknown("RT_JWT_SECERT_FILE", "RT_JWT_SECRET_FILE")]


def test_a_name_like_none_has_no_suggestion() -> None:
    """A name far from every known one is reported without a guess."""
    assert unknown(["RT_ZZZ"]) == [Unknown("RT_ZZZ", None)]


def test_known_and_foreign_names_are_not_reported() -> None:
    """Known RT_ names, service-specific and _FILE ones, and non-RT_ names pass silently."""
    names = [
        "RT_CHAT_RETENTION",
        "RT_BIDS_ADMIN_TOKEN_FILE",
        "RT_REGISTRY_POLL",
        "RT_REDIS_URL_FILE",
        "RT_CHAT_PORT",
        "REALTIME_TEST_TIMEOUT_SCALE",
        "PATH",
    ]
    assert unknown(names) == []


def test_env_lists_only_its_rt_names() -> None:
    """What a process checks is the RT_ names of its environment."""
    assert Env({"RT_B": "1", "HOME": "/", "RT_A": ""}).variables() == ["RT_A", "RT_B"]


def test_warning_names_variable_and_guess(caplog: pytest.LogCaptureFixture) -> None:
    """The warning says which variable is ignored and what it may have meant."""
    with caplog.at_level(logging.WARNING, logger="common.variables"):
        warn_unknown(["RT_CHAT_RETENTON", "RT_PORT"])
    (record,) = caplog.records
    assert record.getMessage() == (
        "unknown setting RT_CHAT_RETENTON is ignored; did you mean RT_CHAT_RETENTION?"
    )


def test_a_removed_variable_is_named_with_what_replaced_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """RT_CLIENT_REQUESTS, gone with the namespace registry, is not silently ignored."""
    with caplog.at_level(logging.WARNING, logger="common.variables"):
        warn_unknown(["RT_CLIENT_REQUESTS"])
    (record,) = caplog.records
    assert record.getMessage().startswith(
        "unknown setting RT_CLIENT_REQUESTS is ignored: it was removed, each service announces"
    )


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("redis://rt-chat:pa55word@10.0.0.5:6380/2", "redis://10.0.0.5:6380/2"),
        (
            "rediss://:pa55word@redis.example.com/0?password=pa55word",
            "rediss://redis.example.com/0",
        ),
        ("redis://user:pa55word@[::1]:6379", "redis://[::1]:6379"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ],
)
def test_redis_target_has_no_credentials(url: str, target: str) -> None:
    """The Redis target logged at start has neither user nor password nor query."""
    assert BusSettings(redis_url=Secret(url)).redis_target == target


def test_the_poll_service_reads_known_names_only() -> None:
    """polls_service/src/settings.js reads the bus's and services' names and POLL_VARIABLES."""
    source = (REPO_ROOT / "polls_service" / "src" / "settings.js").read_text()
    read = set(_NAME.findall(source))
    # Each secret is read by its name and by "<name>_FILE", built in the code.
    read |= {f"{name}_FILE" for name in ("RT_REDIS_URL", "RT_REDIS_PASSWORD")}
    assert read >= POLL_VARIABLES
    assert read <= PROCESS_VARIABLES | POLL_VARIABLES

"""What real processes log: a start-up line each, unknown settings, connections at debug level.

The gateway and the bids service get a Redis URL with the password in it and a misspelt
setting; their logs (stdout and stderr, in the process's log file) are read as written.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import pytest

from common import acl
from tests.e2e.conftest import Launcher
from tests.support.client import connect_user
from tests.support.processes import ManagedProcess, wait_all_ready
from tests.support.redis_users import credentials
from tests.support.waiting import wait_until


#: The gateway, the bids service, and the passwords in their Redis URLs.
Logged = tuple[ManagedProcess, ManagedProcess, list[str]]
#: The default user (no ACL) takes any password; with ACL users the real one is used.
_FALLBACK_PASSWORD = "never-logged-0123456789abcdef"


def _with_password(bus_url: str, module: str, kind: str) -> tuple[str, str, str]:
    """``bus_url`` as ``kind``'s user with the password in the URL; the user and password."""
    users = credentials(bus_url, module, [])
    user = users.get("RT_REDIS_USERNAME", "default")
    password_file = users.get("RT_REDIS_PASSWORD_FILE")
    password = _FALLBACK_PASSWORD
    if password_file is not None:
        with open(password_file) as file:
            password = file.read().strip()
    assert user in ("default", acl.username(kind))
    parts = urlsplit(bus_url)
    netloc = f"{user}:{password}@{parts.hostname}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", "")), user, password


@pytest.fixture(scope="module")
def logged(launcher: Launcher, bus_url: str) -> Logged:
    """A gateway at debug level and a bids service, both with a password in their Redis URL
    and ``RT_JWT_SECERT_FILE`` set; and the two passwords."""
    gateway_url, gateway_user, gateway_password = _with_password(
        bus_url, "realtime_gateway", "gateway"
    )
    bids_url, bids_user, bids_password = _with_password(bus_url, "bids_service", "bids")
    typo = {"RT_JWT_SECERT_FILE": "/run/secrets/jwt"}
    gateway = launcher.gateway(
        {
            "RT_REDIS_URL": gateway_url,
            "RT_REDIS_USERNAME": gateway_user,
            "RT_LOG_LEVEL": "debug",
            **typo,
        },
        wait=False,
    )
    bids = launcher.service(
        "bids_service",
        "bids",
        {"RT_REDIS_URL": bids_url, "RT_REDIS_USERNAME": bids_user, **typo},
        wait=False,
    )
    wait_all_ready([gateway, bids])
    return gateway, bids, [gateway_password, bids_password]


def _log(process: ManagedProcess) -> str:
    return process.log_path.read_text(errors="replace")


def test_gateway_says_what_it_serves(
    logged: Logged,
) -> None:
    """The gateway's start-up line names its WebSocket and HTTP URLs and the Redis target."""
    gateway, _, _ = logged
    parts = urlsplit(gateway.env["RT_REDIS_URL"])
    log = _log(gateway)
    assert f"clients on ws://127.0.0.1:{gateway.port}/ws" in log
    assert f"health and metrics on http://127.0.0.1:{gateway.port} (/livez /readyz /metrics)" in log
    assert f"redis=redis://{parts.hostname}:{parts.port}/0" in log


def test_service_says_what_it_serves(
    logged: Logged,
) -> None:
    """A service's start-up line names its HTTP URL, its stream and group, and Redis."""
    _, bids, _ = logged
    parts = urlsplit(bids.env["RT_REDIS_URL"])
    log = _log(bids)
    assert f"service started: health and metrics on http://127.0.0.1:{bids.port}" in log
    assert "streams=svc:{bids.0}:requests group=bids" in log
    assert f"redis=redis://{parts.hostname}:{parts.port}/0" in log


def test_no_password_is_logged(logged: Logged) -> None:
    """Neither the URL with its password nor the password alone appears in any output."""
    gateway, bids, passwords = logged
    for process, password in zip((gateway, bids), passwords, strict=True):
        log = _log(process)
        assert "started" in log
        assert password not in log
        assert process.env["RT_REDIS_URL"] not in log


def test_a_misspelt_setting_is_warned_about(
    logged: Logged,
) -> None:
    """Every process names an unknown RT_ variable and the setting it was likely meant for."""
    for process in logged[:2]:
        warning = "unknown setting RT_JWT_SECERT_FILE is ignored; did you mean RT_JWT_SECRET_FILE?"
        assert warning in _log(process)


async def test_connection_open_and_close_at_debug_level(
    logged: Logged,
) -> None:
    """At debug level the gateway logs each connection's opening and its close code."""
    gateway, _, _ = logged
    ws = await connect_user(gateway.ws_url, "log-reader")
    await ws.close(4000, "done")
    lines = _log(gateway).splitlines()
    opened = [line for line in lines if "connection opened" in line]
    assert opened
    connection = opened[-1].rsplit("connection=", 1)[1].split()[0]

    def closed() -> bool:
        return any(
            "connection closed" in line
            and "code=4000 by=client user=log-reader" in line
            and f"connection={connection}" in line
            for line in _log(gateway).splitlines()
        )

    await wait_until(closed, "the gateway's connection closed line")

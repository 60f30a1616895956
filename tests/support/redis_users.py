"""The ACL users of the test Redis servers, so that every test process runs least-privileged.

The session's server loads the users of common/acl.py (plus one per stub service: the real
service's rules and the two commands the stub adds); :func:`tests.support.processes.start_process`
hands each gateway, service and stub its own user through ``RT_REDIS_USERNAME`` and
``RT_REDIS_PASSWORD_FILE``. On by default: an ACL check costs Redis next to nothing, and a
connection one AUTH. ``REALTIME_TEST_ACL=0`` runs every process as the default user, to tell
an ACL refusal from another failure. The tests themselves stay the ``default`` user, with
every right, to flush, inspect and inject.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import redis

from common import acl
from devtools.redis_server import RedisServer


__all__ = [
    "STUB_COMMANDS",
    "TestUsers",
    "account_of",
    "acl_enabled",
    "acl_refusals",
    "credentials",
    "register",
]

#: What tests/support/stub_service.py sends beyond its service's own commands.
STUB_COMMANDS = ("rpush", "get")
_MODULE_KINDS = {
    "realtime_gateway": "gateway",
    "chat_service": "chat",
    "bids_service": "bids",
    "presence_service": "presence",
    # The Node.js poll service, started as POLL_COMMAND (tests/support/processes.py).
    "polls_service": "poll",
    # The bids service's "next version" of the rolling-upgrade test: the bids user's rights.
    "tests.support.upgraded_bids": "bids",
}
_STUB_MODULE = "tests.support.stub_service"
#: The registry tests' service the gateway was never told of (tests/support/orders_service.py),
#: run as these services, each claiming the namespace ``orders``.
_ORDERS_MODULE = "tests.support.orders_service"
ORDERS_SERVICES = ("orders", "rival")

_registered: dict[str, TestUsers] = {}


def acl_enabled() -> bool:
    """Whether test servers load the ACL users (``REALTIME_TEST_ACL``, default on)."""
    return os.environ.get("REALTIME_TEST_ACL", "1") != "0"


def orders_user(service: str) -> acl.User:
    """A service of tests/support/orders_service.py: the bus, the registry, ``ch:orders:*``."""
    kind = acl.ServiceKind(commands=(), namespaces=("orders",))
    return acl.service_user(service, kind, name=f"rt-test-{service}")


def stub_user(service: str) -> acl.User:
    """A stub named ``service``: that service's user, plus what the stub itself sends."""
    kind = acl.SERVICE_KINDS[service]
    commands = (*kind.commands, *STUB_COMMANDS)
    return acl.service_user(service, replace(kind, commands=commands), name=f"rt-stub-{service}")


class TestUsers:
    """Every test account, each with a random password in a file of ``directory``."""

    __test__ = False  # not a test class, whatever its name

    def __init__(self, directory: Path) -> None:
        self.accounts = [
            *acl.users(acl.KINDS),
            *(stub_user(kind) for kind in acl.BUILT_IN_KINDS[1:]),
            *(orders_user(service) for service in ORDERS_SERVICES),
        ]
        self._files: dict[str, Path] = {}
        for account in self.accounts:
            path = directory / f"{account.name}.password"
            path.write_text(secrets.token_hex(16) + "\n")
            path.chmod(0o600)
            self._files[account.name] = path

    def password(self, name: str) -> str:
        return self._files[name].read_text().strip()

    def aclfile_lines(self) -> list[str]:
        return [acl.aclfile_line(account, self.password(account.name)) for account in self.accounts]

    def env(self, name: str) -> dict[str, str]:
        return {"RT_REDIS_USERNAME": name, "RT_REDIS_PASSWORD_FILE": str(self._files[name])}


def register(url: str, users: TestUsers) -> None:
    """Processes started on ``url`` connect as their account of ``users``."""
    _registered[url] = users


def account_of(module: str, args: Sequence[str]) -> str | None:
    """The account of ``python -m module args``, or None for another program."""
    if module == _ORDERS_MODULE:
        return f"rt-test-{args[args.index('--service') + 1] if '--service' in args else 'orders'}"
    if module == _STUB_MODULE:
        service = args[args.index("--service") + 1] if "--service" in args else "chat"
        return f"rt-stub-{service}"
    kind = _MODULE_KINDS.get(module)
    return None if kind is None else acl.username(kind)


def credentials(url: str, module: str, args: Sequence[str]) -> dict[str, str]:
    """The ``RT_REDIS_*`` credentials of that process on ``url``; none when not registered."""
    users = _registered.get(url)
    account = account_of(module, args)
    if users is None or account is None:
        return {}
    return users.env(account)


def acl_refusals(server: RedisServer, *, reset: bool = False) -> list[str]:
    """What the server's ACL LOG holds (then emptied, with ``reset``): ``user: reason object``.

    redis-py's CLIENT SETINFO is left out: it is refused on purpose (common/acl.py), and
    redis-py ignores that.
    """
    if not server.is_running:
        return []
    with redis.Redis.from_url(server.url, decode_responses=True) as client:
        entries = client.acl_log()
        if reset:
            client.acl_log_reset()
    return [
        f"{entry['username']}: {entry['reason']} {entry['object']}"
        for entry in entries
        if entry["object"] != "client|setinfo"
    ]

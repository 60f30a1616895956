"""TLS end to end: clients on wss://, processes on a Redis that speaks TLS only (rediss://).

Every certificate is made here by a throw-away CA (tests/support/certs.py). The Redis asks
for client certificates (``tls-auth-clients yes``), and its processes connect as their ACL
users, so this is the whole production setup of docs/security.md on loopback.
"""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import InvalidMessage

from devtools.redis_server import RedisServer, ServerTls
from tests.support.certs import Authority, Issued
from tests.support.client import call, connect_user
from tests.support.processes import START_TIMEOUT, ManagedProcess, start_gateway, start_process
from tests.support.redis_users import TestUsers, register
from tests.support.waiting import wait_until_blocking


@dataclass(frozen=True)
class Pki:
    authority: Authority
    server: Issued
    client: Issued
    #: A CA that signed nothing here: whoever trusts only it trusts none of our servers.
    stranger: Authority


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    authority = Authority(directory)
    server = authority.issue("server", server=True)
    client = authority.issue("client", server=False)
    return Pki(authority, server, client, Authority(directory, "stranger"))


@pytest.fixture(scope="module")
def tls_redis(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A Redis on TLS only, asking every client for a certificate, with the ACL users."""
    users = TestUsers(tmp_path_factory.mktemp("tls-users"))
    tls = ServerTls(
        pki.server.cert_file,
        pki.server.key_file,
        pki.authority.ca_file,
        auth_clients="yes",
        client_cert_file=pki.client.cert_file,
        client_key_file=pki.client.key_file,
    )
    with RedisServer(acl=users.aclfile_lines(), tls=tls) as server:
        register(server.url, users)
        yield server


def _redis_env(pki: Pki, server: RedisServer, *, ca: Path | None = None) -> dict[str, str]:
    return {
        "RT_REDIS_URL": server.url,
        "RT_REDIS_CA_FILE": str(ca or pki.authority.ca_file),
        "RT_REDIS_CERT_FILE": str(pki.client.cert_file),
        "RT_REDIS_KEY_FILE": str(pki.client.key_file),
    }


@pytest.fixture(scope="module")
def stack(
    pki: Pki, tls_redis: RedisServer, log_dir: Path
) -> Iterator[tuple[ManagedProcess, ManagedProcess]]:
    """A gateway serving wss:// and a chat service, both on the TLS Redis."""
    env = _redis_env(pki, tls_redis)
    gateway = start_gateway(
        tls_redis.url,
        log_dir=log_dir,
        gateway_id="gw-tls",
        env={
            **env,
            "RT_TLS_CERT_FILE": str(pki.server.cert_file),
            "RT_TLS_KEY_FILE": str(pki.server.key_file),
        },
        wait=False,
        # The chat service announces itself (over TLS, as the gateway reads).
        announce=False,
    )
    chat = start_process("chat-tls", "chat_service", log_dir=log_dir, env=env, wait=False)
    try:
        for process in (gateway, chat):
            wait_status(process, 200, context=_trusting(pki.authority))
        # Ready once it read the registry, maybe just before chat announced itself.
        wait_routing(gateway, context=_trusting(pki.authority))
        yield gateway, chat
    finally:
        gateway.stop()
        chat.stop()


def _trusting(authority: Authority) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(authority.ca_file))


def _status(url: str, context: ssl.SSLContext | None) -> int:
    try:
        with urllib.request.urlopen(url, timeout=1.0, context=context) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return 0


def wait_status(process: ManagedProcess, status: int, *, context: ssl.SSLContext) -> None:
    """Wait until /readyz answers ``status``, over https for a TLS gateway."""
    tls = "RT_TLS_CERT_FILE" in process.env
    url = f"{'https' if tls else 'http'}://127.0.0.1:{process.port}/readyz"

    def answers() -> bool:
        assert process.running, process.describe()
        return _status(url, context if tls else None) == status

    try:
        wait_until_blocking(answers, f"/readyz {status}", within=START_TIMEOUT)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {process.describe()}") from None


def wait_routing(process: ManagedProcess, *, context: ssl.SSLContext) -> None:
    """Wait until the TLS gateway has read a live service in the registry."""
    url = f"https://127.0.0.1:{process.port}/metrics"

    def routing() -> bool:
        assert process.running, process.describe()
        try:
            with urllib.request.urlopen(url, timeout=1.0, context=context) as response:
                text = response.read().decode()
        except (urllib.error.URLError, OSError):
            return False
        return any(
            sample.name == "rt_gateway_registry_services" and sample.value >= 1
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        )

    wait_until_blocking(routing, "the gateway to route to chat", within=START_TIMEOUT)


def _wss(process: ManagedProcess) -> str:
    return f"wss://127.0.0.1:{process.port}/ws"


async def test_a_wss_client_chats_through_a_tls_redis(
    stack: tuple[ManagedProcess, ManagedProcess], pki: Pki
) -> None:
    """A client trusting the CA joins a room and posts over wss://, through rediss://."""
    context = _trusting(pki.authority)
    async with await connect_user(_wss(stack[0]), "alice", ssl=context) as ws:
        joined = await call(ws, {"type": "chat.join", "room": "tls", "ref": 1})
        assert joined["ok"], joined
        sent = await call(
            ws, {"type": "chat.send", "room": "tls", "text": "hi", "client_id": "t1", "ref": 2}
        )
        assert sent["ok"], sent


async def test_a_client_that_does_not_trust_the_ca_fails(
    stack: tuple[ManagedProcess, ManagedProcess], pki: Pki
) -> None:
    """A wss:// client trusting another CA fails the handshake; plain ws:// gets nowhere."""
    with pytest.raises(ssl.SSLCertVerificationError):
        await connect_user(_wss(stack[0]), "eve", ssl=_trusting(pki.stranger))
    # The TLS server drops the plain handshake: no HTTP response comes back.
    with pytest.raises((InvalidMessage, OSError)):
        await connect_user(f"ws://127.0.0.1:{stack[0].port}/ws", "eve", open_timeout=2)


def test_tls_redis_refuses_plain_and_unverified_clients(tls_redis: RedisServer, pki: Pki) -> None:
    """The Redis answers only TLS clients that show a certificate of the CA."""
    plain = f"redis://127.0.0.1:{tls_redis.port}/0"
    with redis.Redis.from_url(plain, socket_timeout=2) as client, pytest.raises(redis.RedisError):
        client.ping()
    no_cert = {"ssl_ca_certs": str(pki.authority.ca_file)}
    client = redis.Redis.from_url(tls_redis.url, socket_timeout=2, **no_cert)
    with client, pytest.raises(redis.RedisError):
        client.ping()
    with redis.Redis.from_url(tls_redis.url, **tls_redis.client_options()) as admin:
        assert admin.ping()


def test_a_process_that_does_not_trust_redis_stays_unready(
    stack: tuple[ManagedProcess, ManagedProcess], pki: Pki, tls_redis: RedisServer, log_dir: Path
) -> None:
    """A service given another CA refuses Redis's certificate: it keeps trying, unready."""
    env = _redis_env(pki, tls_redis, ca=pki.stranger.ca_file)
    chat = start_process("chat-tls-distrust", "chat_service", log_dir=log_dir, env=env, wait=False)
    try:
        wait_status(chat, 503, context=_trusting(pki.authority))
        # The logs name the error's class only (common/log.py), not the certificate.
        try:
            wait_until_blocking(
                # It announces itself before it reads its stream: the announcement is retried.
                lambda: chat.log_tail(200).count("could not announce the service") >= 3,
                "three refusals logged",
                within=START_TIMEOUT,
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {chat.describe()}") from None
        assert _status(f"http://127.0.0.1:{chat.port}/readyz", None) == 503
    finally:
        chat.stop()

"""Tokens of an identity provider, key rotation, expiry notices and revocation, end to end.

Real gateway processes on one Redis, keys generated here, JWKS files written while
connections are open. Every token made here is kept, so that the last test can look for each
of them (and the secret and private keys) in the logs the processes wrote.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection

from common.bus.revocations import publish_revocation
from common.revocation import Revocation
from tests.e2e.conftest import Launcher
from tests.support.client import (
    DEADLINE,
    assert_open,
    authenticate,
    call,
    connect,
    expect_close,
    read_until_close,
    recv_until,
    send_json,
)
from tests.support.keys import SigningKey, claims, hs256_by_hand, new_key, write_jwks
from tests.support.processes import JWT_SECRET, REPO_ROOT, ManagedProcess, wait_all_ready
from tests.support.waiting import wait_until


ISSUER = "https://id.test"
AUDIENCE = "realtime-e2e"
GOOD: dict[str, Any] = {"iss": ISSUER, "aud": AUDIENCE}
NOTICE = 2.0
RSA = new_key("RS256", "rsa-1")
EC = new_key("ES256", "ec-1")
ED = new_key("EdDSA", "ed-1")
#: Every token this module makes, looked for in the logs at its end.
TOKENS: list[str] = []


def _kept(token: str) -> str:
    TOKENS.append(token)
    return token


def _hs(user: str, *, ttl: float = 3600.0, **extra: Any) -> str:
    return _kept(jwt.encode(claims(user, ttl=ttl, **{**GOOD, **extra}), JWT_SECRET, "HS256"))


def _signed(key: SigningKey, user: str, *, ttl: float = 3600.0, **extra: Any) -> str:
    return _kept(key.sign(claims(user, ttl=ttl, **{**GOOD, **extra})))


def _settings(jwks: Path, **more: str) -> dict[str, str]:
    return {
        "RT_JWT_JWKS_FILE": str(jwks),
        "RT_JWT_ISSUER": ISSUER,
        "RT_JWT_AUDIENCE": AUDIENCE,
        "RT_JWT_KEYS_POLL": "0.2",
        "RT_TOKEN_EXPIRING_NOTICE": str(NOTICE),
        # Debug, so that whatever a library logs of a frame or a URL is in the logs too.
        "RT_LOG_LEVEL": "debug",
        **more,
    }


@pytest.fixture(scope="module")
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("idp-keys")


@pytest.fixture(scope="module")
def pair(launcher: Launcher, keys_dir: Path) -> tuple[ManagedProcess, ManagedProcess]:
    """Two gateways trusting the HS256 secret and a JWKS of RSA, EC and Ed25519 keys."""
    jwks = keys_dir / "pair.jwks"
    write_jwks(jwks, [RSA, EC, ED])
    gateways = (
        launcher.gateway(_settings(jwks), wait=False),
        launcher.gateway(_settings(jwks), wait=False),
    )
    wait_all_ready(list(gateways))
    return gateways[0], gateways[1]


@pytest.fixture(scope="module")
def gateway(pair: tuple[ManagedProcess, ManagedProcess]) -> ManagedProcess:
    return pair[0]


async def _refusal(ws: ClientConnection, token: str, ref: str = "a") -> str:
    reply = await call(ws, {"type": "auth", "token": token, "ref": ref})
    assert reply["ok"] is False, reply
    assert reply["error"]["code"] == "unauthenticated"
    assert token not in reply["error"]["message"]
    return str(reply["error"]["message"])


def _attacks() -> list[Any]:
    now = int(time.time())
    stranger = new_key("RS256", "rsa-1")
    pem = RSA.public_pem()
    payload = claims("mallory", **GOOD)
    return [
        pytest.param(
            jwt.encode(payload, "", algorithm="none", headers={"kid": "rsa-1"}), id="alg-none"
        ),
        pytest.param(jwt.encode(payload, "", algorithm="none"), id="alg-none-no-kid"),
        pytest.param(
            hs256_by_hand({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}, payload, pem),
            id="hs-signed-with-rsa-pem",
        ),
        pytest.param(
            hs256_by_hand({"alg": "HS256", "typ": "JWT"}, payload, pem),
            id="hs-signed-with-rsa-pem-no-kid",
        ),
        pytest.param(new_key("ES256", "unknown").sign(payload), id="unknown-kid"),
        pytest.param(stranger.sign(payload), id="stranger-signature"),
        pytest.param(EC.sign(payload, kid="rsa-1"), id="another-keys-alg"),
        pytest.param(RSA.sign(claims("mallory", ttl=-1, **GOOD)), id="expired"),
        # Made at collection: valid only a day later, however long the suite runs first.
        pytest.param(RSA.sign({**payload, "nbf": now + 86_400}), id="not-yet-valid"),
        pytest.param(RSA.sign(claims("mallory", iss=ISSUER, aud="other")), id="wrong-aud"),
        pytest.param(RSA.sign(claims("mallory", iss="https://evil", aud=AUDIENCE)), id="wrong-iss"),
        pytest.param(RSA.sign(claims("mallory", iss=ISSUER)), id="no-aud"),
        pytest.param(
            jwt.encode(claims("mallory", aud=AUDIENCE), JWT_SECRET, "HS256"), id="hs-no-iss"
        ),
    ]


@pytest.mark.parametrize("token", _attacks())
async def test_attack_tokens_are_refused(gateway: ManagedProcess, token: str) -> None:
    """Each forged, misdirected or ill-timed token gets unauthenticated, as a message or header."""
    _kept(token)
    async with await connect(gateway.ws_url) as ws:
        await _refusal(ws, token)
        reply = await call(ws, {"type": "subscribe", "channel": "presence:x", "ref": "s"})
        assert reply["error"]["code"] == "unauthenticated"
    async with await connect(gateway.ws_url, token=token) as ws:
        code, _ = await expect_close(ws)
    assert code == 4401


@pytest.mark.parametrize("key", [RSA, EC, ED, None], ids=["RS256", "ES256", "EdDSA", "HS256"])
async def test_tokens_of_every_configured_key_are_welcomed(
    gateway: ManagedProcess, key: SigningKey | None
) -> None:
    """A token of the identity provider's keys, or of the secret, gets a welcome."""
    token = _hs("alice") if key is None else _signed(key, "alice")
    async with await connect(gateway.ws_url) as ws:
        assert (await authenticate(ws, token))["user"] == "alice"


async def test_token_in_the_url_query_is_ignored(gateway: ManagedProcess) -> None:
    """A token in the query string authenticates nothing (and the last test finds it unlogged)."""
    token = _hs("query-user")
    async with await connect(f"{gateway.ws_url}?token={token}&access_token={token}") as ws:
        reply = await call(ws, {"type": "subscribe", "channel": "presence:q", "ref": 1})
        assert reply["error"]["code"] == "unauthenticated"


async def test_token_expiring_notice_then_reauth_then_expiry(gateway: ManagedProcess) -> None:
    """token_expiring comes NOTICE s before exp; re-auth moves it; the close comes at exp."""
    first = _signed(EC, "erin", ttl=NOTICE + 2)
    first_exp = jwt.decode(first, options={"verify_signature": False})["exp"]
    async with await connect(gateway.ws_url) as ws:
        await authenticate(ws, first)
        notice, _ = await recv_until(ws, lambda f: f.get("type") == "token_expiring", within=5)
        assert notice == {"type": "token_expiring", "expires_at": first_exp}
        assert time.time() >= first_exp - NOTICE - 0.5
        second = _signed(ED, "erin", ttl=NOTICE + 3)
        second_exp = jwt.decode(second, options={"verify_signature": False})["exp"]
        reply = await call(ws, {"type": "auth", "token": second, "ref": "again"})
        assert reply["data"]["expires_at"] == second_exp
        notice, _ = await recv_until(ws, lambda f: f.get("type") == "token_expiring", within=6)
        assert notice["expires_at"] == second_exp
        assert time.time() > first_exp, "the first token's expiry should have passed by now"
        _, code, reason = await read_until_close(ws, within=NOTICE + 3)
    assert (code, reason) == (4401, "token expired")
    assert time.time() >= second_exp - 0.1


async def _connected(url: str, token: str) -> ClientConnection:
    ws = await connect(url)
    await authenticate(ws, token)
    return ws


async def _closed_at(ws: ClientConnection, started: float) -> tuple[int | None, str, float]:
    code, reason = await expect_close(ws)
    return code, reason, time.monotonic() - started


async def test_revoked_user_is_disconnected_on_every_gateway_within_a_second(
    pair: tuple[ManagedProcess, ManagedProcess], bus: Redis
) -> None:
    """One bus message closes the user's connections on both gateways (4401 revoked) within a
    second, refuses the old tokens there, lets other users be, and lets a new login in."""
    first, second = pair
    old = _signed(RSA, "rob")
    victims = [await _connected(first.ws_url, old), await _connected(second.ws_url, _hs("rob"))]
    bystander = await _connected(second.ws_url, _hs("carol"))
    try:
        started = time.monotonic()
        heard = await publish_revocation(bus, Revocation.of_user("rob", lasting=600))
        results = await asyncio.gather(*(_closed_at(ws, started) for ws in victims))
        await assert_open(bystander)
    finally:
        for ws in (*victims, bystander):
            await ws.close()
    assert heard >= 2
    latencies = [elapsed for _, _, elapsed in results]
    print(f"revocation latency across two gateways: {[round(t * 1000, 1) for t in latencies]} ms")
    assert [(code, reason) for code, reason, _ in results] == [(4401, "revoked")] * 2
    assert max(latencies) < 1.0
    for gateway in pair:
        async with await connect(gateway.ws_url) as ws:
            assert "revoked" in await _refusal(ws, old)
            fresh = _signed(ED, "rob", iat=int(time.time()) + 1)
            assert (await authenticate(ws, fresh, ref="new-login"))["user"] == "rob"


def _revoke_command(redis_url: str, *args: str) -> str:
    """The admin command, as an operator runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RT_")}
    done = subprocess.run(
        [sys.executable, "-m", "realtime_gateway.revoke", *args],
        cwd=REPO_ROOT,
        env={**env, "RT_REDIS_URL": redis_url},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout


async def test_revoked_jti_is_disconnected_and_refused(
    pair: tuple[ManagedProcess, ManagedProcess], launcher: Launcher
) -> None:
    """scripts/revoke --jti closes that token's connection and refuses it on every gateway;
    the same user's other tokens are untouched."""
    first, second = pair
    token = _signed(EC, "jo", jti="jti-revoked-1")
    victim = await _connected(first.ws_url, token)
    other = await _connected(second.ws_url, _signed(EC, "jo", jti="jti-kept"))
    try:
        output = await asyncio.to_thread(
            _revoke_command, launcher.redis_url, "--jti", "jti-revoked-1", "--for", "600"
        )
        assert "jti" in output
        code, reason = await expect_close(victim)
        await assert_open(other)
    finally:
        await victim.close()
        await other.close()
    assert (code, reason) == (4401, "revoked")
    async with await connect(second.ws_url) as ws:
        assert "revoked" in await _refusal(ws, token)


async def test_gateway_started_later_honours_the_revocations(
    pair: tuple[ManagedProcess, ManagedProcess], launcher: Launcher, keys_dir: Path
) -> None:
    """A gateway that was not running when a revocation was published still refuses its tokens."""
    token = _signed(RSA, "late-user")
    await asyncio.to_thread(_revoke_command, launcher.redis_url, "late-user", "--for", "600")
    jwks = keys_dir / "late.jwks"
    write_jwks(jwks, [RSA])
    late = await asyncio.to_thread(launcher.gateway, _settings(jwks))
    async with await connect(late.ws_url) as ws:
        assert "revoked" in await _refusal(ws, token)
    late.stop()


async def _accepts(url: str, token: str) -> bool:
    async with await connect(url) as ws:
        await send_json(ws, {"type": "auth", "token": token, "ref": "probe"})
        frame, _ = await recv_until(ws, lambda f: f.get("ref") == "probe")
        return frame.get("type") == "welcome"


async def test_keys_rotate_without_dropping_a_connection(
    launcher: Launcher, keys_dir: Path
) -> None:
    """A new JWKS written while a connection is open: the old key works until it is removed,
    the new one from when it appears, and the connection re-authenticates and stays up."""
    jwks = keys_dir / "rotation.jwks"
    old, new = new_key("RS256", "2024"), new_key("EdDSA", "2025")
    write_jwks(jwks, [old])
    gateway = await asyncio.to_thread(launcher.gateway, _settings(jwks))
    ws = await _connected(gateway.ws_url, _signed(old, "rita"))
    try:
        new_token = _signed(new, "rita")
        assert not await _accepts(gateway.ws_url, new_token)
        write_jwks(jwks, [old, new])
        await wait_until(lambda: _accepts(gateway.ws_url, new_token), what="the new key trusted")
        assert await _accepts(gateway.ws_url, _signed(old, "rita"))
        reply = await call(ws, {"type": "auth", "token": new_token, "ref": "rotated"})
        assert reply["ok"] is True
        old_token = _signed(old, "rita")
        write_jwks(jwks, [new])

        async def old_refused() -> bool:
            return not await _accepts(gateway.ws_url, old_token)

        await wait_until(old_refused, what="the old key removed")
        await assert_open(ws)
        reply = await call(ws, {"type": "auth", "token": _signed(new, "rita"), "ref": "again"})
        assert reply["ok"] is True
        # A JWKS that does not parse keeps the keys in force.
        jwks.write_text("{not json")

        async def bad_file_read() -> bool:
            return "token keys not reloaded" in gateway.log_path.read_text()

        await wait_until(bad_file_read, what="the bad JWKS read")
        assert await _accepts(gateway.ws_url, _signed(new, "rita"))
    finally:
        await ws.close()
        gateway.stop()


async def test_sighup_reloads_the_keys(launcher: Launcher, keys_dir: Path) -> None:
    """With polling too slow to notice, SIGHUP makes the gateway read the JWKS again."""
    jwks = keys_dir / "hup.jwks"
    old, new = new_key("ES256", "hup-old"), new_key("ES256", "hup-new")
    write_jwks(jwks, [old])
    gateway = await asyncio.to_thread(launcher.gateway, _settings(jwks, RT_JWT_KEYS_POLL="3600"))
    try:
        token = _signed(new, "hugo")
        write_jwks(jwks, [old, new])
        assert not await _accepts(gateway.ws_url, token)
        gateway.signal(signal.SIGHUP)
        await wait_until(lambda: _accepts(gateway.ws_url, token), what="keys reloaded on SIGHUP")
        assert gateway.running
    finally:
        gateway.stop()


@pytest.mark.parametrize("weak", [" " * 32, "changeme" * 4, "k" * 40])
def test_weak_secret_stops_the_gateway_at_start(launcher: Launcher, weak: str) -> None:
    """A production gateway with a long but guessable secret exits 2, saying why, not echoing it."""
    gateway = launcher.gateway({"RT_JWT_SECRET": weak}, wait=False)
    code = gateway.wait(timeout=DEADLINE * 3)
    assert code == 2
    log = gateway.log_path.read_text()
    assert "too weak" in log
    assert weak.strip() == "" or weak not in log


def test_logs_hold_no_secret_or_token(launcher: Launcher) -> None:
    """Nothing secret reaches the logs: no token made here, no secret, no private key."""
    secrets = [JWT_SECRET, *TOKENS]
    for key in (RSA, EC, ED):
        pem = key.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        secrets.append(pem.splitlines()[1])
    logs = {p.log_path: p.log_path.read_text(errors="replace") for p in launcher.processes}
    assert len(TOKENS) > 20
    assert any("revocation applied" in text for text in logs.values()), "logs were not captured"
    for path, text in logs.items():
        for secret in secrets:
            # A token's signature alone would be enough to find it.
            for part in {secret, secret.rsplit(".", 1)[-1]} - {""}:
                assert part not in text, f"{path} holds a secret or token"

"""The ACL users of common/acl.py, on a real Redis that loaded them: what each may not do."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.exceptions import NoPermissionError

from common import acl
from common.codec import pack_bus
from common.envelope import Reply
from common.keys import GATEWAY_LEASES, Partitions, event_channel, reply_channel, request_stream
from devtools.redis_server import RedisServer


REPO_ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "acl-test-password-0123456789"
_CALL = re.compile(r"redis\.p?call\(\s*'([A-Za-z]+)'")


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    """A Redis of its own with every kind's user, whatever REALTIME_TEST_ACL says."""
    lines = [acl.aclfile_line(user, PASSWORD) for user in acl.users(acl.KINDS)]
    with RedisServer(acl=lines) as started:
        yield started


def as_user(server: RedisServer, kind: str) -> redis.Redis:
    return redis.Redis.from_url(server.url, username=acl.username(kind), password=PASSWORD)


def _docs_block() -> list[str]:
    text = (REPO_ROOT / "docs" / "security.md").read_text()
    section = text.split("## Redis: least privilege", 1)[1].split("\n## ", 1)[0]
    block = section.split("```\n", 2)[1]
    return [line for line in block.splitlines() if line.startswith("ACL SETUSER")]


def test_docs_list_the_rendered_setuser_lines() -> None:
    """docs/security.md gives operators exactly the ACL SETUSER lines common/acl.py renders."""
    assert _docs_block() == [acl.setuser_line(user) for user in acl.users(acl.KINDS)]


@pytest.mark.parametrize("kind", ["chat", "bids", "presence", "poll"])
def test_every_command_of_a_service_script_is_granted(kind: str) -> None:
    """Each command a service's Lua scripts call is in its user's grant (scripts run as it)."""
    folder = "polls_service" if kind == "poll" else f"{kind}_service"
    sources = (REPO_ROOT / folder / "lua").glob("*.lua")
    called = {name.lower() for path in sources for name in _CALL.findall(path.read_text())}
    # bids_service/lua/lib.lua builds its XADD as a table: redis.call(unpack(args)).
    called |= {"xadd"} if kind == "bids" else set()
    assert called, "no redis.call found: the pattern no longer matches the scripts"
    missing = called - set(acl.SERVICE_COMMANDS[kind]) - {"publish"}
    assert not missing


def test_chat_is_refused_on_bids_keys_streams_and_presence_scripts(server: RedisServer) -> None:
    """The chat user gets NOPERM on a bids key, the bids stream and a presence script."""
    with redis.Redis.from_url(server.url) as admin:
        admin.hset("bids:auction:a1", mapping={"id": "a1"})
        admin.xgroup_create(request_stream("bids", 0), "bids", id="0", mkstream=True)
        # presence's "list" script, as presence_service/store.py loads it (it stands alone).
        list_sha = admin.script_load((REPO_ROOT / "presence_service/lua/list.lua").read_text())
    with as_user(server, "chat") as chat:
        assert chat.ping()
        with pytest.raises(NoPermissionError):
            chat.hgetall("bids:auction:a1")
        with pytest.raises(NoPermissionError):
            chat.xadd(request_stream("bids", 0), {"e": b"x"})
        with pytest.raises(NoPermissionError):
            chat.xreadgroup("bids", "chat-spy", {request_stream("bids", 0): ">"}, count=1)
        with pytest.raises(NoPermissionError):
            chat.evalsha(list_sha, 1, "presence:ch:chat:general", "", "10")
        with pytest.raises(NoPermissionError):
            chat.publish(Partitions("bids").event_channel("auction:a1"), b"forged")


def test_a_gateway_user_cannot_publish_a_forged_reply_or_event(server: RedisServer) -> None:
    """The gateway user may subscribe and append requests but is refused every PUBLISH."""
    forged = pack_bus(Reply("r-1", "gw-victim.1", data={"forged": True}).to_wire())
    with as_user(server, "gateway") as gateway:
        assert gateway.xadd(request_stream("chat", 0), {"e": b"x"})
        assert gateway.xadd(request_stream("poll"), {"e": b"x"})
        assert gateway.zadd(GATEWAY_LEASES, {"gw-a": 1}) == 1
        with pytest.raises(NoPermissionError):
            gateway.publish(reply_channel("gw-victim"), forged)
        with pytest.raises(NoPermissionError):
            gateway.publish(Partitions("chat").event_channel("chat:general"), forged)
        with pytest.raises(NoPermissionError):
            gateway.spublish(Partitions("chat").event_channel("chat:general"), forged)
        with pytest.raises(NoPermissionError):
            gateway.xadd(GATEWAY_LEASES + ":x", {"e": b"x"})  # XADD only on request streams
        with pytest.raises(NoPermissionError):
            gateway.zadd("chat:room:x", {"m": 1})  # ZADD only on the lease set


def test_services_publish_replies_and_only_their_own_events(server: RedisServer) -> None:
    """A service may reply to any gateway and publish in its own namespaces, no other."""
    for kind, own, foreign, owner in (
        ("chat", "chat:general", "auction:a1", "bids"),
        ("bids", "auction:a1", "presence:chat:general", "presence"),
        ("presence", "presence:chat:general", "chat:general", "chat"),
    ):
        mine = Partitions(kind, 3)
        with as_user(server, kind) as service:
            assert service.publish(reply_channel("gw-1"), b"r") == 0
            assert service.publish(mine.event_channel(own), b"e") == 0
            assert service.spublish(mine.event_channel(own), b"e") == 0
            for forged in (
                Partitions(owner).event_channel(foreign),
                # Its own tag on another's channel, or no tag: refused as well.
                event_channel(foreign, mine.tag(0)),
                event_channel(own),
            ):
                with pytest.raises(NoPermissionError):
                    service.publish(forged, b"e")


def test_only_presence_may_touch_the_gateway_leases(server: RedisServer) -> None:
    """Presence reads and reaps gw:leases; chat and bids may not even read it."""
    with as_user(server, "presence") as presence:
        assert presence.zcard(GATEWAY_LEASES) >= 0
        presence.zrem(GATEWAY_LEASES, "gw-a")
    for kind in ("chat", "bids"):
        with as_user(server, kind) as service, pytest.raises(NoPermissionError):
            service.zadd(GATEWAY_LEASES, {"gw-a": 1})


def test_a_wrong_password_is_refused(server: RedisServer) -> None:
    """An ACL user with another password cannot connect."""
    client = redis.Redis.from_url(server.url, username=acl.username("chat"), password="wrong")
    with client, pytest.raises(redis.AuthenticationError):
        client.ping()

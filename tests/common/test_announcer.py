"""The announce script and the registry reader on a real Redis, with the ACL users on."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError, NoPermissionError

from common import acl
from common.announcer import AnnouncementRefused, Announcer, RegistryReader
from common.keys import REGISTRY_ALIVE, REGISTRY_OWNERS, REGISTRY_SERVICES
from common.namespaces import Access, Namespace
from common.registry import Announcement, Offer, decode_announcement
from devtools.redis_server import RedisServer
from tests.support.registry import BUILT_IN_OFFERS
from tests.support.waiting import wait_until


PASSWORD = "announcer-test-password-0123456789"
ORDERS = Offer(
    "orders",
    {"orders.get": frozenset({"order"})},
    (Namespace("orders", "orders", Access.OWNER, history=True),),
)
#: A second service claiming orders' namespace.
RIVAL = Offer("rival", {}, (Namespace("orders", "rival", Access.AUTHENTICATED, history=False),))


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    """A Redis of its own with the users of every kind (orders and rival as poll's kind)."""
    users = [
        *acl.users(acl.KINDS),
        *(
            acl.service_user(name, acl.ServiceKind((), namespaces=("orders",)))
            for name in ("orders", "rival")
        ),
    ]
    with RedisServer(acl=[acl.aclfile_line(user, PASSWORD) for user in users]) as started:
        yield started


@pytest.fixture
async def admin(server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(server.url)
    await client.flushall()
    yield client
    await client.aclose()


@pytest.fixture
async def as_user(server: RedisServer) -> AsyncIterator[dict[str, Redis]]:
    """A client per user name, made on first use."""
    clients: dict[str, Redis] = {}

    class Clients(dict[str, Redis]):
        def __missing__(self, name: str) -> Redis:
            client = Redis.from_url(server.url, username=f"rt-{name}", password=PASSWORD)
            clients[name] = self[name] = client
            return client

    yield Clients()
    for client in clients.values():
        await client.aclose()


async def test_an_announcement_claims_stores_and_leases(
    admin: Redis, as_user: dict[str, Redis]
) -> None:
    """As its own ACL user, a service claims its namespace, stores its announcement and gets
    a lease of now + ttl on Redis's clock."""
    announcer = Announcer(as_user["orders"], ORDERS, "orders-1", ttl=10.0)
    seconds, micros = await admin.time()
    expiry = await announcer.announce()
    now = seconds * 1000 + micros // 1000
    assert now + 10_000 <= expiry < now + 11_000
    assert await admin.hgetall(REGISTRY_OWNERS) == {b"orders": b"orders"}
    body = await admin.hget(REGISTRY_SERVICES, "orders")
    assert isinstance(body, bytes)
    stored = decode_announcement(body)
    assert (stored.offer, stored.instance) == (ORDERS, "orders-1")
    assert await admin.zscore(REGISTRY_ALIVE, "orders") == expiry


async def test_a_claim_of_an_owned_namespace_is_refused_and_writes_nothing(
    admin: Redis, as_user: dict[str, Redis]
) -> None:
    """The rival's announcement names the owner, and neither its entry nor a lease is made."""
    await Announcer(as_user["orders"], ORDERS, "o", ttl=10.0).announce()
    with pytest.raises(AnnouncementRefused) as caught:
        await Announcer(as_user["rival"], RIVAL, "r", ttl=10.0).announce()
    assert str(caught.value) == "namespace 'orders' is owned by 'orders'"
    assert await admin.hgetall(REGISTRY_OWNERS) == {b"orders": b"orders"}
    assert await admin.hexists(REGISTRY_SERVICES, "rival") == 0
    assert await admin.zscore(REGISTRY_ALIVE, "rival") is None


async def test_a_lease_never_goes_back(admin: Redis, as_user: dict[str, Redis]) -> None:
    """ZADD GT: an instance with a shorter TTL does not cut the lease another one holds."""
    long = await Announcer(as_user["orders"], ORDERS, "a", ttl=60.0).announce()
    await Announcer(as_user["orders"], ORDERS, "b", ttl=1.0).announce()
    assert await admin.zscore(REGISTRY_ALIVE, "orders") == long


async def test_a_refused_refresh_is_logged_and_the_service_goes_on(
    admin: Redis, as_user: dict[str, Redis], caplog: pytest.LogCaptureFixture
) -> None:
    """At a refresh, a refusal (the namespace was released and claimed by another) is an
    error in the log, not an exit."""
    announcer = Announcer(as_user["orders"], ORDERS, "o", ttl=0.3)
    await announcer.announce()
    await admin.hset(REGISTRY_OWNERS, "orders", "rival")
    with caplog.at_level(logging.ERROR, logger="common.announcer"):
        task = asyncio.create_task(announcer.run())
        try:
            await wait_until(lambda: bool(caplog.records), "the refresh's error")
        finally:
            task.cancel()
    assert "is owned by 'rival'" in caplog.records[0].__dict__["error"]


async def test_a_service_cannot_release_or_delete_registry_entries(
    admin: Redis, as_user: dict[str, Redis]
) -> None:
    """The registry grant has no HDEL, DEL or ZREM: releasing is an operator's act."""
    await Announcer(as_user["orders"], ORDERS, "o", ttl=10.0).announce()
    client = as_user["orders"]
    for command in (
        client.hdel(REGISTRY_OWNERS, "orders"),
        client.delete(REGISTRY_SERVICES),
        client.zrem(REGISTRY_ALIVE, "orders"),
        client.set("{registry}:other", "x"),
    ):
        with pytest.raises(NoPermissionError):
            await command
    await admin.acl_log_reset()


async def test_the_gateway_reads_the_registry_and_cannot_write_it(
    admin: Redis, as_user: dict[str, Redis]
) -> None:
    """A gateway's read sees the announced service alive; it may not announce itself."""
    await Announcer(as_user["orders"], ORDERS, "o", ttl=10.0).announce()
    reader = RegistryReader(as_user["gateway"], 1.0, clock=lambda: 50.0)
    await reader.read()
    registry = reader.view.current
    assert reader.view.loaded
    assert registry.channel("orders:1").service == "orders"
    assert registry.alive("orders", 50.0)
    assert not registry.alive("orders", 61.0)
    with pytest.raises(NoPermissionError):
        await as_user["gateway"].hset(REGISTRY_OWNERS, "orders", "gateway")
    await admin.acl_log_reset()


async def test_a_reader_logs_each_new_service_once_and_a_change_of_owner(
    admin: Redis, as_user: dict[str, Redis], caplog: pytest.LogCaptureFixture
) -> None:
    """A service joining is one info line; a namespace passing to another owner a warning."""
    reader = RegistryReader(admin, 1.0)
    await Announcer(as_user["orders"], ORDERS, "o", ttl=10.0).announce()
    with caplog.at_level(logging.INFO, logger="common.announcer"):
        await reader.read()
        await reader.read()
        await admin.hdel(REGISTRY_OWNERS, "orders")
        await Announcer(as_user["rival"], RIVAL, "r", ttl=10.0).announce()
        await reader.read()
    lines = [(r.getMessage(), r.__dict__.get("service")) for r in caplog.records]
    assert lines == [
        ("a service is announced in the registry", "orders"),
        ("a service is announced in the registry", "rival"),
        ("a namespace changed owner in the registry", None),
    ]
    assert caplog.records[-1].__dict__["was"] == "orders"
    assert caplog.records[-1].__dict__["now"] == "rival"
    await admin.acl_log_reset()


async def test_presence_reads_the_registry_as_gateways_do(
    admin: Redis, as_user: dict[str, Redis]
) -> None:
    """Presence's user reads the registry (other services' policies), and announces itself."""
    await Announcer(as_user["presence"], BUILT_IN_OFFERS["presence"], "p", ttl=10.0).announce()
    reader = RegistryReader(as_user["presence"], 1.0)
    await reader.read()
    assert sorted(reader.view.current.namespaces) == ["presence"]


async def test_an_invalid_announcement_is_logged_once_and_counted(
    admin: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """A broken entry is ignored with one error line and one count, however many reads."""
    await admin.hset(REGISTRY_SERVICES, "broken", b"\xc1")
    await admin.hset(REGISTRY_SERVICES, "orders", Announcement(ORDERS, "o").encode())
    await admin.hset(REGISTRY_OWNERS, "orders", "orders")
    errors: list[None] = []
    reader = RegistryReader(admin, 1.0, on_error=lambda: errors.append(None))
    with caplog.at_level(logging.ERROR, logger="common.announcer"):
        for _ in range(3):
            await reader.read()
    assert len(errors) == 1
    assert [record.__dict__["service"] for record in caplog.records] == ["broken"]
    assert sorted(reader.view.current.namespaces) == ["orders"]


async def test_a_failed_read_keeps_the_last_registry() -> None:
    """Redis gone: each read fails and is counted, and the registry read before stays."""
    with RedisServer() as own:
        client = Redis.from_url(own.url)
        await client.hset(REGISTRY_SERVICES, "orders", Announcement(ORDERS, "o").encode())
        await client.hset(REGISTRY_OWNERS, "orders", "orders")
        errors: list[None] = []
        reader = RegistryReader(client, 0.01, on_error=lambda: errors.append(None))
        await reader.read()
        before = reader.view.current
        own.stop()
        with pytest.raises(ConnectionError):
            await reader.read()
        task = asyncio.create_task(reader.run())
        try:
            await wait_until(lambda: len(errors) >= 2, "failed reads counted")
        finally:
            task.cancel()
            await client.aclose()
    assert reader.view.current is before

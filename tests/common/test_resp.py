"""RespConnection against a real Redis (and a peer that breaks the protocol): replies in order,
errors as redis-py's exceptions, the login of the client it copies, and lost connections."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import (
    AuthenticationError,
    ConnectionError as RedisConnectionError,
    NoPermissionError,
    NoScriptError,
    OutOfMemoryError,
    ResponseError,
)

from common import acl
from common.redis_client import connect_redis
from common.resp import (
    LazyConnection,
    RespConnection,
    bulk,
    command,
    command_head,
    execute_encoded,
    reply_error,
)
from common.settings import BusSettings, Secret
from devtools.redis_server import RedisServer
from tests.support.redis_users import TestUsers
from tests.support.waiting import wait_until


def test_commands_are_encoded_as_resp_arrays_of_bulk_strings() -> None:
    assert command("SET", b"k\r\n", 42) == b"*3\r\n$3\r\nSET\r\n$3\r\nk\r\n\r\n$2\r\n42\r\n"
    assert command_head(3, "SET", "k") + bulk(b"v") == command("SET", "k", "v")
    assert command("PING") == b"*1\r\n$4\r\nPING\r\n"
    assert command("ECHO", "é") == b"*2\r\n$4\r\nECHO\r\n$2\r\n\xc3\xa9\r\n"


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("OOM command not allowed when used memory > 'maxmemory'.", OutOfMemoryError),
        ("NOPERM User gw has no permissions to run the 'set' command", NoPermissionError),
        ("WRONGPASS invalid username-password pair", AuthenticationError),
        ("NOAUTH Authentication required.", AuthenticationError),
        ("NOSCRIPT No matching script. Please use EVAL.", NoScriptError),
        ("WRONGTYPE Operation against a key holding the wrong kind of value", ResponseError),
    ],
)
def test_error_replies_become_redis_py_exceptions(message: str, kind: type[Exception]) -> None:
    error = reply_error(message)
    assert type(error) is kind
    assert str(error) == message


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url, client_name="resp-test")
    try:
        yield client
    finally:
        await client.aclose()


async def test_pipelined_replies_come_back_in_order_with_errors_in_place(client: Redis) -> None:
    connection = await RespConnection.open(client)
    try:
        await client.set("text", "not a list")
        first = connection.execute(command("SET", "a", "1") + command("LPUSH", "text", "x"), 2)
        second = connection.execute(command("GET", "a") + command("INCR", "n"), 2)
        ok, refused = await first
        assert ok == b"OK"
        assert isinstance(refused, ResponseError)
        assert "WRONGTYPE" in str(refused)
        assert await second == [b"1", 1]
    finally:
        connection.close()
        await connection.wait_closed()


async def test_it_logs_in_as_the_client_it_copies(client: Redis) -> None:
    """The client's name (and, below, its ACL user) are those of the new connection."""
    connection = await RespConnection.open(client)
    try:
        (name,) = await connection.execute(command("CLIENT", "GETNAME"), 1)
        assert name == b"resp-test"
    finally:
        connection.close()


async def test_an_acl_user_and_a_wrong_password(
    redis_server: RedisServer, redis_users: TestUsers | None, client: Redis
) -> None:
    if redis_users is None:
        pytest.skip("the session's Redis has no ACL users (REALTIME_TEST_ACL=0)")
    user = acl.username("gateway")
    password = redis_users.password(user)
    good = Redis.from_url(redis_server.url, username=user, password=password, client_name="gw-x")
    bad = Redis.from_url(redis_server.url, username=user, password="wrong")
    try:
        connection = await RespConnection.open(good)
        listed = [each for each in await client.client_list() if each["name"] == "gw-x"]
        assert [each["user"] for each in listed] == [user]
        connection.close()
        with pytest.raises(AuthenticationError):
            await RespConnection.open(bad)
    finally:
        await good.aclose()
        await bad.aclose()


async def test_pushes_go_to_the_callback_once_subscribed(client: Redis) -> None:
    pushes: list[object] = []
    connection = await RespConnection.open(client)
    try:
        connection.push_mode(pushes.append)
        connection.write(command("SUBSCRIBE", "news"))
        await wait_until(lambda: len(pushes) == 1, "the subscription confirmed")
        await client.publish("news", b"\x00binary\r\n")
        await wait_until(lambda: len(pushes) == 2, "the message")
        assert pushes == [[b"subscribe", b"news", 1], [b"message", b"news", b"\x00binary\r\n"]]
    finally:
        connection.close()


async def test_a_lost_connection_fails_waiting_calls_and_later_ones(
    redis_server: RedisServer, client: Redis
) -> None:
    connection = await RespConnection.open(client)
    blocked = connection.execute(command("BLPOP", "never", 0), 1)
    await client.client_kill_filter(_type="normal", skipme=True)
    with pytest.raises(RedisConnectionError):
        await asyncio.wait_for(blocked, 10)
    await asyncio.wait_for(connection.wait_closed(), 10)
    assert not connection.is_open
    with pytest.raises(RedisConnectionError):
        await connection.execute(command("PING"), 1)
    with pytest.raises(RedisConnectionError):
        connection.write(command("PING"))


async def test_a_peer_that_breaks_the_protocol_is_dropped() -> None:
    """Bytes that are not RESP, or a reply nobody asked for, end the connection: no later
    reply could be matched to its caller any more."""

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(b"?not resp\r\n")
        await writer.drain()
        await reader.read(100)  # until the client hangs up
        writer.close()

    server = await asyncio.start_server(peer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = Redis(host="127.0.0.1", port=port)
    try:
        connection = await RespConnection.open(client)
        with pytest.raises(RedisConnectionError, match="not RESP"):
            await asyncio.wait_for(connection.execute(command("PING"), 1), 10)

        unasked = await RespConnection.open(client)
        unasked.data_received(b"+OK\r\n")
        await asyncio.wait_for(unasked.wait_closed(), 10)
        assert not unasked.is_open
    finally:
        server.close()
        await client.aclose()


async def test_an_unreachable_redis_is_a_connection_error(redis_server: RedisServer) -> None:
    port = redis_server.port
    redis_server.stop()
    try:
        client = Redis(host="127.0.0.1", port=port)
        with pytest.raises(RedisConnectionError):
            await RespConnection.open(client)
        await client.aclose()
    finally:
        redis_server.start()


async def test_encoded_commands_run_as_a_pipeline_on_a_pooled_connection(client: Redis) -> None:
    await client.set("text", "not a list")
    payload = command("SET", "a", 1.5) + command("LPUSH", "text", "x") + command("GET", "a")
    ok, refused, value = await execute_encoded(client, payload, 3)
    assert (ok, value) == (b"OK", b"1.5")
    assert isinstance(refused, ResponseError)
    assert "WRONGTYPE" in str(refused)


async def test_encoded_commands_are_retried_on_a_new_connection_after_a_lost_one(
    redis_url: str, client: Redis
) -> None:
    """As the client's own commands are: its pooled connection died under it (a restart)."""
    retrying = connect_redis(BusSettings(redis_url=Secret(redis_url)), "resp-retry")
    assert isinstance(retrying, Redis)
    try:
        assert await retrying.ping()
        await client.client_kill_filter(_type="normal", skipme=True)
        (pong,) = await execute_encoded(retrying, command("PING"), 1)
        assert pong in (b"PONG", "PONG", True)
    finally:
        await retrying.aclose()


async def test_a_lazy_connection_opens_on_first_use_and_again_after_a_timeout(
    client: Redis,
) -> None:
    lazy = LazyConnection(client)
    try:
        (first,) = await lazy.execute(command("CLIENT", "ID"), 1, 10)
        (same,) = await lazy.execute(command("CLIENT", "ID"), 1, 10)
        assert same == first
        with pytest.raises(TimeoutError):
            await lazy.execute(command("BLPOP", "never", 0), 1, 0.2)
        # The late answer of the timed-out command cannot reach a later one: a new connection.
        (after,) = await lazy.execute(command("CLIENT", "ID"), 1, 10)
        assert after != first
    finally:
        lazy.close()

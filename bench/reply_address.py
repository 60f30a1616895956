"""What the reply address (stream field ``r``) adds to the request path: CPU, bytes, XADD time.

``.venv/bin/python -m bench.reply_address`` prints a report; it starts a private Redis on a
free loopback port for the XADD part.
"""

from __future__ import annotations

import asyncio
import time
import timeit
from collections.abc import Callable

from redis.asyncio import Redis
from redis.typing import EncodableT, FieldT

from common.codec import pack_bus
from common.envelope import ReplyAddress, Request
from devtools.redis_server import RedisServer


#: A typical client request, as the gateway makes it (the bus.md worked example).
REQUEST = Request(
    type="chat.send",
    data={"room": "general", "text": "hi", "client_id": "c-1"},
    gateway="gw-30d99e11",
    connection="gw-30d99e11.1",
    user="alice",
)
ENTRIES = 20_000
BATCH = 64


def _best_ns(work: Callable[[], object], number: int = 100_000) -> float:
    return min(timeit.repeat(work, number=number, repeat=5)) / number * 1e9


async def _xadd_us(redis: Redis, with_address: bool) -> float:
    """Microseconds per appended entry, in pipelines of BATCH, packing included."""
    await redis.delete("bench:requests")
    started = time.perf_counter()
    for _ in range(ENTRIES // BATCH):
        pipe = redis.pipeline(transaction=False)
        for _ in range(BATCH):
            fields: dict[FieldT, EncodableT] = {b"e": pack_bus(REQUEST.to_wire())}
            if with_address:
                fields[b"r"] = pack_bus(ReplyAddress.of(REQUEST).to_wire())
            pipe.xadd("bench:requests", fields, maxlen=100_000, approximate=True)
        await pipe.execute()
    return (time.perf_counter() - started) / (ENTRIES // BATCH * BATCH) * 1e6


async def _xadd_report(url: str) -> None:
    redis = Redis.from_url(url)
    try:
        for with_address in (False, True, False, True):  # interleaved: drift hits both
            label = "e and r" if with_address else "e only "
            each = await _xadd_us(redis, with_address)
            print(f"XADD ({label}), pipelines of {BATCH}: {each:.1f} us per entry")
        for with_address in (False, True):
            await _xadd_us(redis, with_address)
            used = await redis.memory_usage("bench:requests") or 0
            label = "e and r" if with_address else "e only "
            print(f"stream memory ({label}): {used / ENTRIES:.0f} bytes per entry")
    finally:
        await redis.aclose()


def main() -> None:
    body = pack_bus(REQUEST.to_wire())
    address = pack_bus(ReplyAddress.of(REQUEST).to_wire())
    print(f"e: {len(body)} bytes, r: {len(address)} bytes")
    pack_e = _best_ns(lambda: pack_bus(REQUEST.to_wire()))
    pack_r = _best_ns(lambda: pack_bus(ReplyAddress.of(REQUEST).to_wire()))
    print(f"pack e (Request.to_wire + msgpack): {pack_e:.0f} ns")
    print(f"pack r (ReplyAddress.of + to_wire + msgpack): {pack_r:.0f} ns")
    with RedisServer() as server:
        asyncio.run(_xadd_report(server.url))


if __name__ == "__main__":
    main()

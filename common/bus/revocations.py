"""Revocations on the bus: published once to every gateway, and kept while they last."""

from __future__ import annotations

import logging

from common.codec import load_bus, pack_bus
from common.envelope import now_ms
from common.errors import ErrorCode, ProtocolError
from common.keys import REVOCATIONS, REVOKED
from common.redis_client import RedisClient
from common.revocation import Revocation


__all__ = ["load_revocations", "publish_revocation"]

logger = logging.getLogger(__name__)

# One atomic step, so that a gateway that loads the set after subscribing misses nothing:
# keep the revocation, drop those that ended, expire the key with the last one, publish.
_PUBLISH = """
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if last[2] then redis.call('PEXPIREAT', KEYS[1], last[2]) end
return redis.call('PUBLISH', ARGV[4], ARGV[1])
"""


async def publish_revocation(redis: RedisClient, revocation: Revocation) -> int:
    """Keep ``revocation`` in Redis and tell every gateway; how many gateways heard it."""
    body = pack_bus(revocation.to_wire())
    heard = await redis.eval(_PUBLISH, 1, REVOKED, body, revocation.until, now_ms(), REVOCATIONS)
    return int(heard)


async def load_revocations(redis: RedisClient) -> list[Revocation]:
    """The revocations in force, as kept in Redis (undecodable entries are logged, skipped)."""
    members = await redis.zrangebyscore(REVOKED, now_ms(), "+inf")
    revocations = []
    for member in members:
        try:
            if not isinstance(member, bytes):
                raise ProtocolError(ErrorCode.BAD_REQUEST, "a revocation must be bytes")
            revocations.append(Revocation.from_wire(load_bus(member)))
        except ProtocolError as exc:
            logger.error("skipping an invalid revocation", extra={"error": exc.message})
    return revocations

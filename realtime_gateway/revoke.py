"""``python -m realtime_gateway.revoke USER | --jti ID [--for SECONDS]``: revoke on every gateway.

A user's revocation closes (4401, reason ``revoked``) every connection whose token was issued
before it and refuses those tokens; a ``jti``'s does the same for that one token. Both last
``--for`` seconds (default a day): make it at least the longest lifetime your issuer gives a
token. Reads ``RT_REDIS_URL`` (or ``RT_REDIS_URL_FILE``) like the gateways.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from common.bus.revocations import publish_revocation
from common.redis_client import connect_redis
from common.revocation import Revocation
from common.settings import BusSettings, Env


DEFAULT_LASTING = 86_400.0


async def _revoke(revocation: Revocation) -> int:
    redis = connect_redis(BusSettings.from_env(Env()), "revoke")
    try:
        return await publish_revocation(redis, revocation)
    finally:
        await redis.aclose()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m realtime_gateway.revoke")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("user", nargs="?", help="revoke the tokens of this user")
    target.add_argument("--jti", help="revoke the token with this id")
    parser.add_argument(
        "--for",
        dest="lasting",
        type=float,
        default=DEFAULT_LASTING,
        help="seconds the revocation lasts (default %(default)s)",
    )
    args = parser.parse_args(argv)
    if args.lasting <= 0:
        parser.error("--for must be positive")
    if args.jti is not None:
        revocation = Revocation.of_token(args.jti, lasting=args.lasting)
    else:
        revocation = Revocation.of_user(args.user, lasting=args.lasting)
    heard = asyncio.run(_revoke(revocation))
    print(f"revoked {revocation.key[0]} {revocation.key[1]!r}; {heard} gateway(s) heard it")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""``python -m presence_service``: the presence service on RT_PORT (default 8103)."""

from __future__ import annotations

import logging
import sys

from redis.asyncio import Redis

from common.errors import ConfigError
from common.service import run_service
from common.settings import Env
from presence_service.app import PresenceService
from presence_service.settings import PresenceSettings


DEFAULT_PORT = 8103

logger = logging.getLogger("presence_service")


def main() -> int:
    try:
        settings = PresenceSettings.from_env(Env())
    except ConfigError as exc:
        logging.basicConfig()
        logger.error("cannot start: %s", exc)
        return 2

    def factory(redis: Redis) -> PresenceService:
        return PresenceService(redis, settings)

    run_service("presence", DEFAULT_PORT, factory)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m bids_service``: consume ``svc:bids:requests``; health, metrics, admin on RT_PORT."""

from __future__ import annotations

import logging
import sys

from redis.asyncio import Redis

from bids_service.app import BidsService
from bids_service.metrics import BidsMetrics
from bids_service.settings import BidsSettings
from common.errors import ConfigError
from common.log import configure_logging
from common.service import run_service
from common.settings import Env, LogSettings


#: The HTTP port (health, metrics, admin API) unless RT_PORT says otherwise.
DEFAULT_PORT = 8102

logger = logging.getLogger("bids_service")


def main() -> int:
    env = Env()
    try:
        log = LogSettings.from_env(env)
        configure_logging(log.level, log.format)
        settings = BidsSettings.from_env(env)
    except ConfigError as exc:
        logger.error("cannot start: %s", exc)
        return 2
    metrics = BidsMetrics()

    def factory(redis: Redis) -> BidsService:
        return BidsService(redis, settings, metrics)

    run_service("bids", DEFAULT_PORT, factory)
    return 0


if __name__ == "__main__":
    sys.exit(main())

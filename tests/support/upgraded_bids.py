"""The bids service as a "next version" would be: ``python -m tests.support.upgraded_bids``.

The real bids service (its settings, scripts, handlers and admin API), except that every
successful answer to a client's ``bids.*`` request carries one more field, ``"v2": true``:
what a new version that adds an optional reply field looks like on the bus. Run beside
``python -m bids_service`` on the same stream and consumer group, it is one side of a rolling
upgrade (tests/e2e/test_rolling_upgrade.py).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable

from bids_service.app import BidsService
from bids_service.metrics import BidsMetrics
from bids_service.rules import OFFER
from bids_service.settings import DEFAULT_PORT, BidsSettings
from common.bus.worker import Outcome
from common.envelope import Reply, Request
from common.keys import Partitions
from common.redis_client import RedisClient
from common.service import service_main


__all__ = ["NEW_FIELD", "UpgradedBids", "main"]

#: The field the new version adds to its replies' data.
NEW_FIELD = "v2"


class UpgradedBids(BidsService):
    async def handle_batch(self, requests: list[Request]) -> list[Outcome]:
        outcomes = await super().handle_batch(requests)
        return [
            _with_new_field(outcome) if request.type.startswith("bids.") else outcome
            for request, outcome in zip(requests, outcomes, strict=True)
        ]


def _with_new_field(outcome: Outcome) -> Outcome:
    if isinstance(outcome, dict):
        return {**outcome, NEW_FIELD: True}
    if isinstance(outcome, Reply) and outcome.data is not None:
        return dataclasses.replace(outcome, data={**outcome.data, NEW_FIELD: True})
    return outcome  # A refusal: unchanged.


def _factory(settings: BidsSettings) -> Callable[[RedisClient, Partitions], BidsService]:
    # As bids_service.app.service_factory: the metrics once per process.
    metrics = BidsMetrics()

    def factory(redis: RedisClient, partitions: Partitions) -> BidsService:
        return UpgradedBids(redis, partitions, settings, metrics)

    return factory


def main() -> int:
    return service_main("bids", DEFAULT_PORT, BidsSettings.from_env, _factory, OFFER)


if __name__ == "__main__":
    sys.exit(main())

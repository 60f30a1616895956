"""``python -m bids_service``: the bids service and its admin API, settings from the environment."""

from __future__ import annotations

import sys

from bids_service.app import service_factory
from bids_service.rules import OFFER
from bids_service.settings import DEFAULT_PORT, BidsSettings
from common.service import service_main


if __name__ == "__main__":
    sys.exit(service_main("bids", DEFAULT_PORT, BidsSettings.from_env, service_factory, OFFER))

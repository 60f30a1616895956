"""``python -m presence_service``: the presence service, with the settings in the environment."""

from __future__ import annotations

import sys

from common.service import service_main
from presence_service.app import service_factory
from presence_service.rules import OFFER
from presence_service.settings import DEFAULT_PORT, PresenceSettings


if __name__ == "__main__":
    sys.exit(
        service_main("presence", DEFAULT_PORT, PresenceSettings.from_env, service_factory, OFFER)
    )

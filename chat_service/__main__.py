"""``python -m chat_service``: the chat service, with the settings in the environment."""

from __future__ import annotations

import sys

from chat_service.app import service_factory
from chat_service.rules import OFFER
from chat_service.settings import DEFAULT_PORT, ChatSettings
from common.service import service_main


if __name__ == "__main__":
    sys.exit(service_main("chat", DEFAULT_PORT, ChatSettings.from_env, service_factory, OFFER))

"""``python -m chat_service``: the chat service, with the settings in the environment."""

from __future__ import annotations

import sys

from chat_service.app import chat_factory
from chat_service.settings import DEFAULT_PORT, ChatSettings
from common.errors import ConfigError
from common.service import run_service
from common.settings import Env


def main() -> int:
    try:
        settings = ChatSettings.from_env(Env())
    except ConfigError as exc:
        print(f"chat_service: cannot start: {exc}", file=sys.stderr)
        return 2
    run_service("chat", DEFAULT_PORT, chat_factory(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())

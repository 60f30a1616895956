"""``python -m realtime_gateway.token USER [TTL]``: print a token for USER (development)."""

from __future__ import annotations

import sys

from common.auth import issue_token
from common.errors import ConfigError
from common.settings import Env


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2):
        print("usage: python -m realtime_gateway.token USER [TTL_SECONDS]", file=sys.stderr)
        return 2
    secret = Env().secret("JWT_SECRET")
    if secret is None:
        raise ConfigError(
            "set RT_JWT_SECRET or RT_JWT_SECRET_FILE (scripts/run writes .dev/jwt-secret)"
        )
    ttl = float(argv[1]) if len(argv) == 2 else 3600.0
    print(issue_token(secret, argv[0], ttl))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

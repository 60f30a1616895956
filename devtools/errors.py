"""The exceptions of the tooling, in a module of their own so that every module can raise them.

The tree::

    RuntimeError
    ├── RedisServerError               a server cannot be found, started or reached
    │   ├── RedisNotFoundError         no usable server binary is installed
    │   └── RedisStartError            a private server did not come up
    └── common.redis_client.RedisVersionError   the server is older than Redis 7

``RedisVersionError`` is production's own (processes refuse an old server at start-up); it is
re-exported here so that a caller catches the tooling's errors from one place.
"""

from __future__ import annotations

from common.redis_client import RedisVersionError


__all__ = ["RedisNotFoundError", "RedisServerError", "RedisStartError", "RedisVersionError"]


class RedisServerError(RuntimeError):
    """A Redis server could not be found, started, reached, or is unsuitable."""


class RedisNotFoundError(RedisServerError):
    """No usable server binary is installed."""


class RedisStartError(RedisServerError):
    """A private server did not come up."""

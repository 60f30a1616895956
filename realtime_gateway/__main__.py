"""``python -m realtime_gateway``: serve the gateway with the settings in the environment."""

from __future__ import annotations

import logging
import math
import sys

import uvicorn

from common.errors import ConfigError
from common.log import configure_logging
from common.server import GracefulServer
from common.settings import Env, LogSettings
from common.variables import warn_unknown
from realtime_gateway.app import create_app
from realtime_gateway.settings import GatewaySettings
from realtime_gateway.wsproto import GatewayWebSocketProtocol


logger = logging.getLogger("realtime_gateway")


def main() -> int:
    env = Env()
    try:
        log = LogSettings.from_env(env)
    except ConfigError as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        return 2
    configure_logging(log.level, log.format)
    warn_unknown(env.variables())
    try:
        settings = GatewaySettings.from_env(env)
        app = create_app(settings)
    except ConfigError as exc:
        logger.error("cannot start: %s", exc)
        return 2
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        # Named explicitly: "auto" picks websockets' deprecated legacy implementation, and
        # the gateway's fan-out relies on its own subclass of the sans-I/O one.
        ws=GatewayWebSocketProtocol,
        ws_max_size=settings.max_message_bytes,
        ws_ping_interval=settings.ping_interval,
        ws_ping_timeout=settings.ping_timeout,
        # Off: one event is one frame for every subscriber only without compression.
        ws_per_message_deflate=False,
        loop="uvloop",
        # httptools with a bounded request head and edge accounting (realtime_gateway/edge.py).
        http=app.edge.http_protocol(),
        lifespan="on",
        backlog=4096,
        # uvicorn takes whole seconds, and 0 would mean no limit at all.
        timeout_graceful_shutdown=max(1, math.ceil(settings.shutdown_grace)),
        log_config=None,
        access_log=False,
        server_header=False,
        # Off: X-Forwarded-For from 127.0.0.1 would otherwise rewrite the ASGI client address.
        # The gateway's limits count the TCP peer (edge.py), and nothing else may trust a header.
        proxy_headers=False,
        # wss:// and https:// only, when a certificate is configured.
        ssl_certfile=settings.tls.cert_file if settings.tls else None,
        ssl_keyfile=settings.tls.key_file if settings.tls else None,
    )
    GracefulServer(config).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())

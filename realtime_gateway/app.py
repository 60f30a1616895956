"""The gateway as an ASGI app: ``create_app`` plus a lifespan that owns every resource."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from common.auth import issue_token
from common.bus.listener import Listener
from common.envelope import now_ms
from common.errors import CloseCode
from common.health import health_routes, redis_answers
from common.keys import GATEWAY_LEASES
from common.log import connection_id
from common.redis_client import RedisClient, check_redis_at_start, connect_redis
from common.tasks import cancel_and_wait, raise_if_cancelled
from realtime_gateway.connection import Connection
from realtime_gateway.edge import Edge
from realtime_gateway.gateway import Gateway
from realtime_gateway.keystore import KeyStore
from realtime_gateway.metrics import GatewayMetrics
from realtime_gateway.revoker import Revoker
from realtime_gateway.settings import GatewaySettings
from realtime_gateway.wiring import build_gateway
from realtime_gateway.wsproto import (
    OUTBOX_EXTENSION,
    GatewayWebSocketProtocol,
    Outbox,
    WriteBatcher,
)


__all__ = ["GatewayApp", "create_app"]

logger = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
#: The modules of the browser client (clients/js/, linked into the package so that wheels carry
#: them): realtime.js is the entry point and imports the others relatively.
CLIENT_MODULES = (
    "realtime",
    "client",
    "channels",
    "requests",
    "subscription",
    "emitter",
    "errors",
    "positions",
    "tokens",
    "keepalive",
    "backoff",
    "types",
)
#: What ``/client/<file>`` serves: each module and its generated types.
CLIENT_FILES = {
    **{f"{module}.js": "application/javascript" for module in CLIENT_MODULES},
    **{f"{module}.d.ts": "application/typescript" for module in CLIENT_MODULES},
}
#: The browser demo (plain HTML, CSS and ES modules): ``/`` is its page, ``/demo/<file>`` the rest.
DEMO = STATIC / "demo"
#: What the demo folder may serve, by suffix; any other file is a 404.
DEMO_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}
_DEMO_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*\.[a-z0-9]+")
_DEV_USER = re.compile(r"[A-Za-z0-9_.@-]{1,64}")


class GatewayApp:
    """Routes ``/ws`` straight to the WebSocket handler and everything else to Starlette."""

    def __init__(self, settings: GatewaySettings) -> None:
        """Raises: ConfigError: the token keys cannot be loaded."""
        self.settings = settings
        self.metrics = GatewayMetrics()
        self.keys = KeyStore(settings.tokens)
        self.edge = Edge(settings, self.metrics)
        self.gateway: Gateway | None = None
        self._redis: RedisClient | None = None
        self._debug = False
        routes = [
            *health_routes(self._ready),
            Route("/", self._index),
            Route("/client/{name}", self._client_file),
            Route("/demo/{name}", self._demo_file),
        ]
        if settings.dev:
            routes.append(Route("/dev/token", self._dev_token))
        self.http = Starlette(routes=routes, lifespan=self._lifespan)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            if scope["path"] == "/ws":
                await self._websocket(scope, receive, send)
            else:
                await receive()
                await send({"type": "websocket.close", "code": 1008})
            return
        await self.http(scope, receive, send)

    # Resources.

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        settings = self.settings
        redis = connect_redis(settings.bus, settings.gateway_id)
        bus = connect_redis(settings.bus, settings.gateway_id, retry=False)
        await check_redis_at_start(redis)
        gateway = self.gateway = build_gateway(
            settings, self.metrics, self.edge, self.keys, redis=redis, bus=bus
        )
        listener, revoker, router = gateway.listener, gateway.revoker, gateway.router
        self._batcher = WriteBatcher(asyncio.get_running_loop(), self.metrics.outbox_dropped.inc)
        self._redis = redis
        tasks = [
            asyncio.create_task(listener.run(), name="bus-listener"),
            asyncio.create_task(self._renew_lease(redis), name="gateway-lease"),
            asyncio.create_task(self._first_sync(listener, revoker, redis), name="revocations"),
            asyncio.create_task(gateway.registry_reader.run(), name="registry"),
        ]
        if self.keys.watches_files:
            tasks.append(asyncio.create_task(self.keys.watch(), name="token-keys"))
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self._reload_keys)
        # Read once, after logging is configured: the per-connection lines are a hot path.
        self._debug = logger.isEnabledFor(logging.DEBUG)
        web = "https" if settings.tls else "http"
        address = f"{settings.host}:{settings.port}"
        logger.info(
            "gateway started: clients on %s://%s/ws, health and metrics on %s://%s"
            " (/livez /readyz /metrics)",
            "wss" if settings.tls else "ws",
            address,
            web,
            address,
            extra={"gateway": settings.gateway_id, "redis": settings.bus.redis_target},
        )
        try:
            yield
        finally:
            loop.remove_signal_handler(signal.SIGHUP)
            gateway.accepting = False
            # The producer first: connections closed during shutdown still tell presence.
            await router.aclose()
            await cancel_and_wait(tasks)
            await bus.aclose()
            await redis.aclose()
            logger.info("gateway stopped", extra={"gateway": settings.gateway_id})

    @staticmethod
    async def _first_sync(listener: Listener, revoker: Revoker, redis: RedisClient) -> None:
        # Subscribed first: a revocation published after the load is then heard.
        await listener.wait_connected()
        await revoker.sync(redis)

    def _reload_keys(self) -> None:
        logger.info("SIGHUP: reloading the token keys")
        self.keys.reload(force=True)

    async def _renew_lease(self, redis: RedisClient) -> None:
        """Keep this gateway's lease alive; the presence service drops what a dead one held."""
        settings = self.settings
        ttl_ms = int(settings.lease_ttl * 1000)
        while True:
            raise_if_cancelled()
            try:
                await redis.zadd(GATEWAY_LEASES, {settings.gateway_id: now_ms() + ttl_ms})
            except (RedisError, OSError) as exc:
                logger.warning("could not renew the gateway lease", extra={"error": repr(exc)})
                await asyncio.sleep(min(1.0, settings.lease_ttl / 6))
                continue
            await asyncio.sleep(settings.lease_ttl / 3)

    async def _ready(self) -> bool:
        gateway, redis = self.gateway, self._redis
        if gateway is None or redis is None or not gateway.listener.connected:
            return False
        if not gateway.revoker.loaded or not gateway.registry.loaded:
            return False
        return await redis_answers(redis)

    # HTTP.

    async def _index(self, request: Request) -> Response:
        # The page learns the mode from its markup, so that it never probes /dev/token (a
        # 404 there would be an error in the browser's console).
        page = (DEMO / "index.html").read_text(encoding="utf-8")
        mode = "dev" if self.settings.dev else "token"
        return HTMLResponse(page.replace('data-mode="token"', f'data-mode="{mode}"', 1))

    async def _demo_file(self, request: Request) -> Response:
        """One file of the demo folder: a plain name (no slash, no dot first), a known type."""
        name: str = request.path_params["name"]
        media_type = DEMO_TYPES.get(Path(name).suffix)
        path = DEMO / name
        if media_type is None or not _DEMO_NAME.fullmatch(name) or not path.is_file():
            return Response("not found\n", status_code=404, media_type="text/plain")
        return FileResponse(path, media_type=media_type, headers={"Cache-Control": "no-cache"})

    async def _client_file(self, request: Request) -> Response:
        name = request.path_params["name"]
        media_type = CLIENT_FILES.get(name)
        if media_type is None:
            return Response("not found", status_code=404, media_type="text/plain")
        return FileResponse(STATIC / "client" / name, media_type=media_type)

    async def _dev_token(self, request: Request) -> Response:
        user = request.query_params.get("user", "")
        if not _DEV_USER.fullmatch(user):
            return JSONResponse(
                {"error": "give ?user= with 1-64 letters, digits or _.@-"}, status_code=400
            )
        # Dev mode always has a secret (a random one when none is configured).
        secret = self.settings.tokens.secret
        assert secret is not None
        return JSONResponse({"token": issue_token(secret, user)})

    # WebSocket.

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        await receive()  # websocket.connect
        extension: dict[str, Any] | None = scope.get("extensions", {}).get(OUTBOX_EXTENSION)
        gateway = self.gateway
        if extension is None or gateway is None:
            logger.error("the gateway must run on its own uvicorn protocol (python -m ...)")
            await send({"type": "websocket.close", "code": 1011})
            return
        if not self.edge.origin_allowed(scope):
            # Before the accept: uvicorn answers the upgrade with HTTP 403.
            await send({"type": "websocket.close", "code": CloseCode.POLICY_VIOLATION})
            return
        await send({"type": "websocket.accept"})
        protocol: GatewayWebSocketProtocol = extension["protocol"]
        settings = gateway.settings
        protocol.close_timeout = settings.close_timeout
        outbox = Outbox(
            protocol,
            self._batcher,
            max_messages=settings.outbox_max_messages,
            max_bytes=settings.outbox_max_bytes,
        )
        connection = Connection(gateway, outbox, protocol.edge_ticket)
        token = connection_id.set(connection.id)
        gateway.connections[connection.id] = connection
        self.metrics.connections.inc()
        if self._debug:
            logger.debug("connection opened")
        try:
            if len(gateway.connections) > settings.max_connections or not gateway.accepting:
                connection.close(CloseCode.TRY_AGAIN_LATER, "gateway full")
            else:
                bearer = _bearer_token(scope)
                protocol.forget_handshake()
                connection.open(bearer)
            close_code: int | None = None
            while True:
                message = await receive()
                if message["type"] != "websocket.receive":
                    close_code = message.get("code")
                    break
                text = message.get("text")
                if text is not None:
                    await connection.receive_text(text)
                else:
                    connection.receive_binary()
        finally:
            connection.finish(close_code)
            if protocol.server_close_code is not None:
                self.metrics.closes(str(protocol.server_close_code)).inc()
            del gateway.connections[connection.id]
            self.metrics.connections.dec()
            if self._debug:
                by_server = protocol.server_close_code is not None
                logger.debug(
                    "connection closed",
                    extra={
                        "code": protocol.server_close_code if by_server else close_code,
                        "by": "server" if by_server else "client",
                        "user": connection.user,
                    },
                )
            connection_id.reset(token)


def _bearer_token(scope: Scope) -> str | None:
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    for name, value in headers:
        if name == b"authorization":
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                return credentials.strip()
    return None


def create_app(settings: GatewaySettings) -> GatewayApp:
    return GatewayApp(settings)

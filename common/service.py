"""Running a service process: the bus worker plus health and metrics over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import sys
from collections.abc import AsyncIterator, Callable
from typing import TypedDict, TypeVar

import uvicorn
from prometheus_client import Counter, Gauge
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.routing import BaseRoute

from common.announcer import AnnouncementRefused, Announcer
from common.bus.worker import Backlog, BatchHandler, Outcome, ServiceWorker
from common.envelope import Request
from common.errors import ConfigError
from common.health import health_routes, redis_answers
from common.keys import Partitions
from common.log import configure_logging
from common.metrics import LoopCounter, LoopHistogram
from common.redis_client import RedisClient, check_redis_at_start, connect_redis
from common.registry import Offer
from common.server import GracefulServer
from common.settings import Env, LogSettings, ServiceSettings
from common.tasks import cancel_and_wait
from common.variables import warn_unknown


__all__ = [
    "STARTUP_FAILURE",
    "Service",
    "ServiceMetrics",
    "create_service_app",
    "run_service",
    "service_main",
]

logger = logging.getLogger(__name__)


class Service:
    """A service's behaviour on the bus; subclasses override what they need.

    :meth:`handle_batch` answers the requests of each read of the stream together (the
    gateway's ``subscribe`` among them). ``routes`` adds HTTP routes (an admin API) beside
    health and metrics, and ``background`` runs for the life of the process (timers,
    sweepers).
    """

    async def setup(self) -> None:
        """Prepare before the first request (load Lua scripts, seed data)."""

    async def handle_batch(self, requests: list[Request]) -> list[Outcome]:
        """One outcome per request, in order (see :data:`common.bus.worker.BatchHandler`)."""
        raise NotImplementedError

    def routes(self) -> list[BaseRoute]:
        return []

    async def background(self) -> None:
        """Run until cancelled; the default has nothing to do."""


#: Builds a service (or a bare batch handler) once Redis is connected, given the service's
#: partitions (``RT_<SERVICE>_PARTITIONS``), which its keys and events are split into.
ServiceFactory = Callable[[RedisClient, Partitions], "Service | BatchHandler"]


class ServiceMetrics:
    """Prometheus metrics of a service's bus worker."""

    def __init__(self, service: str) -> None:
        # Counted per request: lock-free (common/metrics.py).
        self._requests = LoopCounter(
            "rt_service_requests",
            "Requests handled, by type and result (ok or an error code).",
            ["service", "type", "result"],
        )
        self._latency = LoopHistogram(
            "rt_service_request_seconds",
            "Time to handle one request.",
            ["service", "type"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        )
        # Sampled by each instance once per claim pass (every instance reports the same
        # stream, hence max by service in the queries).
        self._length = Gauge(
            "rt_service_stream_length", "Entries in the request stream (XLEN).", ["service"]
        )
        self._pending = Gauge(
            "rt_service_stream_pending", "Entries delivered but not acknowledged.", ["service"]
        )
        self._lag = Gauge(
            "rt_service_stream_lag",
            "Entries in the stream not yet delivered (-1 when Redis cannot tell).",
            ["service"],
        )
        self._consumers = Gauge(
            "rt_service_stream_consumers",
            "Consumers of the service's group seen within the claim idle time.",
            ["service"],
        )
        self._bus_errors = Counter("rt_bus_errors", "Redis failures on the bus.", ["process"])
        self._service = service

    def handled(self, request_type: str, result: str, seconds: float) -> None:
        # Types come from clients: only those a handler knew become label values.
        if result in ("unknown_type", "dropped") or len(request_type) > 64:
            request_type = "other"
        self._requests(self._service, request_type, result).inc()
        self._latency(self._service, request_type).observe(seconds)

    def backlog(self, backlog: Backlog) -> None:
        self._length.labels(self._service).set(backlog.length)
        self._pending.labels(self._service).set(backlog.pending)
        self._lag.labels(self._service).set(-1 if backlog.lag is None else backlog.lag)
        self._consumers.labels(self._service).set(backlog.consumers)

    def bus_error(self) -> None:
        self._bus_errors.labels(self._service).inc()


class _State(TypedDict):
    redis: RedisClient
    worker: ServiceWorker


#: The exit status of a service that could not start (uvicorn's own for a failed start-up).
STARTUP_FAILURE = 3


def create_service_app(
    settings: ServiceSettings,
    make_service: ServiceFactory,
    offer: Offer,
    *,
    on_fatal: Callable[[], None] = lambda: None,
) -> Starlette:
    """A service process as an ASGI app: its lifespan owns Redis, the bus worker and the
    announcement of ``offer`` in the namespace registry.

    The worker reads the stream only once the service is announced. When the registry
    refuses the announcement (another service owns one of its namespaces), the error is
    logged and ``on_fatal`` called (:func:`run_service` then stops the server and exits with
    :data:`STARTUP_FAILURE`); the service never reads a request. When Redis does not answer
    at start, the announcement is retried until it does, the service unready meanwhile.
    """
    metrics = ServiceMetrics(settings.service)
    # Gateways route by what is announced: the partitions, with the service's own entities.
    offer = dataclasses.replace(offer, partitions=settings.partitions)
    worker_box: list[ServiceWorker] = []
    redis_box: list[RedisClient] = []

    def refused(exc: AnnouncementRefused) -> None:
        logger.error(
            "cannot start: the namespace registry refused the announcement: %s",
            exc,
            extra={"service": settings.service, "namespaces": offer.namespace_names},
        )

    async def announce_then_serve(
        worker: ServiceWorker, announcer: Announcer, announced: bool
    ) -> None:
        if not announced:
            try:
                await announcer.first()
            except AnnouncementRefused as exc:
                refused(exc)
                on_fatal()
                return
        async with asyncio.TaskGroup() as group:
            group.create_task(worker.run(), name=f"{settings.service}-worker")
            group.create_task(announcer.run(), name=f"{settings.service}-announcer")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[_State]:
        redis = connect_redis(settings.bus, f"{settings.service}-{settings.instance}")
        await check_redis_at_start(redis)
        announcer = Announcer(redis, offer, settings.instance, ttl=settings.registry_ttl)
        made = make_service(redis, Partitions(settings.service, settings.partitions))
        service = made if isinstance(made, Service) else _HandlerService(made)
        await service.setup()
        app.router.routes.extend(service.routes())
        worker = ServiceWorker(redis, settings, service.handle_batch, metrics)
        try:
            # Ready to serve: a gateway routes to the service as soon as it reads this.
            await announcer.announce()
            announced = True
        except AnnouncementRefused as exc:
            # No traceback (uvicorn would print one for an exception here): the line above
            # says it all, and the process ends with STARTUP_FAILURE, never having served.
            refused(exc)
            on_fatal()
            try:
                yield {"redis": redis, "worker": worker}
            finally:
                await redis.aclose()
            return
        except (RedisError, OSError) as exc:
            logger.warning(
                "could not announce the service yet; retrying",
                extra={"service": settings.service, "error": repr(exc)},
            )
            announced = False
        redis_box.append(redis)
        worker_box.append(worker)
        tasks = [
            asyncio.create_task(
                announce_then_serve(worker, announcer, announced),
                name=f"{settings.service}-bus",
            ),
            asyncio.create_task(service.background(), name=f"{settings.service}-background"),
        ]
        logger.info(
            "service started: health and metrics on http://%s:%d (/livez /readyz /metrics)",
            settings.host,
            settings.port,
            extra={
                "service": settings.service,
                "consumer": worker.consumer,
                "streams": ",".join(worker.streams),
                "group": worker.group,
                "redis": settings.bus.redis_target,
            },
        )
        try:
            yield {"redis": redis, "worker": worker}
        finally:
            await cancel_and_wait(tasks)
            await redis.aclose()

    async def ready() -> bool:
        if not worker_box:
            return False
        return worker_box[0].alive and await redis_answers(redis_box[0])

    return Starlette(routes=health_routes(ready), lifespan=lifespan)


class _HandlerService(Service):
    def __init__(self, handler: BatchHandler) -> None:
        self._handler = handler

    async def handle_batch(self, requests: list[Request]) -> list[Outcome]:
        return await self._handler(requests)


def run_service(service: str, default_port: int, make_service: ServiceFactory, offer: Offer) -> int:
    """The ``__main__`` of a service: read settings, announce ``offer``, serve health,
    consume requests. Returns the exit status: :data:`STARTUP_FAILURE` when it could not
    start (the registry refused the announcement, Redis was unreachable), else 0."""
    env = Env()
    log = LogSettings.from_env(env)
    configure_logging(log.level, log.format)
    warn_unknown(env.variables())
    settings = ServiceSettings.from_env(service, default_port, env)
    failed: list[bool] = []

    def fatal() -> None:
        failed.append(True)
        server.should_exit = True

    app = create_service_app(settings, make_service, offer, on_fatal=fatal)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        lifespan="on",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    server = GracefulServer(config)
    server.run()
    return 0 if server.started and not failed else STARTUP_FAILURE


_Settings = TypeVar("_Settings")


def service_main(
    service: str,
    default_port: int,
    read_settings: Callable[[Env], _Settings],
    make_factory: Callable[[_Settings], ServiceFactory],
    offer: Offer,
) -> int:
    """The ``__main__`` of a service package: its own settings, then :func:`run_service`.

    Returns the exit status: 2, with the reason on stderr, when a setting is invalid, and
    that of :func:`run_service` otherwise.
    """
    try:
        settings = read_settings(Env())
    except ConfigError as exc:
        print(f"{service}_service: cannot start: {exc}", file=sys.stderr)
        return 2
    return run_service(service, default_port, make_factory(settings), offer)

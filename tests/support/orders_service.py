"""A service the gateway was never told of, for the registry's tests: ``python -m
tests.support.orders_service [--service orders]``.

It runs through :func:`common.service.run_service` (common's worker and
:class:`~common.announcer.Announcer`) and announces the namespace ``orders`` (owner access,
with history) and one request type, ``<service>.get`` with the field ``order``, which it
answers ``{"order": <order>, "status": "open", "by": <service>}``. A ``subscribe`` to
``orders:<id>`` is answered with the position ``"7-0"``, so that a test can tell who
answered it. Started as another service (``--service rival``) it claims the same namespace,
and the registry refuses it.
"""

from __future__ import annotations

import argparse
import sys
from types import MappingProxyType

from common.bus.worker import BatchHandler, Outcome
from common.envelope import Request
from common.errors import ErrorCode, ServiceError
from common.keys import Partitions
from common.namespaces import Access, Namespace
from common.redis_client import RedisClient
from common.registry import Offer
from common.requests import check_fields
from common.service import run_service


__all__ = ["NAMESPACE", "POSITION", "main", "offer"]

NAMESPACE = "orders"
#: The position of every answer to a subscribe.
POSITION = "7-0"


def offer(service: str) -> Offer:
    """What the service named ``service`` announces: ``<service>.get`` and ``orders:``."""
    requests = MappingProxyType({f"{service}.get": frozenset({"order"})})
    namespace = Namespace(NAMESPACE, service, Access.OWNER, history=True)
    return Offer(service, requests, (namespace,))


def _handler(service: str) -> BatchHandler:
    announced = offer(service)

    async def handle(requests: list[Request]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for request in requests:
            try:
                check_fields(announced.requests, request.type, request.data)
                if request.type == "subscribe":
                    outcomes.append({"position": POSITION})
                elif request.type == f"{service}.get":
                    order = request.data.get("order")
                    outcomes.append({"order": order, "status": "open", "by": service})
                else:
                    raise ServiceError(ErrorCode.UNKNOWN_TYPE, f"no {request.type!r} here")
            except ServiceError as exc:
                outcomes.append(exc)
        return outcomes

    return handle


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--service", default="orders")
    service = parser.parse_args().service

    def factory(redis: RedisClient, partitions: Partitions) -> BatchHandler:
        return _handler(service)

    return run_service(service, 0, factory, offer(service))


if __name__ == "__main__":
    sys.exit(main())

"""The admin HTTP API on the service's port: ``POST /auctions`` and ``GET /auctions/<id>``.

Every request needs ``Authorization: Bearer <RT_BIDS_ADMIN_TOKEN>``, compared in constant
time; with no token configured the API refuses everything (deny by default). Errors are JSON:
``{"error": {"code", "message", "field"?}}``.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from typing import Any

from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bids_service.rules import parse_auction_id, parse_auction_spec
from bids_service.settings import BidsSettings
from bids_service.store import BidStore
from common.codec import dump_client, load_client
from common.errors import ErrorCode, ProtocolError, ServiceError
from common.settings import Secret


__all__ = ["MAX_BODY_BYTES", "admin_routes"]

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024


def _json(value: dict[str, Any], status: int = 200, **headers: str) -> Response:
    return Response(dump_client(value), status, headers, media_type="application/json")


def _error(status: int, code: str, message: str, **details: Any) -> Response:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    return _json({"error": {**details, "code": code, "message": message}}, status, **headers)


def _refusal(request: Request, token: Secret | None) -> Response | None:
    """Why the request may not use the admin API, or None when it may."""
    if token is None:
        return _error(
            403, ErrorCode.FORBIDDEN, "the admin API is disabled: set RT_BIDS_ADMIN_TOKEN"
        )
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    expected = token.reveal().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
        return _error(401, ErrorCode.UNAUTHENTICATED, "give 'Authorization: Bearer <admin token>'")
    return None


async def _body(request: Request) -> dict[str, Any]:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ServiceError("too_large", f"the body must be at most {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    try:
        return load_client(b"".join(chunks))
    except ProtocolError as exc:
        message = f"the body must be a JSON object ({exc})"
        raise ServiceError(ErrorCode.BAD_REQUEST, message) from None


def admin_routes(store: BidStore, settings: BidsSettings) -> list[Route]:
    token = settings.admin_token

    async def create(request: Request) -> Response:
        refused = _refusal(request, token)
        if refused is not None:
            return refused
        try:
            body = await _body(request)
            spec = parse_auction_spec(
                body, extend_window=settings.extend_window, extend_by=settings.extend_by
            )
        except ServiceError as exc:
            status = 413 if exc.code == "too_large" else 400
            return _error(status, exc.code, exc.message, **exc.details)
        auction = spec.id or "a-" + secrets.token_hex(5)
        try:
            created = await store.create(auction, spec)
            view = await store.get(auction) if isinstance(created, int) else None
        except (RedisError, OSError) as exc:
            logger.warning("admin API: Redis unavailable", extra={"error": repr(exc)})
            return _error(503, ErrorCode.SERVICE_UNAVAILABLE, "Redis is unavailable; retry")
        if created == "exists":
            return _error(409, "conflict", f"auction {auction!r} already exists", field="id")
        if created == "ends_in_past":
            return _error(
                400, ErrorCode.BAD_REQUEST, "'ends_at' must be in the future", field="ends_at"
            )
        if view is None:  # deleted by hand in between: nothing else deletes auctions
            return _error(404, ErrorCode.AUCTION_NOT_FOUND, f"no auction {auction!r}")
        logger.info("auction created", extra={"auction": auction, "ends_at": view["ends_at"]})
        return _json(view, 201, Location=f"/auctions/{auction}")

    async def get(request: Request) -> Response:
        refused = _refusal(request, token)
        if refused is not None:
            return refused
        try:
            auction = parse_auction_id(request.path_params["auction"])
            view = await store.get(auction)
        except ServiceError as exc:
            return _error(404, ErrorCode.AUCTION_NOT_FOUND, exc.message)
        except (RedisError, OSError):
            return _error(503, ErrorCode.SERVICE_UNAVAILABLE, "Redis is unavailable; retry")
        if view is None:
            return _error(404, ErrorCode.AUCTION_NOT_FOUND, f"no auction {auction!r}")
        return _json(view)

    return [
        Route("/auctions", create, methods=["POST"]),
        Route("/auctions/{auction}", get, methods=["GET"]),
    ]

"""The admin HTTP API on the service's port: ``POST /auctions`` and ``GET /auctions/<id>``.

Every request needs ``Authorization: Bearer <RT_BIDS_ADMIN_TOKEN>``, compared in constant
time; with no token configured the API refuses everything (deny by default). Bodies are at
most :data:`MAX_BODY_BYTES`, strict JSON (no duplicate keys, no NaN) checked against the
auction schema (rules.parse_auction_spec). Every request that may change state gets one
audit line (logger ``bids_service.audit``): who (peer address, the ``X-Admin-Actor`` the
caller names), what, and the outcome; never the token. Errors are JSON:
``{"error": {"code", "message", "field"?}}``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
from typing import Any

from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bids_service.rules import parse_auction_id, parse_auction_spec
from bids_service.settings import BidsSettings
from bids_service.store import BidStore
from common.codec import dump_client
from common.errors import ErrorCode, ServiceError
from common.settings import Secret


__all__ = ["MAX_BODY_BYTES", "admin_routes", "token_matches"]

logger = logging.getLogger(__name__)
audit = logging.getLogger("bids_service.audit")

MAX_BODY_BYTES = 16 * 1024
#: What the audit line keeps of ``X-Admin-Actor``: a name, never free text for the log.
_ACTOR = re.compile(r"[A-Za-z0-9_.@:+-]{1,64}")


def _json(value: dict[str, Any], status: int = 200, **headers: str) -> Response:
    return Response(dump_client(value), status, headers, media_type="application/json")


def _error(status: int, code: str, message: str, **details: Any) -> Response:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    return _json({"error": {**details, "code": code, "message": message}}, status, **headers)


def token_matches(given: str, expected: Secret) -> bool:
    """Whether ``given`` is the admin token, in time that depends on neither value.

    Both sides are hashed first, so that hmac.compare_digest compares equal lengths and not
    even the token's length leaks.
    """
    given_digest = hashlib.sha256(given.encode()).digest()
    expected_digest = hashlib.sha256(expected.reveal().encode()).digest()
    return hmac.compare_digest(given_digest, expected_digest)


def _refusal(request: Request, token: Secret | None) -> Response | None:
    """Why the request may not use the admin API, or None when it may."""
    if token is None:
        return _error(
            403, ErrorCode.FORBIDDEN, "the admin API is disabled: set RT_BIDS_ADMIN_TOKEN"
        )
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token_matches(given.strip(), token):
        return _error(401, ErrorCode.UNAUTHENTICATED, "give 'Authorization: Bearer <admin token>'")
    return None


def _too_large() -> ServiceError:
    return ServiceError("too_large", f"the body must be at most {MAX_BODY_BYTES} bytes")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Python's json keeps the last of two equal keys, and other parsers the first: refuse.
    body: dict[str, Any] = {}
    for key, value in pairs:
        if key in body:
            raise ServiceError(ErrorCode.BAD_REQUEST, f"field {key!r} is given twice", field=key)
        body[key] = value
    return body


def _no_constant(name: str) -> Any:
    raise ServiceError(ErrorCode.BAD_REQUEST, f"{name} is not a number JSON allows")


def parse_body(raw: bytes) -> dict[str, Any]:
    """A request body as a JSON object, strictly: UTF-8, no duplicate keys, no NaN/Infinity.

    Raises:
        ServiceError: ``bad_request`` saying what is wrong.
    """
    try:
        body = json.loads(raw, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        message = f"the body must be a JSON object (malformed JSON: {exc})"
        raise ServiceError(ErrorCode.BAD_REQUEST, message) from None
    if not isinstance(body, dict):
        raise ServiceError(ErrorCode.BAD_REQUEST, "the body must be a JSON object")
    return body


async def _body(request: Request) -> dict[str, Any]:
    # A declared length over the limit is refused before a byte is read; the count while
    # reading catches a body without one (chunked) or longer than it said.
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _too_large()
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _too_large()
        chunks.append(chunk)
    return parse_body(b"".join(chunks))


def _audit(request: Request, action: str, status: int, **what: Any) -> None:
    """One line per state-changing request: who asked, what, and what came of it."""
    peer = request.client
    actor = request.headers.get("x-admin-actor")
    audit.info(
        "admin audit",
        extra={
            "action": action,
            "status": status,
            "client": f"{peer.host}:{peer.port}" if peer else None,
            "actor": actor if actor is None or _ACTOR.fullmatch(actor) else "(invalid)",
            **what,
        },
    )


def admin_routes(store: BidStore, settings: BidsSettings) -> list[Route]:
    token = settings.admin_token

    async def create(request: Request) -> Response:
        response = await _create(request)
        # What was created, or the refusal's code: never the body (the caller's text).
        if response.status_code == 201:
            what = {"auction": response.headers["location"].rpartition("/")[2]}
        else:
            what = {"error": json.loads(bytes(response.body))["error"]["code"]}
        _audit(request, "auction.create", response.status_code, **what)
        return response

    async def _create(request: Request) -> Response:
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

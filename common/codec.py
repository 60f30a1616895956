"""The only place that encodes or decodes: msgpack on the bus, JSON for clients."""

from __future__ import annotations

import threading
from typing import Any

import msgpack
import orjson

from common.errors import ErrorCode, ProtocolError


__all__ = [
    "dump_client",
    "dump_client_str",
    "load_bus",
    "load_client",
    "pack_bus",
    "pack_bus_with_packed",
]

_packer_options: dict[str, Any] = {"use_bin_type": True, "datetime": False}

# A Packer per thread, reused: msgpack.packb builds a new one per call, which costs more
# than packing a request. Reuse is safe: pack() resets the Packer's buffer, also on error.
_local = threading.local()


def pack_bus(value: dict[str, Any]) -> bytes:
    """Encode one bus value (an envelope as a map) with msgpack."""
    return _packer().pack(value)  # type: ignore[no-any-return]


def pack_bus_with_packed(value: dict[str, Any], name: str, packed: list[bytes]) -> bytes:
    """Encode ``value`` plus field ``name``: an array of values each already encoded.

    A batch of replies is packed reply by reply anyway (one that cannot be encoded is
    replaced alone), so the batch reuses those bytes rather than encode them twice.
    """
    packer = _packer()
    parts = [packer.pack_map_header(len(value) + 1)]
    for key, item in value.items():
        parts += (packer.pack(key), packer.pack(item))
    parts += (packer.pack(name), packer.pack_array_header(len(packed)), *packed)
    return b"".join(parts)


def _packer() -> msgpack.Packer:
    try:
        return _local.packer
    except AttributeError:
        packer = _local.packer = msgpack.Packer(**_packer_options)
        return packer


def load_bus(data: bytes) -> dict[str, Any]:
    """Decode one bus value; raise :class:`ProtocolError` unless it is a map."""
    try:
        value = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        # StackError (nested too deep) says nothing of itself.
        reason = str(exc) or type(exc).__name__
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"undecodable bus entry: {reason}") from exc
    if not isinstance(value, dict):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "a bus entry must be a map")
    return value


def dump_client(value: dict[str, Any]) -> bytes:
    """Encode one client frame to UTF-8 JSON bytes."""
    return orjson.dumps(value)


def dump_client_str(value: dict[str, Any]) -> str:
    """Encode one client frame to a JSON string (for clients that send text)."""
    return orjson.dumps(value).decode()


def load_client(text: str | bytes) -> dict[str, Any]:
    """Decode one client frame; raise :class:`ProtocolError` unless it is a JSON object."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"malformed JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "a frame must be a JSON object")
    return value

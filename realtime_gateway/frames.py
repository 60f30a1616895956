"""Server-to-client WebSocket frames, built once and written to many connections.

A server's frames are not masked (RFC 6455, section 5.1), so one event's frame is the same
bytes for every subscriber: the gateway builds it once and writes it to each transport.
Compression is off for the same reason: per-connection deflate state would make every copy
different.
"""

from __future__ import annotations

import struct


__all__ = ["text_frame"]

_FIN_TEXT = 0x81
_SHORT = struct.Struct("!BB")
_MEDIUM = struct.Struct("!BBH")
_LONG = struct.Struct("!BBQ")


def text_frame(payload: bytes) -> bytes:
    """A complete, unfragmented text frame carrying ``payload`` (valid UTF-8)."""
    length = len(payload)
    if length < 126:
        header = _SHORT.pack(_FIN_TEXT, length)
    elif length < 65536:
        header = _MEDIUM.pack(_FIN_TEXT, 126, length)
    else:
        header = _LONG.pack(_FIN_TEXT, 127, length)
    return header + payload

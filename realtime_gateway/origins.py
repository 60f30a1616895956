"""Which browser origins may open a WebSocket: a pure matcher of ``Origin`` headers.

Browsers send ``Origin`` on every WebSocket upgrade, and a page of any site may open a
WebSocket to any host: without a check, a page on ``evil.example`` opens one to the gateway
with the visitor's cookies and network position (cross-site WebSocket hijacking). Clients
that are not browsers (wscat, servers) send no ``Origin`` and are not subject to the check:
they could forge any header anyway. ``docs/security.md`` states the rules.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from common.errors import ConfigError


__all__ = ["OriginPolicy", "parse_origin"]

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
#: Hosts that dev mode allows on any port and scheme.
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "[::1]"})

#: A parsed origin: scheme, host (lower case, IPv6 in brackets), port (the default if none).
Origin = tuple[str, str, int]


def parse_origin(text: str) -> Origin | None:
    """``scheme://host[:port]`` as a tuple, or None when it is not an http(s) origin."""
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), parts.hostname
    if scheme not in ("http", "https") or not host or parts.path not in ("", "/"):
        return None
    if parts.username is not None or parts.query or parts.fragment:
        return None
    if ":" in host:
        host = f"[{host}]"
    return scheme, host, port if port is not None else _DEFAULT_PORTS[scheme]


def _host_port(text: str, default_port: int) -> tuple[str, int] | None:
    """A ``Host`` header as (host, port); the port defaults to the origin's scheme's."""
    try:
        parts = urlsplit("//" + text.strip())
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname
    if not host:
        return None
    if ":" in host:
        host = f"[{host}]"
    return host, port if port is not None else default_port


@dataclass(frozen=True, slots=True)
class _Pattern:
    scheme: str
    #: The exact host, or for ``*.example.com`` the suffix ``.example.com``.
    host: str
    wildcard: bool
    port: int

    def matches(self, origin: Origin) -> bool:
        scheme, host, port = origin
        if scheme != self.scheme or port != self.port:
            return False
        if self.wildcard:
            return host.endswith(self.host) and len(host) > len(self.host)
        return host == self.host


@dataclass(frozen=True, slots=True)
class OriginPolicy:
    """The allow-list (``RT_ALLOWED_ORIGINS``) and the rules around it."""

    patterns: tuple[_Pattern, ...] = ()
    allow_any: bool = False
    dev: bool = False

    @classmethod
    def parse(cls, entries: Iterable[str], *, dev: bool = False) -> OriginPolicy:
        """Entries are ``scheme://host[:port]``, the host may start with ``*.``; ``*`` allows
        every origin. An entry without a scheme means ``https://``.

        Raises:
            ConfigError: an entry is not an origin or a pattern of one.
        """
        patterns: list[_Pattern] = []
        allow_any = False
        for raw in entries:
            entry = raw.strip().lower()
            if not entry:
                continue
            if entry == "*":
                allow_any = True
                continue
            if "://" not in entry:
                entry = "https://" + entry
            wildcard = "://*." in entry
            parsed = parse_origin(entry.replace("://*.", "://wildcard.", 1))
            if parsed is None:
                raise ConfigError(f"RT_ALLOWED_ORIGINS: not an origin: {raw.strip()!r}")
            scheme, host, port = parsed
            if wildcard:
                host = host.removeprefix("wildcard")
            patterns.append(_Pattern(scheme, host, wildcard, port))
        return cls(tuple(patterns), allow_any, dev)

    def allows(self, origin: str | None, host: str | None) -> bool:
        """Whether an upgrade with this ``Origin`` (None: absent) to this ``Host`` may open."""
        if origin is None:
            return True  # not a browser: nothing to protect against (docs/security.md)
        if self.allow_any:
            return True
        parsed = parse_origin(origin)
        if parsed is None:
            return False  # "null" (sandboxed frames, file:), or garbage
        scheme, origin_host, port = parsed
        # The gateway's own pages: the origin names the host the browser connected to.
        # (A browser sets Host itself; a page cannot choose it.)
        if host is not None and _host_port(host, _DEFAULT_PORTS[scheme]) == (origin_host, port):
            return True
        if self.dev and origin_host in _LOOPBACK:
            return True
        return any(pattern.matches(parsed) for pattern in self.patterns)

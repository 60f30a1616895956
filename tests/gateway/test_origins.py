"""The origin allow-list, pure."""

from __future__ import annotations

import pytest

from common.errors import ConfigError
from realtime_gateway.origins import OriginPolicy


POLICY = OriginPolicy.parse(["https://app.example.com", "*.example.org", "http://x.test:8080"])


@pytest.mark.parametrize(
    ("origin", "host", "allowed"),
    [
        (None, "gw.example.net", True),
        ("https://app.example.com", "gw.example.net", True),
        ("https://APP.example.com:443", "gw.example.net", True),
        ("http://app.example.com", "gw.example.net", False),
        ("https://app.example.com:8443", "gw.example.net", False),
        ("https://a.example.org", "gw.example.net", True),
        ("https://a.b.example.org", "gw.example.net", True),
        ("https://example.org", "gw.example.net", False),
        ("https://evilexample.org", "gw.example.net", False),
        ("http://a.example.org", "gw.example.net", False),
        ("http://x.test:8080", "gw.example.net", True),
        ("http://x.test", "gw.example.net", False),
        ("null", "gw.example.net", False),
        ("https://app.example.com/path", "gw.example.net", False),
        ("https://gw.example.net", "gw.example.net", True),
        ("http://gw.example.net:8000", "gw.example.net:8000", True),
        ("http://gw.example.net:8000", "gw.example.net", False),
        ("http://[::1]:8000", "[::1]:8000", True),
        ("http://localhost:5173", "gw.example.net", False),
    ],
)
def test_origin_rules(origin: str | None, host: str, allowed: bool) -> None:
    """Exact origins match scheme, host and port; patterns need a subdomain; own origin passes."""
    assert POLICY.allows(origin, host) is allowed


@pytest.mark.parametrize(
    "origin", ["http://localhost:5173", "https://127.0.0.1:1", "http://[::1]:3000"]
)
def test_dev_mode_allows_loopback(origin: str) -> None:
    """Dev mode allows loopback pages on any port and scheme, and nothing more."""
    dev = OriginPolicy.parse([], dev=True)
    assert dev.allows(origin, "gw:8000")
    assert not dev.allows("http://evil.example", "gw:8000")


def test_star_allows_every_origin_and_garbage_is_a_config_error() -> None:
    """``*`` opts out of the check; an entry that is no origin stops the start."""
    assert OriginPolicy.parse(["*"]).allows("http://evil.example", None)
    with pytest.raises(ConfigError):
        OriginPolicy.parse(["https://a.example.com/path"])

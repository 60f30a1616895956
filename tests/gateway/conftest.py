"""Fixtures of the gateway's in-process tests."""

from __future__ import annotations

import pytest

from realtime_gateway.metrics import GatewayMetrics


@pytest.fixture(scope="session")
def metrics() -> GatewayMetrics:
    """The gateway's metrics, made once: they register in the process-wide registry."""
    return GatewayMetrics()

"""The loopback address every private server listens on, and a free port on it."""

from __future__ import annotations

import socket
from collections.abc import Collection


__all__ = ["LOOPBACK", "free_port", "free_ports"]

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it by binding port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


def free_ports(count: int, *, besides: Collection[int] = ()) -> list[int]:
    """``count`` distinct TCP ports on 127.0.0.1, free a moment ago, none of ``besides``.

    The probes stay bound until every port is picked: one at a time, the OS may hand out a
    port it just gave (two services of one launch then fight over it).
    """
    probes: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            probes.append(probe)
            probe.bind((LOOPBACK, 0))
            port: int = probe.getsockname()[1]
            if port not in besides:
                ports.append(port)
        return ports
    finally:
        for probe in probes:
            probe.close()

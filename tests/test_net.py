"""Free ports for the processes the tests start: distinct, and none of those already given."""

from __future__ import annotations

import socket

from devtools.net import LOOPBACK, free_ports


def test_free_ports_are_distinct_bindable_and_avoid_the_ones_given() -> None:
    taken = set(free_ports(3))
    ports = free_ports(20, besides=taken)
    assert len(set(ports)) == 20
    assert not taken & set(ports)
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
            server.bind((LOOPBACK, port))

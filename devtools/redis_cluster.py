"""Run a private Redis Cluster (or Valkey cluster) on free loopback ports.

For the tests and for trying the cluster (``scripts/run --cluster``), never in production.
Each node is a :class:`devtools.redis_server.RedisServer` (the same binary, ACL file and
process handling as a single private server) started with ``cluster-enabled``; the nodes
are formed into one cluster with ``redis-cli --cluster create`` when a CLI is installed,
else with the same commands sent from Python (:mod:`devtools.cluster_forming`). Nodes are
killed, paused and stopped by PID.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import redis
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry

from devtools.cluster_forming import cluster_command, find_cli, form_with_cli, form_with_commands
from devtools.cluster_nodes import SLOTS, ClusterNode, parse_nodes
from devtools.errors import RedisServerError, RedisStartError
from devtools.lifecycle import Started
from devtools.net import free_ports
from devtools.redis_binary import find_server_binary
from devtools.redis_server import RedisServer
from devtools.waiting import Deadline, wait_until_blocking


__all__ = ["Formation", "LocalCluster"]

#: How the nodes are formed into a cluster: ``auto`` uses a CLI when one is installed.
Formation = Literal["auto", "cli", "commands"]


class LocalCluster(Started):
    """A private cluster of ``masters`` masters with ``replicas`` replicas each, on 127.0.0.1.

    The first ``masters`` nodes start as masters, over equal slot ranges; the others replicate
    them in turns. ``node_timeout`` (ms) is how long a node may be unreachable before the
    others fail it over: short, so that a test's failover takes seconds, not the default 15.
    ``acl`` and ``password`` are :class:`RedisServer`'s, on every node (replicas authenticate
    to their masters with ``password``). The nodes keep no data across a restart.

    Usage::

        with LocalCluster() as cluster:
            client = redis.RedisCluster.from_url(cluster.seed_urls[0], **cluster.client_options())
    """

    def __init__(
        self,
        masters: int = 3,
        replicas: int = 1,
        *,
        binary: Path | None = None,
        acl: Sequence[str] = (),
        password: str | None = None,
        node_timeout: int = 5000,
        formation: Formation = "auto",
        start_timeout: float = 60.0,
    ) -> None:
        if masters < 1 or replicas < 0:
            raise ValueError(
                f"a cluster needs masters >= 1 and replicas >= 0, not {masters}, {replicas}"
            )
        self.masters = masters
        self.replicas = replicas
        self.node_timeout = node_timeout
        self._password = password
        self._formation = formation
        self._start_timeout = start_timeout
        self._binary = binary
        count = masters * (1 + replicas)
        # Every node's two ports at once: picked one after the other, the OS may hand out
        # one port twice, and the second node to bind it fails to start.
        ports = free_ports(2 * count)
        self.servers = [
            RedisServer(
                ports[2 * n],
                binary=binary,
                acl=acl,
                password=password,
                cluster_node_timeout=node_timeout,
                cluster_port=ports[2 * n + 1],
            )
            for n in range(count)
        ]

    @property
    def seed_urls(self) -> list[str]:
        """Every node's URL (any of them is a seed), never with a password."""
        return [server.url for server in self.servers]

    def client_options(self) -> dict[str, Any]:
        """redis-py's keyword arguments, beside a URL, of a client with every right."""
        return self.servers[0].client_options()

    @property
    def binary(self) -> Path:
        if self._binary is None:
            self._binary = find_server_binary()
        return self._binary

    def start(self) -> None:
        """Start every node, form the cluster, and return once it is whole.

        Raises:
            RedisStartError: a node did not start, the cluster did not form, or was not whole
                within ``start_timeout`` seconds.
            RedisNotFoundError: no binary was given and none is installed.
        """
        deadline = Deadline(self._start_timeout)
        try:
            for server in self.servers:
                server.start()
            self._form(deadline)
            self.wait_until_whole(within=deadline.remaining())
        except AssertionError as exc:
            self.stop()
            raise RedisStartError(f"the cluster did not form: {exc}") from exc
        except BaseException:
            self.stop()
            raise

    def _form(self, deadline: Deadline) -> None:
        ports = [server.port for server in self.servers]
        cli = find_cli(self.binary) if self._formation != "commands" else None
        if self._formation == "cli" and cli is None:
            raise RedisStartError("no redis-cli or valkey-cli is installed to form the cluster")
        if cli is not None:
            form_with_cli(
                cli, ports, replicas=self.replicas, password=self._password,
                timeout=deadline.remaining(),
            )  # fmt: skip
        else:
            form_with_commands(self.servers, masters=self.masters, timeout=deadline.remaining())

    def _client(self, server: RedisServer) -> redis.Redis:
        # One try, short timeouts: a paused or dead node must not stall a probe.
        return redis.Redis.from_url(
            server.url,
            decode_responses=True,
            socket_connect_timeout=1.0,
            socket_timeout=1.0,
            retry=Retry(NoBackoff(), retries=0),
            **self.client_options(),
        )

    def nodes(self, server: RedisServer | None = None) -> list[ClusterNode]:
        """The cluster as ``server`` (else the first running node) sees it: CLUSTER NODES.

        Raises:
            RedisServerError: no node is running, or it did not answer.
        """
        if server is None:
            running = [candidate for candidate in self.servers if candidate.is_running]
            if not running:
                raise RedisServerError("no node of the cluster is running")
            server = running[0]
        try:
            with self._client(server) as client:
                return parse_nodes(cluster_command(client, "NODES"))
        except redis.RedisError as exc:
            raise RedisServerError(f"node {server.url} did not answer: {exc}") from exc

    def server_of(self, node: ClusterNode) -> RedisServer:
        """The server process of ``node``."""
        return next(server for server in self.servers if server.port == node.port)

    def master_serving(self, key: str) -> RedisServer:
        """The server that is the master of ``key``'s slot now (failovers change which).

        Raises:
            RedisServerError: no master serves the slot (the cluster is not whole).
        """
        slot = key_slot(key.encode())
        for node in self.nodes():
            if node.is_master and node.serves(slot):
                return self.server_of(node)
        raise RedisServerError(f"no master serves slot {slot} of {key!r}")

    def master_servers(self) -> list[RedisServer]:
        """The servers that are masters now (failovers change which), in slot order."""
        masters = sorted(
            (node for node in self.nodes() if node.is_master and node.slots), key=lambda n: n.slots
        )
        return [self.server_of(node) for node in masters]

    def replicas_of(self, master: RedisServer) -> list[RedisServer]:
        """The servers that replicate ``master`` now."""
        nodes = self.nodes()
        master_id = next(node.id for node in nodes if node.port == master.port)
        return [self.server_of(node) for node in nodes if node.master_id == master_id]

    def _is_whole(self, server: RedisServer) -> bool:
        """Whether ``server`` sees every node healthy, every slot served, its replication up."""
        try:
            with self._client(server) as client:
                info = client.cluster("info")
                nodes = parse_nodes(cluster_command(client, "NODES"))
                replication = client.info("replication")
        except redis.RedisError:
            return False
        if info.get("cluster_state") != "ok" or int(info.get("cluster_slots_ok", 0)) != SLOTS:
            return False
        if len(nodes) != len(self.servers) or not all(node.is_healthy for node in nodes):
            return False
        # Every node in its role, as this one sees it: gossip spreads a REPLICATE in a moment.
        master_ids = {node.id for node in nodes if node.is_master and node.slots}
        replicas = [node for node in nodes if node.master_id in master_ids]
        if len(master_ids) != self.masters or len(replicas) != len(nodes) - self.masters:
            return False
        # A replica is usable (WAIT counts it) once its link to its master is up.
        return bool(
            replication.get("role") != "slave" or replication.get("master_link_status") == "up"
        )

    def _is_serving(self, server: RedisServer) -> bool:
        try:
            with self._client(server) as client:
                info = client.cluster("info")
        except redis.RedisError:
            return False
        return info.get("cluster_state") == "ok" and int(info.get("cluster_slots_ok", 0)) == SLOTS

    def wait_until_whole(self, *, within: float = 30.0) -> None:
        """Wait until every node runs and sees the cluster whole: ``cluster_state:ok``, every
        node known and healthy, ``masters`` masters, every replica's link up.

        Raises:
            AssertionError: it was not whole within ``within`` seconds.
        """
        self._wait(self._is_whole, self.servers, "the cluster to be whole", within)

    def wait_until_serving(self, *, within: float = 30.0) -> None:
        """Wait until every running node reports ``cluster_state:ok`` with every slot served
        (after a failover, say, with a node still down).

        Raises:
            AssertionError: it did not within ``within`` seconds.
        """
        running = [server for server in self.servers if server.is_running]
        self._wait(self._is_serving, running, "every running node to serve every slot", within)

    @staticmethod
    def _wait(
        check: Callable[[RedisServer], bool],
        servers: Sequence[RedisServer],
        what: str,
        within: float,
    ) -> None:
        wait_until_blocking(
            lambda: all(check(server) for server in servers), what, within=within, interval=0.1
        )

    def restore(self, *, within: float = 30.0) -> None:
        """Bring back every node that was killed, paused or stopped, then wait until whole.

        A node that comes back after its replica took over rejoins as a replica (its
        ``nodes.conf`` says who it is; the cluster tells it the rest).

        Raises:
            AssertionError: the cluster was not whole again within ``within`` seconds.
            RedisStartError: a node did not start again.
        """
        for server in self.servers:
            if server.is_running:
                server.resume()
            else:
                server.start()
        self.wait_until_whole(within=within)

    def stop(self) -> None:
        """Stop every node by PID and delete their directories. Idempotent."""

        def stop(server: RedisServer) -> None:
            server.stop()
            server.remove_data()

        # All at once: a node takes a moment to stop, and each waits for its own.
        with ThreadPoolExecutor(max_workers=len(self.servers)) as pool:
            list(pool.map(stop, self.servers))

    def __repr__(self) -> str:
        running = sum(server.is_running for server in self.servers)
        return f"<LocalCluster {self.masters}x{1 + self.replicas} nodes, {running} running>"

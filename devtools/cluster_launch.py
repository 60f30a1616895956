"""What ``scripts/run --cluster`` says of the cluster it started: its nodes, and how to reach it."""

from __future__ import annotations

from pathlib import Path

from devtools.redis_cluster import LocalCluster


__all__ = ["cluster_lines"]


def cluster_lines(cluster: LocalCluster, password_file: Path) -> list[str]:
    """The lines that show a running cluster: each node's URL and role, how to connect."""
    lines = ["the cluster is ready; its nodes (each one a seed):"]
    nodes = cluster.nodes()
    masters = sorted((node for node in nodes if node.is_master), key=lambda node: node.slots)
    for master in masters:
        slots = ", ".join(f"{first}-{last}" for first, last in master.slots)
        lines.append(f"  {cluster.server_of(master).url}  master, slots {slots}")
        for replica in (node for node in nodes if node.master_id == master.id):
            lines.append(f"  {cluster.server_of(replica).url}  its replica")
    first = masters[0].port
    lines.append(
        f"the default user's password is in {password_file}; try "
        f"`REDISCLI_AUTH=$(cat {password_file}) redis-cli -c -p {first} cluster info`"
    )
    return lines

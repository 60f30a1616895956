"""What a Redis Cluster looks like, as pure values: its nodes, its slots, keys on chosen slots.

No I/O: :func:`parse_nodes` reads the text of ``CLUSTER NODES`` that a caller fetched, and the
rest is arithmetic on the 16384 hash slots (redis-py's ``key_slot`` is the CRC16 rule).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot


__all__ = [
    "SLOTS",
    "ClusterNode",
    "SlotRange",
    "hash_tag_on",
    "parse_nodes",
    "slot_ranges",
]

SLOTS = REDIS_CLUSTER_HASH_SLOTS
#: First and last slot of a range, both included (as CLUSTER ADDSLOTSRANGE takes them).
SlotRange = tuple[int, int]
# A node that other nodes see failing, or do not know yet: flags of CLUSTER NODES.
_UNHEALTHY_FLAGS = frozenset({"fail", "fail?", "handshake", "noaddr"})


@dataclass(frozen=True, slots=True)
class ClusterNode:
    """One line of ``CLUSTER NODES``: a node as the node that answered sees it."""

    id: str
    port: int
    flags: frozenset[str]
    #: The id of the master this node replicates, None for a master.
    master_id: str | None
    slots: tuple[SlotRange, ...]
    connected: bool

    @property
    def is_master(self) -> bool:
        return "master" in self.flags

    @property
    def is_healthy(self) -> bool:
        """Known, connected, and not seen failing."""
        return self.connected and not (self.flags & _UNHEALTHY_FLAGS)

    def serves(self, slot: int) -> bool:
        return any(first <= slot <= last for first, last in self.slots)


def _slot_range(field: str) -> SlotRange | None:
    if field.startswith("["):  # a slot being imported or migrated, still served by its owner
        return None
    first, _, last = field.partition("-")
    return int(first), int(last or first)


def parse_nodes(text: str) -> list[ClusterNode]:
    """The nodes of a ``CLUSTER NODES`` reply, in its order.

    Raises:
        ValueError: a line is not a node line.
    """
    nodes = []
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) < 8:
            raise ValueError(f"not a CLUSTER NODES line: {line!r}")
        node_id, address, flags, master, _ping, _pong, _epoch, link, *slot_fields = fields
        # ip:port@cport, and a hostname after a comma since Redis 7.
        port = int(address.split("@", 1)[0].rsplit(":", 1)[1] or 0)
        ranges = (_slot_range(field) for field in slot_fields)
        nodes.append(
            ClusterNode(
                id=node_id,
                port=port,
                flags=frozenset(flags.split(",")),
                master_id=None if master == "-" else master,
                slots=tuple(r for r in ranges if r is not None),
                connected=link == "connected",
            )
        )
    return nodes


def slot_ranges(masters: int) -> list[SlotRange]:
    """The 16384 slots cut into ``masters`` contiguous ranges of sizes that differ by one at most.

    Raises:
        ValueError: ``masters`` is not between 1 and 16384.
    """
    if not 1 <= masters <= SLOTS:
        raise ValueError(f"a cluster has 1 to {SLOTS} masters, not {masters}")
    bounds = [SLOTS * i // masters for i in range(masters + 1)]
    return [(bounds[i], bounds[i + 1] - 1) for i in range(masters)]


def hash_tag_on(
    ranges: Sequence[SlotRange], *, prefix: str = "t", exclude: Iterable[str] = ()
) -> str:
    """A hash tag (``{t17}``) whose keys land in one of ``ranges``.

    Raises:
        ValueError: ``ranges`` is empty.
    """
    if not ranges:
        raise ValueError("no slot range to find a hash tag for")
    taken = set(exclude)
    # About 1 tag in (SLOTS / width) lands in a range: a few tries for a third of the slots.
    for n in range(SLOTS * 64):
        tag = "{" + f"{prefix}{n}" + "}"
        slot = key_slot(tag.encode())
        if tag not in taken and any(first <= slot <= last for first, last in ranges):
            return tag
    raise ValueError(f"no hash tag found on the slots {list(ranges)}")

"""The pure cluster values of devtools/cluster_nodes.py: CLUSTER NODES lines, slot ranges, tags."""

from __future__ import annotations

from itertools import pairwise

import pytest
from redis.crc import key_slot

from devtools.cluster_nodes import hash_tag_on, parse_nodes, slot_ranges


# As Redis 7 writes it: a master serving two ranges and a migrating slot, its replica, a
# node seen failing, and one in handshake.
_MASTER = "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca"
NODES = "\n".join(
    [
        f"07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,host-a slave {_MASTER} "
        "0 1426238317239 4 connected",
        f"{_MASTER} 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460 5462 "
        "[5461->-67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1]",
        "292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003 master,fail - "
        "1426238316232 1426238315228 3 disconnected 10923-16383",
        "6ec23923021cf3ffec47632106199cb7f496ce01 127.0.0.1:30005@31005 handshake - "
        "0 0 0 connected",
    ]
)


def test_parse_nodes_reads_roles_ports_slots_and_health() -> None:
    """Each line gives the node's id, port, role, master, slots (not the migrating one), health."""
    replica, master, failed, meeting = parse_nodes(NODES)
    assert (replica.port, replica.is_master, replica.master_id) == (30004, False, master.id)
    assert master.is_master
    assert master.slots == ((0, 5460), (5462, 5462))
    assert master.serves(5462)
    assert not master.serves(5461)
    assert replica.is_healthy
    assert master.is_healthy
    assert not failed.is_healthy
    assert not meeting.is_healthy


def test_parse_nodes_refuses_what_is_not_a_node_line() -> None:
    """A line with too few fields is an error, not a node."""
    with pytest.raises(ValueError, match="not a CLUSTER NODES line"):
        parse_nodes("ERR unknown command\n")


@pytest.mark.parametrize("masters", [1, 2, 3, 7])
def test_slot_ranges_cover_every_slot_once_in_near_equal_parts(masters: int) -> None:
    """The ranges are contiguous from 0 to 16383, their sizes one apart at most."""
    ranges = slot_ranges(masters)
    assert len(ranges) == masters
    assert ranges[0][0] == 0
    assert ranges[-1][1] == 16383
    assert all(last + 1 == first for (_, last), (first, _) in pairwise(ranges))
    sizes = {last - first + 1 for first, last in ranges}
    assert max(sizes) - min(sizes) <= 1


def test_slot_ranges_refuse_an_impossible_count() -> None:
    """No cluster has 0 masters, or more masters than slots."""
    with pytest.raises(ValueError, match="1 to 16384 masters"):
        slot_ranges(0)


def test_hash_tag_on_gives_distinct_tags_on_the_slots_asked() -> None:
    """A tag found for a range hashes into it, and an excluded tag is not given again."""
    ranges = slot_ranges(3)
    first = hash_tag_on([ranges[2]])
    assert ranges[2][0] <= key_slot(f"{first}:any".encode()) <= ranges[2][1]
    assert hash_tag_on([ranges[2]], exclude=[first]) != first
    with pytest.raises(ValueError, match="no slot range"):
        hash_tag_on([])

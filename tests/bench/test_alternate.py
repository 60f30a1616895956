"""The comparisons' pure parts (bench/alternate.py, bench/cluster_options.py): the layouts of
``--cluster-compare``, the options that choose the Redis, and the table."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from bench import bids, fanout, request
from bench.alternate import cluster_sides, parse_layouts, table
from devtools.private_redis import SINGLE, PrivateRedis, RedisLayout


@dataclass(frozen=True)
class _Run:
    cpu: float
    rate: float
    ok: bool = True


ROWS = (("cpu per op, us", lambda run: run.cpu), ("ops/s", lambda run: run.rate))


def test_layouts_are_single_or_counts_of_masters() -> None:
    """``single`` is one Redis, a number a cluster of that many masters, in the given order."""
    assert parse_layouts("single,3") == [SINGLE, RedisLayout(3)]
    assert parse_layouts(" 1, 2 ,3") == [RedisLayout(1), RedisLayout(2), RedisLayout(3)]
    assert [side.label for side in cluster_sides(parse_layouts("single,1,3"))] == [
        "single",
        "cluster-1",
        "cluster-3",
    ]


@pytest.mark.parametrize(
    "text", ["single", "3,3", "single,0", "single,7", "one,3", "1,2,3,4,5,6,single"]
)
def test_layouts_that_compare_nothing_or_too_much_are_refused(text: str) -> None:
    """One layout, a repeated one, no master, too many masters or sides, or a typo."""
    with pytest.raises(ValueError, match=r"."):
        parse_layouts(text)


def test_a_cluster_layout_sets_rt_redis_cluster_and_a_single_one_does_not() -> None:
    """A process is pointed at a cluster with every seed and RT_REDIS_CLUSTER, at one Redis with
    its URL only (a checkout from before cluster mode knows no RT_REDIS_CLUSTER)."""
    assert set(PrivateRedis(SINGLE).env) == {"RT_REDIS_URL"}
    cluster = PrivateRedis(RedisLayout(3))
    assert cluster.env["RT_REDIS_CLUSTER"] == "1"
    assert len(cluster.env["RT_REDIS_URL"].split(",")) == 3
    assert RedisLayout(1).describe() == "a Redis Cluster of 1 master (no replicas)"


def test_bids_options_choose_the_redis_and_the_partitions() -> None:
    """``--cluster`` is 3 masters with a bids partition each; ``--masters`` and
    ``--partitions`` change them; one Redis has one partition."""
    plain = bids.parse_args([])
    assert plain.redis == SINGLE
    assert bids.partitions_of(plain, plain.redis) == 1
    cluster = bids.parse_args(["--cluster"])
    assert cluster.redis == RedisLayout(3)
    assert bids.partitions_of(cluster, cluster.redis) == 3
    two = bids.parse_args(["--cluster", "--masters", "2", "--partitions", "8"])
    assert two.redis == RedisLayout(2)
    assert bids.partitions_of(two, two.redis) == 8
    compared = bids.parse_args(["--cluster-compare", "--rounds", "3"])
    assert compared.cluster_compare == [SINGLE, RedisLayout(3)]
    assert compared.rounds == 3
    assert bids.parse_args(["--cluster-compare", "1,2,3"]).cluster_compare == [
        RedisLayout(n) for n in (1, 2, 3)
    ]


@pytest.mark.parametrize(
    "argv",
    [
        ["--masters", "3"],
        ["--cluster", "--masters", "0"],
        ["--cluster", "--cluster-compare"],
        ["--compare", "main", "--cluster-compare"],
        ["--cluster-compare", "3"],
        ["--partitions", "0"],
    ],
)
def test_bids_options_that_do_not_go_together_are_refused(argv: list[str]) -> None:
    """``--masters`` without ``--cluster``, a comparison of one layout or beside another
    comparison, no master or no partition: an error before anything starts."""
    with pytest.raises(SystemExit):
        bids.parse_args(argv)


def test_fanout_options_choose_the_redis_and_refuse_what_does_not_go_together() -> None:
    """The fan-out benchmark takes the same Redis options (it has no partitions to choose)."""
    assert fanout.parse_args(["--cluster", "--masters", "2"]).redis == RedisLayout(2)
    assert fanout.parse_args(["--cluster-compare"]).cluster_compare == [SINGLE, RedisLayout(3)]
    with pytest.raises(SystemExit):
        fanout.parse_args(["--partitions", "3"])
    with pytest.raises(SystemExit):
        fanout.parse_args(["--compare", "main", "--cluster-compare"])


def test_the_request_scenario_runs_on_a_cluster_but_compares_no_layouts() -> None:
    """``--scenario request`` takes ``--cluster`` and ``--masters``, not ``--cluster-compare``."""
    assert request.parse_args(["--cluster"]).redis == RedisLayout(3)
    assert request.parse_args([]).redis == SINGLE
    with pytest.raises(SystemExit):
        request.parse_args(["--cluster-compare"])


def test_the_table_sets_every_side_beside_the_first() -> None:
    """Each side's mean (each round's figure in brackets), then each later side's ratio to the
    first side, with a column per ratio."""
    lines = table(
        ROWS,
        {
            "single": [_Run(10.0, 3000.0), _Run(14.0, 5000.0)],
            "cluster-1": [_Run(12.0, 4000.0), _Run(12.0, 4000.0)],
            "cluster-3": [_Run(24.0, 2000.0), _Run(24.0, 2000.0)],
        },
    )
    header, cpu, rate = lines
    assert header.split() == [
        "single",
        "cluster-1",
        "cluster-3",
        "cluster-1/single",
        "cluster-3/single",
    ]
    assert cpu.split()[-2:] == ["1.00", "2.00"]
    assert "12.0 (10.0, 14.0)" in cpu
    assert "4,000 (3,000, 5,000)" in rate
    assert rate.split()[-2:] == ["1.00", "0.50"]
    # Columns line up: every cell ends where its header does.
    assert len({len(line) for line in lines}) == 1


def test_a_figure_a_run_lacks_shows_as_a_dash() -> None:
    """A figure that is not a number (a run measured none) is ``-``, its ratio too."""
    lines = table(ROWS, {"REF": [_Run(math.nan, 1.0)], "tree": [_Run(5.0, 2.0)]})
    assert lines[1].split()[-3:] == ["-", "5.00", "-"]
    assert lines[2].split()[-1] == "2.00"
    small = table(ROWS, {"a": [_Run(0.0281, 1.0)], "b": [_Run(0.0, 1.0)]})
    assert small[1].split()[-3:] == ["0.028", "0.0", "0.00"]
    with pytest.raises(ValueError, match="two sides"):
        table(ROWS, {"tree": [_Run(1.0, 1.0)]})

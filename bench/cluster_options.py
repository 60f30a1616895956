"""The options of ``scripts/bench`` and ``scripts/bench-bids`` that choose the Redis: one
server (the default), ``--cluster`` (a private Redis Cluster of ``--masters`` masters, no
replicas), or ``--cluster-compare`` (several, alternated in one run). Pure argparse."""

from __future__ import annotations

import argparse

from bench.alternate import DEFAULT_CLUSTER_COMPARE, parse_layouts
from common.partitions import MAX_PARTITIONS
from devtools.private_redis import SINGLE, RedisLayout


__all__ = ["DEFAULT_MASTERS", "add_cluster_options", "check_cluster_options"]

#: Masters of ``--cluster``: the smallest cluster Redis recommends, and what fits two cores.
DEFAULT_MASTERS = 3


def _layouts(text: str) -> list[RedisLayout]:
    try:
        return parse_layouts(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_cluster_options(
    parser: argparse.ArgumentParser, *, partitions: str | None, compare: bool = True
) -> None:
    """Add ``--cluster``, ``--masters``, ``--cluster-compare`` (unless not ``compare``) and,
    for a benchmark of a partitioned service (``partitions``: its name), ``--partitions``."""
    parser.add_argument(
        "--cluster",
        action="store_true",
        help=f"run on a private Redis Cluster (of --masters masters, {DEFAULT_MASTERS} unless "
        "given; no replicas), every process with RT_REDIS_CLUSTER=1",
    )
    parser.add_argument(
        "--masters",
        type=int,
        default=None,
        help=f"with --cluster: how many masters, {DEFAULT_MASTERS} if left out",
    )
    if compare:
        _add_cluster_compare(parser)
    else:
        parser.set_defaults(cluster_compare=None)
    if partitions is not None:
        parser.add_argument(
            "--partitions",
            type=int,
            default=None,
            help=f"RT_{partitions.upper()}_PARTITIONS (default: the masters of a cluster, "
            "1 on one Redis)",
        )


def _add_cluster_compare(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cluster-compare",
        nargs="?",
        const=_layouts(DEFAULT_CLUSTER_COMPARE),
        default=None,
        type=_layouts,
        metavar="LAYOUTS",
        help="alternate the tree on several Redis layouts in --rounds rounds and set them side "
        "by side: comma-separated 'single' (one Redis) or a count of masters ('1,2,3': "
        f"clusters of 1 to 3 masters); {DEFAULT_CLUSTER_COMPARE!r} if LAYOUTS is left out",
    )


def check_cluster_options(parser: argparse.ArgumentParser, options: argparse.Namespace) -> None:
    """Refuse options that do not go together (``parser.error``), and set ``options.redis``,
    the layout of a run that compares no layouts."""
    if options.masters is not None and not options.cluster:
        parser.error("--masters goes with --cluster")
    if options.cluster_compare and (options.cluster or getattr(options, "compare", None)):
        parser.error("--cluster-compare chooses its own layouts: not with --cluster or --compare")
    if options.masters is not None and not 1 <= options.masters <= 6:
        parser.error("--masters must be 1 to 6")
    partitions = getattr(options, "partitions", None)
    if partitions is not None and not 1 <= partitions <= MAX_PARTITIONS:
        parser.error(f"--partitions must be 1 to {MAX_PARTITIONS}")
    options.redis = RedisLayout(options.masters or DEFAULT_MASTERS) if options.cluster else SINGLE

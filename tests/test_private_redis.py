"""The benchmarks' Redis (devtools/private_redis.py): one server or a small cluster, on real
processes."""

from __future__ import annotations

import redis

from devtools.private_redis import SINGLE, PrivateRedis, RedisLayout


def test_a_two_master_cluster_places_each_key_and_shows_sharded_subscriptions() -> None:
    """A cluster of 2 masters (formed without redis-cli, which wants 3) runs 2 processes; a
    key's URL is the master that serves its slot, and a sharded subscription shows there."""
    with PrivateRedis(RedisLayout(2)) as cluster:
        assert len(cluster.pids) == 2
        assert cluster.env["RT_REDIS_CLUSTER"] == "1"
        channel = "ch:{presence.0}:presence:x"
        with redis.Redis.from_url(cluster.url_of(channel)) as owner:
            owner.set("{presence.0}:probe", "1")  # refused with MOVED anywhere else
            subscriber = owner.pubsub()
            try:
                subscriber.ssubscribe(channel)
                assert subscriber.get_sharded_message(timeout=5.0)["type"] == "ssubscribe"
                assert cluster.subscribed_channels("*presence:x") == [channel]
            finally:
                subscriber.close()
        with cluster.client() as client:
            assert client.get("{presence.0}:probe") == b"1"
    assert cluster.pids == []


def test_a_single_redis_is_its_own_url_and_shows_classic_subscriptions() -> None:
    """One Redis holds every key, and its subscriptions are classic ones."""
    with PrivateRedis(SINGLE) as single, redis.Redis.from_url(single.url) as client:
        assert single.url_of("anything") == single.url
        assert len(single.pids) == 1
        subscriber = client.pubsub()
        try:
            subscriber.subscribe("ch:plain")
            assert subscriber.get_message(timeout=5.0)["type"] == "subscribe"
            assert single.subscribed_channels("ch:*") == ["ch:plain"]
        finally:
            subscriber.close()

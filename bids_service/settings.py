"""The bids service's own settings (``RT_BIDS_*``), read once in ``__main__``."""

from __future__ import annotations

from dataclasses import dataclass

from common.settings import Env, Secret


__all__ = ["DEFAULT_PORT", "BidsSettings"]

#: The HTTP port of /livez, /readyz, /metrics and the admin API unless ``RT_PORT`` says so.
DEFAULT_PORT = 8102


@dataclass(frozen=True, slots=True)
class BidsSettings:
    #: The bearer token of the admin API; with none, the admin API refuses every request.
    admin_token: Secret | None = None
    #: Create the demo auctions at start-up when they do not exist (the dev launcher sets it).
    seed_demo: bool = False
    #: Seconds between two looks for auctions whose end has passed.
    close_interval: float = 0.25
    #: Seconds an accepted bid's verdict is kept; a retry after that is judged anew.
    key_ttl: float = 86_400.0
    #: Seconds a too-low bid's verdict is kept (other refusals are not kept: place.lua).
    refusal_ttl: float = 300.0
    #: Bids per second per user (a token bucket in Redis, checked in place.lua), and its size.
    bid_rate: float = 10.0
    bid_burst: int = 20
    #: Approximate cap of each auction's history (XADD MAXLEN ~); 0 keeps everything.
    history_maxlen: int = 100_000
    #: Most events one ``subscribe`` with ``since`` replays; further back is not recovered.
    replay_limit: int = 1000
    #: Most auctions ``bids.list`` returns (the soonest to end first).
    list_limit: int = 100
    #: Anti-sniping defaults for auctions created without their own, in seconds.
    extend_window: float = 30.0
    extend_by: float = 30.0

    @classmethod
    def from_env(cls, env: Env | None = None) -> BidsSettings:
        """Read ``RT_BIDS_*``.

        Raises:
            ConfigError: a value does not parse, or both ``RT_BIDS_ADMIN_TOKEN`` and its
                ``_FILE`` variant are set.
        """
        env = env or Env()
        return cls(
            admin_token=env.secret("BIDS_ADMIN_TOKEN"),
            seed_demo=env.flag("BIDS_SEED_DEMO", False),
            close_interval=env.number("BIDS_CLOSE_INTERVAL", 0.25, minimum=0.01),
            key_ttl=env.number("BIDS_KEY_TTL", 86_400.0, minimum=1.0),
            refusal_ttl=env.number("BIDS_REFUSAL_TTL", 300.0, minimum=1.0),
            bid_rate=env.number("BIDS_BID_RATE", 10.0, minimum=0.01),
            bid_burst=env.integer("BIDS_BID_BURST", 20, minimum=1),
            history_maxlen=env.integer("BIDS_HISTORY_MAXLEN", 100_000),
            replay_limit=env.integer("BIDS_REPLAY_LIMIT", 1000, minimum=1),
            list_limit=env.integer("BIDS_LIST_LIMIT", 100, minimum=1),
            extend_window=env.number("BIDS_EXTEND_WINDOW", 30.0),
            extend_by=env.number("BIDS_EXTEND_BY", 30.0),
        )

"""The presence service's own settings (``RT_PRESENCE_*``), read once in ``__main__``."""

from __future__ import annotations

from dataclasses import dataclass

from common.settings import Env


__all__ = ["DEFAULT_PORT", "PresenceSettings"]

#: The HTTP port of /livez, /readyz and /metrics unless ``RT_PORT`` says otherwise.
DEFAULT_PORT = 8103


@dataclass(frozen=True, slots=True)
class PresenceSettings:
    #: Seconds between two sweeps (dead gateways, expired restart graces) by each instance.
    sweep_interval: float = 2.0
    #: Seconds a connection closed for a gateway restart (1012) keeps its user present.
    grace: float = 10.0
    #: Seconds a closed connection's tombstone refuses its late notifications.
    tombstone_ttl: int = 3600
    #: Connections (or lingering records) released per script call of a sweep.
    sweep_batch: int = 500
    #: Most users one ``presence.list`` answers.
    list_limit: int = 1000
    #: Seconds between two reads of the namespace registry (``RT_REGISTRY_POLL``, as the
    #: gateways'): the policy of other services' channels.
    registry_poll: float = 1.0

    @classmethod
    def from_env(cls, env: Env) -> PresenceSettings:
        """Read the settings.

        Raises:
            ConfigError: a value does not parse or is out of range.
        """
        return cls(
            sweep_interval=env.number("PRESENCE_SWEEP_INTERVAL", 2.0, minimum=0.05),
            grace=env.number("PRESENCE_GRACE", 10.0),
            tombstone_ttl=env.integer("PRESENCE_TOMBSTONE_TTL", 3600, minimum=60),
            sweep_batch=env.integer("PRESENCE_SWEEP_BATCH", 500, minimum=1),
            list_limit=env.integer("PRESENCE_LIST_LIMIT", 1000, minimum=1),
            registry_poll=env.number("REGISTRY_POLL", 1.0, minimum=0.05),
        )

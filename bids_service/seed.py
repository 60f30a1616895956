"""Demo auctions, created at start-up when ``RT_BIDS_SEED_DEMO`` is set and they do not exist.

Creation is atomic and refuses an existing id, so any number of instances may seed at once.
"""

from __future__ import annotations

from typing import Any, Final

from bids_service.rules import parse_auction_spec
from bids_service.settings import BidsSettings
from bids_service.store import BidStore


__all__ = ["DEMO_AUCTIONS", "seed_demo"]

DEMO_AUCTIONS: Final[tuple[dict[str, Any], ...]] = (
    {
        "id": "demo-camera",
        "title": "Rangefinder camera, 1954, with its 50 mm lens",
        "starting_price": 50_000,
        "increment": 1_000,
        "duration_s": 24 * 3600,
    },
    {
        "id": "demo-bike",
        "title": "Steel road bike, 56 cm frame",
        "starting_price": 20_000,
        "increment": 500,
        "duration_s": 2 * 3600,
    },
    {
        "id": "demo-watch",
        "title": "Diver's watch: ends in 15 minutes, late bids extend it",
        "starting_price": 10_000,
        "increment": 250,
        "duration_s": 15 * 60,
        "extend_window": 60,
        "extend_by": 60,
    },
)


async def seed_demo(store: BidStore, settings: BidsSettings) -> list[str]:
    """Create the demo auctions that do not exist yet; return the ids this call created."""
    created = []
    for body in DEMO_AUCTIONS:
        spec = parse_auction_spec(
            body, extend_window=settings.extend_window, extend_by=settings.extend_by
        )
        assert spec.id is not None
        if isinstance(await store.create(spec.id, spec), int):
            created.append(spec.id)
    return created

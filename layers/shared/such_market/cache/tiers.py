"""TTL tiers: hot 300 s, warm 1800 s, cold 86400 s, each with ±10 % jitter; negative results 30 s (±10 %).

``BRIEF`` (30 s, as short as a not-found) is for answers known to be incomplete: a collection whose
ingestion has not completed yet, a token whose metadata the upstream could not read (SPEC §7). A loader
marks such an entry ``Entry(..., tier=Tier.BRIEF)``; the store then keeps it for the shorter of the two
tiers, so it is refreshed soon instead of being served as truth for the key's whole tier.

A value is *fresh* for its tier's TTL. It is kept physically for as long again (``STALE_FACTOR``) so
that, when PostgreSQL is down, an expired-but-kept value can still be served (``X-Cache: STALE``).
Not-found results are never kept past their short TTL and are never served stale.
"""

from __future__ import annotations

import enum
import random

JITTER = 0.10
STALE_FACTOR = 2
NEGATIVE_TTL_SECONDS = 30


class Tier(enum.IntEnum):
    """A tier's value is its nominal TTL in seconds."""

    BRIEF = 30
    HOT = 300
    WARM = 1800
    COLD = 86400


INDEX_CAP = 25_000
"""Live keys one entity index tracks at most: a fill past it is served but not stored, so an index (which has
no TTL and is never evicted; ``such_market.cache.scripts``) stays under about 3 MB whatever a caller asks for."""

_random = random.Random()  # noqa: S311 - jitter, not cryptography


def jittered(seconds: float) -> float:
    """``seconds`` ±10 %, so keys filled together do not expire together."""
    return seconds * (1 + _random.uniform(-JITTER, JITTER))


def effective_tier(tier: Tier, entry_tier: Tier | None) -> Tier:
    """The tier a value is kept for: the key's, or the entry's own when that is shorter."""
    return tier if entry_tier is None else min(tier, entry_tier)


def fresh_ttl_ms(tier: Tier, *, found: bool = True, scale: float = 1.0) -> int:
    """How long a value stays fresh, in milliseconds (negative results use the short TTL). ``scale``
    shortens every tier alike (``CACHE_TTL_SCALE``; 1 in production, less in benchmarks of expiry)."""
    nominal = tier.value if found else min(NEGATIVE_TTL_SECONDS, tier.value)
    return int(jittered(nominal) * 1000 * scale)


def physical_ttl_ms(fresh_ms: int, *, found: bool = True) -> int:
    """How long the value is kept: fresh time, plus as long again for stale serving when found."""
    return fresh_ms * STALE_FACTOR if found else fresh_ms

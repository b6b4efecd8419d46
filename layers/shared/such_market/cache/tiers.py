"""TTL tiers: hot 300 s, warm 1800 s, cold 86400 s, each with ±10 % jitter; negative results 30 s (±10 %).

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

    HOT = 300
    WARM = 1800
    COLD = 86400


#: Index sets must outlive every key they track: the longest physical TTL there can be.
INDEX_TTL_SECONDS = int(Tier.COLD * (1 + JITTER) * STALE_FACTOR) + 60

_random = random.Random()  # noqa: S311 - jitter, not cryptography


def jittered(seconds: float) -> float:
    """``seconds`` ±10 %, so keys filled together do not expire together."""
    return seconds * (1 + _random.uniform(-JITTER, JITTER))


def fresh_ttl_ms(tier: Tier, *, found: bool = True) -> int:
    """How long a value stays fresh, in milliseconds (negative results use the short TTL)."""
    nominal = tier.value if found else min(NEGATIVE_TTL_SECONDS, tier.value)
    return int(jittered(nominal) * 1000)


def physical_ttl_ms(fresh_ms: int, *, found: bool = True) -> int:
    """How long the value is kept: fresh time, plus as long again for stale serving when found."""
    return fresh_ms * STALE_FACTOR if found else fresh_ms

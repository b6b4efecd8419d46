"""The reaper: entity indexes whose keys have all expired are pruned away, so indexes stay bounded.

Entity indexes have no TTL and are never evicted (``such_market.cache.scripts``). A fill prunes the expired
members of the index it writes to, but an index that no fill touches again (a wallet asked for once) would
keep its expired members forever. So every fill first puts its indexes on the registry
(``CacheKeys.index_registry``, a sorted set scored with the time after which everything the index tracks has
expired, plus a minute for clock skew), and the scheduled warmer's run calls ``reap_indexes``: each index
whose time has come is pruned (``PRUNE``: expired members and stale fill leases out; tombstones of a dead
invalidation drained), then forgotten by the registry if nothing is left, or put back with its new horizon.

Bound: an index lingers at most its last key's physical TTL, plus ``REGISTRY_SLACK_MS``, plus the time to
the next reaper run (5 minutes). Forgetting is compare-and-delete on the registry score (``FORGET_INDEX``),
so an index a fill registered again meanwhile stays on the registry.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from such_market.cache.keys import drain_list_key, lease_set_key
from such_market.cache.store import REGISTRY_SLACK_MS, ReadThroughCache

REAP_BATCH: Final = 200
"""Registry entries read per round trip."""

FORGET_INDEX: Final = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) == tonumber(ARGV[2]) then
  return redis.call('ZREM', KEYS[1], ARGV[1])
end
return 0
"""
"""KEYS: the registry. ARGV: an index, the score it was read with. Removes it only if nobody re-registered it."""


@dataclass(frozen=True, slots=True)
class Reaped:
    """What one reaper run did."""

    visited: int
    forgotten: int
    keys_deleted: int
    finished: bool
    """Whether every index that was due was visited (else the budget ran out first)."""

    def as_dict(self) -> dict[str, int | bool]:
        return {
            "indexesVisited": self.visited,
            "indexesForgotten": self.forgotten,
            "keysDeleted": self.keys_deleted,
            "finished": self.finished,
        }


def reap_indexes(
    cache: ReadThroughCache,
    *,
    time_budget_seconds: float,
    batch: int = REAP_BATCH,
    clock: Callable[[], float] = time.time,
) -> Reaped:
    """Prune every index that is due on the registry, within ``time_budget_seconds``."""
    client = cache.client
    registry = cache.keys.index_registry()
    forget = client.register_script(FORGET_INDEX)
    stop_at = time.monotonic() + time_budget_seconds
    visited = forgotten = deleted = 0
    now_ms = int(clock() * 1000)
    seen: set[bytes] = set()
    while time.monotonic() < stop_at:
        due: list[tuple[bytes, float]] = client.zrangebyscore(  # type: ignore[assignment]
            registry, "-inf", now_ms, start=0, num=batch, withscores=True
        )
        fresh = [(index, score) for index, score in due if index not in seen]
        if not fresh:
            return Reaped(visited, forgotten, deleted, finished=True)
        for index, score in fresh:
            seen.add(index)
            name = index.decode()
            drains = drain_list_key(name)
            latest, _server_now, tombstones = cache.scripts.prune(keys=[name, lease_set_key(name), drains])
            deleted += sum(cache.drain_tombstone(tombstone, drains) for tombstone in tombstones)
            visited += 1
            if int(latest) == 0:
                forgotten += int(forget(keys=[registry], args=[name, int(score)]))
            else:
                client.zadd(registry, {name: int(latest) + REGISTRY_SLACK_MS}, gt=True)
            if time.monotonic() >= stop_at:
                break
    return Reaped(visited, forgotten, deleted, finished=False)

"""Token buckets shared through the cache: how fast something expensive may happen, per caller and overall.

A bucket holds up to ``capacity`` tokens and refills ``per_second`` tokens a second. ``take`` asks for one
token from each of several buckets at once (say, the caller's and the global one) in one script call
(``TAKE``): either every bucket gives one, or none does and the answer is how long until all could. A
refused call takes nothing, so a caller that keeps knocking does not drain the global bucket for others.
The script reads the server's clock (``TIME``), so containers with skewed clocks share one view; a
bucket's state is one small hash whose TTL is its time to refill completely (an idle bucket is full, and
gone). Keys live in the durable namespace, one hash tag for all buckets of one purpose, so the script's
keys share a cluster slot.

If the cache is down (or its breaker open), each container falls back to its own in-memory buckets with
the same limits (``LocalBuckets``, at most ``LOCAL_BUCKET_LIMIT`` keys): the guarded operation stays
bounded — per container rather than overall — instead of either stopping (fail closed: nobody could
open a new collection during a cache outage) or running unbounded (fail open: an outage of the cache
would also open our upstream quota to anyone).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from such_market.container import per_container
from such_market.observability import logger

if TYPE_CHECKING:
    from such_market.cache.store import ReadThroughCache

LOCAL_BUCKET_LIMIT: Final = 10_000
"""In-memory buckets one container keeps at most during a cache outage (least recently used dropped)."""

# KEYS: the buckets. ARGV: capacity and refill per second of each bucket, in KEYS order.
# Returns 0 when a token was taken from every bucket, else the milliseconds until each has one.
TAKE: Final = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local levels = {}
local wait = 0
for i, key in ipairs(KEYS) do
    local capacity = tonumber(ARGV[2 * i - 1])
    local rate = tonumber(ARGV[2 * i]) / 1000
    local state = redis.call('HMGET', key, 'tokens', 'at')
    local tokens = tonumber(state[1])
    local at = tonumber(state[2])
    if tokens == nil or at == nil then
        tokens = capacity
        at = now
    end
    tokens = math.min(capacity, tokens + math.max(0, now - at) * rate)
    levels[i] = tokens
    if tokens < 1 then
        wait = math.max(wait, math.ceil((1 - tokens) / rate))
    end
end
if wait > 0 then
    return wait
end
for i, key in ipairs(KEYS) do
    local capacity = tonumber(ARGV[2 * i - 1])
    local rate = tonumber(ARGV[2 * i]) / 1000
    redis.call('HSET', key, 'tokens', tostring(levels[i] - 1), 'at', tostring(now))
    redis.call('PEXPIRE', key, math.ceil(capacity / rate) + 1000)
end
return 0
"""


@dataclass(frozen=True, slots=True)
class Bucket:
    """One bucket: its key (durable namespace, the purpose's hash tag), size and refill rate."""

    key: str
    capacity: int
    per_second: float


class LocalBuckets:
    """The same buckets in one container's memory (the fallback while the cache cannot answer)."""

    def __init__(self, *, limit: int = LOCAL_BUCKET_LIMIT, clock: Callable[[], float] = time.monotonic) -> None:
        self._levels: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._limit = limit
        self._clock = clock
        self._lock = threading.Lock()

    def take(self, buckets: Sequence[Bucket]) -> float:
        """Like ``TAKE``: 0.0 when a token was taken from every bucket, else the seconds to wait."""
        with self._lock:
            now = self._clock()
            levels = []
            wait = 0.0
            for bucket in buckets:
                tokens, at = self._levels.get(bucket.key, (float(bucket.capacity), now))
                tokens = min(float(bucket.capacity), tokens + max(0.0, now - at) * bucket.per_second)
                levels.append(tokens)
                if tokens < 1:
                    wait = max(wait, (1 - tokens) / bucket.per_second)
            if wait > 0:
                return wait
            for bucket, tokens in zip(buckets, levels, strict=True):
                self._levels[bucket.key] = (tokens - 1, now)
                self._levels.move_to_end(bucket.key)
            while len(self._levels) > self._limit:
                self._levels.popitem(last=False)
            return 0.0


@per_container()
def local_buckets(prefix: str) -> LocalBuckets:
    """The container's in-memory buckets (one set per cache prefix)."""
    return LocalBuckets()


def take(cache: ReadThroughCache, buckets: Sequence[Bucket]) -> float:
    """Take one token from every bucket through the cache (its breaker and errors respected), or from the
    container's ``LocalBuckets`` when the cache cannot answer; returns 0.0 on success, else the seconds
    until every bucket would have a token."""
    from such_market.cache.client import cache_errors

    if cache.breaker.allow():
        try:
            script = cache.client.register_script(TAKE)
            args: list[float] = [value for bucket in buckets for value in (bucket.capacity, bucket.per_second)]
            wait_ms = int(script(keys=[bucket.key for bucket in buckets], args=args))
        except cache_errors() as error:
            cache.breaker.record_failure()
            logger.warning(
                "token buckets unavailable in the cache; this container's own bound applies",
                extra={"error_type": type(error).__name__},
            )
        else:
            cache.breaker.record_success()
            return wait_ms / 1000
    return local_buckets(cache.keys.prefix).take(buckets)


__all__ = ["LOCAL_BUCKET_LIMIT", "TAKE", "Bucket", "LocalBuckets", "local_buckets", "take"]

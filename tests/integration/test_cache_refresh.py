"""``ReadThroughCache.refresh`` (the cache warmer's fill) against real Valkey, standalone and cluster mode:
it fills only what is not fresh past its horizon, never beside a reader's fill, and never stores a value
read before an invalidation; and ``CACHE_TTL_SCALE`` shortens the tiers."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from such_market.cache import entries
from such_market.cache.client import build_client
from such_market.cache.entries import Entry
from such_market.cache.keys import CacheKeys
from such_market.cache.store import ReadThroughCache
from such_market.cache.tiers import Tier
from such_market.config import CacheSettings

ADDRESS = "0x" + "cd" * 20
KEYS = CacheKeys("such-market")
METADATA = KEYS.collection_metadata(ADDRESS)
INDEX = KEYS.collection_index(ADDRESS)

Client = redis.Redis | redis.RedisCluster


@pytest.fixture
def client(any_cache: tuple[str, bool]) -> Iterator[Client]:
    url, cluster = any_cache
    made = build_client(CacheSettings(redis_url=url, redis_cluster=cluster, cache_socket_timeout_ms=1000))
    yield made
    made.close()


def _now_ms() -> int:
    return int(time.time() * 1000)


def _fresh_until(client: Client, key: str) -> int:
    raw: bytes = client.get(key)  # type: ignore[assignment]
    return entries.decode(raw)[1]


def test_refresh_fills_only_what_expires_before_the_horizon(client: Client) -> None:
    # Given a value cached by a reader (hot tier: fresh for about 300 s)
    cache = ReadThroughCache(lambda: client, KEYS)
    cache.fetch(METADATA, Tier.HOT, lambda: Entry(200, b'{"v":1}'), indexes=[INDEX])
    loads: list[int] = []

    def load() -> Entry:
        loads.append(1)
        return Entry(200, b'{"v":2}')

    # When the warmer asks for it to be fresh 60 s from now, then 400 s from now
    early = cache.refresh(METADATA, Tier.HOT, load, fresh_until_ms=_now_ms() + 60_000, indexes=[INDEX])
    late = cache.refresh(METADATA, Tier.HOT, load, fresh_until_ms=_now_ms() + 400_000, indexes=[INDEX])
    # Then the first finds it fresh enough, the second refills it (a reader then hits the new value)
    assert (early, late, len(loads)) == ("fresh", "filled", 1)
    served = cache.fetch(METADATA, Tier.HOT, lambda: Entry(500, b"never"), indexes=[INDEX])
    assert (served.cache, served.entry.body) == ("HIT", b'{"v":2}')
    # And the refilled key is still registered in its collection's index (invalidation finds it)
    assert client.zscore(INDEX, METADATA) is not None


def test_refresh_never_fills_beside_a_readers_fill(client: Client) -> None:
    # Given a reader holding the fill lease of a missing key (its load is under way)
    cache = ReadThroughCache(lambda: client, KEYS)
    outcomes: list[str] = []

    def reader_load() -> Entry:
        # When the warmer refreshes the same key meanwhile
        outcomes.append(
            cache.refresh(
                METADATA, Tier.HOT, lambda: Entry(200, b"warm"), fresh_until_ms=_now_ms() + 1, indexes=[INDEX]
            )
        )
        return Entry(200, b"reader")

    served = cache.fetch(METADATA, Tier.HOT, reader_load, indexes=[INDEX])
    # Then the warmer does nothing ("busy") and the reader's value is the one stored
    assert outcomes == ["busy"]
    assert served.cache == "MISS"
    assert client.get(METADATA).endswith(b"reader")  # type: ignore[union-attr]


def test_refresh_that_raced_an_invalidation_stores_nothing(client: Client) -> None:
    # Given a cached value
    cache = ReadThroughCache(lambda: client, KEYS)
    cache.fetch(METADATA, Tier.HOT, lambda: Entry(200, b"old"), indexes=[INDEX])

    def load() -> Entry:
        # When the collection is invalidated while the warmer's load (which read old data) runs
        cache.invalidate_index(INDEX)
        return Entry(200, b"read-before-the-change")

    outcome = cache.refresh(METADATA, Tier.HOT, load, fresh_until_ms=_now_ms() + 400_000, indexes=[INDEX])
    # Then its write is refused: nothing stale is stored
    assert outcome == "lost"
    assert client.get(METADATA) is None


def test_a_load_that_fails_gives_the_lease_back(client: Client) -> None:
    cache = ReadThroughCache(lambda: client, KEYS)

    def load() -> Entry:
        raise RuntimeError("database down")

    with pytest.raises(RuntimeError):
        cache.refresh(METADATA, Tier.HOT, load, fresh_until_ms=_now_ms() + 1, indexes=[INDEX])
    # A reader is not kept waiting on a dead lease: it fills at once
    assert cache.fetch(METADATA, Tier.HOT, lambda: Entry(200, b"v"), indexes=[INDEX]).cache == "MISS"


def test_ttl_scale_shortens_every_tier(client: Client) -> None:
    # Given a cache front whose tiers are scaled to 1 %
    cache = ReadThroughCache(lambda: client, KEYS, ttl_scale=0.01)
    # When a warm-tier value is stored
    cache.fetch(METADATA, Tier.WARM, lambda: Entry(200, b"v"), indexes=[INDEX])
    # Then it is fresh for about 18 s (1800 s x 1 % ± 10 %), kept twice as long
    fresh_for = _fresh_until(client, METADATA) - _now_ms()
    assert 15_000 < fresh_for <= 20_000
    assert 30_000 < client.pttl(METADATA) <= 40_000  # type: ignore[operator]

"""The cache stays bounded under a flood of distinct keys, and eviction never makes an invalidation miss.

Entity indexes are sorted sets without a TTL (never evicted under ``volatile-lru``), pruned of expired
members by every fill and by the reaper; answers any caller can vary at will (an empty page, a wallet
holding nothing) are kept only briefly; an index holds at most ``INDEX_CAP`` live keys.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from local.services import EmbeddedValkey
from such_market.cache import reaping
from such_market.cache.entries import Entry
from such_market.cache.keys import CacheKeys, drain_list_key, lease_key, lease_set_key, tombstone_key
from such_market.cache.store import REGISTRY_SLACK_MS, ReadThroughCache
from such_market.cache.tiers import Tier

ADDRESS = "0x" + "ab" * 20
KEYS = CacheKeys("such-market")
INDEX = KEYS.collection_index(ADDRESS)

Client = redis.Redis | redis.RedisCluster


@pytest.fixture
def client(any_cache: tuple[str, bool]) -> Iterator[Client]:
    url, cluster = any_cache
    made: Client = redis.RedisCluster.from_url(url) if cluster else redis.Redis.from_url(url)
    yield made
    made.close()


def _wallet(n: int) -> str:
    return f"0x{n:040x}"


def _fill(cache: ReadThroughCache, key: str, indexes: list[str], *, tier: Tier = Tier.HOT, brief: bool = False) -> None:
    served = cache.fetch(key, tier, lambda: Entry(200, b"{}", tier=Tier.BRIEF if brief else None), indexes=indexes)
    assert served.cache == "MISS"


def test_index_structures_have_no_ttl_so_volatile_eviction_never_takes_them(client: Client) -> None:
    # Given a collection key and a wallet's key in their indexes, and an invalidation that died mid-drain
    cache = ReadThroughCache(lambda: client, KEYS)
    owned_index = KEYS.owned_index(ADDRESS, _wallet(1))
    _fill(cache, KEYS.collection_metadata(ADDRESS), [INDEX])
    _fill(cache, KEYS.owned(ADDRESS, _wallet(1), 0, 20), [INDEX, owned_index])
    # Then no index has a TTL (volatile-* policies evict only keys with one), values do
    assert client.pttl(INDEX) == -1
    assert client.pttl(owned_index) == -1
    assert client.pttl(KEYS.index_registry()) == -1
    assert client.pttl(KEYS.collection_metadata(ADDRESS)) > 0


def test_a_lease_set_and_drain_list_have_no_ttl(client: Client) -> None:
    cache = ReadThroughCache(lambda: client, KEYS)
    key = KEYS.collection_metadata(ADDRESS)
    assert cache.scripts.get_or_lease(keys=[key, lease_key(key), INDEX, lease_set_key(INDEX)], args=["t", 5000, 0]) == 1
    assert client.pttl(lease_set_key(INDEX)) == -1
    for page in range(150):
        _fill(cache, KEYS.nft_page(ADDRESS, page, 20), [INDEX])
    tombstone = tombstone_key(INDEX, "dead")
    cache.scripts.invalidate_index(keys=[INDEX, lease_set_key(INDEX), drain_list_key(INDEX), tombstone], args=[100])
    assert client.pttl(drain_list_key(INDEX)) == -1
    assert client.pttl(tombstone) == -1


def test_under_eviction_pressure_an_invalidation_still_deletes_every_key_of_the_entity() -> None:
    # Given a cache with a 4 MB limit and ElastiCache's volatile-lru policy, and a collection's 200 keys indexed
    server = EmbeddedValkey(extra_args=("--maxmemory", "4mb", "--maxmemory-policy", "volatile-lru")).start()
    client = redis.Redis.from_url(server.url)
    try:
        cache = ReadThroughCache(lambda: client, KEYS)
        pages = [KEYS.nft_page(ADDRESS, page, 20) for page in range(200)]
        for key in pages:
            _fill(cache, key, [INDEX])
        # When a flood of other collections' values (40 MB of them) makes the server evict
        for n in range(2000):
            other = "0x" + f"{n:040x}"
            _fill(cache, KEYS.collection_metadata(other), [KEYS.collection_index(other)], tier=Tier.WARM)
            client.set(f"such-market:collections:{{{other}}}:blob", b"x" * 20_000, px=600_000)
        assert int(client.info("stats")["evicted_keys"]) > 0
        # Then the index still knows every value of the collection that survived
        surviving = [key for key in pages if client.exists(key)]
        assert {member.decode() for member in client.zrange(INDEX, 0, -1)} >= set(surviving)
        # And invalidating the collection leaves none of them
        cache.invalidate_index(INDEX)
        assert not any(client.exists(key) for key in pages)
    finally:
        client.close()
        server.stop()


def test_every_fill_prunes_the_index_of_expired_keys(client: Client) -> None:
    # Given 50 brief keys (empty pages, kept briefly) of a collection that have expired
    cache = ReadThroughCache(lambda: client, KEYS, ttl_scale=0.02)  # BRIEF: 0.6 s fresh, 1.2 s kept
    for page in range(50):
        _fill(cache, KEYS.nft_page(ADDRESS, 1000 + page, 20), [INDEX], brief=True)
    assert client.zcard(INDEX) == 50
    time.sleep(1.5)
    # When one more key of the collection is filled
    _fill(cache, KEYS.collection_metadata(ADDRESS), [INDEX])
    # Then the index holds only that one
    assert client.zrange(INDEX, 0, -1) == [KEYS.collection_metadata(ADDRESS).encode()]


def test_the_reaper_removes_indexes_whose_keys_all_expired_and_keeps_the_others(client: Client) -> None:
    # Given 300 wallets asked for once (brief answers), and a live collection key
    clock_ms = [0]
    cache = ReadThroughCache(lambda: client, KEYS, ttl_scale=0.02)
    for n in range(300):
        wallet = _wallet(n)
        _fill(cache, KEYS.owned(ADDRESS, wallet, 0, 20), [INDEX, KEYS.owned_index(ADDRESS, wallet)], brief=True)
    live = ReadThroughCache(lambda: client, KEYS)
    _fill(live, KEYS.collection_metadata(ADDRESS), [INDEX])
    assert client.zcard(KEYS.index_registry()) == 301
    time.sleep(1.5)  # every brief value has expired (1.2 s kept at most)
    # When the reaper runs after their horizon (the registry's slack past the server's expiry)
    clock_ms[0] = int(time.time() * 1000) + REGISTRY_SLACK_MS + 1000
    reaped = reaping.reap_indexes(cache, time_budget_seconds=30, batch=50, clock=lambda: clock_ms[0] / 1000)
    # Then every wallet index is gone and forgotten
    assert reaped.finished
    assert reaped.forgotten == 300
    assert not any(client.exists(KEYS.owned_index(ADDRESS, _wallet(n))) for n in range(300))
    assert client.zrange(KEYS.index_registry(), 0, -1) == [INDEX.encode()]
    # And the collection index (not due: it tracks a live key) drops the expired ones at its next fill
    _fill(live, KEYS.traits(ADDRESS), [INDEX])
    assert set(client.zrange(INDEX, 0, -1)) == {
        KEYS.collection_metadata(ADDRESS).encode(),
        KEYS.traits(ADDRESS).encode(),
    }
    assert client.zscore(KEYS.index_registry(), INDEX) > clock_ms[0] - REGISTRY_SLACK_MS - 1000


def test_the_reaper_does_not_forget_an_index_a_fill_registered_again(client: Client) -> None:
    # Given an index on the registry with a horizon in the past, and a fill that re-registered it meanwhile
    cache = ReadThroughCache(lambda: client, KEYS)
    registry = KEYS.index_registry()
    client.zadd(registry, {INDEX: 1000})
    due = client.zrangebyscore(registry, "-inf", 2000, withscores=True)
    _fill(cache, KEYS.collection_metadata(ADDRESS), [INDEX])
    # When the reaper's compare-and-delete runs with the score it read
    forget = client.register_script(reaping.FORGET_INDEX)
    # Then nothing is forgotten: the registry keeps the index with its new horizon
    assert forget(keys=[registry], args=[INDEX, int(due[0][1])]) == 0
    assert client.zscore(registry, INDEX) > 2000


def test_an_index_at_its_cap_serves_new_keys_without_storing_them(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an index at its cap (lowered to 5 here)
    from such_market.cache import store

    monkeypatch.setattr(store, "INDEX_CAP", 5)
    cache = ReadThroughCache(lambda: client, KEYS)
    for page in range(5):
        _fill(cache, KEYS.nft_page(ADDRESS, page, 20), [INDEX])
    # When a sixth key of the entity is read
    sixth = KEYS.nft_page(ADDRESS, 5, 20)
    served = cache.fetch(sixth, Tier.WARM, lambda: Entry(200, b'{"sixth":1}'), indexes=[INDEX])
    # Then it is answered but not stored, its lease is given back, and the index holds 5 keys
    assert (served.cache, served.entry.body) == ("MISS", b'{"sixth":1}')
    assert not client.exists(sixth, lease_key(sixth))
    assert client.zcard(INDEX) == 5
    assert client.zcard(lease_set_key(INDEX)) == 0
    # And a key already indexed is still refilled
    first = KEYS.nft_page(ADDRESS, 0, 20)
    client.delete(first)
    assert cache.fetch(first, Tier.WARM, lambda: Entry(200, b"{}"), indexes=[INDEX]).cache == "MISS"
    assert client.exists(first)

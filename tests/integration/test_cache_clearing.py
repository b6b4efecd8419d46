"""Clearing the cache by scope against real Valkey, standalone and cluster mode: exactly the scope's keys,
never durable state, exact counts across many SCAN batches, and no fill from before a clear storing
its value after it."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import redis

from such_market.cache import clearing
from such_market.cache.client import build_client
from such_market.cache.entries import Entry
from such_market.cache.keys import CacheKeys, lease_key
from such_market.cache.store import ReadThroughCache
from such_market.cache.tiers import Tier
from such_market.config import CacheSettings

KEYS = CacheKeys("such-market")
A = "0x" + "aa" * 20
B = "0x" + "bb" * 20
WALLET = "0x" + "01" * 20
OTHER_WALLET = "0x" + "02" * 20

Client = redis.Redis | redis.RedisCluster


@pytest.fixture
def client(any_cache: tuple[str, bool]) -> Iterator[Client]:
    url, cluster = any_cache
    made = build_client(CacheSettings(redis_url=url, redis_cluster=cluster, cache_socket_timeout_ms=2000))
    yield made
    made.close()


@pytest.fixture
def cache(client: Client) -> ReadThroughCache:
    return ReadThroughCache(lambda: client, KEYS)


def put(cache: ReadThroughCache, key: str, *indexes: str) -> str:
    cache.fetch(key, Tier.WARM, lambda: Entry(200, b"{}"), indexes=indexes)
    return key


@pytest.fixture
def named(cache: ReadThroughCache, client: Client) -> dict[str, str]:
    """Keys of two collections, two wallets and two users, as the endpoints fill them, plus durable state."""
    keys: dict[str, str] = {}
    for collection in (A, B):
        index = KEYS.collection_index(collection)
        keys[f"{collection}:metadata"] = put(cache, KEYS.collection_metadata(collection), index)
        keys[f"{collection}:page"] = put(cache, KEYS.nft_page(collection, 0, 20), index)
        keys[f"{collection}:token"] = put(cache, KEYS.ownership(collection, 7), index)
        for wallet in (WALLET, OTHER_WALLET):
            for page in (0, 1):
                keys[f"{collection}:owned:{wallet}:{page}"] = put(
                    cache, KEYS.owned(collection, wallet, page, 20), index, KEYS.owned_index(collection, wallet)
                )
    for wallet in (WALLET, OTHER_WALLET):
        keys[f"contracts:{wallet}"] = put(cache, KEYS.wallet_contracts(wallet))
    for fid in (1, 2):
        for name, key in zip(
            ("profile", "verifications", "collections", "collections-with-spam", "normalized", "normalized-with-spam"),
            KEYS.user_keys(fid),
            strict=True,
        ):
            keys[f"{name}:{fid}"] = put(cache, key)
    for name in ("locks:refresh:x", "idempotency:invalidator:e1", "analytics:m:1", "notifications:tokens:1:x"):
        client.set(KEYS.durable(*name.split(":")), b"durable")
    return keys


def durable_survives(client: Client) -> bool:
    names = ("locks:refresh:x", "idempotency:invalidator:e1", "analytics:m:1", "notifications:tokens:1:x")
    return all(client.get(KEYS.durable(*name.split(":"))) == b"durable" for name in names)


def gone(client: Client, named: dict[str, str]) -> set[str]:
    return {name for name, key in named.items() if not client.exists(key)}


def all_names(client: Client) -> set[bytes]:
    if isinstance(client, redis.RedisCluster):
        return set(client.scan_iter(count=1000, target_nodes=redis.RedisCluster.PRIMARIES))
    return set(client.scan_iter(count=1000))


def test_clear_collection_deletes_exactly_its_keys(
    cache: ReadThroughCache, client: Client, named: dict[str, str]
) -> None:
    deleted = clearing.clear_collection(cache, A)
    expected = {name for name in named if name.startswith(f"{A}:")}
    assert gone(client, named) == expected
    assert deleted == len(expected)
    assert durable_survives(client)


def test_clear_wallet_deletes_its_contract_list_and_its_tokens_in_every_collection(
    cache: ReadThroughCache, client: Client, named: dict[str, str]
) -> None:
    deleted = clearing.clear_wallet(cache, WALLET)
    expected = {f"contracts:{WALLET}"} | {f"{c}:owned:{WALLET}:{page}" for c in (A, B) for page in (0, 1)}
    assert gone(client, named) == expected
    assert deleted == len(expected)
    assert durable_survives(client)


def test_clear_user_deletes_exactly_the_users_keys(
    cache: ReadThroughCache, client: Client, named: dict[str, str]
) -> None:
    deleted = clearing.clear_user(cache, 1)
    assert gone(client, named) == {
        "profile:1",
        "verifications:1",
        "collections:1",
        "collections-with-spam:1",
        "normalized:1",
        "normalized-with-spam:1",
    }
    assert deleted == 6
    assert durable_survives(client)


def test_clear_all_deletes_every_cache_key_and_counts_them_exactly(
    cache: ReadThroughCache, client: Client, named: dict[str, str]
) -> None:
    # Given, besides the named keys, 3,000 more pages (several SCAN and UNLINK batches per node)
    index = KEYS.collection_index(A)
    for page in range(1, 3001):
        client.set(KEYS.nft_page(A, page, 50), b"x")
    client.zadd(index, {KEYS.nft_page(A, page, 50): 1 for page in range(1, 3001)})
    durable = {name for name in all_names(client) if name.startswith(b"such-market:durable:")}
    before = all_names(client)
    # When everything is cleared
    deleted = clearing.clear_all(cache)
    # Then exactly the durable keys remain, and keysDeleted counts every other key
    assert all_names(client) == durable
    assert deleted == len(before) - len(durable)
    assert durable_survives(client)


@pytest.mark.parametrize("scope", ["all", "wallet"])
def test_a_fill_leased_before_a_clear_never_stores_its_value(
    cache: ReadThroughCache, client: Client, scope: str
) -> None:
    # Given a fill that took its lease and read the old data before the clear
    key = KEYS.owned(A, WALLET, 0, 20)
    indexes = (KEYS.collection_index(A), KEYS.owned_index(A, WALLET))
    loaded, release = threading.Event(), threading.Event()

    def slow_old_load() -> Entry:
        loaded.set()
        release.wait(5)
        return Entry(200, b'{"old":true}')

    filler = threading.Thread(target=cache.fetch, args=(key, Tier.HOT, slow_old_load), kwargs={"indexes": indexes})
    filler.start()
    assert loaded.wait(5)
    # When the cache is cleared, and only then the fill finishes
    deleted = clearing.clear_all(cache) if scope == "all" else clearing.clear_wallet(cache, WALLET)
    release.set()
    filler.join()
    # Then its lease was deleted by the clear and its stale value never stored
    assert deleted >= 1
    assert not client.exists(key, lease_key(key))
    # And a fill that starts after the clear stores its value
    served = cache.fetch(key, Tier.HOT, lambda: Entry(200, b'{"new":true}'), indexes=indexes)
    assert served.cache == "MISS"
    assert cache.fetch(key, Tier.HOT, lambda: Entry(200, b"{}"), indexes=indexes).entry.body == b'{"new":true}'


def test_a_fill_that_finishes_during_the_lease_pass_is_deleted_by_the_value_pass(
    cache: ReadThroughCache, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a fill in flight before the clear, which finishes while pass 1 (the leases) is running
    key = KEYS.collection_metadata(A)
    loaded, release, stored = threading.Event(), threading.Event(), threading.Event()

    def slow_old_load() -> Entry:
        loaded.set()
        release.wait(5)
        return Entry(200, b'{"old":true}')

    def fill() -> None:
        cache.fetch(key, Tier.HOT, slow_old_load, indexes=[KEYS.collection_index(A)])
        stored.set()

    filler = threading.Thread(target=fill)
    filler.start()
    assert loaded.wait(5)
    real_scan = clearing._scan_and_unlink
    passes: list[str] = []

    def scan_after_the_fill(node: redis.Redis, pattern: str, namespaces: tuple[bytes, ...], *, cluster: bool) -> int:
        if pattern.endswith(":lease") and not passes:
            release.set()  # the fill stores its value before pass 1 reaches its lease
            assert stored.wait(5)
            assert client.exists(key)
        passes.append(pattern)
        return real_scan(node, pattern, namespaces, cluster=cluster)

    monkeypatch.setattr(clearing, "_scan_and_unlink", scan_after_the_fill)
    # When everything is cleared
    clearing.clear_all(cache)
    filler.join()
    # Then the value it stored during pass 1 was deleted by pass 2
    assert not client.exists(key)

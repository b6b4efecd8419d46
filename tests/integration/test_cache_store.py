"""The cache core against real Valkey, standalone and cluster mode: hits, protected fills, leases vs
invalidation, negative caching, stale serving, the breaker, and a cross-process stampede."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Iterator

import pytest
import redis

from local.services import free_port
from such_market.cache.breaker import CircuitBreaker
from such_market.cache.client import build_client
from such_market.cache.entries import Entry
from such_market.cache.keys import CacheKeys, drain_list_key, lease_key, lease_set_key, tombstone_key
from such_market.cache.store import ReadThroughCache
from such_market.cache.tiers import NEGATIVE_TTL_SECONDS, Tier
from such_market.config import CacheSettings
from such_market.errors import ServiceUnavailableError

ADDRESS = "0x" + "ab" * 20
KEYS = CacheKeys("such-market")
METADATA = KEYS.collection_metadata(ADDRESS)
INDEX = KEYS.collection_index(ADDRESS)


Client = redis.Redis | redis.RedisCluster


def client_for(url: str, cluster: bool) -> Client:
    return build_client(CacheSettings(redis_url=url, redis_cluster=cluster, cache_socket_timeout_ms=1000))


@pytest.fixture
def client(any_cache: tuple[str, bool]) -> Iterator[Client]:
    url, cluster = any_cache
    made = client_for(url, cluster)
    yield made
    made.close()


class Clock:
    """A settable wall clock (seconds)."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_miss_then_hit_returns_the_stored_bytes(client: Client) -> None:
    # Given an empty cache and a loader
    cache = ReadThroughCache(lambda: client, KEYS)
    calls = []

    def load() -> Entry:
        calls.append(1)
        return Entry(200, b'{"name":"demo"}')

    # When the key is read twice
    first = cache.fetch(METADATA, Tier.HOT, load, indexes=[INDEX])
    second = cache.fetch(METADATA, Tier.HOT, load, indexes=[INDEX])
    # Then the first is a MISS that loaded, the second a HIT with the same bytes, and the key is indexed
    assert (first.cache, second.cache) == ("MISS", "HIT")
    assert second.entry == Entry(200, b'{"name":"demo"}')
    assert len(calls) == 1
    assert client.zrange(INDEX, 0, -1) == [METADATA.encode()]
    assert not client.exists(lease_key(METADATA))
    ttl_ms = client.pttl(METADATA)
    assert 2 * 0.9 * Tier.HOT * 1000 - 1000 <= ttl_ms <= 2 * 1.1 * Tier.HOT * 1000


def test_not_found_is_cached_briefly(client: Client) -> None:
    cache = ReadThroughCache(lambda: client, KEYS)
    served = cache.fetch(METADATA, Tier.COLD, lambda: Entry(404, b'{"error":"x","code":"not_found"}'))
    assert served.entry.status == 404
    assert 0 < client.pttl(METADATA) <= NEGATIVE_TTL_SECONDS * 1.1 * 1000
    again = cache.fetch(METADATA, Tier.COLD, lambda: Entry(200, b"{}"))
    assert (again.cache, again.entry.status) == ("HIT", 404)


def test_200_concurrent_misses_make_one_fill(client: Client) -> None:
    # Given 200 threads missing the same key at once and a loader that takes 20 ms
    cache = ReadThroughCache(lambda: client, KEYS)
    loads = []
    barrier = threading.Barrier(200)
    results: list[bytes] = []
    lock = threading.Lock()

    def load() -> Entry:
        loads.append(1)
        threading.Event().wait(0.02)
        return Entry(200, b'{"v":1}')

    def reader() -> None:
        barrier.wait()
        served = cache.fetch(METADATA, Tier.HOT, load, indexes=[INDEX])
        with lock:
            results.append(served.entry.body)

    threads = [threading.Thread(target=reader) for _ in range(200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then exactly one loader ran and every caller got its value
    assert len(loads) == 1
    assert results == [b'{"v":1}'] * 200


def _stampede_worker(
    url: str, cluster: bool, start: multiprocessing.synchronize.Event, out: multiprocessing.Queue
) -> None:  # type: ignore[name-defined]
    client = client_for(url, cluster)
    cache = ReadThroughCache(lambda: client, KEYS)
    counter = KEYS.durable("test", "fills")

    def load() -> Entry:
        client.incr(counter)
        threading.Event().wait(0.02)
        return Entry(200, b'{"v":"stampede"}')

    bodies: list[bytes] = []
    lock = threading.Lock()

    def reader() -> None:
        start.wait()
        served = cache.fetch(METADATA, Tier.HOT, load, indexes=[INDEX])
        with lock:
            bodies.append(served.entry.body)

    threads = [threading.Thread(target=reader) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out.put(bodies)


def test_stampede_across_four_processes_makes_one_fill(client: Client, any_cache: tuple[str, bool]) -> None:
    # Given 4 processes x 50 threads that miss the same key at the same moment
    url, cluster = any_cache
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    out = context.Queue()
    processes = [context.Process(target=_stampede_worker, args=(url, cluster, start, out)) for _ in range(4)]
    for process in processes:
        process.start()
    start.set()
    bodies = [body for _ in processes for body in out.get(timeout=60)]
    for process in processes:
        process.join(timeout=30)
    # Then the loader ran once in all, and all 200 callers were served its value
    assert int(client.get(KEYS.durable("test", "fills"))) == 1
    assert bodies == [b'{"v":"stampede"}'] * 200


def test_fill_racing_an_invalidation_never_writes_its_stale_value(client: Client) -> None:
    # Given a fill that read the old data and is still running
    cache = ReadThroughCache(lambda: client, KEYS)
    loaded = threading.Event()
    release = threading.Event()

    def slow_old_load() -> Entry:
        loaded.set()
        release.wait(5)
        return Entry(200, b'{"owner":"old"}')

    filler = threading.Thread(target=cache.fetch, args=(METADATA, Tier.HOT, slow_old_load), kwargs={"indexes": [INDEX]})
    filler.start()
    assert loaded.wait(5)
    # When the data changes and the entity is invalidated before the fill finishes
    cache.invalidate_index(INDEX)
    release.set()
    filler.join()
    # Then the old value was not written, and the next read loads the new data
    assert client.get(METADATA) is None
    served = cache.fetch(METADATA, Tier.HOT, lambda: Entry(200, b'{"owner":"new"}'), indexes=[INDEX])
    assert (served.cache, served.entry.body) == ("MISS", b'{"owner":"new"}')


def test_single_key_invalidation_also_cancels_its_fill(client: Client) -> None:
    cache = ReadThroughCache(lambda: client, KEYS)
    key = KEYS.ownership(ADDRESS, 7)
    loaded, release = threading.Event(), threading.Event()

    def slow_old_load() -> Entry:
        loaded.set()
        release.wait(5)
        return Entry(200, b'{"owner":"old"}')

    filler = threading.Thread(target=cache.fetch, args=(key, Tier.HOT, slow_old_load))
    filler.start()
    assert loaded.wait(5)
    cache.invalidate_keys([key])
    release.set()
    filler.join()
    assert client.get(key) is None


def test_invalidating_a_collection_deletes_all_its_keys_and_nothing_durable(
    client: Client,
) -> None:
    # Given many keys of one collection, a key of another and a durable record
    cache = ReadThroughCache(lambda: client, KEYS)
    other = KEYS.collection_metadata("0x" + "cd" * 20)
    durable = KEYS.durable("idempotency", "x")
    client.set(durable, b"keep")
    pages = [KEYS.nft_page(ADDRESS, page, 20) for page in range(50)]
    for key in [METADATA, *pages]:
        cache.fetch(key, Tier.WARM, lambda: Entry(200, b"{}"), indexes=[INDEX])
    cache.fetch(other, Tier.WARM, lambda: Entry(200, b"{}"))
    # When the collection is invalidated
    deleted = cache.invalidate_index(INDEX)
    # Then exactly its 51 keys are gone; the rest stays
    assert deleted == 51
    assert not any(client.exists(key) for key in [METADATA, *pages, INDEX])
    assert client.get(other) is not None
    assert client.get(durable) == b"keep"


def test_database_down_serves_the_kept_value_as_stale(client: Client) -> None:
    # Given a value whose fresh time has passed but that is still kept
    clock = Clock()
    cache = ReadThroughCache(lambda: client, KEYS, clock=clock)
    cache.fetch(METADATA, Tier.HOT, lambda: Entry(200, b'{"v":"kept"}'))
    clock.now += Tier.HOT * 1.2

    def database_down() -> Entry:
        raise ServiceUnavailableError("database unavailable", retry_after=5)

    # When the database cannot answer, Then the kept value is served as STALE
    served = cache.fetch(METADATA, Tier.HOT, database_down)
    assert (served.cache, served.entry.body) == ("STALE", b'{"v":"kept"}')
    # And with nothing kept, the 503 goes through
    with pytest.raises(ServiceUnavailableError):
        cache.fetch(KEYS.traits(ADDRESS), Tier.WARM, database_down)
    # And a later successful load refreshes it
    served = cache.fetch(METADATA, Tier.HOT, lambda: Entry(200, b'{"v":"new"}'))
    assert (served.cache, served.entry.body) == ("MISS", b'{"v":"new"}')


def test_cache_down_bypasses_to_the_loader_and_opens_the_breaker() -> None:
    # Given a cache address where nothing listens
    settings = CacheSettings(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    clock = Clock(0.0)
    breaker = CircuitBreaker(failure_threshold=3, open_seconds=5, clock=clock)
    cache = ReadThroughCache(lambda: build_client(settings), KEYS, breaker=breaker)
    # When requests arrive, Then each is answered by the loader, marked BYPASS
    for _ in range(5):
        served = cache.fetch(METADATA, Tier.HOT, lambda: Entry(200, b"{}"))
        assert served.cache == "BYPASS"
    # And after three failures the breaker no longer lets calls reach the cache
    assert breaker.allow() is False
    # Until its open time has passed: one trial is let through
    clock.now += 6
    assert breaker.allow() is True
    assert breaker.allow() is False


def test_breaker_closes_after_a_successful_trial() -> None:
    clock = Clock(0.0)
    breaker = CircuitBreaker(failure_threshold=2, open_seconds=1, clock=clock)
    breaker.record_failure()
    assert breaker.allow() is True
    breaker.record_failure()
    assert breaker.allow() is False
    clock.now += 2
    assert breaker.allow() is True
    breaker.record_success()
    assert breaker.allow() is True
    assert breaker.allow() is True


def test_cluster_keys_of_a_collection_share_one_slot(valkey_cluster: str) -> None:
    cluster = redis.RedisCluster.from_url(valkey_cluster)
    keys = [
        METADATA,
        KEYS.nft_page(ADDRESS, 3, 50, "abc"),
        KEYS.traits(ADDRESS),
        KEYS.ownership(ADDRESS, 12),
        KEYS.owned(ADDRESS, "0x" + "11" * 20, 0, 20),
        INDEX,
        KEYS.owned_index(ADDRESS, "0x" + "11" * 20),
        lease_key(METADATA),
        lease_set_key(INDEX),
        drain_list_key(INDEX),
        tombstone_key(INDEX, "0123abcd"),
    ]
    assert len({cluster.keyslot(key) for key in keys}) == 1
    cluster.close()


# -- collection-wide invalidation in bounded steps (leases first, then batches of values) -----------------
def _old_fill_in_flight(cache: ReadThroughCache, key: str) -> tuple[threading.Thread, threading.Event]:
    """A fill of ``key`` that has taken its lease and read the old data, and waits to be released."""
    loaded, release = threading.Event(), threading.Event()

    def slow_old_load() -> Entry:
        loaded.set()
        release.wait(5)
        return Entry(200, b'{"owner":"old"}')

    filler = threading.Thread(target=cache.fetch, args=(key, Tier.WARM, slow_old_load), kwargs={"indexes": [INDEX]})
    filler.start()
    assert loaded.wait(5)
    return filler, release


def test_batched_invalidation_deletes_exactly_the_collection_and_its_bookkeeping(client: Client) -> None:
    # Given 1,000 keys of a collection (4 drain batches of 250), another collection's key and a durable record
    cache = ReadThroughCache(lambda: client, KEYS)
    other = KEYS.collection_metadata("0x" + "cd" * 20)
    durable = KEYS.durable("idempotency", "x")
    client.set(durable, b"keep")
    pages = [KEYS.nft_page(ADDRESS, page, 20) for page in range(1000)]
    for key in pages:
        cache.fetch(key, Tier.WARM, lambda: Entry(200, b"{}"), indexes=[INDEX])
    cache.fetch(other, Tier.WARM, lambda: Entry(200, b"{}"), indexes=[KEYS.collection_index("0x" + "cd" * 20)])
    # And a fill in flight (its lease registered in the lease set, not among the values)
    filler, release = _old_fill_in_flight(cache, METADATA)
    assert client.zrange(lease_set_key(INDEX), 0, -1) == [lease_key(METADATA).encode()]
    # When the collection is invalidated in batches of 250
    deleted = cache.invalidate_index(INDEX, batch=250)
    release.set()
    filler.join()
    # Then its 1,000 values and the lease are gone, and so are the index, lease set, drain list and tombstone
    assert deleted == 1001
    assert not any(client.exists(key) for key in [*pages, METADATA, lease_key(METADATA)])
    assert not client.exists(INDEX, lease_set_key(INDEX), drain_list_key(INDEX))
    assert client.get(other) is not None
    assert client.get(durable) == b"keep"


def test_a_fill_leased_before_a_batched_invalidation_never_stores_and_a_later_one_does(client: Client) -> None:
    # Given a large collection and a fill that read the old data before the change
    cache = ReadThroughCache(lambda: client, KEYS)
    for page in range(600):
        cache.fetch(KEYS.nft_page(ADDRESS, page, 20), Tier.WARM, lambda: Entry(200, b"{}"), indexes=[INDEX])
    filler, release = _old_fill_in_flight(cache, METADATA)
    # When the collection is invalidated (several drain calls) and only then the old fill finishes
    assert cache.invalidate_index(INDEX, batch=100) == 601
    release.set()
    filler.join()
    # Then the old value was never stored
    assert client.get(METADATA) is None
    # And a fill that starts after the invalidation stores its value and registers it in a fresh index
    served = cache.fetch(METADATA, Tier.WARM, lambda: Entry(200, b'{"owner":"new"}'), indexes=[INDEX])
    assert (served.cache, served.entry.body) == ("MISS", b'{"owner":"new"}')
    assert cache.fetch(METADATA, Tier.WARM, lambda: Entry(200, b"{}"), indexes=[INDEX]).cache == "HIT"
    assert client.zrange(INDEX, 0, -1) == [METADATA.encode()]
    assert not client.exists(lease_set_key(INDEX))


def test_an_invalidation_that_died_mid_drain_is_finished_by_the_next_one(client: Client) -> None:
    # Given an invalidation whose first step ran (leases gone, index renamed, one batch drained) and
    # whose process died before draining the rest
    cache = ReadThroughCache(lambda: client, KEYS)
    pages = [KEYS.nft_page(ADDRESS, page, 20) for page in range(300)]
    for key in pages:
        cache.fetch(key, Tier.WARM, lambda: Entry(200, b"{}"), indexes=[INDEX])
    tombstone = tombstone_key(INDEX, "dead")
    deleted, pending, more = cache.scripts.invalidate_index(
        keys=[INDEX, lease_set_key(INDEX), drain_list_key(INDEX), tombstone], args=[100]
    )
    assert deleted == 100
    assert pending == [tombstone.encode()]
    assert more == 1
    # When the collection changes again and is invalidated
    cache.fetch(METADATA, Tier.WARM, lambda: Entry(200, b"{}"), indexes=[INDEX])
    # Then that invalidation also drains the dead one's tombstone: nothing of the collection is left
    assert cache.invalidate_index(INDEX) == 300 - deleted + 1
    assert not any(client.exists(key) for key in [*pages, METADATA])
    assert not client.exists(tombstone, drain_list_key(INDEX))


def test_a_fill_given_back_leaves_no_lease_behind(client: Client) -> None:
    cache = ReadThroughCache(lambda: client, KEYS)
    served = cache.fetch(METADATA, Tier.WARM, lambda: Entry(200, b"{}", cacheable=False), indexes=[INDEX])
    assert served.cache == "BYPASS"  # never cached: not a miss of the hit rate
    assert not client.exists(METADATA, lease_key(METADATA), lease_set_key(INDEX))

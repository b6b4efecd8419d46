"""A cache fill's database work is bounded shorter than the invocation's deadline: a database that does
not answer costs a reader little when a kept value can be served instead, and an uncached read a 503
well before the deadline; upstream work in the same fill keeps the whole deadline.

The slow database is a real ``pg_sleep`` on a watched connection (the watchdog cuts it as it would cut
a frozen server's), under an invocation of 60 s: the old code let the query finish and answered MISS.
The times live in the fault suite (``tests/chaos/test_database_freeze.py``); here, what was answered.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest
import redis

from such_market import deadline
from such_market.cache.client import build_client
from such_market.cache.entries import Entry
from such_market.cache.keys import CacheKeys, lease_key
from such_market.cache.store import FALLBACK_DATABASE_SECONDS, UNCACHED_DATABASE_SECONDS, ReadThroughCache
from such_market.cache.tiers import Tier
from such_market.config import CacheSettings, DatabaseSettings
from such_market.db import watchdog
from such_market.db.connection import get_connection

ADDRESS = "0x" + "cd" * 20
KEYS = CacheKeys("such-market")
METADATA = KEYS.collection_metadata(ADDRESS)
SLOWER_THAN_ANY_BOUND = 3.0  # seconds: longer than both bounds, far shorter than the invocation


class _Context:
    def get_remaining_time_in_millis(self) -> int:
        return 60_000


class _Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def client(cache_server, cache) -> Iterator[redis.Redis]:  # `cache`: flushed for this test
    made = build_client(
        CacheSettings(redis_url=cache_server.url, redis_cluster=cache_server.cluster, cache_socket_timeout_ms=1000)
    )
    yield made
    made.close()


@pytest.fixture
def settings(db_url: str) -> DatabaseSettings:
    return DatabaseSettings(database_url=db_url)


def _conn(settings: DatabaseSettings) -> psycopg.Connection[tuple[object, ...]]:
    """The connection as the runtime hands it out: this thread's, watched."""
    conn = get_connection(settings)
    watchdog.guard(conn)
    return conn


def _slow_load(settings: DatabaseSettings) -> Entry:
    _conn(settings).execute("SELECT pg_sleep(%s)", (SLOWER_THAN_ANY_BOUND,))
    return Entry(200, b'{"v":"new"}')


def _kept(cache: ReadThroughCache, clock: _Clock) -> None:
    cache.fetch(METADATA, Tier.HOT, lambda: Entry(200, b'{"v":"kept"}'))
    clock.now += Tier.HOT * 1.2  # past its fresh time, still kept


def test_a_kept_value_is_served_when_the_fill_outlasts_its_database_bound(client, settings):
    # Given a kept value past its freshness, and a database that does not answer within the bound
    clock = _Clock()
    cache = ReadThroughCache(lambda: client, KEYS, clock=clock)
    _kept(cache, clock)
    # When it is read under a 60 s invocation
    with deadline.invocation(_Context()):
        served = cache.fetch(METADATA, Tier.HOT, lambda: _slow_load(settings))
    # Then the fill's query was cut at the fallback bound and the kept value served STALE, the key keeps
    # it and no lease is left behind; the connection is replaced on next use
    assert (served.cache, served.entry.body) == ("STALE", b'{"v":"kept"}')
    assert not client.exists(lease_key(METADATA))
    assert get_connection(settings).execute("SELECT 1").fetchone() == (1,)


def test_an_uncached_read_fails_at_its_database_bound_not_the_deadline(client, settings):
    # Given nothing kept and a database that does not answer within the bound
    cache = ReadThroughCache(lambda: client, KEYS)
    # When it is read under a 60 s invocation, Then the database failure comes (a 503 at the edge)
    with deadline.invocation(_Context()), pytest.raises(psycopg.OperationalError):
        cache.fetch(METADATA, Tier.HOT, lambda: _slow_load(settings))
    assert client.get(METADATA) is None
    assert not client.exists(lease_key(METADATA))


def test_with_the_cache_down_an_uncached_read_fails_at_its_database_bound_too(client, settings):
    # Given a cache front whose breaker is open (the cache is down) and a database that does not answer
    cache = ReadThroughCache(lambda: client, KEYS)
    for _ in range(10):
        cache.breaker.record_failure()
    assert not cache.breaker.allow()
    # When it is read under a 60 s invocation, Then the database failure comes at the bound, not the deadline
    with deadline.invocation(_Context()), pytest.raises(psycopg.OperationalError):
        cache.fetch(METADATA, Tier.HOT, lambda: _slow_load(settings))


def test_only_database_work_gets_the_short_bound(client, settings):
    # Given a kept value, and a fill that reads both bounds
    clock = _Clock()
    cache = ReadThroughCache(lambda: client, KEYS, clock=clock)
    _kept(cache, clock)
    seen: dict[str, float | None] = {}

    def load() -> Entry:
        seen["database"] = deadline.database_remaining()
        seen["invocation"] = deadline.remaining()
        return Entry(200, b'{"v":"new"}')

    with deadline.invocation(_Context()):
        assert cache.fetch(METADATA, Tier.HOT, load).cache == "MISS"
        assert cache.fetch(KEYS.traits(ADDRESS), Tier.HOT, load).cache == "MISS"
    # Then (the last fill: nothing kept) its database work had the uncached bound, and upstream calls
    # (which read the invocation's remaining time) still had the invocation's ~59 s
    database, invocation = seen["database"], seen["invocation"]
    assert database is not None
    assert invocation is not None
    assert database <= UNCACHED_DATABASE_SECONDS
    assert invocation > 10 * UNCACHED_DATABASE_SECONDS


def test_a_connection_watched_before_a_fill_is_watched_to_the_deadline_after_it(client, settings):
    # Given an invocation whose connection is already watched (a first query), and a kept value
    clock = _Clock()
    cache = ReadThroughCache(lambda: client, KEYS, clock=clock)
    _kept(cache, clock)
    with deadline.invocation(_Context()):
        conn = _conn(settings)
        conn.execute("SELECT 1")
        # When a fill runs under the short bound on the same connection
        assert (
            cache.fetch(METADATA, Tier.HOT, lambda: Entry(200, _conn(settings).execute("SELECT 1") and b"{}")).cache
            == "MISS"
        )
        # Then after it, the connection is watched until the invocation's deadline again: a query longer
        # than the fill's bound still finishes
        assert _conn(settings).execute("SELECT pg_sleep(%s), 1", (FALLBACK_DATABASE_SECONDS * 2,)).fetchone() == (
            "",
            1,
        )


def test_a_reader_with_a_kept_value_does_not_wait_out_another_callers_slow_fill(client, settings):
    # Given a kept value whose fill another caller holds the lease of (and is slow to finish)
    clock = _Clock()
    cache = ReadThroughCache(lambda: client, KEYS, clock=clock)
    _kept(cache, clock)
    client.set(lease_key(METADATA), "someone-else", px=60_000)
    loads: list[int] = []

    def load() -> Entry:
        loads.append(1)
        return Entry(200, b'{"v":"new"}')

    # When it is read, Then the kept value is served STALE after the fallback's wait, without loading
    # (the old code waited out the lease, then loaded itself)
    with deadline.invocation(_Context()):
        served = cache.fetch(METADATA, Tier.HOT, load)
    assert (served.cache, served.entry.body, loads) == ("STALE", b'{"v":"kept"}', [])


def test_a_reader_taking_over_a_failed_fill_has_only_the_rest_of_its_bound(client, settings):
    # Given nothing kept, and another caller holding the fill's lease that gives up after 1 s
    cache = ReadThroughCache(lambda: client, KEYS)
    client.set(lease_key(METADATA), "someone-else", px=1000)
    bounds: list[float | None] = []

    def load() -> Entry:
        bounds.append(deadline.database_remaining())
        return Entry(200, b'{"v":"new"}')

    # When it is read, waits for that fill and takes the lease over once it is released
    with deadline.invocation(_Context()):
        served = cache.fetch(METADATA, Tier.HOT, load)
    # Then its own database calls get what is left of the 2 s bound, not a whole bound again
    assert served.cache == "MISS"
    assert bounds[0] is not None
    assert bounds[0] <= UNCACHED_DATABASE_SECONDS - 0.9


def test_time_spent_upstream_between_database_calls_does_not_count(client, settings):
    # Given a kept value, and a fill that queries, then waits on an upstream longer than the database
    # bound, then queries again (a profile refresh: read the row, ask Neynar, store the answer)
    clock = _Clock()
    cache = ReadThroughCache(lambda: client, KEYS, clock=clock)
    _kept(cache, clock)

    def load() -> Entry:
        _conn(settings).execute("SELECT 1")
        time.sleep(FALLBACK_DATABASE_SECONDS * 2)  # the upstream call
        _conn(settings).execute("SELECT 2")
        return Entry(200, b'{"v":"new"}')

    # When it is read, Then the fill completes and its value is served and stored: the bound is per
    # database call, and an idle connection is not cut
    with deadline.invocation(_Context()):
        served = cache.fetch(METADATA, Tier.HOT, load)
    assert (served.cache, served.entry.body) == ("MISS", b'{"v":"new"}')
    assert get_connection(settings).execute("SELECT 3").fetchone() == (3,)

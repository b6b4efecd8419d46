"""Cache-aside with protected fills, negative caching, stale serving and a circuit breaker.

``ReadThroughCache.fetch(key, tier, load)`` is the one way every read endpoint uses the cache:

- **hit**: one GET; the stored bytes are returned as they are (``HIT``);
- **miss**: the caller that wins the key's lease (SET NX in Redis, so across every container) runs
  ``load``; everyone else polls briefly for the value it writes (no thundering herd). The write is a
  script that succeeds only while the lease is still held, so a fill that raced an invalidation
  never stores its stale value (memcache-style leases). Under an invocation's deadline
  (``such_market.deadline``) a lease lasts no longer than the time left, since its fill cannot outlive
  the invocation, and a waiter whose deadline comes first answers the kept value (``STALE``) or 503.
  Each database call of a fill is bounded shorter than the deadline (``deadline.database_within``):
  ``FALLBACK_DATABASE_SECONDS`` when a kept value can be served instead (a waiter with one waits no
  longer either), ``UNCACHED_DATABASE_SECONDS`` otherwise; upstream work keeps the deadline;
- **not found**: ``load`` may return a 404 entry; it is cached for 30 s (±10 %) and never served stale;
- **cache down or slow**: short socket timeouts, then the breaker opens and requests go straight to
  ``load`` (``BYPASS``) without waiting on the cache at all;
- **never-cached answer**: ``load`` returns an entry marked ``cacheable=False`` (a partial answer, a page
  nobody shares): it is served as ``BYPASS`` (it never came from the cache and never will, so it is no
  miss of the hit rate), not stored, and the lease is given back;
- **database down**: ``load`` raises a failure that ``such_market.failures`` classes as "no source can
  answer" (a 503); an expired-but-kept value is served (``STALE``); with nothing kept, the failure
  propagates and the router answers 503 with its ``Retry-After``.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from such_market import deadline
from such_market.cache import entries, scripts
from such_market.cache.breaker import CircuitBreaker
from such_market.cache.client import cache_errors, get_client
from such_market.cache.entries import Entry
from such_market.cache.keys import CacheKeys, drain_list_key, lease_key, lease_set_key, tombstone_key
from such_market.cache.tiers import INDEX_CAP, Tier, effective_tier, fresh_ttl_ms, physical_ttl_ms
from such_market.config import CacheSettings
from such_market.container import per_container
from such_market.errors import ServiceUnavailableError
from such_market.failures import source_unavailable
from such_market.observability import logger

if TYPE_CHECKING:
    from redis.commands.core import Script

    from such_market.cache.client import CacheClient

CacheStatus = Literal["HIT", "MISS", "BYPASS", "STALE"]
RefreshOutcome = Literal["filled", "fresh", "busy", "skipped", "lost"]
Loader = Callable[[], Entry]

LEASE_MS = 3000
_WAIT_BEYOND_LEASE_SECONDS = 0.5
_ANSWER_RESERVE_SECONDS = 0.2  # kept back from the deadline to answer STALE or 503 after waiting
MIN_LEASE_MS = 200
FALLBACK_DATABASE_SECONDS = 0.5
"""A miss with a kept value: each database call of its fill, and its wait for another caller's fill, ends
within this; then the kept value is served ``STALE`` (a frozen database costs a reader half a second)."""
UNCACHED_DATABASE_SECONDS = 2.0
"""A miss with nothing kept: each database call of its fill ends within this (then 503), not at the
deadline."""
MIN_TAKEOVER_DATABASE_SECONDS = 0.25
"""The database bound of a reader that takes over another caller's fill after waiting for it: what is left of
its own bound, at least this (so an uncached read on a frozen database answers 503 within about 2.3 s)."""
_FIRST_POLL_SECONDS = 0.001
_MAX_POLL_SECONDS = 0.008
DRAIN_BATCH = 100
"""Names one ``DRAIN`` call deletes: about 0.15 ms of server time for cached pages (ZPOPMIN + UNLINK),
so another client's GET waits well under a millisecond during a 10,000-key drain (bench ``invalidation``)."""
REGISTRY_SLACK_MS = 60_000
"""Added to an index's horizon in the registry: the reaper judges it on its own clock, the values expire on
the server's, so clocks a minute apart still never reap an index before what it tracks has expired."""


@dataclass(frozen=True, slots=True)
class _Scripts:
    get_or_lease: Script
    fill: Script
    release: Script
    invalidate_index: Script
    drain: Script
    prune: Script


@dataclass(frozen=True, slots=True)
class Served:
    """What a read returns: the entry and how it was served (the ``X-Cache`` header)."""

    entry: Entry
    cache: CacheStatus


class ReadThroughCache:
    """The container's cache front; one per client and key prefix."""

    def __init__(
        self,
        connect: Callable[[], CacheClient],
        keys: CacheKeys,
        *,
        breaker: CircuitBreaker | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        ttl_scale: float = 1.0,
    ) -> None:
        self._connect = connect
        self.ttl_scale = ttl_scale
        """Multiplies every tier's TTL (``CACHE_TTL_SCALE``): 1 in production, less to study expiry."""
        self._client: CacheClient | None = None
        self.keys = keys
        self.breaker = breaker or CircuitBreaker()
        self._clock = clock
        self._sleep = sleep
        self._cache_errors = cache_errors()

    @property
    def client(self) -> CacheClient:
        """The connected client; connects on first use (a failure raises the client's own error)."""
        client = self._client
        if client is None:
            client = self._connect()
            self._scripts = _Scripts(
                get_or_lease=client.register_script(scripts.GET_OR_LEASE),
                fill=client.register_script(scripts.FILL),
                release=client.register_script(scripts.RELEASE_IF_OWNER),
                invalidate_index=client.register_script(scripts.INVALIDATE_INDEX),
                drain=client.register_script(scripts.DRAIN),
                prune=client.register_script(scripts.PRUNE),
            )
            self._client = client
        return client

    @property
    def scripts(self) -> _Scripts:
        """The Lua scripts, registered on the connected client."""
        if self._client is None:
            _ = self.client
        return self._scripts

    # -- reads -------------------------------------------------------------------------------------
    def fetch(
        self, key: str, tier: Tier, load: Loader, *, indexes: Sequence[str] = (), lease_ms: int = LEASE_MS
    ) -> Served:
        """Serve ``key`` from the cache, filling it with ``load()`` on a miss (see the module doc).

        ``indexes`` are the entity index sets (same hash slot as ``key``) that must know the key, so
        that invalidating the entity deletes it. ``lease_ms`` must exceed the longest ``load`` (a
        lease that expires mid-fill lets a second caller fill too).
        """
        if not self.breaker.allow():
            return self._load_or_stale(load, None, "BYPASS", UNCACHED_DATABASE_SECONDS)
        try:
            raw: bytes | None = self.client.get(key)  # type: ignore[assignment]
        except self._cache_errors as error:
            self._cache_failed("get", error)
            return self._load_or_stale(load, None, "BYPASS", UNCACHED_DATABASE_SECONDS)
        self.breaker.record_success()
        kept: Entry | None = None
        if raw is not None:
            entry, fresh_until_ms = entries.decode(raw)
            if self._now_ms() < fresh_until_ms:
                return Served(entry, "HIT")
            kept = entry if entry.status == 200 else None
        return self._miss(key, tier, load, indexes, kept, lease_ms)

    def _miss(  # noqa: PLR0917 - private step of fetch
        self, key: str, tier: Tier, load: Loader, indexes: Sequence[str], kept: Entry | None, lease_ms: int
    ) -> Served:
        token = secrets.token_hex(8)
        lease = lease_key(key)
        linked = _with_lease_sets(indexes)
        started = time.monotonic()
        # A frozen database must cost a reader little: each database call of its fill gets this long, and
        # with a kept value a wait for another caller's fill ends as soon (that fill is slow or stuck).
        database_seconds = FALLBACK_DATABASE_SECONDS if kept is not None else UNCACHED_DATABASE_SECONDS
        left = deadline.remaining()
        lease_ms = _lease_within(lease_ms, left)
        wait = lease_ms / 1000 + _WAIT_BEYOND_LEASE_SECONDS
        cut_short = False
        if kept is not None and wait > FALLBACK_DATABASE_SECONDS:
            wait, cut_short = FALLBACK_DATABASE_SECONDS, True
        if left is not None and left - _ANSWER_RESERVE_SECONDS < wait:
            wait, cut_short = max(0.0, left - _ANSWER_RESERVE_SECONDS), True
        wait_until = started + wait
        pause = _FIRST_POLL_SECONDS
        while True:
            try:
                outcome = self.scripts.get_or_lease(keys=[key, lease, *linked], args=[token, lease_ms, self._now_ms()])
            except self._cache_errors as error:
                self._cache_failed("lease", error)
                return self._load_or_stale(load, kept, "BYPASS", database_seconds)
            if isinstance(outcome, bytes):
                return Served(entries.decode(outcome)[0], "HIT")  # another caller filled it meanwhile
            if outcome == 1:
                left_for_database = _database_left(database_seconds, started)
                return self._fill_as_lease_holder(key, lease, token, tier, load, linked, kept, left_for_database)
            if time.monotonic() >= wait_until:
                if cut_short:
                    # The fallback's bound or the invocation's deadline comes before the fill: answer
                    # what is kept, or 503.
                    if kept is not None:
                        return Served(kept, "STALE")
                    raise ServiceUnavailableError("the answer is being prepared, try again shortly", retry_after=1)
                # The lease holder is neither done nor dead: answer, but leave the key to it.
                return self._load_or_stale(load, kept, "MISS", _database_left(database_seconds, started))
            self._sleep(pause)
            pause = min(pause * 2, _MAX_POLL_SECONDS)

    def _fill_as_lease_holder(  # noqa: PLR0917 - private step of _miss, all positional for speed
        self,
        key: str,
        lease: str,
        token: str,
        tier: Tier,
        load: Loader,
        linked: Sequence[str],
        kept: Entry | None,
        database_seconds: float,
    ) -> Served:
        try:
            served = self._load_or_stale(load, kept, "MISS", database_seconds)
        except BaseException:
            self._give_back(lease, token, linked)
            raise
        if served.cache == "STALE" or not served.entry.cacheable:
            self._give_back(lease, token, linked)
        else:
            self._store(key, lease=lease, token=token, entry=served.entry, tier=tier, linked=linked)
        return served

    def _load_or_stale(self, load: Loader, kept: Entry | None, status: CacheStatus, database_seconds: float) -> Served:
        """``load()`` with each of its database calls bounded to ``database_seconds``; the kept value when
        no source can answer."""
        try:
            with deadline.database_within(database_seconds):
                entry = load()
        except Exception as error:
            if kept is None or not source_unavailable(error):
                raise
            return Served(kept, "STALE")
        return Served(entry, status if entry.cacheable else "BYPASS")

    def _store(
        self,
        key: str,
        *,
        lease: str,
        token: str,
        entry: Entry,
        tier: Tier,
        linked: Sequence[str],
        min_fresh_ms: int = 0,
    ) -> bool:
        """Write ``entry`` while the lease is ours and its indexes have room; whether it was written.

        The indexes are put on the reaper's registry first (``ZADD GT``: a horizon only moves later), so an
        index never holds a key the registry does not cover, even if this process dies mid-way.
        """
        found = entry.status < 400
        fresh_ms = fresh_ttl_ms(effective_tier(tier, entry.tier), found=found, scale=self.ttl_scale)
        if found and entry.tier is None:
            fresh_ms = max(fresh_ms, min_fresh_ms)
        now_ms = self._now_ms()
        value = entries.encode(entry, now_ms + fresh_ms)
        kept_ms = physical_ttl_ms(fresh_ms, found=found)
        try:
            if linked:
                horizon = now_ms + kept_ms + REGISTRY_SLACK_MS
                self.client.zadd(self.keys.index_registry(), dict.fromkeys(linked[::2], horizon), gt=True)
            stored = self.scripts.fill(keys=[key, lease, *linked], args=[token, value, kept_ms, INDEX_CAP])
        except self._cache_errors as error:
            self._cache_failed("fill", error)
            return False
        if stored == 2:
            logger.warning("entity index full: answer served, not stored", extra={"cache_key": key})
        return bool(stored == 1)

    def _give_back(self, lease: str, token: str, linked: Sequence[str]) -> None:
        try:
            self.scripts.release(keys=[lease, *linked[1::2]], args=[token])
        except self._cache_errors as error:
            self._cache_failed("release", error)

    # -- warming ---------------------------------------------------------------------------------------
    def refresh(
        self,
        key: str,
        tier: Tier,
        load: Loader,
        *,
        fresh_until_ms: int,
        indexes: Sequence[str] = (),
        lease_ms: int = LEASE_MS,
        min_fresh_ms: int = 0,
    ) -> RefreshOutcome:
        """Fill ``key`` with ``load()`` now unless its value stays fresh until ``fresh_until_ms``: the
        cache warmer's fill, through the readers' own lease and ``FILL`` script (``GET_OR_LEASE`` judged
        at ``fresh_until_ms`` instead of now). So a warm fill and a reader's fill never both run
        (``"busy"``: someone else holds the lease), and a warm fill that raced an invalidation stores
        nothing (``"lost"``). ``"fresh"``: nothing to do; ``"skipped"``: ``load`` returned an entry not
        to be stored. ``load`` raising gives the lease back and propagates, as do cache errors. A value
        filled here stays fresh for at least ``min_fresh_ms`` (a hot-tier value, 300 s ±10 %, must last
        until the warmer's next run; events invalidate it as soon as it changes, whatever its TTL).
        """
        token = secrets.token_hex(8)
        lease = lease_key(key)
        linked = _with_lease_sets(indexes)
        lease_ms = _lease_within(lease_ms, deadline.remaining())
        try:
            outcome = self.scripts.get_or_lease(keys=[key, lease, *linked], args=[token, lease_ms, fresh_until_ms])
        except self._cache_errors as error:
            self._cache_failed("lease", error)
            raise
        if isinstance(outcome, bytes):
            return "fresh"
        if outcome != 1:
            return "busy"
        try:
            entry = load()
        except BaseException:
            self._give_back(lease, token, linked)
            raise
        if not entry.cacheable:
            self._give_back(lease, token, linked)
            return "skipped"
        stored = self._store(
            key, lease=lease, token=token, entry=entry, tier=tier, linked=linked, min_fresh_ms=min_fresh_ms
        )
        return "filled" if stored else "lost"

    # -- invalidation ------------------------------------------------------------------------------
    def invalidate_keys(self, keys: Sequence[str]) -> int:
        """Delete ``keys`` and their fill leases; returns how many values existed."""
        if not keys:
            return 0
        doomed = [name for key in keys for name in (key, lease_key(key))]
        return int(self.client.unlink(*doomed))

    def invalidate_index(self, index: str, *, batch: int = DRAIN_BATCH) -> int:
        """Delete every key an entity index tracks (values and in-flight fill leases) and the index;
        returns how many keys were deleted. No single command holds the server for more than about
        a millisecond, and no fill that started before this call can store its value after it.

        Step 1 is one short script (``INVALIDATE_INDEX``): it deletes every lease in the index's lease
        set, so every fill in flight (which may have read the database before the change being
        invalidated) fails its ``FILL``, and renames the index set to a tombstone (O(1)). A lease taken
        after step 1 belongs to a fill that reads the database after the change committed. Step 2
        drains the tombstone ``batch`` names per call (``DRAIN``) until it is empty; tombstones left
        by an invalidation that died mid-drain are drained too. Until step 2 reaches it, a value of
        the old index may still be served: for at most the drain's duration (about 25 ms for 10,000
        keys locally, in 100 calls), never after this call returns. A fill that starts after step 1
        and whose key is still in the tombstone may lose its fresh value to the drain: a later miss
        refills it.
        """
        tag = secrets.token_hex(8)
        drains = drain_list_key(index)
        step_one = [index, lease_set_key(index), drains, tombstone_key(index, tag)]
        deleted, pending, _more = self.scripts.invalidate_index(keys=step_one, args=[batch])
        # ``pending``: the new tombstone if its first batch did not empty it, and any older one (its drainer died).
        return int(deleted) + sum(self.drain_tombstone(tombstone, drains, batch=batch) for tombstone in pending)

    def drain_tombstone(self, tombstone: bytes | str, drains: str, *, batch: int = DRAIN_BATCH) -> int:
        """Drain ``tombstone`` (of the index whose drain list is ``drains``) ``batch`` names a call; returns
        how many keys were deleted."""
        total = 0
        more = 1
        while more:
            batch_deleted, more = self.scripts.drain(keys=[tombstone, drains], args=[batch])
            total += int(batch_deleted)
        return total

    # -- helpers -----------------------------------------------------------------------------------
    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _cache_failed(self, operation: str, error: BaseException) -> None:
        self.breaker.record_failure()
        logger.warning(
            "cache unavailable; serving without it",
            extra={"cache_operation": operation, "error_type": type(error).__name__, "error": str(error)[:200]},
        )


def _database_left(database_seconds: float, started: float) -> float:
    """What is left of a miss's database bound after waiting since ``started`` for another caller's fill
    (at least ``MIN_TAKEOVER_DATABASE_SECONDS``): a reader that takes over a fill which failed on a frozen
    database does not spend a whole bound again."""
    return max(MIN_TAKEOVER_DATABASE_SECONDS, database_seconds - (time.monotonic() - started))


def _lease_within(lease_ms: int, left: float | None) -> int:
    """``lease_ms``, cut to the ``left`` seconds of the invocation: a fill cannot outlive it, so neither
    may its lease (at least ``MIN_LEASE_MS``)."""
    return lease_ms if left is None else max(MIN_LEASE_MS, min(lease_ms, int(left * 1000)))


def _with_lease_sets(indexes: Sequence[str]) -> list[str]:
    """``[index, its lease set, …]``: the index keys of the fill scripts."""
    return [name for index in indexes for name in (index, lease_set_key(index))]


@per_container()
def get_cache(settings: CacheSettings) -> ReadThroughCache:
    """The container's cache front for ``settings`` (client, keys and breaker made once)."""
    return ReadThroughCache(
        lambda: get_client(settings), CacheKeys(settings.cache_prefix), ttl_scale=settings.cache_ttl_scale
    )

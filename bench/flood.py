"""A flood of distinct anonymous keys: the cache's memory stays bounded, and no invalidation misses a key.

An anonymous caller can vary what it asks for at will: a wallet's tokens in a collection for random wallets
(any page, any size), pages far past the end, trait filters matching nothing. Every request goes through
the real handlers (cache → PostgreSQL). The tiers are shortened with ``CACHE_TTL_SCALE`` (0.05: brief
answers 1.5 s fresh, 3.3 s kept at most) and the reaper runs every 15 s (the 5-minute schedule, scaled
alike) with the registry's clock slack taken off (its clock advanced by ``REGISTRY_SLACK_MS``: the slack
only covers clock skew between hosts, which one machine does not have).

Phase 1, bounded memory: flood for a fixed time, sampling every second the server's ``used_memory``, its
key count and the entity-index structures (sorted sets without a TTL, never evicted: the part that must
bound itself). The stated bound for what a flood leaves in indexes: at most ``rate x (longest brief
lifetime + reaper period)`` members (here ``rate x (3.3 s + 15 s)``), whatever the flood's length; in
production ``rate x (66 s + 60 s slack + 300 s)``. The bar: the peak is under that bound, and after the
flood, once brief answers expired and the reaper ran, the index structures are back to what the
collection's real keys need.

Phase 2, no missed invalidation under eviction: the server gets a memory limit 6 MB above what it holds
and ElastiCache's ``volatile-lru`` policy; the collection's real pages (every size, every page) are
cached, then the flood goes on with bigger values until the server has evicted thousands of keys. Then
the collection is invalidated (``collection.updated``), and every value of the collection still stored
counts as a missed invalidation. The bar: 0.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

from bench.common import BenchEnv, FakeContext, Measure, forget_containers, http_event, seed_small_collection

GROUP = "flood"
TTL_SCALE = 0.05
REAP_EVERY_SECONDS = 300 * TTL_SCALE
BRIEF_KEPT_SECONDS = 30 * 1.1 * 2 * TTL_SCALE
EVICTION_HEADROOM_BYTES = 6 * 1024 * 1024


def run(env: BenchEnv, *, quick: bool) -> list[Measure]:
    address = seed_small_collection(env)
    env.flush_cache()
    previous_scale = os.environ.get("CACHE_TTL_SCALE")
    os.environ["CACHE_TTL_SCALE"] = str(TTL_SCALE)
    forget_containers()
    client = env.redis()
    try:
        measures = _bounded_memory(env, client, address, seconds=8 if quick else 30)
        measures += _no_missed_invalidation(env, client, address, evictions=500 if quick else 5000)
    finally:
        client.config_set("maxmemory", 0)
        client.close()
        if previous_scale is None:
            os.environ.pop("CACHE_TTL_SCALE", None)
        else:
            os.environ["CACHE_TTL_SCALE"] = previous_scale
        forget_containers()
    return measures


class _Flood:
    """Requests a caller can vary at will, through the real handlers."""

    def __init__(self, address: str, seed: int) -> None:
        import collection_nfts
        import owned_nfts

        self.address = address
        self.rng = random.Random(seed)
        self.context: Any = FakeContext()
        self.pages = collection_nfts.lambda_handler
        self.owned = owned_nfts.lambda_handler
        self.sent = 0
        self.statuses: dict[int, int] = {}

    def one(self) -> None:
        rng, address = self.rng, self.address
        params = {"contractAddress": address}
        kind = rng.randrange(3)
        if kind == 0:
            wallet = f"0x{rng.getrandbits(160):040x}"
            query = {"userAddress": wallet, "page": str(rng.randrange(5)), "pageSize": str(rng.randint(1, 100))}
            event = http_event(
                "/api/collection/{contractAddress}/nfts/owned", f"/api/collection/{address}/nfts/owned", params, query
            )
            answer = self.owned(event, self.context)
        else:
            query = {"pageSize": str(rng.choice((20, 50, 100)))}
            if kind == 1:
                query["page"] = str(rng.randrange(10, 1_000_000))
            else:
                query["trait.Hat"] = f"Hat {rng.randrange(1000, 10**9)}"
            event = http_event(
                "/api/collection/{contractAddress}/nfts", f"/api/collection/{address}/nfts", params, query
            )
            answer = self.pages(event, self.context)
        self.sent += 1
        status = int(answer["statusCode"])
        self.statuses[status] = self.statuses.get(status, 0) + 1


def _index_footprint(client: Any) -> tuple[int, int, int]:
    """(index structures, their members, the registry's members) — a SCAN, fine in a benchmark."""
    from bench.common import CACHE_PREFIX

    structures = members = 0
    for name in client.scan_iter(match=f"{CACHE_PREFIX}:idx:*", count=1000):
        structures += 1
        kind = client.type(name)
        members += int(client.zcard(name)) if kind == b"zset" else int(client.llen(name)) if kind == b"list" else 0
    registry = int(client.zcard(f"{CACHE_PREFIX}:durable:index-registry"))
    return structures, members, registry


def _reap(env: BenchEnv) -> Any:
    from such_market.cache.reaping import reap_indexes
    from such_market.cache.store import REGISTRY_SLACK_MS, get_cache
    from such_market.config import CacheSettings

    cache = get_cache(CacheSettings())
    return reap_indexes(cache, time_budget_seconds=5, clock=lambda: time.time() + REGISTRY_SLACK_MS / 1000)


def _bounded_memory(env: BenchEnv, client: Any, address: str, *, seconds: float) -> list[Measure]:
    flood = _Flood(address, seed=15)
    flood.one()  # imports and cold start outside the samples
    client.config_resetstat()
    baseline_memory = int(client.info("memory")["used_memory"])
    baseline_keys = int(client.dbsize())
    samples: list[tuple[float, int, int, int, int]] = []
    started = time.monotonic()
    next_sample = started + 1
    next_reap = started + REAP_EVERY_SECONDS
    reaped_indexes = 0
    while (now := time.monotonic()) < started + seconds:
        flood.one()
        if now >= next_sample:
            structures, members, _ = _index_footprint(client)
            samples.append(
                (now - started, int(client.info("memory")["used_memory"]), int(client.dbsize()), structures, members)
            )
            next_sample += 1
        if now >= next_reap:
            reaped_indexes += _reap(env).forgotten
            next_reap += REAP_EVERY_SECONDS
    elapsed = time.monotonic() - started
    rate = flood.sent / elapsed
    peak_memory = max(sample[1] for sample in samples)
    peak_keys = max(sample[2] for sample in samples)
    peak_members = max(sample[4] for sample in samples)
    half = [sample for sample in samples if sample[0] >= seconds / 2]
    late_members = max(sample[4] for sample in half) if half else peak_members
    bound = rate * (BRIEF_KEPT_SECONDS + REAP_EVERY_SECONDS)
    # After the flood: brief answers expire, the reaper runs.
    time.sleep(BRIEF_KEPT_SECONDS + 0.5)
    reaped_indexes += _reap(env).forgotten
    after_structures, after_members, after_registry = _index_footprint(client)
    after_memory = int(client.info("memory")["used_memory"])
    statuses = ", ".join(f"{count:,}x {status}" for status, count in sorted(flood.statuses.items()))
    return [
        Measure(
            GROUP,
            "flood.requests",
            f"flood: distinct anonymous keys for {seconds:g} s (random wallets, pages past the end, empty filters)",
            rate,
            "req/s",
            note=f"{flood.sent:,} requests ({statuses}); TTLs x{TTL_SCALE:g}, reaper every {REAP_EVERY_SECONDS:g} s",
        ),
        Measure(
            GROUP,
            "flood.index_members_peak",
            "flood: entity-index members at peak (no TTL, never evicted)",
            float(peak_members),
            "members",
            bar=f"≤ rate x (brief kept {BRIEF_KEPT_SECONDS:.1f} s + reaper {REAP_EVERY_SECONDS:g} s) = {bound:,.0f}",
            passed=peak_members <= bound,
            note=f"second half of the flood: max {late_members:,} (flat: the bound does not grow with time); "
            f"{reaped_indexes:,} indexes reaped",
        ),
        Measure(
            GROUP,
            "flood.memory_peak",
            "flood: cache memory at peak, above the start (values + indexes)",
            (peak_memory - baseline_memory) / 1e6,
            "MB",
            note=f"keys at peak {peak_keys:,} (start {baseline_keys:,}); per-second samples of used_memory (MB): "
            + " ".join(
                f"{(sample[1] - baseline_memory) / 1e6:.1f}" for sample in samples[:: max(1, len(samples) // 10)]
            ),
        ),
        Measure(
            GROUP,
            "flood.index_after",
            "flood over, brief answers expired, reaper ran: index members left",
            float(after_members),
            "members",
            bar="≤ 5 (the collection's own index: only its live keys)",
            passed=after_members <= 5,
            note=f"{after_structures} index structures, {after_registry} on the registry; memory "
            f"{(after_memory - baseline_memory) / 1e6:+.2f} MB against the start",
        ),
    ]


def _no_missed_invalidation(env: BenchEnv, client: Any, address: str, *, evictions: int) -> list[Measure]:
    import collection_nfts
    import invalidate_cache

    from bench.common import CACHE_PREFIX, load_event

    context: Any = FakeContext()
    params = {"contractAddress": address}
    real: list[str] = []
    for size in range(1, 101):
        for page in range(200 // size + 1):
            query = {"page": str(page), "pageSize": str(size)}
            event = http_event(
                "/api/collection/{contractAddress}/nfts", f"/api/collection/{address}/nfts", params, query
            )
            collection_nfts.lambda_handler(event, context)
            real.append(f"{page}:{size}")
    client.config_set("maxmemory-policy", "volatile-lru")
    client.config_set("maxmemory", int(client.info("memory")["used_memory"]) + EVICTION_HEADROOM_BYTES)
    client.config_resetstat()
    flood = _Flood(address, seed=16)
    rng = random.Random(17)
    started = time.monotonic()
    filler = b"x" * 4000
    while int(client.info("stats")["evicted_keys"]) < evictions and time.monotonic() - started < 120:
        for _ in range(50):
            flood.one()
            # Bigger values of other collections, as a busy cache holds (volatile, like every cached value).
            other = f"0x{rng.getrandbits(160):040x}"
            client.set(f"{CACHE_PREFIX}:collections:{{{other}}}:metadata", filler, px=600_000)
    evicted = int(client.info("stats")["evicted_keys"])
    stored_before = sum(1 for _ in client.scan_iter(match=f"{CACHE_PREFIX}:collections:{{{address}}}:*", count=1000))
    event = load_event("event_collection_updated")
    event["detail"]["contractAddress"] = address
    invalidate_cache.lambda_handler(event, context)
    missed = sum(1 for _ in client.scan_iter(match=f"{CACHE_PREFIX}:collections:{{{address}}}:*", count=1000))
    client.config_set("maxmemory", 0)
    return [
        Measure(
            GROUP,
            "flood.missed_invalidations",
            f"under eviction (volatile-lru, {evicted:,} keys evicted): values left after collection.updated",
            float(missed),
            "keys",
            bar="= 0",
            passed=missed == 0 and evicted >= evictions,
            note=f"{len(real):,} real pages cached before the flood, {stored_before:,} values of the collection "
            f"stored when it was invalidated",
        )
    ]

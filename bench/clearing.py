"""Group ``clear``: ``POST /api/admin/cache/clear`` with scope ``all`` on a 1,000,000-key cache.

The cache holds 1,000,000 cache keys (1,000 collections of 1,000 pages; ``--quick``: 100,000), 1,000
fill leases and 10,000 durable records. ``such_market.cache.clearing.clear_all`` (two passes of
``SCAN … COUNT 500`` + ``UNLINK``) clears it while the prober of ``bench.invalidation`` (another
process) issues GETs back to back. Bars: the prober's slowest GET during the clear ≤ 5 ms, and
``keysDeleted`` exactly the number of cache keys, with every durable record still there. For scale, the
same prober's stall during a ``FLUSHDB`` of the same keyspace (what a clear without batching costs;
``FLUSHDB`` would also delete the durable records) is reported.
"""

from __future__ import annotations

import time
from typing import Any

from bench.common import CACHE_PREFIX, BenchEnv, Measure, Stats, forget_containers
from bench.invalidation import Prober

GROUP = "clear"
STALL_BAR_MS = 5.0
COLLECTIONS = 1000
LEASES = 1000
DURABLE = 10_000
LOAD_CHUNK = 20_000
PROBE_SECONDS, PROBE_SECONDS_QUICK = 40.0, 8.0
"""How long the prober runs: the clear, a refill and the ``FLUSHDB`` baseline fit in it."""

# Bench setup only (undeclared keys: standalone server): ``ARGV[2] - ARGV[1]`` page keys, 1,000 a collection.
_LOAD = """
for i = tonumber(ARGV[1]), tonumber(ARGV[2]) - 1 do
  local name = string.format('%s:collections:{0x%040x}:nfts:page:%d:size:20', ARGV[3], math.floor(i / 1000), i % 1000)
  redis.call('SET', name, ARGV[4])
end
"""


def run(env: BenchEnv, *, quick: bool) -> list[Measure]:
    from such_market.cache.clearing import clear_all
    from such_market.cache.store import get_cache
    from such_market.config import CacheSettings, load_settings

    values = (100 if quick else COLLECTIONS) * 1000
    env.flush_cache()
    forget_containers()
    cache = get_cache(load_settings(CacheSettings))
    client = env.redis(socket_timeout=60)
    try:
        _fill(client, values)
        expected = values + LEASES
        with Prober(env.redis_url, seconds=PROBE_SECONDS_QUICK if quick else PROBE_SECONDS) as prober:
            start = time.perf_counter_ns()
            deleted = clear_all(cache)
            end = time.perf_counter_ns()
            time.sleep(0.2)
            left = client.dbsize()
            _fill(client, values)
            flush_start = time.perf_counter_ns()
            client.flushdb()
            flush_end = time.perf_counter_ns()
    finally:
        client.flushdb()
        client.close()
    ours = prober.stall(start, end)
    flush = prober.stall(flush_start, flush_end)
    seconds = (end - start) / 1e9
    return [
        Measure(
            GROUP,
            "clear.all_stall",
            f"stall: another client's GET during clear all ({values:,} keys)",
            ours["stall_ms"],
            "ms",
            bar=f"≤ {STALL_BAR_MS:g} ms",
            passed=ours["stall_ms"] <= STALL_BAR_MS,
            note=f"{ours['gets_during']:,} GETs during the clear; idle GET p50 {ours['idle_get_p50_ms']:.3f} ms",
        ),
        Measure(
            GROUP,
            "clear.all_keys_deleted",
            f"clear all: keysDeleted (expected {expected:,}; {DURABLE:,} durable kept)",
            float(deleted),
            "keys",
            bar=f"= {expected:,}, durable kept",
            passed=deleted == expected and left == DURABLE,
            note=f"{left:,} keys left after the clear (the durable records)",
        ),
        Measure(
            GROUP,
            "clear.all_time",
            f"clear all: {values:,} keys, two SCAN + UNLINK passes",
            seconds * 1000,
            "ms",
            stats=Stats.of_ns([end - start]),
            note=f"{deleted / seconds:,.0f} keys/s",
        ),
        Measure(
            GROUP,
            "clear.flushdb_stall",
            f"baseline: stall during FLUSHDB of {values:,} keys (unbatched; durable lost too)",
            flush["stall_ms"],
            "ms",
            note=f"FLUSHDB took {(flush_end - flush_start) / 1e6:.1f} ms; {flush['gets_during']} GETs during it",
        ),
    ]


def _fill(client: Any, values: int) -> None:
    """``values`` page keys, ``LEASES`` fill leases and ``DURABLE`` durable records."""
    load = client.register_script(_LOAD)
    for first in range(0, values, LOAD_CHUNK):
        load(keys=[], args=[first, min(values, first + LOAD_CHUNK), CACHE_PREFIX, b"200" + b"0" * 13 + b"x" * 48])
    pipe = client.pipeline(transaction=False)
    for n in range(LEASES):
        pipe.set(f"{CACHE_PREFIX}:collections:{{0x{n:040x}}}:metadata:lease", b"token", px=600_000)
    for n in range(DURABLE):
        pipe.set(f"{CACHE_PREFIX}:durable:idempotency:bench:{n}", b"done")
    pipe.execute()

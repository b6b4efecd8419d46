"""Group ``invalidation``: events through the invalidator, index-set deletes, and the ``KEYS`` baseline.

- one ``nft.transferred`` event (``events/event_nft_transferred.json`` with a fresh ``eventId`` each
  time) through ``invalidate_cache.lambda_handler``: idempotency record, the users owning either
  wallet (PostgreSQL), both wallets' index sets and single keys. Before each call (untimed) the keys
  it deletes are put back. Bar: p50 ≤ 2 ms.
- a collection-wide invalidation of 10,000 keys through the collection's index set
  (``ReadThroughCache.invalidate_index``; and the ``collection.updated`` event doing it). Bar: ≤ 100 ms.
- the predecessor: ``KEYS <collection pattern>`` + ``DEL`` over a 100,000-key keyspace. Valkey runs
  commands one at a time, so while ``KEYS`` walks the keyspace every other client waits: a prober
  process issues GETs back to back, and the *stall* is its slowest GET overlapping the operation. The
  same prober runs during our index invalidation (leases and a rename in one short script, then the
  values in batches of ``DRAIN_BATCH``), for a 10,000-key collection and for a 20-key entity. Bar: the
  prober's slowest GET during our 10,000-key invalidation, worst round, ≤ 1.5 ms. Valkey's SLOWLOG
  (every command logged) gives the server-side durations.
"""

from __future__ import annotations

import multiprocessing
import time
import uuid
from collections.abc import Callable
from typing import Any

from bench.common import (
    CACHE_PREFIX,
    BenchEnv,
    FakeContext,
    Measure,
    Stats,
    forget_containers,
    latency,
    load_event,
    profile_top,
    time_calls,
)

GROUP = "invalidation"
EVENT_BAR_MS = 2.0
COLLECTION_BAR_MS = 100.0
STALL_BAR_MS = 1.5
SLOWLOG_LEN = 100_000
COLLECTION_KEYS = 10_000
KEYSPACE = 100_000
SMALL_ENTITY_KEYS = 20
FID = 4242


def _probe(redis_url: str, key: str, seconds: float, ready: Any, out: Any) -> None:
    """Back-to-back GETs for ``seconds``; sends [(start_ns, end_ns), …] (perf_counter_ns: system-wide).
    The garbage collector is off while it probes: a collection landing inside a GET would be counted as
    the server's stall (the samples are tuples of ints, so nothing leaks)."""
    import gc

    import redis

    client = redis.Redis.from_url(redis_url, single_connection_client=True)
    client.get(key)
    gc.collect()
    gc.disable()
    ready.put(True)
    samples: list[tuple[int, int]] = []
    clock = time.perf_counter_ns
    until = clock() + int(seconds * 1e9)
    while (start := clock()) < until:
        client.get(key)
        samples.append((start, clock()))
    client.close()
    out.put(samples)


class Prober:
    """A separate process (no GIL shared with the bench) timing GETs while something else runs."""

    def __init__(self, redis_url: str, seconds: float) -> None:
        context = multiprocessing.get_context("spawn")
        self._ready, self._out = context.Queue(), context.Queue()
        self._process = context.Process(target=_probe, args=(redis_url, "bench:probe", seconds, self._ready, self._out))

    def __enter__(self) -> Prober:
        self._process.start()
        self._ready.get(timeout=60)
        time.sleep(0.2)  # a baseline of idle GETs first
        return self

    def __exit__(self, *_: object) -> None:
        self.samples: list[tuple[int, int]] = self._out.get(timeout=120)
        self._process.join(timeout=30)

    def stall(self, start_ns: int, end_ns: int) -> dict[str, float]:
        """The slowest GET overlapping [start, end], and the idle GETs' p50 before it."""
        overlapping = [end - start for start, end in self.samples if start < end_ns and end > start_ns]
        idle = [end - start for start, end in self.samples if end < start_ns]
        return {
            "stall_ms": max(overlapping) / 1e6 if overlapping else 0.0,
            "gets_during": len(overlapping),
            "idle_get_p50_ms": Stats.of_ns(idle).p50_ms if idle else 0.0,
        }


def run(env: BenchEnv, *, quick: bool) -> list[Measure]:
    env.flush_cache()
    measures = _transfer_event(env, n=300 if quick else 2000, warmup=50 if quick else 200)
    measures += _collection_and_keys(env, rounds=2 if quick else 5)
    return measures


def _transfer_event(env: BenchEnv, *, n: int, warmup: int) -> list[Measure]:
    forget_containers()
    import invalidate_cache

    from such_market.cache.keys import CacheKeys

    event = load_event("event_nft_transferred")
    detail = event["detail"]
    address, token, sender, receiver = detail["contractAddress"], int(detail["tokenId"]), detail["from"], detail["to"]
    with env.connect() as conn:
        conn.execute(
            "INSERT INTO fc_users (fid, username, custody_address, verified_eth_addresses) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (fid) DO NOTHING",
            (FID, "bench", sender, [receiver]),
        )
    keys = CacheKeys(CACHE_PREFIX)
    client = env.redis()
    context: Any = FakeContext()
    deleted: list[int] = []

    def populate() -> None:
        """Put back every key the event deletes (fresh eventId too): untimed."""
        event["detail"]["eventId"] = str(uuid.uuid4())
        event["id"] = str(uuid.uuid4())
        pipe = client.pipeline(transaction=False)
        pipe.set(keys.ownership(address, token), b"200" + b"0" * 13 + b'{"owner":"x"}', px=600_000)
        for wallet in (sender, receiver):
            index = keys.owned_index(address, wallet)
            for page in range(2):
                owned = keys.owned(address, wallet, page, 20)
                pipe.set(owned, b"200" + b"0" * 13 + b'{"nfts":[]}', px=600_000)
                pipe.sadd(index, owned)
            pipe.set(keys.wallet_contracts(wallet), b"200" + b"0" * 13 + b"[]", px=600_000)
        pipe.set(keys.user_collections(FID), b"200" + b"0" * 13 + b"[]", px=600_000)
        pipe.execute()

    def call() -> object:
        result = invalidate_cache.lambda_handler(event, context)
        deleted.append(int(result))  # type: ignore[arg-type]
        return result

    try:
        stats = time_calls(call, n=n, warmup=warmup, before=populate)
    finally:
        client.close()
    if set(deleted) != {8}:
        raise RuntimeError(f"expected 8 keys deleted per transfer, got {sorted(set(deleted))}")
    measure = latency(
        GROUP,
        "invalidation.nft_transferred",
        "nft.transferred event → invalidate_cache handler (8 keys)",
        stats,
        bar_ms=EVENT_BAR_MS,
    )
    if measure.passed is False:

        def populate_and_call() -> object:
            populate()
            return call()

        measure.extra["profile"] = profile_top(populate_and_call, n=300)
    return [measure]


def _fill_collection(client: Any, keys: Any, address: str, count: int) -> None:
    """``count`` page keys of ``address`` (about the size of cached pages' headers) in its index set."""
    index = keys.collection_index(address)
    value = b"200" + b"0" * 13 + b"x" * 200
    for first in range(0, count, 1000):
        pipe = client.pipeline(transaction=False)
        members = [keys.nft_page(address, page, 20) for page in range(first, min(count, first + 1000))]
        for member in members:
            pipe.set(member, value, px=3_600_000)
        pipe.sadd(index, *members)
        pipe.execute()


def _slowlog(client: Any, command: str) -> list[float]:
    """Server-side durations (ms) of ``command`` in the slow log (every command is logged)."""
    durations = []
    for entry in client.slowlog_get(SLOWLOG_LEN):
        args = entry.get("command", b"")
        name = args.split()[0].decode().upper() if isinstance(args, bytes) and args else str(args).split()[0].upper()
        if name == command:
            durations.append(entry["duration"] / 1000)
    return durations


def _collection_and_keys(env: BenchEnv, *, rounds: int) -> list[Measure]:
    """Per round and per entity size (10,000 keys: a collection; 20 keys: one entity), our index-set
    invalidation and the predecessor's KEYS + DEL, each with the prober's stall; plus the
    ``collection.updated`` event for the 10,000-key collection."""
    import invalidate_cache

    from such_market.cache.keys import CacheKeys
    from such_market.cache.store import get_cache
    from such_market.config import CacheSettings, load_settings

    forget_containers()
    keys = CacheKeys(CACHE_PREFIX)
    cache = get_cache(load_settings(CacheSettings))
    client = env.redis()
    client.config_set("slowlog-log-slower-than", 0)
    client.config_set("slowlog-max-len", SLOWLOG_LEN)
    # The rest of the keyspace: other collections' keys, so KEYS has 100k names to walk.
    for batch in range((KEYSPACE - COLLECTION_KEYS) // 10_000):
        _fill_collection(client, keys, f"0x{batch + 1:040x}", 10_000)
    sizes = {"collection": ("0x" + "c0" * 20, COLLECTION_KEYS), "entity": ("0x" + "c1" * 20, SMALL_ENTITY_KEYS)}
    timings: dict[str, list[float]] = {}
    windows: dict[str, list[tuple[int, int]]] = {}
    server: dict[str, list[float]] = {}
    event = load_event("event_collection_updated")
    event["detail"]["contractAddress"] = sizes["collection"][0]
    context: Any = FakeContext()

    def timed(name: str, operation: Callable[[], int], expected: int, slow_command: str) -> None:
        client.slowlog_reset()
        time.sleep(0.05)
        start = time.perf_counter_ns()
        deleted = operation()
        end = time.perf_counter_ns()
        if deleted != expected:
            raise RuntimeError(f"{name} deleted {deleted} keys, expected {expected}")
        time.sleep(0.05)
        timings.setdefault(name, []).append((end - start) / 1e6)
        windows.setdefault(name, []).append((start, end))
        server.setdefault(name, []).extend(_slowlog(client, slow_command))

    def by_keys(address: str) -> int:
        matched = client.keys(f"{CACHE_PREFIX}:collections:{{{address}}}:*")
        deleted = int(client.delete(*matched)) if matched else 0
        client.delete(keys.collection_index(address))
        return deleted

    try:
        invalidate_cache.lambda_handler({**event, "detail": {**event["detail"], "eventId": str(uuid.uuid4())}}, context)
        with Prober(env.redis_url, seconds=rounds * 3.5 + 2) as prober:
            for _ in range(rounds):
                for size, (address, count) in sizes.items():
                    index = keys.collection_index(address)
                    _fill_collection(client, keys, address, count)
                    timed(f"index_{size}", lambda index=index: cache.invalidate_index(index), count, "EVALSHA")
                    _fill_collection(client, keys, address, count)
                    timed(f"keys_{size}", lambda address=address: by_keys(address), count, "KEYS")
                _fill_collection(client, keys, sizes["collection"][0], COLLECTION_KEYS)
                fresh = {**event, "detail": {**event["detail"], "eventId": str(uuid.uuid4())}}
                timed(
                    "event_collection",
                    lambda fresh=fresh: int(invalidate_cache.lambda_handler(fresh, context)),
                    COLLECTION_KEYS,
                    "EVALSHA",
                )  # type: ignore[arg-type]
    finally:
        client.config_set("slowlog-log-slower-than", 10_000)
        client.config_set("slowlog-max-len", 128)
        client.close()
    stalls = {name: [prober.stall(*window) for window in spans] for name, spans in windows.items()}
    idle = Stats.of_ms([stall["idle_get_p50_ms"] for values in stalls.values() for stall in values])

    def stall_stats(name: str) -> Stats:
        return Stats.of_ms([stall["stall_ms"] for stall in stalls[name]])

    index_measure = latency(
        GROUP,
        "invalidation.collection_10k",
        f"collection-wide: {COLLECTION_KEYS:,} keys via index set (invalidate_index)",
        Stats.of_ms(timings["index_collection"]),
        bar_ms=COLLECTION_BAR_MS,
        server_max_ms=max(server["index_collection"]),
        server_calls=len(server["index_collection"]),
    )
    entity_measure = latency(
        GROUP,
        "invalidation.entity_20",
        f"one entity: {SMALL_ENTITY_KEYS} keys via index set",
        Stats.of_ms(timings["index_entity"]),
    )
    measures = [
        index_measure,
        latency(
            GROUP,
            "invalidation.collection_10k_event",
            f"collection.updated event → handler ({COLLECTION_KEYS:,} keys)",
            Stats.of_ms(timings["event_collection"]),
            bar_ms=COLLECTION_BAR_MS,
        ),
        entity_measure,
        latency(
            GROUP,
            "invalidation.keys_baseline_10k",
            f"baseline: KEYS + DEL, {COLLECTION_KEYS:,} of {KEYSPACE:,} keys",
            Stats.of_ms(timings["keys_collection"]),
            reference=index_measure,
            server_keys_ms=server["keys_collection"],
        ),
        latency(
            GROUP,
            "invalidation.keys_baseline_entity",
            f"baseline: KEYS + DEL, {SMALL_ENTITY_KEYS} of {KEYSPACE:,} keys",
            Stats.of_ms(timings["keys_entity"]),
            reference=entity_measure,
            server_keys_ms=server["keys_entity"],
        ),
    ]
    labels = {
        "index_collection": f"stall: another client's GET during our {COLLECTION_KEYS:,}-key invalidation",
        "keys_collection": f"stall: … during KEYS + DEL of {COLLECTION_KEYS:,} (baseline)",
        "index_entity": f"stall: … during our {SMALL_ENTITY_KEYS}-key invalidation",
        "keys_entity": f"stall: … during KEYS + DEL of {SMALL_ENTITY_KEYS} (baseline)",
    }
    for name, label in labels.items():
        stats = stall_stats(name)
        barred = name == "index_collection"  # ours, at collection size: judged on the worst round
        measures.append(
            Measure(
                GROUP,
                f"invalidation.stall.{name}",
                label,
                stats.max_ms if barred else stats.p50_ms,
                "ms",
                stats=stats,
                bar=f"worst round ≤ {STALL_BAR_MS:g} ms" if barred else None,
                passed=stats.max_ms <= STALL_BAR_MS if barred else None,
                note=f"idle GET p50 {idle.p50_ms:.3f} ms"
                + (f"; {stats.n} rounds; longest server-side call {max(server[name]):.3f} ms" if barred else ""),
            )
        )
    return measures

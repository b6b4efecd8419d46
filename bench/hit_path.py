"""Group ``hit``: the cached read path, each variant as a multiple of a bare redis-py GET (the floor).

For the collection metadata (small body) and a 50-item NFT page (large body) of a seeded collection:

(a) floor: ``Redis(single_connection_client=True).get(key)`` of the very bytes the cache holds;
(b) our cache core: ``ReadThroughCache.fetch`` on a hit;
(c) the handler: ``lambda_handler(event, ctx)`` with an HTTP API v2 event, as Lambda calls it (the bar:
    p50 ≤ 0.2 ms and ≤ 2.5x the floor), and its breakdown: the use case alone (``service.*``), and
    the router's ``app.resolve`` (everything but ``load_settings``); the same handler with recording
    off, for what recording the traffic analytics costs a HIT (≤ 10 µs; with it on, ≤ 1.3x the floor);
(d) the predecessor: a JSON envelope ``{"data", "cachedAt", "ttl"}`` parsed with ``json.loads`` on every
    hit and re-serialized with ``json.dumps``;
(e) cashews cache-aside on the same Valkey, default (pickle) serializer, plain and ``lock=True``; the
    timed part is only ``await cached(address)`` returning the cached object (serializing it to a
    response is not counted, which favours cashews). Its event loop persists across blocks.

All variants of both cases are timed in alternating blocks of 100 calls (``common.interleaved``), and
a ratio is the median over rounds of the per-round ratio to the floor's block (``paired_ratio``): on
this shared VM the loopback round trip switches between about 0.02 and 0.10 ms over time, so only
numbers taken side by side compare.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from typing import Any
from unittest import mock

import orjson

from bench.common import (
    CACHE_PREFIX,
    BenchEnv,
    BlockRunner,
    FakeContext,
    Measure,
    Stats,
    forget_containers,
    http_event,
    interleaved,
    latency,
    profile_top,
    seed_small_collection,
    sync_block,
)

GROUP = "hit"
HANDLER_BAR_MS = 0.2
HANDLER_RATIO_BAR = 2.5
RECORDING_BAR_MS = 0.010
RECORDING_RATIO_BAR = 1.3
PAGE_SIZE = 50
# This VM's loopback GET takes about 0.02 ms or about 0.10 ms, switching over minutes (not in our
# control); the overhead line projects the handler's fixed cost onto the fast mode too.
FAST_FLOOR_MS = 0.020
# ENGINEERING.md §5: what the peers were measured at (hit as a multiple of the floor), for context.
PEER_REFERENCE = {"legacy": "8.4", "cashews": "8.9-10.5", "cashews_lock": "18"}

LABELS = {
    "floor": "floor, bare redis-py GET",
    "core": "ReadThroughCache.fetch hit",
    "handler": "lambda_handler, cached (X-Cache: HIT)",
    "use_case": "breakdown: use case alone (service.*)",
    "resolve": "breakdown: router app.resolve",
    "legacy": "predecessor JSON envelope (loads + dumps)",
    "cashews": "cashews @cache hit (pickle)",
    "cashews_lock": "cashews @cache(lock=True) hit",
}


def run(env: BenchEnv, *, quick: bool) -> list[Measure]:
    n, warmup = (1000, 200) if quick else (5000, 500)
    address = seed_small_collection(env)
    env.flush_cache()
    forget_containers()

    import collection_metadata
    import collection_nfts

    from such_market.cache.keys import CacheKeys
    from such_market.cache.tiers import Tier
    from such_market.collections import service
    from such_market.runtime import ReadPathSettings, runtime_for

    context: Any = FakeContext()
    keys = CacheKeys(CACHE_PREFIX)
    metadata_event = http_event(
        "/api/collection/{contractAddress}", f"/api/collection/{address}", {"contractAddress": address}
    )
    page_event = http_event(
        "/api/collection/{contractAddress}/nfts",
        f"/api/collection/{address}/nfts",
        {"contractAddress": address},
        {"page": "0", "pageSize": str(PAGE_SIZE)},
    )

    def metadata_use_case() -> Any:
        return service.collection_metadata(runtime_for(ReadPathSettings), address)

    def page_use_case() -> Any:
        runtime = runtime_for(ReadPathSettings)
        return service.nft_page(runtime, address, page=0, page_size=PAGE_SIZE, filters={}, after_token_id=None)

    cases = [
        (
            "metadata",
            collection_metadata,
            metadata_event,
            metadata_use_case,
            keys.collection_metadata(address),
            Tier.HOT,
        ),
        ("page50", collection_nfts, page_event, page_use_case, keys.nft_page(address, 0, PAGE_SIZE), Tier.WARM),
    ]
    measures: list[Measure] = []
    floor_client = env.redis()
    legacy_client = env.redis()
    loop = asyncio.new_event_loop()
    runners: dict[str, BlockRunner] = {}
    sizes: dict[str, dict[str, Any]] = {}
    handlers: dict[str, Any] = {}
    try:
        for case, module, event, use_case, key, tier in cases:
            handler = module.lambda_handler
            # The first call fills the key (MISS), the next must be a HIT of the same body.
            first, second = handler(event, context), handler(event, context)
            if (first["headers"].get("X-Cache"), second["headers"].get("X-Cache")) != ("MISS", "HIT"):
                raise RuntimeError(f"{case}: expected MISS then HIT, got {first['headers']} / {second['headers']}")
            raw: bytes = floor_client.get(key)
            payload = orjson.loads(second["body"])
            sizes[case] = {"body_bytes": len(second["body"].encode()), "stored_bytes": len(raw)}
            if case == "page50":
                sizes[case]["items"] = len(payload["nfts"])
            cache = runtime_for(ReadPathSettings).cache
            index = keys.collection_index(address)

            def no_load() -> Any:
                raise AssertionError("the bench expected a hit")

            def call(handler: Any = handler, event: Any = event) -> object:
                return handler(event, context)

            handlers[case] = call
            case_runners: dict[str, BlockRunner] = {
                "floor": sync_block(lambda key=key: floor_client.get(key)),
                "core": sync_block(
                    lambda key=key, tier=tier, index=index, cache=cache: cache.fetch(
                        key, tier, no_load, indexes=[index]
                    )
                ),
                "handler": sync_block(call),
                "use_case": sync_block(use_case),
                "resolve": sync_block(lambda app=module.app, event=event: app.resolve(event)),
                "legacy": _legacy_envelope(legacy_client, case, payload),
                **_cashews(loop, env.redis_url, case, payload),
            }
            runners.update({f"{case}.{name}": runner for name, runner in case_runners.items()})
        # Both cases in one interleaved run: every number of the group is taken side by side.
        timed = interleaved(runners, n=n, warmup=warmup)
        stats = timed.stats
        for case, *_ in cases:
            floor = latency(
                GROUP,
                f"hit.{case}.floor",
                f"{case}: {LABELS['floor']}",
                stats[f"{case}.floor"],
                round_p50_ms=timed.rounds[f"{case}.floor"],
                **sizes[case],
            )
            measures.append(floor)
            for name, label in LABELS.items():
                if name == "floor":
                    continue
                judged = name == "handler"
                measure = latency(
                    GROUP,
                    f"hit.{case}.{name}",
                    f"{case}: {label}",
                    stats[f"{case}.{name}"],
                    bar_ms=HANDLER_BAR_MS if judged else None,
                    reference=floor,
                    ratio_bar=HANDLER_RATIO_BAR if judged else None,
                    ratio=timed.paired_ratio(f"{case}.{name}", f"{case}.floor"),
                    note=f"ENGINEERING ref {PEER_REFERENCE[name]}x" if name in PEER_REFERENCE else "",
                    round_p50_ms=timed.rounds[f"{case}.{name}"],
                )
                if judged and measure.passed is False:
                    measure.extra["profile"] = profile_top(handlers[case], n=2000)
                    measure.extra["profile_powertools"] = profile_top(
                        handlers[case], n=2000, limit=12, focus="aws_lambda_powertools"
                    )[:13]
                measures.append(measure)
            measures.append(_overhead(case, stats, floor))
            ratio = timed.paired_ratio(f"{case}.handler", f"{case}.floor")
            measures.extend(_recording(case, runners[f"{case}.handler"], floor, ratio, n=4 * n))
    finally:
        loop.run_until_complete(_close_cashews())
        loop.close()
        floor_client.close()
        legacy_client.close()
    return measures


def _overhead(case: str, stats: dict[str, Stats], floor: Measure) -> Measure:
    """What the handler adds to the GET, in ms: the ratio bar depends on the floor, and on this shared VM
    the loopback round trip is bimodal over time (about 0.02 ms or 0.10 ms, for minutes at a time),
    while this fixed cost is not. The note says how much the 2.5x bar allows at this run's floor."""
    handler, use_case, resolve = (stats[f"{case}.{name}"].p50_ms for name in ("handler", "use_case", "resolve"))
    allowed = (HANDLER_RATIO_BAR - 1) * floor.value
    fixed = handler - floor.value
    at_fast_floor = (FAST_FLOOR_MS + fixed) / FAST_FLOOR_MS
    return Measure(
        GROUP,
        f"hit.{case}.overhead",
        f"{case}: handler p50 - floor p50 (fixed cost)",
        round(fixed, 4),
        "ms",
        note=(
            f"2.5x allows {allowed:.3f} ms at this floor; of it, router resolve - use case "
            f"{resolve - use_case:.3f} ms, use case - floor {use_case - floor.value:.3f} ms; over this VM's "
            f"fast-mode floor ({FAST_FLOOR_MS} ms) the handler would be {at_fast_floor:.2f}x"
        ),
        extra={
            "allowed_ms": allowed,
            "router_ms": resolve - use_case,
            "use_case_ms": use_case - floor.value,
            "ratio_at_fast_floor": at_fast_floor,
        },
    )


def _no_recorder(model: object) -> None:
    return None


def _unrecorded(run: BlockRunner) -> BlockRunner:
    """``run`` with recording off: the handler finds no recorder, as with ``CACHE_ANALYTICS=false``."""
    from such_market.http import api

    def block(k: int) -> list[int]:
        with mock.patch.object(api, "_recorder_for", _no_recorder):
            return run(k)

    return block


def _recording(case: str, handler: BlockRunner, floor: Measure, ratio: float, *, n: int) -> list[Measure]:
    """What recording the traffic analytics costs a HIT (issue 10's bars): the same handler with recording
    on and off, timed in a run of their own (only these two alternate, so each pair of blocks sees the
    same machine: in the group's run of 17 variants, neighbouring blocks drift by more than the 10 µs
    judged here); and the recording handler against the floor, from the group's run."""
    timed = interleaved({"on": handler, "off": _unrecorded(handler)}, n=n, warmup=n // 10, block=200)
    cost = statistics.median(on - off for on, off in zip(timed.rounds["on"], timed.rounds["off"], strict=True))
    return [
        Measure(
            GROUP,
            f"hit.{case}.recording_cost",
            f"{case}: recording analytics on a HIT (handler on - off, per round)",
            round(cost, 4),
            "ms",
            bar=f"<= {RECORDING_BAR_MS} ms",
            passed=cost <= RECORDING_BAR_MS,
            note=(
                f"median over {len(timed.rounds['on'])} rounds of the handler's block p50 with recording on minus"
                f" off; p50 on {timed.stats['on'].p50_ms:.4f} ms, off {timed.stats['off'].p50_ms:.4f} ms"
            ),
        ),
        Measure(
            GROUP,
            f"hit.{case}.recording_ratio",
            f"{case}: HIT with recording on vs the floor",
            round(ratio, 3),
            "x",
            bar=f"<= {RECORDING_RATIO_BAR}x floor",
            passed=ratio <= RECORDING_RATIO_BAR,
            ratio=ratio,
            ratio_of=floor.name,
            ratio_bar=RECORDING_RATIO_BAR,
        ),
    ]


def _legacy_envelope(client: Any, case: str, payload: Any) -> BlockRunner:
    """The predecessor's hit: GET a JSON envelope, ``json.loads`` it, check its age, ``json.dumps`` the data."""
    key = f"legacy:{case}"
    client.set(key, json.dumps({"data": payload, "cachedAt": int(time.time() * 1000), "ttl": 300}), ex=3600)

    def hit() -> object:
        envelope = json.loads(client.get(key))
        if time.time() * 1000 - envelope["cachedAt"] > envelope["ttl"] * 1000:
            raise AssertionError("expired")
        return json.dumps(envelope["data"])

    return sync_block(hit)


_cashews_caches: list[Any] = []


def _cashews(loop: asyncio.AbstractEventLoop, redis_url: str, case: str, payload: Any) -> dict[str, BlockRunner]:
    """cashews cache-aside (``@cache``) on the same Valkey, plain and ``lock=True``; each block runs in
    the persistent event loop ``loop``."""
    from cashews import Cache

    cache = Cache()
    cache.setup(redis_url)
    loop.run_until_complete(cache.init())
    _cashews_caches.append(cache)
    loads: list[str] = []

    @cache(ttl="30m", key=f"cashews:{case}:{{address}}")
    async def cached(address: str) -> Any:
        loads.append("plain")
        return payload

    @cache(ttl="30m", key=f"cashews-lock:{case}:{{address}}", lock=True)
    async def cached_locked(address: str) -> Any:
        loads.append("lock")
        return payload

    def runner(function: Any) -> BlockRunner:
        async def block(k: int) -> list[int]:
            clock = time.perf_counter_ns
            samples = [0] * k
            for index in range(k):
                start = clock()
                await function("0xabc")
                samples[index] = clock() - start
            if len(loads) > 2:
                raise RuntimeError(f"cashews loaded {len(loads)} times; expected one fill per function")
            return samples

        return lambda k: loop.run_until_complete(block(k))

    return {"cashews": runner(cached), "cashews_lock": runner(cached_locked)}


async def _close_cashews() -> None:
    for cache in _cashews_caches:
        await cache.close()
    _cashews_caches.clear()

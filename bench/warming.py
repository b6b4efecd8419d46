"""The cache warmer under real expiry: a Zipf(1.1) read mix over 2,000 keys, with and without the warmer.

500 indexed collections (small, 20 tokens each), four keys each — metadata (hot tier), traits (warm), the
first page at sizes 20 and 50 (warm) — ranked together by a Zipf(1.1) draw, so the lowest ranks are the
busiest collections. Every request goes through the real handlers (cache → PostgreSQL), recorded in the
analytics as in production. The tiers are shortened with ``CACHE_TTL_SCALE`` (the settings' seam, not a
patch): hot 3 s, warm 18 s at 1 %, so real TTL expiry happens many times within a run. The warmer's
interval and margin are scaled alike (3 s + 0.6 s) and it runs inline between requests, top 20 by the
recorded traffic, exactly ``warm_collections`` as the scheduled function runs it.

Reported for each arm: the overall hit rate, the p99 of the top-20 collections' first pages (handler
time), the misses of the top-20 collections' keys after the warm-up (the first warm run plus one traffic
flush; "expiry misses": each is a key that expired while requested) and the Alchemy calls (a counting
socket stands in for Alchemy: any call would reach it). Bars: with the warmer, no expiry miss of a key
of the top-N collections while they are warmed (those the latest run covered: its top 20 by recorded
traffic), and no more upstream calls than without (zero: every collection is indexed). Collections 19
and 20 differ by 5 % in traffic, so in the first runs, on a few seconds of it, the recorded top 20 may
hold the 21st instead of the 20th: misses of the Zipf top 20, warmed or not, are reported beside the bar,
each with whether it was being warmed.
"""

from __future__ import annotations

import bisect
import itertools
import os
import random
import socket
import threading
import time
from typing import Any

from bench.common import BenchEnv, FakeContext, Measure, Stats, forget_containers, http_event, index_collection

COLLECTIONS = 500
TOKENS = 20
TOP = 20
ZIPF_S = 1.1
TTL_SCALE = 0.01
WARM_PREFIX = "0x" + "c0" * 14  # + 12 hex digits of the collection's number


def _address(index: int) -> str:
    return f"{WARM_PREFIX}{index:012x}"


def _seed(env: BenchEnv) -> list[str]:
    from such_market.collections.writes import CollectionMetadata, NftRecord

    def make() -> list[str]:
        addresses = [_address(index) for index in range(COLLECTIONS)]
        with env.connect() as conn:
            for address in addresses:
                metadata = CollectionMetadata(
                    contract_address=address, name="Warm", symbol="WARM", token_type="ERC721", total_supply=TOKENS
                )
                records = [
                    NftRecord(token_id=i, title=f"#{i}", attributes=[{"trait_type": "Tier", "value": str(i % 4)}])
                    for i in range(TOKENS)
                ]
                index_collection(conn, metadata, records)
        return addresses

    addresses: list[str] = env.once("warming", make)
    return addresses


class _CountingUpstream:
    """A socket that counts connections: Alchemy's stand-in (nothing should reach it)."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._server.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._server.close()


def _events(addresses: list[str]) -> list[tuple[str, Any]]:
    """The 2,000 keys' requests, in Zipf rank order: (kind, event), four per collection."""
    requests: list[tuple[str, Any]] = []
    for address in addresses:
        base = f"/api/collection/{address}"
        params = {"contractAddress": address}
        requests += [
            ("metadata", http_event("/api/collection/{contractAddress}", base, params)),
            ("page", http_event("/api/collection/{contractAddress}/nfts", f"{base}/nfts", params, {"pageSize": "20"})),
            ("page", http_event("/api/collection/{contractAddress}/nfts", f"{base}/nfts", params, {"pageSize": "50"})),
            ("traits", http_event("/api/collection/{contractAddress}/traits", f"{base}/traits", params)),
        ]
    return requests


def _arm(addresses: list[str], *, warm: bool, seconds: float, seed: int) -> dict[str, Any]:
    import collection_metadata
    import collection_nfts
    import collection_traits

    from such_market.collections.warming import WARM_INTERVAL_SECONDS, WARM_MARGIN_SECONDS, warm_collections
    from such_market.runtime import ReadPathSettings, runtime_for

    handlers = {
        "metadata": collection_metadata.lambda_handler,
        "page": collection_nfts.lambda_handler,
        "traits": collection_traits.lambda_handler,
    }
    requests = _events(addresses)
    weights = list(itertools.accumulate(1 / (rank + 1) ** ZIPF_S for rank in range(len(requests))))
    top_keys = TOP * 4  # the top-20 collections' keys are ranks 0..79
    rng = random.Random(seed)
    context = FakeContext()
    interval = WARM_INTERVAL_SECONDS * TTL_SCALE
    horizon = (WARM_INTERVAL_SECONDS + WARM_MARGIN_SECONDS) * TTL_SCALE
    start = time.monotonic()
    next_warm = start + 6.0  # the first run sees at least one flush of traffic (every 5 s)
    hits = misses = 0
    top_misses = 0
    numbers = {address: number for number, address in enumerate(addresses)}
    warming: set[int] = set()  # the collections the latest warm run covered (its top-N by recorded traffic)
    warmed_misses = 0
    missed: list[str] = []  # evidence: which top-20 keys missed, when, and whether they were being warmed
    top_page_latencies: list[float] = []
    warm_runs: list[dict[str, Any]] = []
    end = start + seconds
    while (now := time.monotonic()) < end:
        if warm and now >= next_warm:
            report = warm_collections(
                runtime_for(ReadPathSettings), top_n=TOP, horizon_seconds=horizon, time_budget_seconds=interval
            )
            warm_runs.append(report.as_dict())
            warming = {numbers[item.contract_address] for item in report.collections}
            next_warm = now + interval
        rank = bisect.bisect_left(weights, rng.random() * weights[-1])
        kind, event = requests[rank]
        began = time.perf_counter()
        response = handlers[kind](event, context)
        elapsed = time.perf_counter() - began
        outcome = response["headers"].get("X-Cache")
        measuring = time.monotonic() >= start + 6.0 + interval  # same phase for both arms
        if outcome == "HIT":
            hits += 1
        elif outcome == "MISS":
            misses += 1
            warmed = rank // 4 in warming
            if measuring and warmed:
                warmed_misses += 1
            if measuring and rank < top_keys:
                top_misses += 1
                state = "warmed" if warmed else "not in the warmer's top 20 then"
                missed.append(f"rank {rank} ({kind}, {state}) at {now - start:.1f} s")
        if measuring and rank < top_keys and kind == "page":
            top_page_latencies.append(elapsed * 1000)
    return {
        "hit_rate": hits / max(1, hits + misses),
        "requests": hits + misses,
        "top_misses": top_misses,
        "warmed_misses": warmed_misses,
        "missed": missed,
        "top_page": Stats.of_ms(top_page_latencies) if top_page_latencies else None,
        "warm_runs": warm_runs,
    }


def run(env: BenchEnv, *, quick: bool) -> list[Measure]:
    addresses = _seed(env)
    seconds = 20.0 if quick else 60.0
    upstream = _CountingUpstream()
    saved = {
        name: os.environ.get(name) for name in ("CACHE_TTL_SCALE", "ALCHEMY_BASE_URL", "POWERTOOLS_METRICS_NAMESPACE")
    }
    os.environ.pop("POWERTOOLS_METRICS_NAMESPACE", None)  # the analytics are recorded; their EMF lines not printed
    os.environ["CACHE_TTL_SCALE"] = str(TTL_SCALE)
    os.environ["ALCHEMY_BASE_URL"] = f"http://127.0.0.1:{upstream.port}"
    results: dict[str, dict[str, Any]] = {}
    try:
        for name, warm in (("without", False), ("with", True)):
            env.flush_cache()
            forget_containers()
            before = upstream.connections
            results[name] = _arm(addresses, warm=warm, seconds=seconds, seed=7)
            results[name]["upstream_calls"] = upstream.connections - before
    finally:
        forget_containers()
        upstream.close()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    measures: list[Measure] = []
    for name, result in results.items():
        page = result["top_page"]
        warm_runs = result["warm_runs"]
        measures.append(
            Measure(
                "warming",
                f"zipf_{name}_warmer",
                f"Zipf(1.1), 2,000 keys, tiers x{TTL_SCALE}: {name} the warmer — hit rate",
                round(result["hit_rate"] * 100, 2),
                "%",
                stats=page,
                note=(
                    f"{result['requests']} requests in {seconds:.0f} s; top-20 first pages p99 "
                    f"{page.p99_ms if page else 0:.3f} ms (p50 {page.p50_ms if page else 0:.3f} ms); "
                    f"misses of the top-20 collections' keys after warm-up: {result['top_misses']}; "
                    f"Alchemy calls: {result['upstream_calls']}"
                    + (
                        f"; {len(warm_runs)} warm runs, {sum(r['warmed'] for r in warm_runs)} entries warmed, "
                        f"longest {max(r['tookMs'] for r in warm_runs):.1f} ms"
                        if warm_runs
                        else ""
                    )
                ),
                extra={
                    "top_misses": result["top_misses"],
                    "top_page_p99_ms": page.p99_ms if page else None,
                    "upstream_calls": result["upstream_calls"],
                },
            )
        )
    with_warmer, without = results["with"], results["without"]
    measures.append(
        Measure(
            "warming",
            "warmer_expiry_misses",
            "with the warmer: expiry misses of the warmed top-20 collections' keys",
            float(with_warmer["warmed_misses"]),
            "misses",
            bar="0, and no added upstream calls",
            passed=with_warmer["warmed_misses"] == 0 and with_warmer["upstream_calls"] <= without["upstream_calls"],
            note=f"misses of the Zipf top-20 collections' keys, warmed or not: {with_warmer['top_misses']} with the"
            f" warmer, {without['top_misses']} without; Alchemy calls {with_warmer['upstream_calls']} with vs"
            f" {without['upstream_calls']} without"
            + (f"; missed: {', '.join(with_warmer['missed'][:10])}" if with_warmer["missed"] else ""),
        )
    )
    return measures

"""Group ``db``: NFT pages served from PostgreSQL (the miss path, no cache) on a 100k-token collection.

The collection is generated in SQL (``INSERT … SELECT generate_series``: nfts with four trait types of
skewed values, and their ``nft_traits`` rows), then ranked and counted by the write API
(``assign_positions``, ``rebuild_traits``) and analyzed; the trait bitmaps are then built for the final
ranks (``rebuild_trait_bitmaps``: the shared seeding counts traits before it ranks, and bitmaps need
ranks), which the seeding figure includes. Timed: ``queries.get_nft_page`` for 50-item
pages by page number at the first, a middle and the deepest page, by cursor deep in, and with trait
filters (one type, a rare value, two types, OR within a type, deep). Bars: ≤ 3 ms at any depth,
filtered ≤ 10 ms (p50). The predecessor's ``OFFSET`` pagination (with its ``count(*)``) at the same
depths is the baseline; and the whole handler on a miss (lease, query, serialization, fill) is shown
beside the query alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bench.common import (
    CACHE_PREFIX,
    BenchEnv,
    FakeContext,
    Measure,
    explain_plans,
    forget_containers,
    http_event,
    latency,
    profile_top,
    seed_big_collection,
    time_calls,
)

GROUP = "db"
PAGE_SIZE = 50
PAGE_BAR_MS = 3.0
FILTERED_BAR_MS = 10.0

# The predecessor: OFFSET over the token order, and an exact count of the collection for ``total``.
_OFFSET_PAGE = """
SELECT token_id::text, title, description, image_url, thumbnail_url, attributes
FROM nfts WHERE collection_id = %(collection_id)s
ORDER BY token_id OFFSET %(offset)s LIMIT %(limit)s
"""
_OFFSET_COUNT = "SELECT count(*) FROM nfts WHERE collection_id = %(collection_id)s"


def run(env: BenchEnv, *, quick: bool) -> list[Measure]:
    import time

    from such_market.collections.queries import get_nft_page
    from such_market.collections.writes import rebuild_trait_bitmaps

    tokens = 20_000 if quick else 100_000
    n, warmup = (60, 10) if quick else (400, 40)
    budget = 0.5 if quick else 4.0  # seconds of timing per case at most (slow cases get fewer samples)
    big = seed_big_collection(env, tokens)
    started = time.perf_counter()
    with env.connect() as conn:
        bitmaps = rebuild_trait_bitmaps(conn=conn, collection_id=big.collection_id)
    bitmaps_s = time.perf_counter() - started
    last_page = tokens // PAGE_SIZE - 1
    middle_page = last_page // 2
    measures: list[Measure] = []
    with env.connect() as conn:

        def page_call(
            page: int = 0, filters: Mapping[str, Sequence[str]] | None = None, after: int | None = None
        ) -> Any:
            return lambda: get_nft_page(
                conn=conn,
                collection_id=big.collection_id,
                page=page,
                page_size=PAGE_SIZE,
                filters=filters or {},
                after_token_id=after,
            )

        # Sanity: the deepest page is full and ends the collection; the cursor continues a page.
        deepest = page_call(last_page)()
        if len(deepest.nfts) != PAGE_SIZE or deepest.has_more or deepest.total != tokens:
            raise RuntimeError(f"unexpected deepest page: {len(deepest.nfts)} items, total {deepest.total}")

        unfiltered = {
            "page 0": page_call(0),
            f"page {middle_page}": page_call(middle_page),
            f"page {last_page} (deepest)": page_call(last_page),
            f"cursor after token {tokens // 2}": page_call(after=tokens // 2),
            f"cursor after token {tokens - 2 * PAGE_SIZE}": page_call(after=tokens - 2 * PAGE_SIZE),
        }
        keyset: dict[int, Measure] = {}
        for label, call in unfiltered.items():
            stats = time_calls(call, n=n, warmup=warmup, budget_s=budget)
            measure = latency(GROUP, f"db.{_slug(label)}", f"get_nft_page {label}", stats, bar_ms=PAGE_BAR_MS)
            _explain_if_failed(measure, conn, call)
            measures.append(measure)
            if label.startswith("page "):
                keyset[int(label.split()[1])] = measure

        filtered = {
            "Rarity=Common (70 %)": ({"Rarity": ["Common"]}, 0),
            "Rarity=Legendary (2 %)": ({"Rarity": ["Legendary"]}, 0),
            "Rarity=Rare AND Background=Background 0": ({"Rarity": ["Rare"], "Background": ["Background 0"]}, 0),
            "Hat in (Hat 1, Hat 5, Hat 20) (OR)": ({"Hat": ["Hat 1", "Hat 20", "Hat 5"]}, 0),
            "Eyes in (3 values) AND Rarity in (2 values)": (
                {"Eyes": ["Eyes 0", "Eyes 1", "Eyes 2"], "Rarity": ["Common", "Uncommon"]},
                0,
            ),
            f"Rarity=Common, page {middle_page} (deep)": ({"Rarity": ["Common"]}, middle_page),
        }
        for label, (filters, page) in filtered.items():
            call = page_call(page, filters)
            result = call()
            stats = time_calls(call, n=n, warmup=warmup, budget_s=budget)
            measure = latency(
                GROUP,
                f"db.filtered.{_slug(label)}",
                f"filtered: {label}",
                stats,
                bar_ms=FILTERED_BAR_MS,
                matches=result.total,
                items=len(result.nfts),
            )
            _explain_if_failed(measure, conn, call)
            measures.append(measure)
        call = page_call(filters={"Rarity": ["Common"]}, after=tokens - 2 * PAGE_SIZE * 10)
        stats = time_calls(call, n=n, warmup=warmup, budget_s=budget)
        measure = latency(
            GROUP, "db.filtered.cursor_deep", "filtered: Rarity=Common, cursor deep", stats, bar_ms=FILTERED_BAR_MS
        )
        _explain_if_failed(measure, conn, call)
        measures.append(measure)

        for page, ours in keyset.items():

            def offset_page(page: int = page) -> object:
                params = {"collection_id": big.collection_id, "offset": page * PAGE_SIZE, "limit": PAGE_SIZE + 1}
                total = conn.execute(_OFFSET_COUNT, params).fetchone()
                return total, conn.execute(_OFFSET_PAGE, params).fetchall()

            stats = time_calls(offset_page, n=n, warmup=5, budget_s=budget)
            measures.append(
                latency(
                    GROUP,
                    f"db.baseline_offset.page_{page}",
                    f"baseline: OFFSET + count(*), page {page}",
                    stats,
                    reference=ours,
                )
            )

    measures.extend(_handler_miss(env, big.address, last_page, n=n, warmup=warmup))
    measures.append(
        Measure(
            GROUP,
            "db.seed",
            f"seeding {tokens} tokens ({4 * tokens} nft_traits rows, {bitmaps} trait bitmaps)",
            round((big.seconds_to_seed + bitmaps_s) * 1000, 1),
            "ms",
            extra={"steps_s": {**big.seed_steps_s, "rebuild_trait_bitmaps": round(bitmaps_s, 3)}},
        )
    )
    return measures


def _handler_miss(env: BenchEnv, address: str, page: int, *, n: int, warmup: int) -> list[Measure]:
    """The nfts handler on a miss (key deleted before each call, untimed): lease script, the same query,
    JSON serialization, fill script. Judged on the same 3 ms bar: a miss served from PostgreSQL."""
    import collection_nfts

    from such_market.cache.keys import CacheKeys

    forget_containers()
    keys = CacheKeys(CACHE_PREFIX)
    key = keys.nft_page(address, page, PAGE_SIZE)
    event = http_event(
        "/api/collection/{contractAddress}/nfts",
        f"/api/collection/{address}/nfts",
        {"contractAddress": address},
        {"page": str(page), "pageSize": str(PAGE_SIZE)},
    )
    context: Any = FakeContext()
    client = env.redis()
    try:
        seen: set[str] = set()

        def call() -> object:
            response = collection_nfts.lambda_handler(event, context)
            seen.add(response["headers"].get("X-Cache", ""))
            return response

        def evict() -> None:
            client.delete(key)

        stats = time_calls(call, n=n, warmup=warmup, before=evict)
        # A page this deep is never cached (only the first pages are): served from PostgreSQL as BYPASS.
        if len(seen) != 1 or not seen <= {"MISS", "BYPASS"}:
            raise RuntimeError(f"expected only misses or only bypasses, saw {seen}")
        (served,) = seen
        measure = latency(
            GROUP,
            "db.handler_miss.deepest",
            f"lambda_handler {served}, page {page} (query{' + fill' if served == 'MISS' else ', never cached'})",
            stats,
            bar_ms=PAGE_BAR_MS,
        )
        if measure.passed is False:

            def evict_and_call() -> object:
                evict()
                return call()

            measure.extra["profile"] = profile_top(evict_and_call, n=200)
        return [measure]
    finally:
        client.close()


def _explain_if_failed(measure: Measure, conn: Any, call: Any) -> None:
    """For a missed bar: where the time goes, in Python (cProfile) and in PostgreSQL (the plan)."""
    if measure.passed is False:
        measure.extra["profile"] = profile_top(call, n=5, limit=8)
        measure.extra["plan"] = explain_plans(conn, call)


def _slug(label: str) -> str:
    keep = "".join(char if char.isalnum() else "_" for char in label.lower())
    return "_".join(part for part in keep.split("_") if part)

"""The cache warmer (SPEC §6): keep the most requested collections' entries fresh before they expire.

For the top-N collections by recent traffic (``analytics.traffic``), or the ones named, the warmer
refreshes the metadata, the first NFT page at each page size that was actually requested (cached sizes
only; 20 when none was recorded) and the trait facets — but only the entries that would stop being
fresh before the next run plus a margin (``horizon``). It reads the 16-byte header of every candidate
(``GETRANGE key 0 15``: status and fresh-until, ``cache.entries``) in one pipeline per collection, and
refreshes the due ones through ``ReadThroughCache.refresh``: the readers' own lease and ``FILL`` script,
so a warm fill never runs beside a reader's fill of the same key and never stores a value read before an
invalidation. A value it fills stays fresh at least until the horizon: the hot tier (300 s ±10 %) is
shorter than the 5-minute interval plus its margin, and a warmed key must not expire before the next run
(a change still reaches it at once: events invalidate it, whatever its TTL). The answers are built by the
same functions the read endpoints use (``collections.service``), from PostgreSQL only.

A collection that is unknown, never completely indexed or being re-ingested is skipped: the warmer never
asks Alchemy for anything (its loader re-reads the row and gives the lease back if that changed). The
whole run stops at its time budget (``stoppedEarly``); what is left is the next run's.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from such_market.analytics import traffic
from such_market.cache import entries
from such_market.cache.entries import Entry
from such_market.cache.tiers import Tier
from such_market.collections.queries import CollectionRow, get_collection
from such_market.collections.service import (
    CACHED_PAGE_SIZES,
    is_indexing,
    metadata_answer,
    page_answer,
    traits_answer,
)
from such_market.observability import logger
from such_market.runtime import Runtime
from such_market.validation import DEFAULT_PAGE_SIZE

WARM_INTERVAL_SECONDS: Final = 300
"""How often the schedule runs the warmer (``rate(5 minutes)`` in template.yaml)."""
WARM_MARGIN_SECONDS: Final = 60
"""Entries fresh for less than the interval plus this are refreshed: a late or slow run still comes first."""
DEFAULT_TOP_N: Final = 20
MAX_TOP_N: Final = 100
MAX_PAGE_SIZES: Final = 3
"""First-page sizes warmed per collection, the most requested first."""
WARM_LEASE_MS: Final = 5000


class _NotWarmableError(Exception):
    """The collection changed under the warmer (gone, or indexing again): leave the key to the readers."""


@dataclass(slots=True)
class CollectionWarm:
    """What the warmer did for one collection (counts are of cache entries)."""

    contract_address: str
    warmed: int = 0
    skipped: int = 0
    failed: int = 0
    skipped_reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "contractAddress": self.contract_address,
            "warmed": self.warmed,
            "skipped": self.skipped,
            "failed": self.failed,
            "skippedReason": self.skipped_reason,
        }


@dataclass(slots=True)
class WarmReport:
    """The run's answer: entries warmed (filled now), skipped (fresh enough, being filled by someone else,
    or of a collection not to be warmed), failed, the time taken, and each collection's part."""

    collections: list[CollectionWarm] = field(default_factory=list)
    took_ms: float = 0.0
    stopped_early: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "warmed": sum(item.warmed for item in self.collections),
            "skipped": sum(item.skipped for item in self.collections),
            "failed": sum(item.failed for item in self.collections),
            "tookMs": round(self.took_ms, 1),
            "stoppedEarly": self.stopped_early,
            "collections": [item.as_dict() for item in self.collections],
        }


@dataclass(frozen=True, slots=True)
class _Target:
    key: str
    tier: Tier
    answer: Callable[[CollectionRow], Entry]


def warm_collections(
    runtime: Runtime,
    *,
    addresses: Sequence[str] | None = None,
    top_n: int = DEFAULT_TOP_N,
    horizon_seconds: float = WARM_INTERVAL_SECONDS + WARM_MARGIN_SECONDS,
    time_budget_seconds: float,
    clock: Callable[[], float] = time.time,
) -> WarmReport:
    """Warm ``addresses`` (validated, lower case), or the ``top_n`` collections by recent traffic."""
    started = time.monotonic()
    stop_at = started + time_budget_seconds
    report = WarmReport()
    cache = runtime.cache
    now = clock()
    if addresses is None:
        hot = traffic.top_collections(cache.client, cache.keys, now=now, limit=top_n)
        chosen = [(item.address, item.page_sizes) for item in hot]
    else:
        sizes = traffic.page_sizes_of(cache.client, cache.keys, now=now, addresses=addresses)
        chosen = [(address, sizes.get(address, ())) for address in addresses]
    for address, page_sizes in chosen:
        if time.monotonic() >= stop_at:
            report.stopped_early = True
            break
        result, finished = _warm_one(
            runtime, address, page_sizes, horizon_ms=int(horizon_seconds * 1000), stop_at=stop_at, clock=clock
        )
        report.collections.append(result)
        if not finished:
            report.stopped_early = True
            break
    report.took_ms = (time.monotonic() - started) * 1000
    return report


def _targets(runtime: Runtime, address: str, page_sizes: Sequence[int]) -> list[_Target]:
    keys = runtime.cache.keys
    sizes = [size for size in page_sizes if size in CACHED_PAGE_SIZES][:MAX_PAGE_SIZES] or [DEFAULT_PAGE_SIZE]
    targets = [
        _Target(keys.collection_metadata(address), Tier.HOT, metadata_answer),
        _Target(keys.traits(address), Tier.WARM, lambda row: traits_answer(runtime, row)),
    ]
    for size in sizes:
        first_page = functools.partial(_first_page, runtime, size=size)
        targets.append(_Target(keys.nft_page(address, 0, size), Tier.WARM, first_page))
    return targets


def _first_page(runtime: Runtime, row: CollectionRow, *, size: int) -> Entry:
    return page_answer(runtime, row, page=0, page_size=size, filters={}, after_token_id=None)


def _warm_one(
    runtime: Runtime,
    address: str,
    page_sizes: Sequence[int],
    *,
    horizon_ms: int,
    stop_at: float,
    clock: Callable[[], float],
) -> tuple[CollectionWarm, bool]:
    """Warm one collection's due entries; returns its result and whether it finished within the budget."""
    result = CollectionWarm(address)
    targets = _targets(runtime, address, page_sizes)
    cache = runtime.cache
    try:
        row = get_collection(conn=runtime.conn, address=address)
        if row is None or is_indexing(row):
            result.skipped = len(targets)
            result.skipped_reason = "unknown" if row is None else "not_indexed"
            return result, True
        pipe = cache.client.pipeline(transaction=False)
        for target in targets:
            pipe.getrange(target.key, 0, entries.HEADER_BYTES - 1)  # GETRANGE's end is inclusive
        headers: list[bytes] = pipe.execute()
    except Exception as error:  # one collection's failure (database, cache) does not stop the others
        logger.warning("warming a collection failed", extra={"error_type": type(error).__name__})
        result.failed = len(targets)
        return result, True
    due_before_ms = int(clock() * 1000) + horizon_ms
    collection_index = cache.keys.collection_index(address)
    for target, header in zip(targets, headers, strict=True):
        stored = entries.decode_header(header)
        if stored is not None and stored[0] == 200 and stored[1] >= due_before_ms:
            result.skipped += 1  # fresh past the next run: nothing to do
            continue
        if time.monotonic() >= stop_at:
            return result, False

        def load(target: _Target = target) -> Entry:
            current = get_collection(conn=runtime.conn, address=address)
            if current is None or is_indexing(current):
                raise _NotWarmableError
            return target.answer(current)

        try:
            outcome = cache.refresh(
                target.key,
                target.tier,
                load,
                fresh_until_ms=due_before_ms,
                indexes=[collection_index],
                lease_ms=WARM_LEASE_MS,
                min_fresh_ms=horizon_ms,  # fresh until the next run at least, whatever the tier's jitter
            )
        except _NotWarmableError:
            result.skipped += 1
            result.skipped_reason = "not_indexed"
        except Exception as error:
            logger.warning("warming an entry failed", extra={"error_type": type(error).__name__})
            result.failed += 1
        else:
            if outcome == "filled":
                result.warmed += 1
            else:  # fresh meanwhile, filled by a reader, not storable, or an invalidation won the race
                result.skipped += 1
    return result, True

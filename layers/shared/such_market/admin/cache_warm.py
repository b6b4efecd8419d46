"""The cache warmer's two entry points: the 5-minute schedule and ``POST /api/admin/cache/warm``.

``{contractAddresses?: [...], topN?}``: the named collections (1 to ``MAX_ADDRESSES``, any case; repeats are
warmed once), or the ``topN`` (1 to 100, default 20) by recent traffic. Either way the run is bounded by a
time budget under the invocation's deadline and answers ``{warmed, skipped, failed, tookMs, stoppedEarly,
collections}`` (``such_market.collections.warming``). The body is validated strictly (any other field,
or both selectors at once, is a 400). The scheduled run also reaps expired entity indexes (``reaped``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Final

from such_market.cache.reaping import reap_indexes
from such_market.collections.warming import DEFAULT_TOP_N, MAX_TOP_N, warm_collections
from such_market.config import AdminSettings, CacheSettings, DatabaseSettings, FunctionSettings
from such_market.errors import BadRequestError
from such_market.runtime import Runtime
from such_market.validation import parse_address, parse_json_object

MAX_BODY_BYTES: Final = 8192
MAX_ADDRESSES: Final = 50
SCHEDULED_BUDGET_SECONDS: Final = 60.0
"""A scheduled run's budget: far below the 5-minute interval, so runs never overlap."""
WARM_SHARE: Final = 0.8
"""The share of a scheduled run's budget the warmer may spend; the reaper has the rest (at least 20 %)."""
API_BUDGET_SECONDS: Final = 20.0
"""A request's budget: under API Gateway's 30-second integration timeout."""


class WarmCacheSettings(FunctionSettings):
    """Settings of the cache warmer: the database (answers), the cache, and the admin token (its route)."""

    database: DatabaseSettings
    cache: CacheSettings
    admin: AdminSettings


@dataclass(frozen=True, slots=True)
class WarmRequest:
    """A validated request: the named collections, or how many of the busiest."""

    addresses: tuple[str, ...] | None = None
    top_n: int = DEFAULT_TOP_N


def parse_warm_request(body: str | bytes | None) -> WarmRequest:
    """The JSON body (``{}`` for the default top 20) → ``WarmRequest``; ``BadRequestError`` (400) otherwise."""
    payload = parse_json_object(
        body, max_bytes=MAX_BODY_BYTES, shape="{contractAddresses?, topN?}", fields=("contractAddresses", "topN")
    )
    if "contractAddresses" in payload and "topN" in payload:
        raise BadRequestError("give contractAddresses or topN, not both", code="invalid_body")
    if "topN" in payload:
        top_n = payload["topN"]
        if isinstance(top_n, float) and top_n.is_integer():
            top_n = int(top_n)  # JSON Schema's integer: 66.0 is one
        if not isinstance(top_n, int) or isinstance(top_n, bool) or not 1 <= top_n <= MAX_TOP_N:
            raise BadRequestError(f"invalid topN: expected an integer from 1 to {MAX_TOP_N}", code="invalid_top_n")
        return WarmRequest(top_n=top_n)
    if "contractAddresses" not in payload:
        return WarmRequest()
    addresses = payload["contractAddresses"]
    if not isinstance(addresses, list) or not 1 <= len(addresses) <= MAX_ADDRESSES:
        raise BadRequestError(
            f"invalid contractAddresses: expected a list of 1 to {MAX_ADDRESSES} addresses", code="invalid_body"
        )
    parsed = [parse_address(item if isinstance(item, str) else None) for item in addresses]
    return WarmRequest(addresses=tuple(dict.fromkeys(parsed)))  # one address in two spellings is warmed once


def warm_cache(runtime: Runtime, request: WarmRequest, *, time_budget_seconds: float) -> dict[str, Any]:
    """Run the warmer for ``request`` within the budget; the answer's body."""
    report = warm_collections(
        runtime, addresses=request.addresses, top_n=request.top_n, time_budget_seconds=time_budget_seconds
    )
    return report.as_dict()


def scheduled_run(runtime: Runtime, *, time_budget_seconds: float) -> dict[str, Any]:
    """The 5-minute run: warm the busiest collections, then reap expired entity indexes with the time left
    (``such_market.cache.reaping``); the warm answer with ``reaped`` added."""
    started = time.monotonic()
    body = warm_cache(runtime, WarmRequest(), time_budget_seconds=time_budget_seconds * WARM_SHARE)
    left = time_budget_seconds - (time.monotonic() - started)
    body["reaped"] = reap_indexes(runtime.cache, time_budget_seconds=max(left, 0.0)).as_dict()
    return body

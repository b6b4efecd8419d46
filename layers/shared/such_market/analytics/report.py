"""``GET /api/admin/cache/metrics`` and its ``POST`` actions: real traffic figures, alerts and health.

The answer merges the minute hashes of the window (``15m``, ``1h``, ``24h``) written by every container
(``analytics.store``), so it is the traffic of the whole deployment, and adds the cache server's own
figures (keys, memory, evictions) and the event pipeline (outbox backlog from PostgreSQL, events
processed and failed by the consumers, the dead-letter queue's depth). Each source that cannot answer is
reported as ``null`` with an issue, never as a failed request.

Alerts are evaluated on every read, one per condition (the condition is its id): a condition that holds
opens the alert, or updates its ``lastSeen`` and ``count``; a condition that no longer holds resolves it
(the alert is gone). ``resolve-alert`` marks an open alert resolved by an operator: it stays resolved, and
is not reported, while the condition still holds; it can open again only after the condition cleared.
``hitRate`` is over cacheable traffic: HIT / (HIT + MISS + STALE). A ``BYPASS`` answer (one the cache never
holds, such as a page size nobody shares, or one served while the cache is down) counts in
``totalRequests`` but not in the rate, so requests for never-cached answers cannot lower it. A ``STALE``
answer was cacheable, but its value had expired and could not be refreshed: it counts as a miss, so the
rate measures the cache the same whether PostgreSQL is up or down. ``hit_rate_low`` and ``p99_high`` are
judged only from ``Thresholds.min_requests`` cacheable requests in the window.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal, cast, get_args

from such_market.analytics import store, traffic
from such_market.analytics.histogram import merge, quantiles
from such_market.analytics.store import Cell, Minute, ServerFigures
from such_market.cache.keys import CacheKeys
from such_market.errors import BadRequestError, NotFoundError
from such_market.formats import iso_utc

Window = Literal["15m", "1h", "24h"]
WINDOWS: Final[dict[str, tuple[int, int]]] = {"15m": (15, 1), "1h": (60, 5), "24h": (1440, 60)}
"""Window → (minutes, minutes per ``byTimeRange`` point)."""
OUTCOMES: Final = ("HIT", "MISS", "BYPASS", "STALE")
RETENTION_MINUTES: Final = store.RETENTION_SECONDS // 60
MIN_CACHEABLE_REQUESTS: Final = 100
ALERT_ID_PATTERN: Final = r"^[a-z0-9_]{1,64}$"
"""An alert's id (e.g. ``hit_rate_low``): here, not in ``analytics.schemas``, so validating one needs no pydantic."""
"""Below this many cacheable requests (HIT + MISS + STALE) in a window the hit rate and p99 are not judged:
a handful of misses says nothing of the cache (``ALERT_MIN_CACHEABLE_REQUESTS``, the template's
``AlarmHitRateMinRequests``)."""


@dataclass(frozen=True, slots=True)
class Thresholds:
    """When an alert opens (the same figures as the template's alarm parameters)."""

    hit_rate_min: float = 0.80
    p99_max_ms: float = 100.0
    outbox_age_max_seconds: float = 300.0
    min_requests: int = MIN_CACHEABLE_REQUESTS


@dataclass(frozen=True, slots=True)
class Pipeline:
    """The event pipeline's figures that come from outside the cache (``None``: could not be read)."""

    outbox_backlog: int | None
    oldest_unpublished_age_seconds: float | None
    dlq_depth: int | None


def parse_window(value: str | None) -> Window:
    """``15m`` (default), ``1h`` or ``24h``; anything else is a 400."""
    if value is None:
        return "15m"
    for window in get_args(Window):
        if value == window:
            return cast("Window", window)
    raise BadRequestError("window must be one of 15m, 1h, 24h", code="invalid_window")


# -- figures ----------------------------------------------------------------------------------------------
def _ms(microseconds: float | None) -> float | None:
    return None if microseconds is None else round(microseconds / 1000, 3)


def _latency(cells: Sequence[Cell]) -> dict[str, float | None]:
    requests = sum(cell.requests for cell in cells)
    total = sum(cell.total_us for cell in cells)
    p50, p95, p99 = quantiles(merge(cell.histogram for cell in cells), (0.50, 0.95, 0.99))
    return {
        "avgResponseTime": _ms(total / requests) if requests else None,
        "p50": _ms(p50),
        "p95": _ms(p95),
        "p99": _ms(p99),
    }


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _summary(cells: Mapping[str, Sequence[Cell]]) -> dict[str, Any]:
    """Requests by outcome, hit rate and latency over ``cells`` (grouped by outcome)."""
    counts = {outcome: sum(cell.requests for cell in cells.get(outcome, ())) for outcome in OUTCOMES}
    cacheable = counts["HIT"] + counts["MISS"] + counts["STALE"]
    return {
        "requests": sum(counts.values()),
        "hits": counts["HIT"],
        "misses": counts["MISS"],
        "bypass": counts["BYPASS"],
        "stale": counts["STALE"],
        "cacheable": cacheable,
        "hitRate": _rate(counts["HIT"], cacheable),
        **_latency([cell for group in cells.values() for cell in group]),
    }


def _by(minutes: Mapping[int, Minute], pick: Callable[[str, str], str | None]) -> dict[str, dict[str, list[Cell]]]:
    grouped: dict[str, dict[str, list[Cell]]] = {}
    for minute in minutes.values():
        for (family, outcome), cell in minute.cells.items():
            name = pick(family, outcome)
            if name is not None:
                grouped.setdefault(name, {}).setdefault(outcome, []).append(cell)
    return grouped


def _time_ranges(minutes: Mapping[int, Minute], first: int, step: int, count: int) -> list[dict[str, Any]]:
    points = []
    for index in range(count // step):
        start = first + index * step
        span = {minute: minutes[minute] for minute in range(start, start + step) if minute in minutes}
        summary = _summary(_by(span, lambda _family, _outcome: "all").get("all", {}))
        points.append(
            {
                "start": iso_utc(datetime.fromtimestamp(start * 60, UTC)),
                "end": iso_utc(datetime.fromtimestamp((start + step) * 60, UTC)),
                "requests": summary["requests"],
                "hitRate": summary["hitRate"],
                "p95": summary["p95"],
            }
        )
    return points


def _events(minutes: Mapping[int, Minute]) -> tuple[int, int]:
    processed = failed = 0
    for minute in minutes.values():
        for (_, outcome), count in minute.events.items():
            if outcome == "processed":
                processed += count
            elif outcome == "failed":
                failed += count
    return processed, failed


# -- alerts -----------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Condition:
    alert_id: str
    severity: Literal["warning", "critical"]
    message: str
    value: float
    threshold: float


def _conditions(overview: Mapping[str, Any], pipeline: Pipeline, limits: Thresholds) -> list[_Condition]:
    found: list[_Condition] = []
    judged = overview["cacheable"] >= limits.min_requests
    hit_rate, p99 = overview["hitRate"], overview["p99"]
    if judged and hit_rate is not None and hit_rate < limits.hit_rate_min:
        found.append(
            _Condition("hit_rate_low", "warning", "cache hit rate below its threshold", hit_rate, limits.hit_rate_min)
        )
    if judged and p99 is not None and p99 > limits.p99_max_ms:
        found.append(_Condition("p99_high", "warning", "p99 latency above its bound", p99, limits.p99_max_ms))
    if pipeline.dlq_depth:
        found.append(
            _Condition(
                "dlq_not_empty", "critical", "events are waiting in the dead-letter queue", pipeline.dlq_depth, 0
            )
        )
    age = pipeline.oldest_unpublished_age_seconds
    if age is not None and age > limits.outbox_age_max_seconds:
        found.append(
            _Condition(
                "outbox_stale",
                "critical",
                "an outbox event is unpublished for too long",
                age,
                limits.outbox_age_max_seconds,
            )
        )
    return found


def _evaluate(
    known: Mapping[str, dict[str, Any]], holding: Sequence[_Condition], now: str
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The alert records to write and the ids to delete, given the conditions that hold now."""
    changed: dict[str, dict[str, Any]] = {}
    for condition in holding:
        record = dict(known.get(condition.alert_id) or {"id": condition.alert_id, "firstSeen": now, "count": 0})
        record.setdefault("status", "open")
        record.update(
            severity=condition.severity,
            message=condition.message,
            value=condition.value,
            threshold=condition.threshold,
            lastSeen=now,
            count=int(record["count"]) + 1,
        )
        changed[condition.alert_id] = record
    cleared = [alert_id for alert_id in known if alert_id not in changed]
    return changed, cleared


# -- the use cases ----------------------------------------------------------------------------------------
def metrics_report(
    *,
    client: Any,  # noqa: ANN401 - a redis-py client, standalone or cluster
    keys: CacheKeys,
    window: Window,
    pipeline: Pipeline,
    limits: Thresholds = Thresholds(),
    now: float | None = None,
    issues: Sequence[str] = (),
) -> dict[str, Any]:
    """The SPEC answer of ``GET /api/admin/cache/metrics?window=`` (see the module doc)."""
    moment = time.time() if now is None else now
    span, step = WINDOWS[window]
    last = int(moment // 60)
    first = last - span + 1
    minutes = store.read(client, keys, list(range(first, last + 1)))
    overview = _summary(_by(minutes, lambda _family, _outcome: "all").get("all", {}))
    problems = list(issues)
    server: ServerFigures | None
    try:
        server = store.server_figures(client)
    except Exception as error:  # the figures are optional: say so
        server = None
        problems.append(f"the cache server's figures could not be read ({type(error).__name__})")
    stamp = iso_utc(datetime.fromtimestamp(moment, UTC))
    known = store.read_alerts(client, keys)
    changed, cleared = _evaluate(known, _conditions(overview, pipeline, limits), stamp)
    store.write_alerts(client, keys, changed, cleared)
    alerts = [record for record in changed.values() if record["status"] == "open"]
    processed, failed = _events(minutes)
    return {
        "success": True,
        "timestamp": stamp,
        "window": window,
        "analytics": {
            "overview": {
                "hitRate": overview["hitRate"],
                "missRate": None if overview["hitRate"] is None else round(1 - overview["hitRate"], 4),
                "avgResponseTime": overview["avgResponseTime"],
                "p50": overview["p50"],
                "p95": overview["p95"],
                "p99": overview["p99"],
                "totalRequests": overview["requests"],
                "cacheSize": None if server is None else server.keys,
                "memoryUsedBytes": None if server is None else server.memory_used_bytes,
                "evictions": None if server is None else server.evictions,
                "lastUpdated": stamp,
            },
            "breakdown": {
                "byEndpoint": {name: _summary(cells) for name, cells in sorted(_by(minutes, lambda f, _o: f).items())},
                "byCacheType": {
                    name: {
                        key: value
                        for key, value in _summary(cells).items()
                        if key not in {"hits", "misses", "bypass", "stale", "cacheable", "hitRate"}
                    }
                    for name, cells in sorted(_by(minutes, lambda _f, o: o).items())
                },
                "byTimeRange": _time_ranges(minutes, first, step, span),
            },
            "alerts": sorted(alerts, key=lambda record: (record["severity"] != "critical", record["id"])),
            "eventPipeline": {
                "outboxBacklog": pipeline.outbox_backlog,
                "oldestUnpublishedAgeSeconds": pipeline.oldest_unpublished_age_seconds,
                "eventsProcessed": processed,
                "eventsFailed": failed,
                "dlqDepth": pipeline.dlq_depth,
            },
        },
        "health": _health(overview, alerts, server, problems),
    }


_ADVICE: Final = {
    "hit_rate_low": "warm the most requested collections (POST /api/admin/cache/warm) or lengthen the TTL tiers",
    "p99_high": "look at the slowest endpoint in byEndpoint: misses go to PostgreSQL or the upstreams",
    "dlq_not_empty": "inspect the events dead-letter queue, fix the cause, and redrive its messages",
    "outbox_stale": "check OutboxRelayFunction's logs and the event bus: committed events are not published",
}


def _health(
    overview: Mapping[str, Any], alerts: Sequence[Mapping[str, Any]], server: ServerFigures | None, problems: list[str]
) -> dict[str, Any]:
    issues = [f"{alert['message']} ({alert['value']} vs {alert['threshold']})" for alert in alerts] + problems
    advice = [_ADVICE[str(alert["id"])] for alert in alerts if str(alert["id"]) in _ADVICE]
    if server is not None and server.evictions > 0:
        issues.append(f"the cache evicted {server.evictions} keys since it started")
        advice.append("give the cache more memory: evictions turn hits into misses")
    if server is not None and server.maxmemory_bytes > 0 and server.maxmemory_policy == "noeviction":
        issues.append("the cache's maxmemory-policy is noeviction: a full cache refuses writes")
        advice.append("set maxmemory-policy to volatile-lru (docs/architecture.md#the-cache, Eviction policy)")
    if overview["requests"] == 0:
        advice.append("no cache-fronted traffic in this window yet")
    status = "healthy"
    if any(alert["severity"] == "critical" for alert in alerts):
        status = "unhealthy"
    elif issues:
        status = "degraded"
    return {"status": status, "issues": issues, "recommendations": advice}


def reset(*, client: Any, keys: CacheKeys, now: float | None = None) -> dict[str, Any]:  # noqa: ANN401
    """Forget every recorded figure and alert of the retention period, and the traffic the warmer reads."""
    moment = time.time() if now is None else now
    last = int(moment // 60) + 1
    deleted = store.delete(client, keys, range(last - RETENTION_MINUTES - 1, last + 1))
    deleted += traffic.delete(client, keys, now=moment)
    return {"success": True, "action": "reset", "keysDeleted": deleted}


def resolve_alert(*, client: Any, keys: CacheKeys, alert_id: str, now: float | None = None) -> dict[str, Any]:  # noqa: ANN401
    """Mark an open alert resolved (see the module doc); 404 when there is none with that id."""
    record = store.read_alerts(client, keys).get(alert_id)
    if record is None:
        raise NotFoundError(f"no alert {alert_id}", code="alert_not_found")
    record.update(
        status="resolved", resolvedAt=iso_utc(datetime.fromtimestamp(time.time() if now is None else now, UTC))
    )
    store.write_alerts(client, keys, {alert_id: record}, ())
    return {"success": True, "action": "resolve-alert", "alert": record}

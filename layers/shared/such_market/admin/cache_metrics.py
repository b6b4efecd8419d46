"""The cache-metrics admin use cases: gather the figures from every source, then answer or act.

``metrics`` reads the window's traffic from Valkey and the event pipeline from PostgreSQL (outbox
backlog) and SQS (dead letters); a source that cannot answer is reported as ``null`` with an issue in
``health``, so the operator's view works during the very outages it should show. ``metrics_action``
runs ``{action: "reset"}`` or ``{action: "resolve-alert", alertId}``.
"""

from __future__ import annotations

import re
from typing import Any, Final

from such_market.analytics.report import (
    ALERT_ID_PATTERN,
    MIN_CACHEABLE_REQUESTS,
    Pipeline,
    Thresholds,
    Window,
    metrics_report,
    reset,
    resolve_alert,
)
from such_market.config import AdminSettings, CacheSettings, DatabaseSettings, FunctionSettings, SettingsPart, setting
from such_market.errors import BadRequestError
from such_market.events.dead_letters import DeadLetterSettings, dead_letter_depth
from such_market.observability import logger
from such_market.runtime import Runtime
from such_market.validation import parse_json_object

MAX_BODY_BYTES: Final = 1024


class AlertSettings(SettingsPart):
    """When an alert opens (the template passes its alarm parameters here too)."""

    alert_hit_rate_min: float = setting(0.80, ge=0, le=1)
    alert_p99_max_ms: float = setting(100.0, gt=0, le=60_000)
    alert_outbox_age_max_seconds: float = setting(300.0, gt=0, le=86_400)
    alert_min_cacheable_requests: int = setting(MIN_CACHEABLE_REQUESTS, ge=1, le=1_000_000)

    def thresholds(self) -> Thresholds:
        return Thresholds(
            hit_rate_min=self.alert_hit_rate_min,
            p99_max_ms=self.alert_p99_max_ms,
            outbox_age_max_seconds=self.alert_outbox_age_max_seconds,
            min_requests=self.alert_min_cacheable_requests,
        )


class CacheMetricsSettings(FunctionSettings):
    """Settings of the cache-metrics admin function."""

    cache: CacheSettings
    database: DatabaseSettings
    admin: AdminSettings
    dead_letters: DeadLetterSettings
    alerts: AlertSettings


def _pipeline(runtime: Runtime, issues: list[str]) -> Pipeline:
    from such_market.events.outbox import backlog

    count: int | None = None
    age: float | None = None
    try:
        pending = backlog(conn=runtime.conn)
        count, age = pending.count, pending.oldest_age_seconds
    except Exception as error:  # reported, not raised: the metrics must work while the database is down
        logger.warning("outbox backlog unavailable", extra={"error_type": type(error).__name__})
        issues.append("the outbox backlog could not be read (database unavailable)")
    depth: int | None = None
    settings = runtime.settings.part(DeadLetterSettings)
    try:
        depth = dead_letter_depth(settings)
    except Exception as error:
        logger.warning("dead-letter queue depth unavailable", extra={"error_type": type(error).__name__})
        issues.append("the dead-letter queue's depth could not be read")
    if settings.events_dlq_url is None:
        issues.append("EVENTS_DLQ_URL is not set: the dead-letter queue is not watched")
    return Pipeline(outbox_backlog=count, oldest_unpublished_age_seconds=age, dlq_depth=depth)


def metrics(runtime: Runtime, window: Window) -> dict[str, Any]:
    """GET /api/admin/cache/metrics?window=."""
    issues: list[str] = []
    pipeline = _pipeline(runtime, issues)
    return metrics_report(
        client=runtime.cache_client,
        keys=runtime.cache.keys,
        window=window,
        pipeline=pipeline,
        limits=runtime.settings.part(AlertSettings).thresholds(),
        issues=issues,
    )


def metrics_action(runtime: Runtime, body: str | bytes | None) -> dict[str, Any]:
    """POST /api/admin/cache/metrics ``{action: "reset"}`` or ``{action: "resolve-alert", alertId}``."""
    payload = parse_json_object(body, max_bytes=MAX_BODY_BYTES, shape='{action: "reset" | "resolve-alert", alertId?}')
    action = payload.get("action")
    unknown = set(payload) - {"action", "alertId"}
    if unknown:
        raise BadRequestError(f"unknown field(s): {', '.join(sorted(unknown))}", code="invalid_body")
    if action == "reset":
        if "alertId" in payload:
            raise BadRequestError("reset takes no alertId", code="invalid_body")
        return reset(client=runtime.cache_client, keys=runtime.cache.keys)
    if action == "resolve-alert":
        alert_id = payload.get("alertId")
        if not isinstance(alert_id, str) or not re.fullmatch(ALERT_ID_PATTERN, alert_id):
            raise BadRequestError("resolve-alert needs alertId (an alert's id)", code="invalid_alert_id")
        return resolve_alert(client=runtime.cache_client, keys=runtime.cache.keys, alert_id=alert_id)
    raise BadRequestError('invalid action: expected "reset" or "resolve-alert"', code="invalid_action")

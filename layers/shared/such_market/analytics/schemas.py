"""Request and response models of ``/api/admin/cache/metrics`` for the OpenAPI document (documentation
only: the answers are built as plain dicts by ``analytics.report``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from such_market.analytics.report import ALERT_ID_PATTERN
from such_market.schema_base import CamelModel


class OverviewBody(CamelModel):
    hit_rate: float | None
    miss_rate: float | None
    avg_response_time: float | None
    p50: float | None
    p95: float | None
    p99: float | None
    total_requests: int
    cache_size: int | None
    memory_used_bytes: int | None
    evictions: int | None
    last_updated: str


class EndpointFiguresBody(CamelModel):
    requests: int
    hits: int
    misses: int
    bypass: int
    stale: int
    cacheable: int = Field(description="HIT + MISS + STALE: the requests the hit rate is over (BYPASS is not)")
    hit_rate: float | None
    avg_response_time: float | None
    p50: float | None
    p95: float | None
    p99: float | None


class CacheTypeFiguresBody(CamelModel):
    requests: int
    avg_response_time: float | None
    p50: float | None
    p95: float | None
    p99: float | None


class TimeRangeBody(CamelModel):
    start: str
    end: str
    requests: int
    hit_rate: float | None
    p95: float | None


class BreakdownBody(CamelModel):
    by_endpoint: dict[str, EndpointFiguresBody]
    by_cache_type: dict[str, CacheTypeFiguresBody]
    by_time_range: list[TimeRangeBody]


class AlertBody(CamelModel):
    id: str
    status: Literal["open", "resolved"]
    severity: Literal["warning", "critical"]
    message: str
    value: float
    threshold: float
    first_seen: str
    last_seen: str
    count: int


class EventPipelineBody(CamelModel):
    outbox_backlog: int | None
    oldest_unpublished_age_seconds: float | None
    events_processed: int
    events_failed: int
    dlq_depth: int | None


class AnalyticsBody(CamelModel):
    overview: OverviewBody
    breakdown: BreakdownBody
    alerts: list[AlertBody]
    event_pipeline: EventPipelineBody


class CacheHealthReportBody(BaseModel):
    status: Literal["healthy", "degraded", "unhealthy"]
    issues: list[str]
    recommendations: list[str]


class CacheMetricsBody(BaseModel):
    success: bool
    timestamp: str
    window: Literal["15m", "1h", "24h"]
    analytics: AnalyticsBody
    health: CacheHealthReportBody


class ResetActionRequestBody(CamelModel):
    """``reset``: forget every recorded figure and alert (no other field)."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["reset"]


class ResolveAlertActionRequestBody(CamelModel):
    """``resolve-alert``: resolve the open alert ``alertId``."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["resolve-alert"]
    alert_id: str = Field(pattern=ALERT_ID_PATTERN, description="an alert's id, e.g. hit_rate_low")


class CacheMetricsActionRequestBody(RootModel[ResetActionRequestBody | ResolveAlertActionRequestBody]):
    """The body of POST /api/admin/cache/metrics."""

    root: ResetActionRequestBody | ResolveAlertActionRequestBody = Field(discriminator="action")


class CacheMetricsActionBody(CamelModel):
    success: bool
    action: Literal["reset", "resolve-alert"]
    keys_deleted: int | None = None
    alert: dict[str, Any] | None = None

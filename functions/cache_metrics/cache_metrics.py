"""GET /api/admin/cache/metrics?window=15m|1h|24h: traffic analytics, alerts, event pipeline and health;
POST: ``{action: "reset"}`` or ``{action: "resolve-alert", alertId}`` (SPEC §5)."""

from __future__ import annotations

from such_market.admin.cache_metrics import CacheMetricsSettings, metrics, metrics_action
from such_market.analytics.report import parse_window
from such_market.http.admin import require_admin
from such_market.http.api import QueryParameter, api_handler, create_api
from such_market.http.responses import Response, json_response
from such_market.http.schemas import responses
from such_market.runtime import runtime_for

app = create_api()
app.use(middlewares=[require_admin(CacheMetricsSettings)])

WINDOW = QueryParameter(
    "window", "the window: 15m (default), 1h or 24h", {"type": "string", "enum": ["15m", "1h", "24h"]}
)
NO_STORE = {"Cache-Control": "no-store"}


@app.get(
    "/api/admin/cache/metrics",
    summary="Cache analytics from real traffic: hit rate, latency percentiles, breakdowns, alerts, health",
    tags=["admin"],
    query=(WINDOW,),
    responses=responses("such_market.analytics.schemas:CacheMetricsBody", errors=(400, 401, 403, 503)),
)
def get_cache_metrics() -> Response:
    window = parse_window(app.current_event.query_string_parameters.get("window"))
    return json_response(200, metrics(runtime_for(CacheMetricsSettings), window), headers=NO_STORE)


@app.post(
    "/api/admin/cache/metrics",
    summary="Reset the recorded analytics, or resolve an alert",
    tags=["admin"],
    request_body="such_market.analytics.schemas:CacheMetricsActionRequestBody",
    responses=responses("such_market.analytics.schemas:CacheMetricsActionBody", errors=(400, 401, 403, 404, 503)),
)
def post_cache_metrics() -> Response:
    body = metrics_action(runtime_for(CacheMetricsSettings), app.current_event.decoded_body)
    return json_response(200, body, headers=NO_STORE)


lambda_handler = api_handler(app, CacheMetricsSettings)

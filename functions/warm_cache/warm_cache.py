"""The cache warmer (SPEC §6): every 5 minutes on its schedule, and POST /api/admin/cache/warm
``{contractAddresses?, topN?}`` (SPEC §5) → ``{warmed, skipped, failed, tookMs, stoppedEarly, collections}``.

One function, two triggers: an HTTP API event (it has a ``routeKey``) goes through the router, with the
admin check; a scheduled event warms the top collections by recent traffic, then reaps expired entity
indexes. Both run within a time budget under the invocation's deadline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from such_market import deadline
from such_market.admin.cache_warm import (
    API_BUDGET_SECONDS,
    SCHEDULED_BUDGET_SECONDS,
    WarmCacheSettings,
    parse_warm_request,
    scheduled_run,
    warm_cache,
)
from such_market.http.admin import require_admin
from such_market.http.api import api_handler, create_api
from such_market.http.responses import Response, json_response
from such_market.http.schemas import responses
from such_market.runtime import runtime_for

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext  # a type only: Powertools stays off the cold path

app = create_api()
app.use(middlewares=[require_admin(WarmCacheSettings)])


@app.post(
    "/api/admin/cache/warm",
    summary="Warm the cache now: the named collections, or the top N by recent traffic",
    tags=["admin"],
    request_body="such_market.admin.schemas:CacheWarmRequestBody",
    responses=responses("such_market.admin.schemas:CacheWarmBody", errors=(400, 401, 403, 503)),
)
def post_cache_warm() -> Response:
    request = parse_warm_request(app.current_event.decoded_body)
    body = warm_cache(
        runtime_for(WarmCacheSettings),
        request,
        time_budget_seconds=deadline.budget(API_BUDGET_SECONDS, reserve_seconds=0.5),
    )
    return json_response(200, body, headers={"Cache-Control": "no-store"})


_api_handler = api_handler(app, WarmCacheSettings)


def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if "routeKey" in event:
        return _api_handler(event, context)
    with deadline.invocation(context):
        return scheduled_run(
            runtime_for(WarmCacheSettings),
            time_budget_seconds=deadline.budget(SCHEDULED_BUDGET_SECONDS, reserve_seconds=0.5),
        )

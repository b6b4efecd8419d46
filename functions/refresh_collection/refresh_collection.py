"""POST /api/collection/{contractAddress}/refresh: queue a re-ingestion (202), or 429 while in cooldown
or already running."""

from __future__ import annotations

from such_market.collections.refresh import request_refresh
from such_market.http.api import api_handler, create_api
from such_market.http.responses import Response, json_response
from such_market.http.schemas import responses
from such_market.runtime import ReadPathSettings, runtime_for
from such_market.validation import parse_address

app = create_api()


@app.post(
    "/api/collection/<contractAddress>/refresh",
    summary="Queue a re-ingestion of the collection (cooldown; one at a time)",
    tags=["collections"],
    responses=responses(
        "such_market.collections.schemas:RefreshQueuedBody",
        status=202,
        description="Queued",
        errors=(400, 404, 429, 503),
    ),
)
def post_refresh(contractAddress: str) -> Response:
    runtime = runtime_for(ReadPathSettings)
    body = request_refresh(runtime, parse_address(contractAddress))
    return json_response(202, body, headers={"X-Cache": "BYPASS"})


lambda_handler = api_handler(app, ReadPathSettings)

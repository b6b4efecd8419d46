"""GET /api/collection/{contractAddress}/refresh: whether a refresh may start, and the ingestion state."""

from __future__ import annotations

from such_market.collections.refresh import refresh_status
from such_market.http.api import api_handler, create_api
from such_market.http.responses import Response, json_response
from such_market.http.schemas import responses
from such_market.runtime import ReadPathSettings, runtime_for
from such_market.validation import parse_address

app = create_api()


@app.get(
    "/api/collection/<contractAddress>/refresh",
    summary="Refresh availability (cooldown, in progress) and the collection's ingestion state",
    tags=["collections"],
    responses=responses("such_market.collections.schemas:RefreshStatusBody", errors=(400, 404, 503)),
)
def get_refresh(contractAddress: str) -> Response:
    runtime = runtime_for(ReadPathSettings)
    body = refresh_status(runtime, parse_address(contractAddress))
    return json_response(200, body, headers={"X-Cache": "BYPASS", "Cache-Control": "no-store"})


lambda_handler = api_handler(app, ReadPathSettings)

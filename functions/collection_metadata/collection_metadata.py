"""GET /api/collection/{contractAddress}: collection metadata (cache → PostgreSQL → Alchemy)."""

from __future__ import annotations

from such_market.collections.service import collection_metadata
from such_market.http.api import api_handler, create_api
from such_market.http.responses import Response, served_response
from such_market.http.schemas import responses
from such_market.runtime import ReadPathSettings, runtime_for
from such_market.validation import parse_address

app = create_api()


@app.get(
    "/api/collection/<contractAddress>",
    summary="Collection metadata; a collection seen for the first time is queued for ingestion",
    tags=["collections"],
    family="metadata",
    responses=responses("such_market.collections.schemas:CollectionBody", errors=(400, 404, 429, 503)),
)
def get_collection(contractAddress: str) -> Response:
    runtime = runtime_for(ReadPathSettings)
    return served_response(collection_metadata(runtime, parse_address(contractAddress), requester=app.current_event))


lambda_handler = api_handler(app, ReadPathSettings)

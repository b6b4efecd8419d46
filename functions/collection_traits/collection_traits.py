"""GET /api/collection/{contractAddress}/traits: the collection's trait facets with token counts."""

from __future__ import annotations

from such_market.collections.service import traits
from such_market.http.api import api_handler, create_api
from such_market.http.responses import Response, served_response
from such_market.http.schemas import responses
from such_market.runtime import ReadPathSettings, runtime_for
from such_market.validation import parse_address

app = create_api()


@app.get(
    "/api/collection/<contractAddress>/traits",
    summary="Trait facets: every trait type with its values and token counts",
    tags=["collections"],
    family="traits",
    responses=responses("such_market.collections.schemas:TraitsBody", errors=(400, 404, 429, 503)),
)
def get_traits(contractAddress: str) -> Response:
    runtime = runtime_for(ReadPathSettings)
    return served_response(traits(runtime, parse_address(contractAddress), requester=app.current_event))


lambda_handler = api_handler(app, ReadPathSettings)

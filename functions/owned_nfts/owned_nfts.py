"""GET /api/collection/{contractAddress}/nfts/owned?userAddress&page&pageSize: a wallet's tokens in a
collection, paged in token order."""

from __future__ import annotations

from such_market.collections.service import owned_tokens
from such_market.http.api import api_handler, create_api
from such_market.http.responses import Response, served_response
from such_market.http.schemas import PAGE, PAGE_SIZE, USER_ADDRESS, responses
from such_market.runtime import ReadPathSettings, runtime_for
from such_market.validation import parse_address, parse_page, parse_page_size

app = create_api()


@app.get(
    "/api/collection/<contractAddress>/nfts/owned",
    summary="The tokens a wallet (userAddress) holds in the collection, paged",
    tags=["collections"],
    family="owned",
    query=(USER_ADDRESS, PAGE, PAGE_SIZE),
    responses=responses("such_market.collections.schemas:OwnedNftsBody", errors=(400, 404, 429, 503)),
)
def get_owned(contractAddress: str) -> Response:
    query = app.current_event.query_string_parameters or {}
    served = owned_tokens(
        runtime_for(ReadPathSettings),
        parse_address(contractAddress),
        parse_address(query.get("userAddress"), field="userAddress"),
        page=parse_page(query.get("page")),
        page_size=parse_page_size(query.get("pageSize")),
        requester=app.current_event,
    )
    return served_response(served)


lambda_handler = api_handler(app, ReadPathSettings)

"""GET /api/collection/{contractAddress}/nfts/{tokenId}/owner: who holds a token (and how many)."""

from __future__ import annotations

from such_market.collections.service import token_owner
from such_market.http.api import api_handler, create_api
from such_market.http.responses import Response, served_response
from such_market.http.schemas import responses
from such_market.runtime import ReadPathSettings, runtime_for
from such_market.validation import parse_address, parse_token_id

app = create_api()


@app.get(
    "/api/collection/<contractAddress>/nfts/<tokenId>/owner",
    summary="The token's owner(s) with balances: from nft_ownership when fresh, else Alchemy",
    tags=["collections"],
    family="owner",
    responses=responses("such_market.collections.schemas:TokenOwnerBody", errors=(400, 404, 429, 503)),
)
def get_owner(contractAddress: str, tokenId: str) -> Response:
    runtime = runtime_for(ReadPathSettings)
    return served_response(
        token_owner(runtime, parse_address(contractAddress), parse_token_id(tokenId), requester=app.current_event)
    )


lambda_handler = api_handler(app, ReadPathSettings)

"""GET /api/collection/{contractAddress}/nfts/{tokenId}: one NFT with its full metadata."""

from __future__ import annotations

from such_market.collections.service import nft
from such_market.http.api import api_handler, create_api
from such_market.http.responses import Response, served_response
from such_market.http.schemas import responses
from such_market.runtime import ReadPathSettings, runtime_for
from such_market.validation import parse_address, parse_token_id

app = create_api()


@app.get(
    "/api/collection/<contractAddress>/nfts/<tokenId>",
    summary="One NFT with its full metadata (token id in decimal or 0x hex)",
    tags=["collections"],
    family="nft",
    responses=responses("such_market.collections.schemas:NftBody", errors=(400, 404, 429, 503)),
)
def get_nft(contractAddress: str, tokenId: str) -> Response:
    runtime = runtime_for(ReadPathSettings)
    return served_response(
        nft(runtime, parse_address(contractAddress), parse_token_id(tokenId), requester=app.current_event)
    )


lambda_handler = api_handler(app, ReadPathSettings)

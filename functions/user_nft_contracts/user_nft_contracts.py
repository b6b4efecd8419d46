"""GET /api/nft-contracts/{fid}: the collections each of a Farcaster user's verified wallets holds, from
Alchemy wallet scans (stored in ``wallet_collection_mapping``)."""

from __future__ import annotations

from such_market.http.api import api_handler, create_api
from such_market.http.responses import Response, served_response
from such_market.http.schemas import responses
from such_market.runtime import runtime_for
from such_market.users.service import UsersSettings, nft_contracts
from such_market.validation import parse_fid

app = create_api()


@app.get(
    "/api/nft-contracts/<fid>",
    summary="The collections of a Farcaster user's verified wallets, scanned with Alchemy",
    tags=["users"],
    family="nft-contracts",
    responses=responses("such_market.users.schemas:NftContractsBody", errors=(400, 404, 503)),
)
def get_nft_contracts(fid: str) -> Response:
    runtime = runtime_for(UsersSettings)
    return served_response(nft_contracts(runtime, parse_fid(fid)))


lambda_handler = api_handler(app, UsersSettings)

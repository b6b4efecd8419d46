"""GET /api/nft-contracts/{fid}/normalized: a Farcaster user's collections per wallet from the normalized
ownership tables, rescanning a wallet only when its last scan is older than the cold tier."""

from __future__ import annotations

from such_market.http.api import api_handler, create_api
from such_market.http.responses import Response, served_response
from such_market.http.schemas import responses
from such_market.runtime import runtime_for
from such_market.users.service import UsersSettings, nft_contracts_normalized
from such_market.validation import parse_fid

app = create_api()


@app.get(
    "/api/nft-contracts/<fid>/normalized",
    summary="A Farcaster user's collections per wallet, from the normalized ownership tables",
    tags=["users"],
    family="normalized",
    responses=responses("such_market.users.schemas:NormalizedNftContractsBody", errors=(400, 404, 503)),
)
def get_nft_contracts_normalized(fid: str) -> Response:
    runtime = runtime_for(UsersSettings)
    return served_response(nft_contracts_normalized(runtime, parse_fid(fid)))


lambda_handler = api_handler(app, UsersSettings)

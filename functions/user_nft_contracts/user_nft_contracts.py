"""GET /api/nft-contracts/{fid}[?includeSpam=true]: the collections each of a Farcaster user's verified
wallets holds, from Alchemy wallet scans (stored in ``wallet_collection_mapping``); spam left out unless
``includeSpam=true``."""

from __future__ import annotations

from such_market.http.api import api_handler, create_api
from such_market.http.responses import Response, served_response
from such_market.http.schemas import INCLUDE_SPAM, responses
from such_market.runtime import runtime_for
from such_market.users.service import UsersSettings, nft_contracts
from such_market.validation import parse_fid, parse_flag

app = create_api()


@app.get(
    "/api/nft-contracts/<fid>",
    summary="The collections of a Farcaster user's verified wallets, scanned with Alchemy",
    tags=["users"],
    family="nft-contracts",
    query=(INCLUDE_SPAM,),
    responses=responses("such_market.users.schemas:NftContractsBody", errors=(400, 404, 503)),
)
def get_nft_contracts(fid: str) -> Response:
    runtime = runtime_for(UsersSettings)
    query = app.current_event.query_string_parameters or {}
    include_spam = parse_flag(query.get("includeSpam"), field="includeSpam", code="invalid_include_spam")
    return served_response(nft_contracts(runtime, parse_fid(fid), include_spam=include_spam))


lambda_handler = api_handler(app, UsersSettings)

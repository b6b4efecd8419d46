"""GET /api/collection/{contractAddress}/nfts: a page of NFTs in numeric token or rarity order.

Query: ``page`` (≥ 0), ``pageSize`` (1..100, default 20), ``cursor`` (a previous ``nextCursor``;
replaces ``page``), ``sort`` (``tokenId``, ``rarity`` or ``-rarity``) and ``trait.<type>=<value>``
filters (AND across types, OR within one).
"""

from __future__ import annotations

from such_market.collections.service import nft_page
from such_market.http.api import api_handler, create_api
from such_market.http.responses import Response, served_response
from such_market.http.schemas import CURSOR, PAGE, PAGE_SIZE, SORT, TRAIT_FILTER, responses
from such_market.runtime import ReadPathSettings, runtime_for
from such_market.validation import (
    parse_address,
    parse_cursor,
    parse_page,
    parse_page_size,
    parse_sort,
    parse_trait_filters,
)

app = create_api()


@app.get(
    "/api/collection/<contractAddress>/nfts",
    summary="A page of the collection's NFTs (page/pageSize or cursor, sort, trait.<type>=<value> filters)",
    tags=["collections"],
    family="nfts-page",
    query=(PAGE, PAGE_SIZE, CURSOR, SORT, TRAIT_FILTER),
    responses=responses("such_market.collections.schemas:NftPageBody", errors=(400, 404, 429, 503)),
)
def get_nfts(contractAddress: str) -> Response:
    query = app.current_event.query_string_parameters or {}
    address = parse_address(contractAddress)
    served = nft_page(
        runtime_for(ReadPathSettings),
        address,
        page=parse_page(query.get("page")),
        page_size=parse_page_size(query.get("pageSize")),
        filters=parse_trait_filters(query),
        after_token_id=parse_cursor(query.get("cursor")),
        sort=parse_sort(query.get("sort")),
        requester=app.current_event,
    )
    return served_response(served)


lambda_handler = api_handler(app, ReadPathSettings)

"""GET /api/verifications/{fid}: a Farcaster user's verified Ethereum addresses and custody address."""

from __future__ import annotations

from such_market.http.api import api_handler, create_api
from such_market.http.responses import Response, served_response
from such_market.http.schemas import responses
from such_market.runtime import runtime_for
from such_market.users.service import UsersSettings, verifications
from such_market.validation import parse_fid

app = create_api()


@app.get(
    "/api/verifications/<fid>",
    summary="A Farcaster user's verified addresses",
    tags=["users"],
    family="verifications",
    responses=responses("such_market.users.schemas:VerificationsBody", errors=(400, 404, 503)),
)
def get_verifications(fid: str) -> Response:
    runtime = runtime_for(UsersSettings)
    return served_response(verifications(runtime, parse_fid(fid)))


lambda_handler = api_handler(app, UsersSettings)

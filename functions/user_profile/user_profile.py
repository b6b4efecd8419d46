"""GET /api/profile/{fid}: a Farcaster profile (cache → ``fc_users`` while fresh → Neynar)."""

from __future__ import annotations

from such_market.http.api import api_handler, create_api
from such_market.http.responses import Response, served_response
from such_market.http.schemas import responses
from such_market.runtime import runtime_for
from such_market.users.service import UsersSettings, profile
from such_market.validation import parse_fid

app = create_api()


@app.get(
    "/api/profile/<fid>",
    summary="A Farcaster user's profile",
    tags=["users"],
    family="profile",
    responses=responses("such_market.users.schemas:ProfileBody", errors=(400, 404, 503)),
)
def get_profile(fid: str) -> Response:
    runtime = runtime_for(UsersSettings)
    return served_response(profile(runtime, parse_fid(fid)))


lambda_handler = api_handler(app, UsersSettings)

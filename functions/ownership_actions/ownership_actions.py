"""POST /api/admin/ownership/stats: admin ownership actions — sync, discovery-stats, verify (SPEC §5)."""

from __future__ import annotations

from such_market.config import load_settings
from such_market.db.connection import get_connection
from such_market.events.publisher import EventPublisher
from such_market.http.admin import require_admin
from such_market.http.api import api_handler, create_api
from such_market.http.responses import Response, json_response
from such_market.http.schemas import OwnershipActionRequestBody, responses
from such_market.ownership.actions import (
    OwnershipActionBody,
    OwnershipActionsSettings,
    parse_action_request,
    run_action,
)
from such_market.runtime import database_errors, upstream_errors
from such_market.upstream.alchemy import get_alchemy_client

app = create_api()
app.use(middlewares=[require_admin(OwnershipActionsSettings)])


@app.post(
    "/api/admin/ownership/stats",
    summary="Run an ownership action: sync one collection's owners, discovery stats, or a verification run",
    tags=["admin"],
    request_body=OwnershipActionRequestBody,
    responses=responses(OwnershipActionBody, errors=(400, 401, 403, 404, 409, 503)),
)
def post_ownership_action() -> Response:
    settings = load_settings(OwnershipActionsSettings)
    request = parse_action_request(app.current_event.decoded_body)
    with database_errors(), upstream_errors():
        body = run_action(
            request=request,
            conn=get_connection(settings),
            alchemy=lambda: get_alchemy_client(settings),
            publisher=lambda: EventPublisher(settings),
        )
    return json_response(200, body, headers={"Cache-Control": "no-store"})


lambda_handler = api_handler(app, OwnershipActionsSettings)

"""POST /api/admin/ownership/stats: admin ownership actions — sync, discovery-stats, verify (SPEC §5)."""

from __future__ import annotations

from such_market.http.admin import require_admin
from such_market.http.api import api_handler, create_api
from such_market.http.responses import Response, json_response
from such_market.http.schemas import responses
from such_market.ownership.actions import (
    OwnershipActionsSettings,
    parse_action_request,
    run_action,
)
from such_market.runtime import runtime_for

app = create_api()
app.use(middlewares=[require_admin(OwnershipActionsSettings)])


@app.post(
    "/api/admin/ownership/stats",
    summary="Run an ownership action: sync one collection's owners, discovery stats, or a verification run",
    tags=["admin"],
    request_body="such_market.ownership.schemas:OwnershipActionRequestBody",
    responses=responses("such_market.ownership.schemas:OwnershipActionBody", errors=(400, 401, 403, 404, 409, 503)),
)
def post_ownership_action() -> Response:
    runtime = runtime_for(OwnershipActionsSettings)
    request = parse_action_request(app.current_event.decoded_body)
    body = run_action(
        request=request,
        conn=runtime.conn,
        alchemy=lambda: runtime.alchemy,
        publisher=lambda: runtime.publisher,
    )
    return json_response(200, body, headers={"Cache-Control": "no-store"})


lambda_handler = api_handler(app, OwnershipActionsSettings)

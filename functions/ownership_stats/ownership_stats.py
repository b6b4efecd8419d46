"""GET /api/admin/ownership/stats: exact ownership counts, summary consistency, discovery per collection."""

from __future__ import annotations

from such_market.http.admin import require_admin
from such_market.http.api import api_handler, create_api
from such_market.http.responses import Response, json_response
from such_market.http.schemas import responses
from such_market.ownership.stats import OwnershipStatsSettings, ownership_stats
from such_market.runtime import runtime_for

app = create_api()
app.use(middlewares=[require_admin(OwnershipStatsSettings)])


@app.get(
    "/api/admin/ownership/stats",
    summary="Exact ownership counts and summary consistency",
    tags=["admin"],
    responses=responses("such_market.ownership.schemas:OwnershipStatsBody", errors=(401, 403, 503)),
)
def get_ownership_stats() -> Response:
    conn = runtime_for(OwnershipStatsSettings).conn
    return json_response(200, ownership_stats(conn=conn), headers={"Cache-Control": "no-store"})


lambda_handler = api_handler(app, OwnershipStatsSettings)

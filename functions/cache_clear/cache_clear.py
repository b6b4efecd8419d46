"""POST /api/admin/cache/clear: delete cache keys by scope — all, collection, wallet or user (SPEC §5)."""

from __future__ import annotations

from such_market.admin.cache_clear import CacheClearSettings, clear_cache, parse_clear_request
from such_market.http.admin import require_admin
from such_market.http.api import api_handler, create_api
from such_market.http.responses import Response, json_response
from such_market.http.schemas import responses
from such_market.runtime import runtime_for

app = create_api()
app.use(middlewares=[require_admin(CacheClearSettings)])


@app.post(
    "/api/admin/cache/clear",
    summary="Clear cache keys by scope (all, collection, wallet or user); durable state is never touched",
    tags=["admin"],
    request_body="such_market.admin.schemas:CacheClearRequestBody",
    responses=responses("such_market.admin.schemas:CacheClearBody", errors=(400, 401, 403, 503)),
)
def post_cache_clear() -> Response:
    runtime = runtime_for(CacheClearSettings)
    request = parse_clear_request(app.current_event.decoded_body)
    body = clear_cache(request=request, cache=runtime.cache, publisher=lambda: runtime.publisher)
    return json_response(200, body, headers={"Cache-Control": "no-store"})


lambda_handler = api_handler(app, CacheClearSettings)

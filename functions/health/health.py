"""GET /api/health: database, cache and migration status; 200 when all are usable, 503 otherwise."""

from __future__ import annotations

from such_market.config import CacheSettings, DatabaseSettings, load_settings
from such_market.failures import DATABASE_RETRY_AFTER_SECONDS
from such_market.health import HealthSettings, check_health
from such_market.http.api import api_handler, create_api
from such_market.http.responses import Response, json_response
from such_market.http.schemas import responses

app = create_api()
HEALTH_MODEL = "such_market.health_schemas:HealthBody"


@app.get(
    "/api/health",
    summary="Database, cache and migration status",
    tags=["health"],
    responses={
        **responses(HEALTH_MODEL, description="All components usable"),
        503: {
            "description": "A component is not usable",
            "content": {"application/json": {"model": HEALTH_MODEL}},
        },
    },
)
def get_health() -> Response:
    settings = load_settings(HealthSettings)
    report = check_health(database=settings.part(DatabaseSettings), cache=settings.part(CacheSettings))
    if report.healthy:
        return json_response(200, report.as_dict(), headers={"Cache-Control": "no-store"})
    # Unavailable: like every 503 of the API, say when to look again
    headers = {"Cache-Control": "no-store", "Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)}
    return json_response(503, report.as_dict(), headers=headers)


lambda_handler = api_handler(app, HealthSettings)

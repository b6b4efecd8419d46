"""POST /api/admin/cache/test/performance ``{action: "run", profile?}`` → 202 ``{runId}`` (the run executes in
``RunPerformanceTestFunction``), or ``{action: "reset"}``; GET ``?runId=`` (default: the latest run) → the
run's figures and recommendations (SPEC §5)."""

from __future__ import annotations

from typing import Any

from such_market.http.admin import require_admin
from such_market.http.api import QueryParameter, api_handler, create_api
from such_market.http.responses import Response, json_response
from such_market.http.schemas import responses
from such_market.perftest.service import (
    RUN_ID_PATTERN,
    PerformanceAdminSettings,
    get_run,
    parse_action,
    parse_run_id,
    reset,
    start_run,
)
from such_market.runtime import runtime_for

app = create_api()
app.use(middlewares=[require_admin(PerformanceAdminSettings)])

RUN_ID = QueryParameter(
    "runId", "a run id answered by POST (default: the latest run)", {"type": "string", "pattern": f"^{RUN_ID_PATTERN}$"}
)
NO_STORE = {"Cache-Control": "no-store"}
PATH = "/api/admin/cache/test/performance"


def _post_responses() -> dict[int, Any]:
    documented = responses(
        "such_market.perftest.schemas:RunQueuedBody",
        status=202,
        description="Run queued",
        errors=(400, 401, 403, 409, 503),
    )
    documented[200] = responses("such_market.perftest.schemas:ResetBody", description="Runs forgotten")[200]
    return documented


@app.get(
    PATH,
    summary="A live cache performance run: health, basic operations, concurrency, stress ladder, recovery, advice",
    tags=["admin"],
    query=(RUN_ID,),
    responses=responses("such_market.perftest.schemas:PerformanceRunBody", errors=(400, 401, 403, 404, 503)),
)
def get_performance() -> Response:
    run_id = parse_run_id(app.current_event.query_string_parameters.get("runId"))
    return json_response(200, get_run(runtime_for(PerformanceAdminSettings), run_id), headers=NO_STORE)


@app.post(
    PATH,
    summary="Start a live cache performance run (one at a time), or forget the stored runs",
    tags=["admin"],
    request_body="such_market.perftest.schemas:PerformanceActionRequestBody",
    responses=_post_responses(),
)
def post_performance() -> Response:
    action, profile = parse_action(app.current_event.decoded_body)
    runtime = runtime_for(PerformanceAdminSettings)
    if action == "reset":
        return json_response(200, reset(runtime), headers=NO_STORE)
    return json_response(202, start_run(runtime, profile), headers=NO_STORE)


lambda_handler = api_handler(app, PerformanceAdminSettings)

"""EventBridge consumer of ``cache.performance_test_requested``: runs the live cache performance test
within a budget under its invocation's deadline and stores the results (``such_market.perftest``).

Not idempotent through a record of its own: the run's claim (SET NX) makes a redelivered event a no-op.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from such_market import deadline
from such_market.events.consumer import EventConsumer
from such_market.perftest.service import (
    RUN_REQUESTED,
    PerformanceRunnerSettings,
    RunRequest,
    execute_run,
    read_run_request,
)
from such_market.runtime import runtime_for

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext  # a type only: Powertools stays off the cold path

consumer = EventConsumer("performance-test", settings_model=PerformanceRunnerSettings, idempotent=False)


@consumer.on_wire(RUN_REQUESTED, read_run_request)  # read without pydantic: see read_run_request
def _run(detail: RunRequest) -> dict[str, Any]:
    return execute_run(runtime_for(PerformanceRunnerSettings), detail.run_id, time_left=deadline.remaining())


def lambda_handler(event: dict[str, Any], context: LambdaContext) -> object:
    return consumer.handle(event, context)

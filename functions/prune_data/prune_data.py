"""Scheduled (``DataPruneSchedule``, hourly by default): deletes grown data older than the retention.

``such_market.db.lifecycle`` says what is pruned and what is kept (``ownership_activity`` always).
Returns the run's report: the cutoff, rows deleted and batches per table, and whether anything old is left
for the next run (``complete``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final

from such_market import deadline
from such_market.db.lifecycle import DEFAULT_RUN_SECONDS, DataLifecycleSettings, PruneDataSettings, prune
from such_market.observability import logger
from such_market.runtime import runtime_for

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext  # a type only: Powertools stays off the cold path

SAFETY_MARGIN_SECONDS: Final = 5.0
"""Kept back before the invocation's deadline: one batch's statement timeout, then return."""


def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    runtime = runtime_for(PruneDataSettings)
    lifecycle = runtime.settings.part(DataLifecycleSettings)
    with deadline.invocation(context):
        report = prune(
            conn=runtime.conn,
            retention=timedelta(days=lifecycle.data_retention_days),
            batch_size=lifecycle.prune_batch_size,
            time_budget_seconds=deadline.budget(
                DEFAULT_RUN_SECONDS, reserve_seconds=SAFETY_MARGIN_SECONDS, minimum_seconds=0.0
            ),
        )
    logger.info("data pruned", extra=report.to_dict())
    return report.to_dict()

"""Scheduled hourly: re-verify the least recently verified token owners against Alchemy (SPEC §6).

Returns the run's report (``checked``, ``corrected``, ``unchanged``, ``failed``, ``skipped``,
``walletsChanged``, ``stoppedEarly``); corrections are written with their ``ownership.changed`` events
through the outbox.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from such_market import deadline
from such_market.ownership.verification import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_TIME_BUDGET_SECONDS,
    VerifyOwnershipSettings,
    reverify,
)
from such_market.runtime import runtime_for

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext  # a type only: Powertools stays off the cold path

SAFETY_MARGIN_SECONDS: Final = 9.0
"""Time kept back before the invocation's deadline (itself 1 s before Lambda's) to write the corrections and return."""


def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    runtime = runtime_for(VerifyOwnershipSettings)
    with deadline.invocation(context):
        budget = deadline.budget(
            DEFAULT_TIME_BUDGET_SECONDS, reserve_seconds=SAFETY_MARGIN_SECONDS, minimum_seconds=1.0
        )
        report = reverify(
            conn=runtime.conn,
            alchemy=runtime.alchemy,
            publisher=runtime.publisher,
            batch_size=DEFAULT_BATCH_SIZE,
            time_budget_seconds=budget,
        )
    return report.to_dict()

"""Scheduled every minute: publish again the events in the dead-letter queue once the cache answers.

Returns ``{"redriven": n, "left": m, "skipped": reason or null}`` (``such_market.events.redrive``).
"""

from __future__ import annotations

from typing import Any, Final

from aws_lambda_powertools.utilities.typing import LambdaContext

from such_market import deadline
from such_market.admin.redrive import RedriveSettings, redrive_dead_letters
from such_market.runtime import runtime_for

DEFAULT_BUDGET_SECONDS: Final = 30.0


def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    with deadline.invocation(context):
        budget = deadline.budget(DEFAULT_BUDGET_SECONDS)
        report = redrive_dead_letters(runtime_for(RedriveSettings), time_budget_seconds=budget)
    return report.as_dict()

"""Scheduled every minute: publish our events from the dead-letter queue again as soon as the cache answers
(a run waits for it up to its budget, so the next run starts as this one ends).

Returns ``{"redriven": n, "left": m, "rejected": r, "skipped": reason or null}`` (``such_market.events.redrive``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from such_market import deadline
from such_market.admin.redrive import RedriveSettings, redrive_dead_letters
from such_market.runtime import runtime_for

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext  # a type only: Powertools stays off the cold path

DEFAULT_BUDGET_SECONDS: Final = 55.0
"""Below the one-minute schedule period (the template's Timeout is 60 s), so runs do not overlap."""


def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    with deadline.invocation(context):
        budget = deadline.budget(DEFAULT_BUDGET_SECONDS)
        report = redrive_dead_letters(runtime_for(RedriveSettings), time_budget_seconds=budget)
    return report.as_dict()

"""Scheduled every minute: publish the outbox events a crash left unpublished (SPEC §6), after queueing
again the failed collection ingestions whose retry is due (``requeue_due_ingestions``: their events go
out through the outbox like any other).

Prints the backlog (count, age of the oldest event) as EMF for the outbox-age alarm, and returns
``{"published": n, "failed": m, "remaining": k}``: what this run published, what failed again
(those rows stay for the next run), and how many events are still unpublished afterwards.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from such_market import deadline
from such_market.analytics.recorder import emit_gauges
from such_market.collections.retries import requeue_due_ingestions
from such_market.events.outbox import DEFAULT_RELAY_BUDGET_SECONDS, OutboxRelaySettings, relay
from such_market.runtime import runtime_for

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext  # a type only: Powertools stays off the cold path

SAFETY_MARGIN_SECONDS: Final = 4.0
"""Time kept back before the invocation's deadline (itself 1 s before Lambda's) to mark the last batch and return."""


def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    runtime = runtime_for(OutboxRelaySettings)
    with deadline.invocation(context):
        budget = deadline.budget(
            DEFAULT_RELAY_BUDGET_SECONDS, reserve_seconds=SAFETY_MARGIN_SECONDS, minimum_seconds=1.0
        )
        requeue_due_ingestions(conn=runtime.conn, publisher=runtime.publisher)
        result = relay(conn=runtime.conn, publisher=runtime.publisher, time_budget_seconds=budget)
    emit_gauges(
        {
            "OutboxBacklog": (result.backlog.count, "Count"),
            "OutboxOldestUnpublishedAgeSeconds": (result.backlog.oldest_age_seconds, "Seconds"),
        }
    )
    return {"published": result.published, "failed": result.failed, "remaining": result.backlog.count}

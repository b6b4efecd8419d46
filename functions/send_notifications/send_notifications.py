"""Scheduled every minute: collected transfers become notifications, and due deliveries are sent (SPEC §8).

Returns the run's report (``digestsQueued``, ``requests``, ``sent``, ``invalid``, ``rateLimited``,
``retried``, ``failed``, ``expired``, ``stoppedEarly``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from such_market import deadline
from such_market.notifications.client import get_notification_client
from such_market.notifications.service import NotificationSenderSettings, run_sender
from such_market.notifications.settings import NotificationSettings
from such_market.runtime import runtime_for

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext  # a type only: Powertools stays off the cold path

MAX_RUN_SECONDS: Final = 40.0
SAFETY_MARGIN_SECONDS: Final = 9.0
"""Time kept back before the invocation's deadline (itself 1 s before Lambda's) to finish the request in flight
and return."""


def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, object]:
    runtime = runtime_for(NotificationSenderSettings)
    settings = runtime.settings.part(NotificationSettings)
    with deadline.invocation(context):
        report = run_sender(
            conn=runtime.conn,
            client=get_notification_client(settings),
            settings=settings,
            time_budget_seconds=deadline.budget(
                MAX_RUN_SECONDS, reserve_seconds=SAFETY_MARGIN_SECONDS, minimum_seconds=1.0
            ),
        )
    return report.to_dict()

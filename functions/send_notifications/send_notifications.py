"""Scheduled every minute: collected transfers become notifications, and due deliveries are sent (SPEC §8).

Returns the run's report (``digestsQueued``, ``requests``, ``sent``, ``invalid``, ``rateLimited``,
``retried``, ``failed``, ``expired``, ``stoppedEarly``).
"""

from __future__ import annotations

from typing import Any, Final

from aws_lambda_powertools.utilities.typing import LambdaContext

from such_market.notifications.client import get_notification_client
from such_market.notifications.service import NotificationSenderSettings, run_sender
from such_market.notifications.settings import NotificationSettings
from such_market.runtime import runtime_for

MAX_RUN_SECONDS: Final = 40.0
SAFETY_MARGIN_SECONDS: Final = 10.0
"""Time kept back from the invocation's remaining time to finish the request in flight and return."""


def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, object]:
    runtime = runtime_for(NotificationSenderSettings)
    settings = runtime.settings.part(NotificationSettings)
    remaining_seconds = context.get_remaining_time_in_millis() / 1000 - SAFETY_MARGIN_SECONDS
    report = run_sender(
        conn=runtime.conn,
        client=get_notification_client(settings),
        settings=settings,
        time_budget_seconds=max(1.0, min(MAX_RUN_SECONDS, remaining_seconds)),
    )
    return report.to_dict()

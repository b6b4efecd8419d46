"""The scheduled redrive of dead letters (``RedriveDeadLettersFunction``): ``events.redrive`` wired to the
real queue, bus and cache; what a run did goes to CloudWatch as EMF (``DeadLettersRedriven``,
``DeadLettersRejected``: messages left in the queue because they carry no event of ours)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from such_market.analytics.recorder import emit_gauges
from such_market.config import CacheSettings, EventSettings, FunctionSettings
from such_market.events import dead_letters
from such_market.events.dead_letters import DeadLetterSettings
from such_market.events.redrive import VISIBILITY_TIMEOUT_SECONDS, RedriveReport, redrive
from such_market.runtime import Runtime

if TYPE_CHECKING:
    from such_market.events.models import Event

REDRIVE_COUNT_TTL_SECONDS: Final = 7 * 86400


class RedriveSettings(FunctionSettings):
    """Settings of the redrive function: the dead-letter queue, the bus, and the cache (its health and the
    redrive counts)."""

    cache: CacheSettings
    events: EventSettings
    dead_letters: DeadLetterSettings


def redrive_dead_letters(runtime: Runtime, *, time_budget_seconds: float) -> RedriveReport:
    """One run: redrive our events from the dead-letter queue as soon as the cache answers."""
    from such_market.cache.client import cache_errors

    queue = runtime.settings.part(DeadLetterSettings)
    keys = runtime.cache.keys

    def cache_ready() -> bool:
        try:
            return bool(runtime.cache_client.ping())  # a standalone client connects when it is made
        except cache_errors():
            return False

    def count(event_id: str) -> int:
        name = keys.durable("redrives", event_id)
        pipe = runtime.cache_client.pipeline(transaction=False)
        pipe.incr(name)
        pipe.expire(name, REDRIVE_COUNT_TTL_SECONDS)
        return int(pipe.execute()[0])

    def publish(event: Event) -> bool:
        return runtime.publisher.publish([event]).ok

    report = redrive(
        receive=lambda n: dead_letters.receive(
            queue, max_messages=n, visibility_timeout_seconds=VISIBILITY_TIMEOUT_SECONDS
        ),
        delete=lambda handle: dead_letters.delete(queue, handle),
        publish=publish,
        cache_ready=cache_ready,
        count_redrive=count,
        source=runtime.settings.part(EventSettings).event_source,
        time_budget_seconds=time_budget_seconds,
    )
    emit_gauges(
        {
            "DeadLettersRedriven": (float(report.redriven), "Count"),
            "DeadLettersRejected": (float(sum(report.rejected.values())), "Count"),
        }
    )
    return report

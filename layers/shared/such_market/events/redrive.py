"""Redriving dead letters: events whose delivery or processing failed, published again once it can work.

A consumer that fails an event (the cache was down, so the invalidator could not delete) is retried by
Lambda and then leaves the event in the dead-letter queue (the invalidator's ``OnFailure`` destination,
and the rules' ``DeadLetterConfig`` for delivery failures). Every minute ``redrive`` checks that the cache
answers again, reads a bounded batch of dead letters, and publishes each event again on the bus with its
own ``eventId`` — consumers that already handled it recognise it (idempotency), the invalidator simply
deletes again — then deletes the message. So after a cache outage, a value older than a change committed
during it is served at most until the first redrive after the cache is back: Lambda's retries (about 3
minutes), then ≤ 1 minute of schedule, plus the run.

A message that is not an event is left in the queue (the alarm keeps firing: a human looks at it); an
event redriven ``MAX_REDRIVES`` times is left too, so a poison event does not loop forever.

Message bodies: an EventBridge event (a rule's ``DeadLetterConfig``) or a Lambda destination record
``{"requestPayload": <event>, …}`` (``OnFailure``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from such_market.events.dead_letters import DeadLetter
from such_market.events.models import Event, InvalidEventError
from such_market.observability import logger

MAX_REDRIVES: Final = 5
BATCH: Final = 10
VISIBILITY_TIMEOUT_SECONDS: Final = 120


@dataclass
class RedriveReport:
    """What one run did."""

    redriven: int = 0
    left: int = 0
    skipped_reason: str | None = None
    event_ids: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"redriven": self.redriven, "left": self.left, "skipped": self.skipped_reason}


def event_of(body: str) -> Event | None:
    """The event a dead letter carries, or ``None`` when it carries none."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if isinstance(payload, dict) and isinstance(payload.get("requestPayload"), dict):
        payload = payload["requestPayload"]
    if not isinstance(payload, dict):
        return None
    try:
        return Event.from_eventbridge(payload)
    except (InvalidEventError, ValueError):
        return None


def redrive(
    *,
    receive: Callable[[int], Sequence[DeadLetter]],
    delete: Callable[[str], None],
    publish: Callable[[Event], bool],
    cache_ready: Callable[[], bool],
    count_redrive: Callable[[str], int],
    time_budget_seconds: float,
    clock: Callable[[], float] = time.monotonic,
) -> RedriveReport:
    """Publish dead letters again while the cache answers and time is left (see the module doc).

    ``publish`` returns whether the bus accepted the event; ``count_redrive(eventId)`` counts and returns
    how many times that event was redriven (durably)."""
    report = RedriveReport()
    if not cache_ready():
        report.skipped_reason = "the cache does not answer yet"
        return report
    ends = clock() + time_budget_seconds
    while clock() < ends:
        letters = receive(BATCH)
        if not letters:
            break
        for letter in letters:
            event = event_of(letter.body)
            if event is None:
                logger.error("a dead letter carries no event; left in the queue")
                report.left += 1
                continue
            if count_redrive(event.event_id) > MAX_REDRIVES:
                logger.error(
                    "an event failed after every redrive; left in the queue", extra={"event_id": event.event_id}
                )
                report.left += 1
                continue
            if not publish(event):
                report.left += 1
                continue
            delete(letter.receipt_handle)
            report.redriven += 1
            report.event_ids.append(event.event_id)
        if report.left and report.redriven == 0:
            break  # only messages that stay: do not spin on them
    return report

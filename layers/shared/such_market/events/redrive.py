"""Redriving dead letters: our own events whose processing failed, published again once it can work.

A consumer that fails an event (the cache was down, so the invalidator could not delete) leaves the
event in the dead-letter queue: the invalidator has no Lambda retries (``MaximumRetryAttempts: 0``, its
``OnFailure`` destination), other consumers after theirs, and the rules' ``DeadLetterConfig`` for
delivery failures. ``redrive`` publishes each event again on the bus with its own ``eventId`` —
consumers that already handled it recognise it (idempotency), the invalidator simply deletes again —
then deletes the message.

Only our own events are redriven (``verdict_of``): a message whose event has another ``source``, an
unknown detail type, a detail that fails its schema (which includes a missing ``eventId``), or that is
no event at all is *rejected*: left in the queue for a human (the DLQ alarm keeps firing), counted, and
logged with the reason only, never its body. An event redriven ``MAX_REDRIVES`` times is left too, so a
poison event does not loop forever.

When (the staleness bound after a cache outage, docs/architecture.md#under-faults): a run waits for the
cache — it asks ``PING`` every ``POLL_SECONDS`` while the cache does not answer — and redrives as soon as it
does. A run that saw the cache down keeps watching the queue for ``LATE_LETTERS_SECONDS`` after it
answers again (a failure just before the recovery reaches the queue a moment later); a run that found
the cache up and the queue empty ends at once. The schedule starts a run every minute, so a dead letter
waits at most one period plus the run's poll.

Message bodies: an EventBridge event (a rule's ``DeadLetterConfig``) or a Lambda destination record
``{"requestPayload": <event>, …}`` (``OnFailure``).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import orjson

from such_market.events.dead_letters import DeadLetter
from such_market.observability import logger

if TYPE_CHECKING:
    from such_market.events.models import Event

MAX_REDRIVES: Final = 5
BATCH: Final = 10
VISIBILITY_TIMEOUT_SECONDS: Final = 120
POLL_SECONDS: Final = 1.0
"""How often a run asks the cache (while it is down) and the queue (after an outage) again."""
LATE_LETTERS_SECONDS: Final = 10.0
"""How long a run that saw the cache down keeps watching the queue once the cache answers again."""


@dataclass(frozen=True, slots=True)
class Rejected:
    """Why a dead letter is not redriven (a fixed phrase: it never quotes the message)."""

    reason: str


@dataclass
class RedriveReport:
    """What one run did: ``left`` counts every message left in the queue, ``rejected`` those among them
    that carry no event of ours (by reason)."""

    redriven: int = 0
    left: int = 0
    skipped_reason: str | None = None
    event_ids: list[str] = field(default_factory=list)
    rejected: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "redriven": self.redriven,
            "left": self.left,
            "rejected": sum(self.rejected.values()),
            "skipped": self.skipped_reason,
        }


def verdict_of(body: str, *, source: str) -> Event | Rejected:
    """The event a dead letter carries, if it is one of ours (``source``, a known detail type, a detail
    that validates with its ``eventId``); else why not."""
    # pydantic behind the models: a run that finds the queue empty (most runs) never loads it
    from such_market.errors import InvalidEventError
    from such_market.events.models import DETAIL_TYPES, Event

    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return Rejected("not JSON")
    if isinstance(payload, dict) and isinstance(payload.get("requestPayload"), dict):
        payload = payload["requestPayload"]
    if not isinstance(payload, Mapping) or not isinstance(payload.get("detail-type"), str):
        return Rejected("not an EventBridge event")
    if payload.get("source") != source:
        return Rejected("not from our source")
    if payload["detail-type"] not in DETAIL_TYPES:
        return Rejected("unknown detail type")
    try:
        return Event.from_eventbridge(payload)
    except (InvalidEventError, ValueError):
        return Rejected("the detail fails its schema")


def redrive(
    *,
    receive: Callable[[int], Sequence[DeadLetter]],
    delete: Callable[[str], None],
    publish: Callable[[Event], bool],
    cache_ready: Callable[[], bool],
    count_redrive: Callable[[str], int],
    source: str,
    time_budget_seconds: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> RedriveReport:
    """Publish our dead letters again as soon as the cache answers, within the time budget (see the
    module doc).

    ``publish`` returns whether the bus accepted the event; ``count_redrive(eventId)`` counts and returns
    how many times that event was redriven (durably)."""
    report = RedriveReport()
    ends = clock() + time_budget_seconds
    outage_seen = False
    watch_until: float | None = None  # after an outage: when to stop waiting for late dead letters
    while clock() < ends:
        if not cache_ready():
            outage_seen, watch_until = True, None
            report.skipped_reason = "the cache does not answer yet"
            sleep(max(0.0, min(POLL_SECONDS, ends - clock())))
            continue
        report.skipped_reason = None
        if outage_seen and watch_until is None:
            watch_until = clock() + LATE_LETTERS_SECONDS
        letters = receive(BATCH)
        if not letters:
            if watch_until is None or clock() >= watch_until:
                break
            sleep(max(0.0, min(POLL_SECONDS, ends - clock())))
            continue
        for letter in letters:
            _redrive_one(letter, report, publish=publish, delete=delete, count_redrive=count_redrive, source=source)
    if report.rejected:
        logger.error(
            "dead letters that carry no event of ours are left in the queue", extra={"rejected": dict(report.rejected)}
        )
    return report


def _redrive_one(
    letter: DeadLetter,
    report: RedriveReport,
    *,
    publish: Callable[[Event], bool],
    delete: Callable[[str], None],
    count_redrive: Callable[[str], int],
    source: str,
) -> None:
    verdict = verdict_of(letter.body, source=source)
    if isinstance(verdict, Rejected):
        # Left (hidden for the visibility timeout, so this run does not see it again) for a human.
        report.rejected[verdict.reason] += 1
        report.left += 1
        return
    if count_redrive(verdict.event_id) > MAX_REDRIVES:
        logger.error("an event failed after every redrive; left in the queue", extra={"event_id": verdict.event_id})
        report.left += 1
        return
    if not publish(verdict):
        report.left += 1
        return
    delete(letter.receipt_handle)
    report.redriven += 1
    report.event_ids.append(verdict.event_id)

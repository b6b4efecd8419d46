"""The sender: digests become notifications, and due deliveries go out in batches, within a time budget.

``send_due(conn=…, client=…, base_url=…, …)`` is one run (the scheduled sender's, and the admin send's
right after it queued an announcement):

1. ``queue_due_digests``: every transfer digest whose collection time is over gets its message
   (``texts.transfer_message``) and a pending delivery per enabled token of its user;
2. ``expire_deliveries``: deliveries whose token was disabled, or older than the clients' 24-hour
   deduplication window, are given up;
3. rounds of ``claim_deliveries`` (due, and allowed by each token's limits: 1 per 30 s, 100 per day, not
   held after a client's rate limiting), grouped by (notification, client URL) into requests of at most
   100 tokens, each sent and settled at once:

   ============================== =============================================================
   client answer                  delivery
   ============================== =============================================================
   successfulTokens               ``sent``
   invalidTokens, invalid_token   ``invalid``; the token is disabled at once
   rateLimitedTokens              retried after 30 s doubling per attempt (≤ 1 h); the token is held
                                  until then, so nothing else is sent to it meanwhile
   failedTokens (other reasons)   ``failed`` (``unknown``: retried like a 5xx)
   not mentioned                  retried like a 5xx
   429 after the in-call retries  all retried after ``Retry-After`` (or the backoff), token held
   5xx, timeout, connection error all retried after the backoff; ``failed`` after
                                  ``max_delivery_attempts`` attempts
   other 4xx, unreadable answer   ``failed``
   ============================== =============================================================

Every request is recorded in ``notification_attempts``. The backoff has ±20 % jitter. A delivery is
never lost: until it is settled its claim lease keeps it pending, and the next run takes it again.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import TYPE_CHECKING, Any, Final

from such_market.backoff import exponential_ceiling
from such_market.notifications.queries import digest
from such_market.notifications.rules import MAX_TOKENS_PER_REQUEST
from such_market.notifications.texts import transfer_message
from such_market.notifications.writes import (
    ClaimedDelivery,
    claim_deliveries,
    claim_due_digests,
    expire_deliveries,
    hold_tokens,
    mark_failed,
    mark_invalid,
    mark_sent,
    queue_notification,
    record_attempt,
    reschedule,
)
from such_market.observability import logger
from such_market.upstream.errors import UpstreamError, UpstreamRateLimited, UpstreamUnavailable

if TYPE_CHECKING:
    import psycopg

    from such_market.notifications.client import NotificationClient, SendResult

    Connection = psycopg.Connection[tuple[Any, ...]]

CLAIM_BATCH: Final = 500
DIGEST_BATCH: Final = 200
RETRY_BASE_SECONDS: Final = 30.0
RETRY_CAP_SECONDS: Final = 3600.0


def backoff_seconds(attempts: int, jitter: float) -> float:
    """The wait before the next try after ``attempts`` tries: 30 s doubling to 1 h, ±20 % (``jitter`` in [0, 1))."""
    base = exponential_ceiling(attempts, base=RETRY_BASE_SECONDS, cap=RETRY_CAP_SECONDS)
    return base * (0.8 + 0.4 * jitter)


@dataclass
class SendReport:
    """What one run did."""

    digests_queued: int = 0
    requests: int = 0
    sent: int = 0
    invalid: int = 0
    rate_limited: int = 0
    retried: int = 0
    failed: int = 0
    expired: int = 0
    stopped_early: bool = False

    def to_dict(self) -> dict[str, object]:
        return {
            "digestsQueued": self.digests_queued,
            "requests": self.requests,
            "sent": self.sent,
            "invalid": self.invalid,
            "rateLimited": self.rate_limited,
            "retried": self.retried,
            "failed": self.failed,
            "expired": self.expired,
            "stoppedEarly": self.stopped_early,
        }


def queue_due_digests(*, conn: Connection, base_url: str) -> int:
    """Turn every digest whose collection time is over into a queued notification; how many."""
    queued = 0
    while True:
        with conn.transaction():
            due = claim_due_digests(conn=conn, limit=DIGEST_BATCH)
            for pk, fid in due:
                collected = digest(conn=conn, pk=pk)
                if collected is None:  # cannot happen: a digest is opened with its first transfer
                    continue
                queue_notification(
                    conn=conn, pk=pk, message=transfer_message(collected, base_url=base_url, fid=fid), fids=[fid]
                )
                queued += 1
        if len(due) < DIGEST_BATCH:
            return queued


def _requests(claimed: Sequence[ClaimedDelivery]) -> Iterator[list[ClaimedDelivery]]:
    """Claimed deliveries grouped by (notification, client URL), in requests of at most 100 tokens."""
    for _, group in groupby(claimed, key=lambda item: (item.notification_pk, item.url)):
        items = list(group)
        for start in range(0, len(items), MAX_TOKENS_PER_REQUEST):
            yield items[start : start + MAX_TOKENS_PER_REQUEST]


@dataclass(frozen=True, slots=True)
class _Settler:
    conn: Connection
    max_attempts: int
    jitter: Callable[[], float]
    report: SendReport

    def retry(self, items: Sequence[ClaimedDelivery], outcome: str, *, at_least: float = 0.0) -> None:
        """Retry ``items`` after their backoff (at least ``at_least`` seconds); fail those out of attempts."""
        spent = [item.id for item in items if item.attempts >= self.max_attempts]
        delays = [
            (item.id, max(at_least, backoff_seconds(item.attempts, self.jitter())))
            for item in items
            if item.attempts < self.max_attempts
        ]
        if spent:
            mark_failed(conn=self.conn, delivery_ids=spent, outcome=f"{outcome}; gave up")
        reschedule(conn=self.conn, delays=delays, outcome=outcome)
        self.report.failed += len(spent)
        self.report.retried += len(delays)

    def rate_limited(self, items: Sequence[ClaimedDelivery], *, retry_after: float | None = None) -> None:
        """Hold the tokens and retry their deliveries later (not counted against the attempts)."""
        for item in items:
            delay = max(retry_after or 0.0, backoff_seconds(item.attempts, self.jitter()))
            hold_tokens(conn=self.conn, token_pks=[item.token_pk], seconds=delay)
            reschedule(conn=self.conn, delays=[(item.id, delay)], outcome="rate_limited")
        self.report.rate_limited += len(items)

    def answered(self, items: Sequence[ClaimedDelivery], result: SendResult) -> None:
        sent, invalid, limited, failed, unknown = [], [], [], [], []
        for item in items:
            reason = result.failed.get(item.token)
            if item.token in result.successful:
                sent.append(item)
            elif item.token in result.invalid or reason == "invalid_token":
                invalid.append(item)
            elif item.token in result.rate_limited:
                limited.append(item)
            elif reason is not None and reason != "unknown":
                failed.append((item, reason))
            else:
                unknown.append(item)
        if sent:
            mark_sent(conn=self.conn, delivery_ids=[item.id for item in sent])
        if invalid:
            mark_invalid(
                conn=self.conn,
                delivery_ids=[item.id for item in invalid],
                token_pks=[item.token_pk for item in invalid],
            )
        for item, reason in failed:
            mark_failed(conn=self.conn, delivery_ids=[item.id], outcome=reason)
        self.rate_limited(limited)
        self.retry(unknown, "not confirmed")
        self.report.sent += len(sent)
        self.report.invalid += len(invalid)
        self.report.failed += len(failed)


def _send_one(client: NotificationClient, settler: _Settler, items: list[ClaimedDelivery]) -> None:
    conn, first = settler.conn, items[0]
    common: dict[str, Any] = {"conn": conn, "notification_pk": first.notification_pk, "url": first.url}
    try:
        result = client.send(
            url=first.url,
            notification_id=first.notification_id,
            message=first.message,
            tokens=[item.token for item in items],
        )
    except UpstreamRateLimited as error:
        record_attempt(**common, tokens=len(items), outcome="rate_limited", status=error.status, error=error.detail)
        settler.rate_limited(items, retry_after=error.retry_after)
        return
    except UpstreamUnavailable as error:
        record_attempt(**common, tokens=len(items), outcome="unavailable", status=error.status, error=error.detail)
        settler.retry(items, "client unavailable")
        return
    except UpstreamError as error:
        logger.warning("a notification client refused a request", extra={"status": error.status, "error": error.detail})
        record_attempt(**common, tokens=len(items), outcome="rejected", status=error.status, error=error.detail)
        mark_failed(conn=conn, delivery_ids=[item.id for item in items], outcome=f"rejected: {error.detail}")
        settler.report.failed += len(items)
        return
    record_attempt(
        **common,
        tokens=len(items),
        outcome="answered",
        status=200,
        successful=len(result.successful),
        invalid=len(result.invalid),
        rate_limited=len(result.rate_limited),
        failed=len(result.failed),
    )
    settler.answered(items, result)


def send_due(
    *,
    conn: Connection,
    client: NotificationClient,
    base_url: str,
    max_delivery_attempts: int,
    time_budget_seconds: float,
    clock: Callable[[], float] = time.monotonic,
    jitter: Callable[[], float] = random.random,
) -> SendReport:
    """One run of the sender (see the module doc)."""
    deadline = clock() + time_budget_seconds
    report = SendReport()
    report.digests_queued = queue_due_digests(conn=conn, base_url=base_url)
    report.expired = expire_deliveries(conn=conn)
    settler = _Settler(conn=conn, max_attempts=max_delivery_attempts, jitter=jitter, report=report)
    while True:
        claimed = claim_deliveries(conn=conn, limit=CLAIM_BATCH)
        requests = list(_requests(claimed))
        for index, items in enumerate(requests):
            if clock() >= deadline:
                # Out of time: what was claimed but not sent is due again at once (for the next run).
                unsent = [(item.id, 0.0) for rest in requests[index:] for item in rest]
                reschedule(conn=conn, delays=unsent, outcome="not sent: out of time")
                report.stopped_early = True
                return report
            report.requests += 1
            _send_one(client, settler, items)
        if len(claimed) < CLAIM_BATCH:
            return report

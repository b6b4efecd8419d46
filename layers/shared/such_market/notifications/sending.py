"""The sender: digests become notifications, and due deliveries go out in batches, within a time budget.

``send_due(conn=…, client=…, base_url=…, …)`` is one run (the scheduled sender's, and the admin send's
right after it queued an announcement):

1. ``queue_due_digests``: every transfer digest whose collection time is over gets its message
   (``texts.transfer_message``) and a pending delivery per enabled token of its user;
2. ``expire_deliveries``: deliveries whose token was disabled, or older than the clients' 24-hour
   deduplication window, are given up;
3. rounds of ``claim_deliveries`` (due, and allowed by each token's limits: 1 per 30 s, 100 per day, not
   held after a client's rate limiting, client URL not backed off), grouped by (notification, client URL)
   into requests of at most 100 tokens. Up to ``MAX_PARALLEL_URLS`` client URLs are sent to at once, each
   URL's requests one after another in a worker thread, each request within its own deadline (at most
   ``REQUEST_BUDGET_SECONDS`` and a quarter of the run's budget); this thread settles every answer:

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

A URL that timed out or failed (5xx, connection error) is backed off — nothing is claimed for it for
30 s doubling per consecutive failure up to 1 h — and its other requests of the run are not sent; one
still sending when the run ends is left to its worker, its deliveries released and the URL backed off.
So one account's URLs that never answer cost others nothing beyond one worker each. Only what a client
accepted counts against a token's limits; a delivery claimed but not sent gets its attempt back.

Every request is recorded in ``notification_attempts``. The backoff has ±20 % jitter. A delivery is
never lost: until it is settled its claim lease keeps it pending, and the next run takes it again.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from concurrent.futures import TimeoutError as FuturesTimeout
from dataclasses import dataclass
from itertools import groupby
from typing import TYPE_CHECKING, Any, Final

from such_market import deadline
from such_market.backoff import exponential_ceiling
from such_market.notifications.queries import digest
from such_market.notifications.rules import MAX_TOKENS_PER_REQUEST
from such_market.notifications.texts import transfer_message
from such_market.notifications.writes import (
    ClaimedDelivery,
    back_off_url,
    claim_deliveries,
    claim_due_digests,
    clear_url_backoff,
    expire_deliveries,
    hold_tokens,
    mark_failed,
    mark_invalid,
    mark_sent,
    queue_notification,
    record_attempt,
    release_tokens,
    reschedule,
)
from such_market.observability import logger
from such_market.upstream.errors import UpstreamError, UpstreamRateLimited, UpstreamUnavailable

if TYPE_CHECKING:
    import psycopg

    # The client's module imports httpx: only a run that sends loads it (recording news does not).
    from such_market.notifications.client import NotificationClient, SendResult

    Connection = psycopg.Connection[tuple[Any, ...]]

    Answer = SendResult | UpstreamError | None
    """What became of one request: the client's result, the error, or ``None`` when it was not sent."""

CLAIM_BATCH: Final = 500
DIGEST_BATCH: Final = 200
RETRY_BASE_SECONDS: Final = 30.0
RETRY_CAP_SECONDS: Final = 3600.0
MAX_PARALLEL_URLS: Final = 8
"""Client URLs sent to at once: a URL that never answers holds one worker, not the run."""
REQUEST_BUDGET_SECONDS: Final = 6.0
REQUEST_SHARE_OF_RUN: Final = 0.25
"""One request (connects, reads, in-call retries) takes at most 6 s, and at most a quarter of the run's budget."""
MIN_REQUEST_SECONDS: Final = 0.05


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


def _requests(claimed: Sequence[ClaimedDelivery]) -> dict[str, list[list[ClaimedDelivery]]]:
    """Claimed deliveries grouped by client URL, then by notification into requests of at most 100 tokens."""
    by_url: dict[str, list[list[ClaimedDelivery]]] = {}
    for (_, url), group in groupby(claimed, key=lambda item: (item.notification_pk, item.url)):
        items = list(group)
        by_url.setdefault(url, []).extend(
            items[start : start + MAX_TOKENS_PER_REQUEST] for start in range(0, len(items), MAX_TOKENS_PER_REQUEST)
        )
    return by_url


@dataclass(frozen=True, slots=True)
class _Settler:
    conn: Connection
    max_attempts: int
    jitter: Callable[[], float]
    report: SendReport

    def not_sent(self, items: Sequence[ClaimedDelivery], outcome: str, *, delay: float = 0.0) -> None:
        """Claimed but never sent: due again after ``delay``, the claim's attempt given back."""
        reschedule(conn=self.conn, delays=[(item.id, delay) for item in items], outcome=outcome, not_attempted=True)

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
            mark_sent(
                conn=self.conn, delivery_ids=[item.id for item in sent], token_pks=[item.token_pk for item in sent]
            )
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


def _send_url(
    client: NotificationClient,
    requests: Sequence[list[ClaimedDelivery]],
    *,
    run_ends: float,
    request_seconds: float,
    clock: Callable[[], float],
) -> list[tuple[list[ClaimedDelivery], Answer]]:
    """The requests of one client URL, one after another (a worker thread's job; no database here).

    Each request runs under its own deadline (``request_seconds``, cut to the run's end), which bounds its
    connects, reads and in-call retries. Once the URL timed out or failed, its other requests are not
    sent this run; nor is any once the run is out of time.
    """
    answers: list[tuple[list[ClaimedDelivery], Answer]] = []
    url_failed = False
    for items in requests:
        left = run_ends - clock()
        if url_failed or left < MIN_REQUEST_SECONDS:
            answers.append((items, None))
            continue
        first = items[0]
        answer: Answer
        with deadline.invocation(None, cap_seconds=min(request_seconds, left)):
            try:
                answer = client.send(
                    url=first.url,
                    notification_id=first.notification_id,
                    message=first.message,
                    tokens=[item.token for item in items],
                )
            except UpstreamError as error:
                answer = error
        answers.append((items, answer))
        url_failed = isinstance(answer, UpstreamUnavailable) and not isinstance(answer, UpstreamRateLimited)
    return answers


def _settle(settler: _Settler, items: list[ClaimedDelivery], answer: Answer, *, url_delay: float) -> None:
    """Record one request's answer and settle its deliveries (``url_delay``: how long its URL is backed off)."""
    conn, first = settler.conn, items[0]
    common: dict[str, Any] = {"conn": conn, "notification_pk": first.notification_pk, "url": first.url}
    if answer is None:
        settler.not_sent(
            items, "not sent: out of time" if url_delay == 0 else "not sent: client url backed off", delay=url_delay
        )
        settler.report.stopped_early |= url_delay == 0
    elif isinstance(answer, UpstreamRateLimited):
        record_attempt(**common, tokens=len(items), outcome="rate_limited", status=answer.status, error=answer.detail)
        settler.rate_limited(items, retry_after=answer.retry_after)
    elif isinstance(answer, UpstreamUnavailable):
        record_attempt(**common, tokens=len(items), outcome="unavailable", status=answer.status, error=answer.detail)
        settler.retry(items, "client unavailable", at_least=url_delay)
    elif isinstance(answer, UpstreamError):
        logger.warning(
            "a notification client refused a request", extra={"status": answer.status, "error": answer.detail}
        )
        record_attempt(**common, tokens=len(items), outcome="rejected", status=answer.status, error=answer.detail)
        mark_failed(conn=conn, delivery_ids=[item.id for item in items], outcome=f"rejected: {answer.detail}")
        settler.report.failed += len(items)
    else:
        record_attempt(
            **common,
            tokens=len(items),
            outcome="answered",
            status=200,
            successful=len(answer.successful),
            invalid=len(answer.invalid),
            rate_limited=len(answer.rate_limited),
            failed=len(answer.failed),
        )
        settler.answered(items, answer)
    if answer is not None:
        settler.report.requests += 1
    release_tokens(conn=conn, token_pks=[item.token_pk for item in items])


def _settle_url(settler: _Settler, url: str, answers: Sequence[tuple[list[ClaimedDelivery], Answer]]) -> None:
    """Settle what one URL's worker did, backing the URL off when it timed out or failed."""
    failed = any(
        isinstance(answer, UpstreamUnavailable) and not isinstance(answer, UpstreamRateLimited) for _, answer in answers
    )
    from such_market.notifications.client import SendResult  # loaded already: the client sent these

    answered = any(isinstance(answer, SendResult) for _, answer in answers)
    url_delay = 0.0
    if failed:
        url_delay = back_off_url(
            conn=settler.conn,
            url=url,
            first_seconds=backoff_seconds(1, settler.jitter()),
            cap_seconds=RETRY_CAP_SECONDS,
        )
    elif answered:
        clear_url_backoff(conn=settler.conn, url=url)
    for items, answer in answers:
        _settle(settler, items, answer, url_delay=url_delay)


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
    run_ends = clock() + time_budget_seconds
    request_seconds = min(REQUEST_BUDGET_SECONDS, time_budget_seconds * REQUEST_SHARE_OF_RUN)
    report = SendReport()
    report.digests_queued = queue_due_digests(conn=conn, base_url=base_url)
    report.expired = expire_deliveries(conn=conn)
    settler = _Settler(conn=conn, max_attempts=max_delivery_attempts, jitter=jitter, report=report)
    pool = ThreadPoolExecutor(max_workers=MAX_PARALLEL_URLS, thread_name_prefix="notification-sender")
    try:
        while clock() < run_ends:
            claimed = claim_deliveries(conn=conn, limit=CLAIM_BATCH)
            by_url = _requests(claimed)
            work = {
                pool.submit(
                    _send_url, client, requests, run_ends=run_ends, request_seconds=request_seconds, clock=clock
                ): url
                for url, requests in by_url.items()
            }
            settled: set[Future[list[tuple[list[ClaimedDelivery], Answer]]]] = set()
            try:
                for future in as_completed(work, timeout=max(0.0, run_ends - clock()) + MIN_REQUEST_SECONDS):
                    settled.add(future)
                    _settle_url(settler, work[future], future.result())
            except FuturesTimeout:
                # A URL still held its worker at the run's end (a server that trickles its answer): its
                # deliveries are released for a later run and the URL backed off; the worker is left behind.
                for future, url in work.items():
                    if future in settled:
                        continue
                    if future.cancel():  # never started: waited for a worker, its URL is not to blame
                        _settle_url(settler, url, [(items, None) for items in by_url[url]])
                    elif future.done():
                        _settle_url(settler, url, future.result())
                    else:
                        _abandon(settler, url, by_url[url])
                report.stopped_early = True
                return report
            if len(claimed) < CLAIM_BATCH:
                return report
        report.stopped_early = True
        return report
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _abandon(settler: _Settler, url: str, requests: Sequence[list[ClaimedDelivery]]) -> None:
    delay = back_off_url(
        conn=settler.conn, url=url, first_seconds=backoff_seconds(1, settler.jitter()), cap_seconds=RETRY_CAP_SECONDS
    )
    for items in requests:
        settler.not_sent(items, "not sent: client url too slow", delay=delay)
        release_tokens(conn=settler.conn, token_pks=[item.token_pk for item in items])

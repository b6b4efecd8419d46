"""Re-ingestion on request: ``POST`` queues it (cooldown, one at a time), ``GET`` reports its state.

A refresh is decided under two locks: a short owner-token lock in the cache's durable namespace (so
concurrent requests do not even reach the database) and the collection's row lock in the same
transaction that stamps the cooldown and writes the ``collection.ingest_requested`` event to the
outbox. If the cache is down, the row lock alone keeps the decision correct.

"queued" stays true only while the work can still happen. An event that could not be published stays
in the outbox and is relayed, so it is still queued; but when the ingestion consumer fails before
the job starts (its idempotency records live in the cache: a cache outage fails every delivery), the
request is lost, and ``release_lost_ingestion`` turns the state ``failed`` with a public error and lifts
the cooldown, so a new refresh can start at once. Lambda's own retries of that event may still run the
job; a run moves the state on as usual.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from such_market.collections.queries import CollectionRow, get_collection
from such_market.collections.service import require_collection
from such_market.collections.writes import (
    fail_lost_ingestion,
    lock_collection_row,
    mark_refresh,
    set_ingestion_state,
)
from such_market.errors import TooManyRequestsError
from such_market.formats import iso_utc_or_none
from such_market.locks import LockBusyError, held_lock
from such_market.observability import logger
from such_market.runtime import Runtime

REFRESH_COOLDOWN_SECONDS = 300
REFRESH_LOCK_TTL_MS = 10_000
IN_PROGRESS_RETRY_AFTER_SECONDS = 30
IN_PROGRESS_STATES = frozenset({"queued", "running"})
# An ingestion stops itself within its time budget (< 15 min); a state left "queued"/"running" for
# longer belongs to a run that was killed, and must not block refreshes forever.
ABANDONED_AFTER = timedelta(minutes=20)
LOST_INGESTION_ERROR = "the ingestion could not start; request a refresh again"
CLOCK_TOLERANCE = timedelta(seconds=5)
"""How far the event's ``occurredAt`` (the writer's clock) may trail the database's ``now()`` of its
refresh, which happens earlier in the same transaction."""


def _cooldown_left(row: CollectionRow, now: datetime) -> float:
    until = row.refresh_cooldown_until
    return (until - now).total_seconds() if until and until > now else 0.0


def _in_progress(row: CollectionRow, now: datetime) -> bool:
    return row.ingestion_state in IN_PROGRESS_STATES and row.updated_at > now - ABANDONED_AFTER


def refresh_status(runtime: Runtime, address: str) -> dict[str, object]:
    """GET /api/collection/{address}/refresh."""
    row = require_collection(runtime, address)
    now = datetime.now(UTC)
    in_progress = _in_progress(row, now)
    return {
        "contractAddress": address,
        "canRefresh": not in_progress and _cooldown_left(row, now) == 0,
        "inProgress": in_progress,
        "cooldownUntil": iso_utc_or_none(row.refresh_cooldown_until),
        "lastRefreshAt": iso_utc_or_none(row.last_refresh_at),
        "ingestion": {
            "state": row.ingestion_state,
            "nftsIndexed": row.nfts_indexed,
            "ownersIndexed": row.owners_indexed,
            "error": row.ingestion_error,
        },
    }


@contextlib.contextmanager
def _refresh_lock(runtime: Runtime, address: str) -> Iterator[None]:
    from such_market.cache.client import cache_errors

    key = runtime.cache.keys.durable("locks", "refresh", address)
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(held_lock(runtime.cache.client, key, ttl_ms=REFRESH_LOCK_TTL_MS))
        except LockBusyError:
            raise TooManyRequestsError(
                "a refresh of this collection is being queued right now",
                code="refresh_in_progress",
                retry_after=math.ceil(REFRESH_LOCK_TTL_MS / 1000),
            ) from None
        except cache_errors() as error:
            logger.warning("refresh lock unavailable; the row lock decides", extra={"error_type": type(error).__name__})
        yield


def request_refresh(runtime: Runtime, address: str) -> dict[str, object]:
    """POST /api/collection/{address}/refresh: queue a re-ingestion, or 429 (cooldown, in progress). A
    collection seen for the first time is discovered, which queues its ingestion: that is the refresh."""
    from such_market.events.outbox import outbox_transaction
    from such_market.events.wire import ingest_requested

    if get_collection(conn=runtime.conn, address=address) is None:
        # First sight: discovery stores the collection and queues its ingestion, which is this refresh.
        discovered = require_collection(runtime, address)
        if discovered.ingestion_state == "queued":
            cooldown_until = mark_refresh(
                conn=runtime.conn, collection_id=discovered.id, cooldown_seconds=REFRESH_COOLDOWN_SECONDS
            )
            return _queued(address, cooldown_until)
    with _refresh_lock(runtime, address), outbox_transaction(runtime.conn, runtime.publisher) as tx:
        conn = runtime.conn
        lock_collection_row(conn=conn, address=address)
        row = get_collection(conn=conn, address=address)
        if row is None:  # deleted between the two reads
            raise TooManyRequestsError("the collection is changing; try again", retry_after=1)
        now = datetime.now(UTC)
        if _in_progress(row, now):
            raise TooManyRequestsError(
                "this collection is already being ingested",
                code="refresh_in_progress",
                retry_after=IN_PROGRESS_RETRY_AFTER_SECONDS,
            )
        left = _cooldown_left(row, now)
        if left > 0:
            raise TooManyRequestsError(
                "this collection was refreshed recently", code="refresh_cooldown", retry_after=math.ceil(left)
            )
        cooldown_until = mark_refresh(conn=conn, collection_id=row.id, cooldown_seconds=REFRESH_COOLDOWN_SECONDS)
        set_ingestion_state(conn=conn, collection_id=row.id, state="queued")
        tx.add(ingest_requested(address, "refresh"))
    return _queued(address, cooldown_until)


def _queued(address: str, cooldown_until: datetime | None) -> dict[str, object]:
    """The 202 body of an accepted refresh."""
    return {"status": "queued", "contractAddress": address, "cooldownUntil": iso_utc_or_none(cooldown_until)}


def release_lost_ingestion(runtime: Runtime, event: Mapping[str, Any], error: BaseException) -> bool:
    """The ingestion consumer failed on ``event`` with ``error``: if the event asked for an ingestion
    that never started (the state is still ``queued`` by this request, see the module doc), record it
    ``failed`` with ``LOST_INGESTION_ERROR`` and lift the cooldown. Best effort, never raises; True when
    the state changed. A delivery refused because another one of the same event is running is not lost."""
    from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError

    from such_market.errors import InvalidEventError
    from such_market.events.models import CollectionIngestRequested, Event

    if isinstance(error, IdempotencyAlreadyInProgressError):
        return False
    try:
        detail = Event.from_eventbridge(event).detail
    except InvalidEventError:
        return False
    if not isinstance(detail, CollectionIngestRequested):
        return False
    try:
        released = fail_lost_ingestion(
            conn=runtime.conn,
            address=detail.contract_address,
            requested_at=detail.occurred_at + CLOCK_TOLERANCE,
            error=LOST_INGESTION_ERROR,
        )
    except Exception as failure:  # the consumer's own failure is the one to report
        logger.warning("could not release a lost ingestion", extra={"error_type": type(failure).__name__})
        return False
    if released:
        logger.warning(
            "the ingestion consumer failed before the job started; the queued state is now failed",
            extra={"contract": detail.contract_address, "error_type": type(error).__name__},
        )
    return released

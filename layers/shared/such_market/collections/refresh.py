"""Re-ingestion on request: ``POST`` queues it (cooldown, one at a time), ``GET`` reports its state.

A refresh is decided under two locks: a short owner-token lock in the cache's durable namespace (so
concurrent requests do not even reach the database) and the collection's row lock in the same
transaction that stamps the cooldown and writes the ``collection.ingest_requested`` event to the
outbox. If the cache is down, the row lock alone keeps the decision correct.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from such_market.collections.queries import CollectionRow, get_collection
from such_market.collections.service import require_collection
from such_market.collections.writes import lock_collection_row, mark_refresh, set_ingestion_state
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
    from redis.exceptions import RedisError

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
        except (RedisError, OSError) as error:
            logger.warning("refresh lock unavailable; the row lock decides", extra={"error_type": type(error).__name__})
        yield


def request_refresh(runtime: Runtime, address: str) -> dict[str, object]:
    """POST /api/collection/{address}/refresh: queue a re-ingestion, or 429 (cooldown, in progress)."""
    from such_market.events.models import CollectionIngestRequested, Event
    from such_market.events.outbox import outbox_transaction

    require_collection(runtime, address)
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
        tx.add(Event(CollectionIngestRequested(contract_address=address, reason="refresh")))
    return {"status": "queued", "contractAddress": address, "cooldownUntil": iso_utc_or_none(cooldown_until)}

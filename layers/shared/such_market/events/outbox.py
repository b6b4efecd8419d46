"""The transactional outbox (table ``cache_events_outbox``): a data change and its events commit together.

Writers use one obvious way::

    with outbox_transaction(conn, publisher) as tx:
        conn.execute("UPDATE …")                     # the data change
        tx.add(Event(CollectionUpdated(…)))          # its events

On leaving the block the events are inserted in the same transaction, the transaction commits, and
the events are published right away; a rollback (an exception in the block) leaves neither the change
nor the events. Rows are marked ``published_at`` once EventBridge accepted them; failures record
``attempts`` and ``last_error`` and stay for the relay.

The scheduled ``relay`` publishes whatever is left, oldest first, in batches, within a time budget.
Rows are claimed with ``SELECT … FOR UPDATE SKIP LOCKED`` inside a transaction that lasts until they
are marked, by the writer and by the relay alike, so two publishers never publish the same row at
the same time.

An event is anything ``such_market.events.wire.PublishableEvent`` describes: a model ``Event`` or, on a cold
path that must not import pydantic, a ``WireEvent``. The writer stores its wire JSON and publishes its own
rows as stored, so neither needs the models; the relay parses every row it reads back with them
(``parse_detail``) and publishes the parsed event, so a row no model accepts is marked failed, never published.

Delivery is at-least-once: a crash after ``PutEvents`` succeeded but before the row was marked
publishes the event again later, with the same ``eventId``. Consumers are idempotent on ``eventId``
(``such_market.events.consumer``), so a repeat is harmless.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

import orjson

from such_market.config import DatabaseSettings, EventSettings, FunctionSettings
from such_market.events.publisher import EventPublisher, PublishResult
from such_market.events.wire import PublishableEvent
from such_market.observability import logger

if TYPE_CHECKING:
    from datetime import datetime

    import psycopg

DEFAULT_BATCH_SIZE: Final = 100
DEFAULT_MAX_BATCHES: Final = 20
DEFAULT_RELAY_BUDGET_SECONDS: Final = 30.0
PUBLISH_AFTER_COMMIT_BUDGET_SECONDS: Final = 3.0
MAX_ERROR_LENGTH: Final = 1000

_INSERT = """
INSERT INTO cache_events_outbox (event_id, detail_type, detail, occurred_at)
SELECT * FROM unnest(%s::uuid[], %s::text[], %s::jsonb[], %s::timestamptz[])
RETURNING id, event_id
"""

_CLAIM_BY_ID = """
SELECT id, event_id, detail_type, detail, occurred_at
FROM cache_events_outbox
WHERE id = ANY(%s) AND published_at IS NULL
ORDER BY id
FOR UPDATE SKIP LOCKED
"""

_CLAIM_OLDEST = """
SELECT id, event_id, detail_type, detail, occurred_at
FROM cache_events_outbox
WHERE published_at IS NULL AND id > %s
ORDER BY id
LIMIT %s
FOR UPDATE SKIP LOCKED
"""

_MARK_PUBLISHED = """
UPDATE cache_events_outbox
SET published_at = now(), attempts = attempts + 1
WHERE id = ANY(%s)
"""

_MARK_FAILED = """
UPDATE cache_events_outbox AS o
SET attempts = o.attempts + 1, last_error = f.error
FROM unnest(%s::bigint[], %s::text[]) AS f(id, error)
WHERE o.id = f.id
"""

_BACKLOG = """
SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8
FROM cache_events_outbox
WHERE published_at IS NULL
"""


class OutboxRelaySettings(FunctionSettings):
    """Settings of the outbox relay function: the database and the bus."""

    database: DatabaseSettings
    events: EventSettings


@dataclass(frozen=True, slots=True)
class _OutboxRow:
    id: int
    event_id: uuid.UUID
    detail_type: str
    detail: dict[str, Any]
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class _StoredEvent:
    """An outbox row published as it is stored (``PublishableEvent``), without the models."""

    row: _OutboxRow

    @property
    def event_id(self) -> str:
        return str(self.row.event_id)

    @property
    def detail_type(self) -> str:
        return self.row.detail_type

    @property
    def occurred_at(self) -> datetime:
        return self.row.occurred_at

    def detail_json(self) -> bytes:
        return orjson.dumps(self.row.detail)


def _as_parsed(row: _OutboxRow) -> PublishableEvent:
    """The row's event as the models read it (``InvalidEventError``, a ``ValueError``, when they do not)."""
    from such_market.events.models import Event, parse_detail  # pydantic: the relay's path only

    return Event(parse_detail(row.detail_type, row.detail))


@dataclass(frozen=True, slots=True)
class Backlog:
    """Unpublished events: how many, and the age of the oldest in seconds (0 when there is none)."""

    count: int
    oldest_age_seconds: float


@dataclass(frozen=True, slots=True)
class RelayResult:
    """What one relay run did, and what is still unpublished after it."""

    published: int
    failed: int
    backlog: Backlog


class OutboxTransaction:
    """The events of one ``outbox_transaction`` block; after the block, what became of them."""

    def __init__(self) -> None:
        self._events: list[PublishableEvent] = []
        self.outbox_ids: list[int] = []
        self.publish_result: PublishResult | None = None

    def add(self, event: PublishableEvent) -> None:
        """Add ``event``; it is inserted into the outbox when the block commits."""
        self._events.append(event)

    @property
    def events(self) -> tuple[PublishableEvent, ...]:
        """The events added so far."""
        return tuple(self._events)


def _require_transaction(conn: psycopg.Connection[Any], *, inside: bool, what: str) -> None:
    from psycopg.pq import TransactionStatus

    status = conn.info.transaction_status
    if inside and status != TransactionStatus.INTRANS:
        raise RuntimeError(f"{what} must run inside the caller's open transaction (conn.transaction())")
    if not inside and status != TransactionStatus.IDLE:
        raise RuntimeError(f"{what} must run outside any transaction, after the commit")


def enqueue(*, conn: psycopg.Connection[Any], events: Sequence[PublishableEvent]) -> list[int]:
    """Insert ``events`` into the outbox inside the caller's open transaction; return their row ids.

    The ids are in the order of ``events``. Raises ``RuntimeError`` when ``conn`` is not inside a
    transaction, because then the events could commit without the change (or the other way round).
    """
    _require_transaction(conn, inside=True, what="enqueue")
    if not events:
        return []
    params = (
        [event.event_id for event in events],
        [event.detail_type for event in events],
        [event.detail_json().decode() for event in events],
        [event.occurred_at for event in events],
    )
    with conn.cursor() as cur:
        cur.execute(_INSERT, params)
        ids_by_event = {str(event_id): row_id for row_id, event_id in cur.fetchall()}
    return [ids_by_event[event.event_id] for event in events]


def publish_after_commit(
    *,
    conn: psycopg.Connection[Any],
    publisher: EventPublisher,
    outbox_ids: Sequence[int],
    time_budget_seconds: float = PUBLISH_AFTER_COMMIT_BUDGET_SECONDS,
) -> PublishResult:
    """Publish the committed outbox rows ``outbox_ids`` now and mark them.

    Rows another publisher holds or already published are skipped. Never raises for EventBridge
    failures: failed rows record the error and wait for the relay.
    """
    if not outbox_ids:
        return PublishResult()
    _require_transaction(conn, inside=False, what="publish_after_commit")
    deadline = time.monotonic() + time_budget_seconds
    with conn.transaction():
        rows = _claim(conn, _CLAIM_BY_ID, (list(outbox_ids),))
        # Rows this writer just inserted from checked events: published as stored, without pydantic.
        return _publish_rows(conn=conn, publisher=publisher, rows=rows, read=_StoredEvent, deadline=deadline)


@contextmanager
def outbox_transaction(conn: psycopg.Connection[Any], publisher: EventPublisher) -> Iterator[OutboxTransaction]:
    """Run the block in a transaction that also inserts the added events, then publish them.

    A failure to publish after the commit is logged, never raised: the change is committed and the
    relay publishes the events later.
    """
    import psycopg

    _require_transaction(conn, inside=False, what="outbox_transaction")
    tx = OutboxTransaction()
    with conn.transaction():
        yield tx
        tx.outbox_ids = enqueue(conn=conn, events=tx.events)
    try:
        tx.publish_result = publish_after_commit(conn=conn, publisher=publisher, outbox_ids=tx.outbox_ids)
    except psycopg.Error:
        logger.warning("publishing after commit failed; the outbox relay will publish", exc_info=True)


def relay(
    *,
    conn: psycopg.Connection[Any],
    publisher: EventPublisher,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_batches: int = DEFAULT_MAX_BATCHES,
    time_budget_seconds: float = DEFAULT_RELAY_BUDGET_SECONDS,
) -> RelayResult:
    """Publish unpublished outbox rows, oldest first, until none is left or a bound is reached.

    Each batch is claimed (``FOR UPDATE SKIP LOCKED``), published and marked in one transaction. No
    new batch starts after ``time_budget_seconds``, and a row is tried at most once per run, so rows
    that keep failing cannot starve the ones behind them.
    """
    _require_transaction(conn, inside=False, what="relay")
    deadline = time.monotonic() + time_budget_seconds
    published = failed = 0
    after_id = 0
    for _ in range(max_batches):
        if time.monotonic() >= deadline:
            break
        with conn.transaction():
            rows = _claim(conn, _CLAIM_OLDEST, (after_id, batch_size))
            result = _publish_rows(conn=conn, publisher=publisher, rows=rows, read=_as_parsed, deadline=deadline)
        published += len(result.published)
        failed += len(result.failed)
        if len(rows) < batch_size:
            break
        after_id = rows[-1].id
    remaining = backlog(conn=conn)
    if failed:
        logger.warning("outbox relay left failed events", extra={"failed": failed, "backlog": remaining.count})
    return RelayResult(published=published, failed=failed, backlog=remaining)


def backlog(*, conn: psycopg.Connection[Any]) -> Backlog:
    """Count the unpublished events and measure the age of the oldest (for metrics and alarms)."""
    with conn.cursor() as cur:
        cur.execute(_BACKLOG)
        count, oldest_age = cur.fetchone() or (0, 0.0)
    return Backlog(count=int(count), oldest_age_seconds=float(oldest_age))


def _claim(conn: psycopg.Connection[Any], query: str, params: tuple[object, ...]) -> list[_OutboxRow]:
    from psycopg.rows import class_row

    with conn.cursor(row_factory=class_row(_OutboxRow)) as cur:
        cur.execute(query, params)
        return cur.fetchall()


def _publish_rows(
    *,
    conn: psycopg.Connection[Any],
    publisher: EventPublisher,
    rows: Sequence[_OutboxRow],
    read: Callable[[_OutboxRow], PublishableEvent],
    deadline: float,
) -> PublishResult:
    """Publish claimed ``rows``, each as ``read`` makes its event, and record the outcome of each (inside
    the claiming transaction). A row ``read`` refuses (``ValueError``) is marked failed with the reason."""
    events: list[PublishableEvent] = []
    row_ids: dict[str, int] = {}
    unreadable: dict[str, str] = {}
    for row in rows:
        try:
            event = read(row)
        except ValueError as error:
            unreadable[str(row.event_id)] = str(error)
            row_ids[str(row.event_id)] = row.id
            continue
        events.append(event)
        row_ids[event.event_id] = row.id
    result = publisher.publish(events, deadline=deadline) if events else PublishResult()
    failed = {**result.failed, **unreadable}
    with conn.cursor() as cur:
        if result.published:
            cur.execute(_MARK_PUBLISHED, ([row_ids[event_id] for event_id in result.published],))
        if failed:
            cur.execute(
                _MARK_FAILED,
                (
                    [row_ids[event_id] for event_id in failed],
                    [error[:MAX_ERROR_LENGTH] for error in failed.values()],
                ),
            )
    return PublishResult(published=result.published, failed=MappingProxyType(failed))

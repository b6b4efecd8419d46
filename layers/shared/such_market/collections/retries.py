"""The sweep that queues failed ingestions again (run every minute by the outbox relay).

A failed ingestion schedules its retry on the collection row (``ingestion_retry_at``; the reasons for a
sweep over the database rather than a self-requeuing event are in ``collections.ingestion``). Each due
collection is set ``queued`` and its ``collection.ingest_requested`` (reason ``retry``) is written to the
outbox in the same transaction (in its wire form, ``events.wire.ingest_requested``). Apart from the
ingestion, which imports this, the relay is its only caller: none of the ingestion (its Alchemy client,
pydantic) is on the relay's path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from such_market.collections.writes import claim_due_ingestion_retries
from such_market.events.outbox import outbox_transaction
from such_market.events.wire import ingest_requested
from such_market.observability import logger

if TYPE_CHECKING:
    from psycopg import Connection

    from such_market.events.publisher import EventPublisher

RETRY_REASON: Final = "retry"
"""The ``reason`` of the ``collection.ingest_requested`` events the retry sweep writes."""
REQUEUE_BATCH: Final = 50
"""Collections one sweep queues again at most (the next sweep takes the rest)."""


def requeue_due_ingestions(*, conn: Connection, publisher: EventPublisher, limit: int = REQUEUE_BATCH) -> list[str]:
    """Queue again the failed ingestions whose retry is due: each collection is set ``queued`` and its
    ``collection.ingest_requested`` (reason ``retry``) written to the outbox in one transaction. Returns
    their addresses (at most ``limit``; the next sweep takes the rest)."""
    with outbox_transaction(conn, publisher) as tx:
        addresses = claim_due_ingestion_retries(conn=conn, limit=limit)
        for address in addresses:
            tx.add(ingest_requested(address, RETRY_REASON))
    if addresses:
        logger.info("failed ingestions queued again", extra={"contracts": addresses})
    return addresses

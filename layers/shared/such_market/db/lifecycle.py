"""Data lifecycle: rows that only grow with traffic are deleted once they are older than the retention.

What is pruned, each by the index of migration 0018 (a range scan, never a table scan):

- ``outbox``: published ``cache_events_outbox`` rows (two JSONB rows per transfer), by ``published_at``.
  An unpublished row is never touched: it is the relay's work (and the outbox-age alarm's).
- ``webhook_receipts``: ``notification_webhook_events`` of turning-off events (``miniapp_removed``,
  ``notifications_disabled``), which apply every time they arrive, so their receipt is never read again.
  An enable's receipt is kept: it is what makes a replayed enable a no-op, and Farcaster's events carry
  no timestamp that would refuse an old one (one row per genuine enable: it grows with users, not traffic).
- ``notification_attempts``: every request sent to a client, by ``attempted_at``.
- ``notification_deliveries``: settled deliveries (sent, invalid, failed, expired), by their last change;
  a pending one is the sender's queue.
- ``notification_transfers``, then ``notifications``: a queued notification older than the retention
  whose deliveries are all gone — its collected transfers first (in batches, so a 500-transfer digest is
  not one long cascade), then the notification itself.

``ownership_activity`` is never pruned: it is the transfer history (and the re-org reversal's record).

The retention must outlast every way an old event can come back: EventBridge retries for an hour and the
dead-letter queue keeps events 14 days, so a redriven ``nft.transferred`` still finds its
``notification_transfers`` row (the template's minimum is 15 days, the default 30).

Each batch is one short ``DELETE … WHERE key IN (SELECT … LIMIT batch)`` in its own transaction (the
connection is in autocommit): locks last one batch. The targets take turns, one batch each per round, so a
large backlog in one table does not starve the others; rounds go on until every target is done or the
time budget is spent (the first round always runs, so every run makes progress). A target is done when a
batch comes back short after every target before it is done. A run is idempotent: the
next one continues where a cut one stopped, and one with nothing old deletes nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from such_market.config import DatabaseSettings, FunctionSettings, SettingsPart, setting

if TYPE_CHECKING:
    import psycopg

DEFAULT_BATCH_SIZE: Final = 1000
DEFAULT_RUN_SECONDS: Final = 100.0
MIN_RETENTION_DAYS: Final = 15
"""Longer than the dead-letter queue keeps an event (14 days): see the module doc."""

_TURNING_OFF = "('miniapp_removed', 'notifications_disabled')"
_NOTIFICATION_DONE = """
    n.state = 'queued' AND n.created_at < %(cutoff)s
    AND NOT EXISTS (SELECT 1 FROM notification_deliveries AS d WHERE d.notification_pk = n.id)
"""

TARGETS: Final[tuple[tuple[str, str], ...]] = (
    (
        "outbox",
        """DELETE FROM cache_events_outbox WHERE id IN (
            SELECT id FROM cache_events_outbox
            WHERE published_at IS NOT NULL AND published_at < %(cutoff)s LIMIT %(batch)s)""",
    ),
    (
        "webhook_receipts",
        f"""DELETE FROM notification_webhook_events WHERE envelope_sha256 IN (
            SELECT envelope_sha256 FROM notification_webhook_events
            WHERE event IN {_TURNING_OFF} AND received_at < %(cutoff)s LIMIT %(batch)s)""",  # noqa: S608 - constants only
    ),
    (
        "notification_attempts",
        """DELETE FROM notification_attempts WHERE id IN (
            SELECT id FROM notification_attempts WHERE attempted_at < %(cutoff)s LIMIT %(batch)s)""",
    ),
    (
        "notification_deliveries",
        """DELETE FROM notification_deliveries WHERE id IN (
            SELECT id FROM notification_deliveries
            WHERE state <> 'pending' AND updated_at < %(cutoff)s LIMIT %(batch)s)""",
    ),
    (
        "notification_transfers",
        f"""DELETE FROM notification_transfers WHERE (event_id, fid) IN (
            SELECT t.event_id, t.fid FROM notifications AS n
            JOIN notification_transfers AS t ON t.notification_pk = n.id
            WHERE {_NOTIFICATION_DONE} LIMIT %(batch)s)""",  # noqa: S608 - constants only
    ),
    (
        "notifications",
        f"""DELETE FROM notifications WHERE id IN (
            SELECT n.id FROM notifications AS n
            WHERE {_NOTIFICATION_DONE}
              AND NOT EXISTS (SELECT 1 FROM notification_transfers AS t WHERE t.notification_pk = n.id)
            LIMIT %(batch)s)""",  # noqa: S608 - constants only
    ),
)
"""(name, batch delete) in the order a run takes them; a batch deletes at most ``%(batch)s`` rows."""
KEPT: Final = ("ownership_activity",)


class DataLifecycleSettings(SettingsPart):
    """How long grown data is kept and how much one delete may take."""

    data_retention_days: int = setting(30, ge=MIN_RETENTION_DAYS, le=3650)
    prune_batch_size: int = setting(DEFAULT_BATCH_SIZE, ge=1, le=10_000)


class PruneDataSettings(FunctionSettings):
    """The pruning job's settings: the database and the lifecycle."""

    database: DatabaseSettings
    lifecycle: DataLifecycleSettings


@dataclass(slots=True)
class PruneReport:
    """What one run deleted per target, in how many batches, and whether anything old is left."""

    cutoff: datetime
    deleted: dict[str, int] = field(default_factory=dict)
    batches: dict[str, int] = field(default_factory=dict)
    complete: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "cutoff": self.cutoff.isoformat(),
            "deleted": dict(self.deleted),
            "batches": dict(self.batches),
            "complete": self.complete,
        }


def prune(
    *,
    conn: psycopg.Connection[Any],
    retention: timedelta,
    batch_size: int = DEFAULT_BATCH_SIZE,
    time_budget_seconds: float = DEFAULT_RUN_SECONDS,
) -> PruneReport:
    """Delete what is older than ``retention`` from every target, in batches (see the module doc)."""
    if not conn.autocommit:
        raise ValueError("pruning needs an autocommit connection: each batch is its own transaction")
    stop_at = time.monotonic() + time_budget_seconds
    row = conn.execute("SELECT now() - %(retention)s::interval", {"retention": retention}).fetchone()
    if row is None:  # a SELECT of an expression always has its row
        raise RuntimeError("the database returned no time")
    cutoff: datetime = row[0]
    report = PruneReport(cutoff=cutoff)
    pending = [name for name, _ in TARGETS]
    statements = dict(TARGETS)
    report.deleted = dict.fromkeys(pending, 0)
    report.batches = dict.fromkeys(pending, 0)
    first_round = True
    while pending and (first_round or time.monotonic() < stop_at):
        first_round = False
        for name in list(pending):
            deleted = conn.execute(statements[name], {"cutoff": cutoff, "batch": batch_size}).rowcount
            report.deleted[name] += deleted
            report.batches[name] += 1
            # Done once a batch came back short after every target before it was done: a notification's
            # transfers and the notification go only after its deliveries, which an earlier target deletes.
            if deleted < batch_size and pending[0] == name:
                pending.remove(name)
    report.complete = not pending
    return report

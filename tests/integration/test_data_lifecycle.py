"""The data-lifecycle job against a real PostgreSQL: old grown rows go in bounded batches; unpublished,
pending, recent and history rows stay; a run is idempotent; the schedule is in the template and the local
scheduler runs it."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from local.template import Template
from such_market.db.lifecycle import TARGETS, prune

RETENTION = timedelta(days=30)
OLD = "now() - interval '40 days'"
RECENT = "now() - interval '1 day'"
CONTRACT = "0x" + "ab" * 20
WALLET = "0x" + "cd" * 20

Connection = psycopg.Connection[tuple[Any, ...]]


def add_outbox(db: Connection, *, published: str | None, occurred: str = OLD) -> None:
    db.execute(
        f"INSERT INTO cache_events_outbox (event_id, detail_type, detail, occurred_at, created_at, published_at)"
        f" VALUES (%s, 'nft.transferred', %s, {occurred}, {occurred}, {published or 'NULL'})",
        (uuid.uuid4(), json.dumps({"contractAddress": CONTRACT})),
    )


def add_activity(db: Connection, index: int) -> None:
    db.execute(
        "INSERT INTO ownership_activity (tx_hash, log_index, event_id, contract_address, token_id, from_address,"
        " to_address, amount, block_number, created_at)"
        f" VALUES (%s, %s, 'whevt', %s, 1, %s, %s, 1, 1, {OLD})",
        ("0x" + f"{index:064x}", index, CONTRACT, WALLET, WALLET),
    )


def add_receipt(db: Connection, event: str, received: str) -> bytes:
    digest = uuid.uuid4().bytes * 2
    db.execute(
        "INSERT INTO notification_webhook_events (envelope_sha256, fid, app_fid, event, received_at)"
        f" VALUES (%s, 3, 9152, %s, {received})",
        (digest, event),
    )
    return digest


def add_token(db: Connection) -> int:
    row = db.execute(
        "INSERT INTO notification_tokens (fid, url, token) VALUES (3, 'https://client.example/n', 't') RETURNING id"
    ).fetchone()
    assert row is not None
    return int(row[0])


def add_notification(db: Connection, token: int, *, created: str, delivery: str | None, transfers: int = 2) -> int:
    """A queued transfer digest with ``transfers`` collected transfers, one attempt, and one delivery in state
    ``delivery`` (or none), everything dated ``created``."""
    row = db.execute(
        "INSERT INTO notifications (notification_id, kind, fid, state, title, body, target_url, created_at)"
        f" VALUES (%s, 'transfer', 3, 'queued', 'NFT received', 'You received', 'https://such.market/', {created})"
        " RETURNING id",
        (f"transfer-{uuid.uuid4()}-3",),
    ).fetchone()
    assert row is not None
    pk = int(row[0])
    for index in range(transfers):
        db.execute(
            "INSERT INTO notification_transfers (event_id, fid, notification_pk, direction, contract_address,"
            " token_id, counterparty, block_number, log_index) VALUES (%s, 3, %s, 'received', %s, 1, %s, 1, %s)",
            (uuid.uuid4(), pk, CONTRACT, WALLET, index),
        )
    db.execute(
        "INSERT INTO notification_attempts (notification_pk, url, tokens, outcome, status, attempted_at)"
        f" VALUES (%s, 'https://client.example/n', 1, 'answered', 200, {created})",
        (pk,),
    )
    if delivery is not None:
        db.execute(
            "INSERT INTO notification_deliveries (notification_pk, token_pk, state) VALUES (%s, %s, %s)",
            (pk, token, delivery),
        )
        # updated_at is kept by a trigger on UPDATE: age the row with the trigger off for this session
        db.execute("SET session_replication_role = replica")
        db.execute(f"UPDATE notification_deliveries SET updated_at = {created} WHERE notification_pk = %s", (pk,))
        db.execute("SET session_replication_role = DEFAULT")
    return pk


def count(db: Connection, table: str, where: str = "true") -> int:
    row = db.execute(f"SELECT count(*) FROM {table} WHERE {where}").fetchone()
    assert row is not None
    return int(row[0])


def test_old_published_events_go_and_unpublished_recent_and_history_rows_stay(db: Connection) -> None:
    # Given old published events, an old unpublished one, recent published ones and old transfer history
    for _ in range(5):
        add_outbox(db, published=OLD)
    add_outbox(db, published=None)
    for _ in range(2):
        add_outbox(db, published=RECENT, occurred=RECENT)
    for index in range(3):
        add_activity(db, index)
    # When the job runs with batches of 2
    report = prune(conn=db, retention=RETENTION, batch_size=2)
    # Then only the old published events went, in batches of at most 2 (2 + 2 + 1)
    assert report.deleted["outbox"] == 5
    assert report.batches["outbox"] == 3
    assert report.complete
    assert count(db, "cache_events_outbox", "published_at IS NULL") == 1
    assert count(db, "cache_events_outbox", "published_at IS NOT NULL") == 2
    # And the transfer history is untouched
    assert count(db, "ownership_activity") == 3
    # And a second run finds nothing to delete (idempotent)
    again = prune(conn=db, retention=RETENTION, batch_size=2)
    assert sum(again.deleted.values()) == 0
    assert again.complete


def test_a_run_out_of_time_deletes_one_batch_per_table_and_the_next_run_continues(db: Connection) -> None:
    # Given 5 old published events
    for _ in range(5):
        add_outbox(db, published=OLD)
    # When a run has no time left
    cut = prune(conn=db, retention=RETENTION, batch_size=2, time_budget_seconds=0)
    # Then it still made progress, one batch of at most 2, and says it is not complete
    assert cut.deleted["outbox"] == 2
    assert cut.batches["outbox"] == 1
    assert not cut.complete
    # And the next run finishes the work
    rest = prune(conn=db, retention=RETENTION, batch_size=2)
    assert rest.deleted["outbox"] == 3
    assert count(db, "cache_events_outbox") == 0


def test_turning_off_receipts_go_and_enable_receipts_stay(db: Connection) -> None:
    # Given old and recent receipts of both kinds
    old_off = add_receipt(db, "notifications_disabled", OLD)
    old_removed = add_receipt(db, "miniapp_removed", OLD)
    old_on = add_receipt(db, "notifications_enabled", OLD)
    old_added = add_receipt(db, "miniapp_added", OLD)
    recent_off = add_receipt(db, "notifications_disabled", RECENT)
    # When the job runs
    report = prune(conn=db, retention=RETENTION)
    # Then only the old turning-off receipts went: an enable's receipt still stops its replay
    assert report.deleted["webhook_receipts"] == 2
    kept = {bytes(row[0]) for row in db.execute("SELECT envelope_sha256 FROM notification_webhook_events")}
    assert kept == {old_on, old_added, recent_off}
    assert old_off not in kept
    assert old_removed not in kept


def test_settled_old_notifications_go_with_their_attempts_deliveries_and_transfers(db: Connection) -> None:
    # Given an old sent digest, an old expired one, an old one still pending, and a recent sent one
    token = add_token(db)
    old_sent = add_notification(db, token, created=OLD, delivery="sent", transfers=3)
    old_expired = add_notification(db, token, created=OLD, delivery="expired")
    old_pending = add_notification(db, token, created=OLD, delivery="pending")
    recent = add_notification(db, token, created=RECENT, delivery="sent")
    # When the job runs with batches of 2
    report = prune(conn=db, retention=RETENTION, batch_size=2)
    # Then the settled old notifications are gone with everything they held
    remaining = {int(row[0]) for row in db.execute("SELECT id FROM notifications")}
    assert remaining == {old_pending, recent}
    assert report.deleted["notifications"] == 2
    assert report.deleted["notification_deliveries"] == 2
    assert report.deleted["notification_transfers"] == 5
    for gone in (old_sent, old_expired):
        assert count(db, "notification_transfers", f"notification_pk = {gone}") == 0
    # And the pending delivery (the sender's queue) and its notification's transfers stay
    assert count(db, "notification_deliveries", "state = 'pending'") == 1
    assert count(db, "notification_transfers", f"notification_pk = {old_pending}") == 2
    # And old attempts went (the pending one's too: it is a log), recent ones stay
    assert count(db, "notification_attempts") == 1
    assert report.deleted["notification_attempts"] == 3
    # And the token itself is kept
    assert count(db, "notification_tokens") == 1
    assert report.complete


def test_the_schedule_is_in_the_template_and_the_local_scheduler_runs_it() -> None:
    # Given the template as the local runtime reads it
    template = Template.load()
    schedules = {schedule.function_id: schedule for schedule in template.schedules}
    # Then the pruning job runs on the parameter's default period
    assert schedules["PruneDataFunction"].expression == template.parameters["DataPruneSchedule"] == "rate(1 hour)"
    assert template.function("PruneDataFunction").environment["DATA_RETENTION_DAYS"] == "30"


@pytest.mark.parametrize(("name", "statement"), TARGETS, ids=[name for name, _ in TARGETS])
def test_every_batch_finds_its_rows_through_an_index(db: Connection, name: str, statement: str) -> None:
    # Given the planner told not to scan whole tables (it would on an empty test table)
    db.execute("SET enable_seqscan = off")
    # When a batch delete is planned
    plan = "\n".join(str(row[0]) for row in db.execute("EXPLAIN " + statement, {"cutoff": "2025-01-01", "batch": 1000}))
    # Then no table is read in full
    assert "Seq Scan" not in plan, plan

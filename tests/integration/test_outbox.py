"""The transactional outbox against real PostgreSQL and a moto EventBridge bus delivering to SQS."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from typing import Any

import psycopg
import pytest

from such_market.config import EventSettings
from such_market.events.models import CollectionUpdated, Event
from such_market.events.outbox import (
    OutboxTransaction,
    backlog,
    enqueue,
    outbox_transaction,
    publish_after_commit,
    relay,
)
from such_market.events.publisher import EventPublisher
from tests.conftest import MotoBus

BUS = "such-market"
ADDRESS = "0x" + "ab" * 20


@pytest.fixture
def bus(moto_bus: MotoBus) -> MotoBus:
    return moto_bus


def make_publisher(client: Any) -> EventPublisher:
    return EventPublisher(EventSettings(event_bus_name=BUS), client=client, sleep=lambda _: None)


@pytest.fixture
def publisher(bus: MotoBus) -> EventPublisher:
    return make_publisher(bus.events)


@pytest.fixture
def changes(db: psycopg.Connection[tuple[object, ...]]) -> psycopg.Connection[tuple[object, ...]]:
    """The test database with a table standing for any data change that emits events."""
    db.execute("CREATE TABLE outbox_test_changes (id int PRIMARY KEY, value text NOT NULL)")
    return db


def new_event(reason: str = "test") -> Event:
    return Event(CollectionUpdated(contract_address=ADDRESS, reason=reason))


def outbox_rows(conn: psycopg.Connection[Any]) -> dict[str, tuple[Any, ...]]:
    """eventId → (published?, attempts, last_error) of every outbox row."""
    rows = conn.execute(
        "SELECT event_id::text, published_at IS NOT NULL, attempts, last_error FROM cache_events_outbox"
    ).fetchall()
    return {row[0]: tuple(row[1:]) for row in rows}


def commit_without_publishing(conn: psycopg.Connection[Any], events: list[Event]) -> list[int]:
    with conn.transaction():
        return enqueue(conn=conn, events=events)


class BodyFailedError(Exception):
    """The writer's own code failed inside the transaction."""


def write_change(
    conn: psycopg.Connection[Any], publisher: EventPublisher, event: Event, *, fail: bool = False
) -> OutboxTransaction:
    """A writer: one data change and its event in an outbox transaction (optionally failing in it)."""
    with outbox_transaction(conn, publisher) as tx:
        conn.execute("INSERT INTO outbox_test_changes VALUES (1, 'changed')")
        tx.add(event)
        if fail:
            raise BodyFailedError
    return tx


class FlakyClient:
    """Wraps the moto client; fails the chosen eventIds with a per-entry error the first N times."""

    def __init__(self, client: Any, failing: dict[str, int]) -> None:
        self._client = client
        self._failing = dict(failing)
        self.calls: list[list[str]] = []

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803 - boto3's name
        ids = [json.loads(entry["Detail"])["eventId"] for entry in Entries]
        self.calls.append(ids)
        results: list[dict[str, Any] | None] = []
        forward = []
        for event_id, entry in zip(ids, Entries, strict=True):
            if self._failing.get(event_id, 0) > 0:
                self._failing[event_id] -= 1
                results.append({"ErrorCode": "ThrottlingException", "ErrorMessage": "slow down"})
            else:
                results.append(None)
                forward.append(entry)
        accepted = iter(self._client.put_events(Entries=forward)["Entries"] if forward else [])
        entries = [result if result is not None else next(accepted) for result in results]
        return {"FailedEntryCount": sum("ErrorCode" in e for e in entries), "Entries": entries}


class _Crash(BaseException):
    """Stands for the process dying (Lambda timeout, OOM) between the commit and the publish."""


class CrashingClient:
    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        raise _Crash


def test_change_and_events_commit_together(
    changes: psycopg.Connection[Any], db_url: str, publisher: EventPublisher, bus: MotoBus
) -> None:
    # Given an outbox transaction that changes data and adds an event
    event = new_event()
    with psycopg.connect(db_url, autocommit=True) as observer:
        with outbox_transaction(changes, publisher) as tx:
            changes.execute("INSERT INTO outbox_test_changes VALUES (1, 'changed')")
            tx.add(event)
            # Then before the commit another session sees neither the change nor the event
            assert observer.execute("SELECT count(*) FROM outbox_test_changes").fetchone() == (0,)
            assert outbox_rows(observer) == {}
        # Then after it, both are there and the event is published and marked
        assert observer.execute("SELECT value FROM outbox_test_changes").fetchone() == ("changed",)
        assert outbox_rows(observer) == {event.event_id: (True, 1, None)}
    assert tx.publish_result is not None
    assert tx.publish_result.published == (event.event_id,)
    assert bus.received_ids() == [event.event_id]


def test_a_rollback_leaves_neither_change_nor_event(
    changes: psycopg.Connection[Any], publisher: EventPublisher, bus: MotoBus
) -> None:
    # Given an outbox transaction whose body fails after adding an event
    with pytest.raises(BodyFailedError):
        write_change(changes, publisher, new_event(), fail=True)
    # Then nothing was committed and nothing was published
    assert changes.execute("SELECT count(*) FROM outbox_test_changes").fetchone() == (0,)
    assert outbox_rows(changes) == {}
    assert bus.received() == []


def test_enqueue_outside_a_transaction_is_refused(changes: psycopg.Connection[Any]) -> None:
    # Given an autocommit connection outside any transaction
    # When events are enqueued
    # Then it is refused, because they could commit apart from their change
    with pytest.raises(RuntimeError, match="inside the caller's open transaction"):
        enqueue(conn=changes, events=[new_event()])


def test_publishing_inside_the_transaction_is_refused(
    changes: psycopg.Connection[Any], publisher: EventPublisher
) -> None:
    # Given an open transaction holding enqueued events
    # When they are published before the commit
    # Then it is refused: consumers could see events of a change that then rolls back
    with changes.transaction():
        ids = enqueue(conn=changes, events=[new_event()])
        with pytest.raises(RuntimeError, match="after the commit"):
            publish_after_commit(conn=changes, publisher=publisher, outbox_ids=ids)


def test_publish_after_commit_marks_rows_and_skips_published_ones(
    changes: psycopg.Connection[Any], publisher: EventPublisher, bus: MotoBus
) -> None:
    # Given committed outbox rows
    events = [new_event(f"r{i}") for i in range(3)]
    ids = commit_without_publishing(changes, events)
    # When they are published after the commit, twice
    first = publish_after_commit(conn=changes, publisher=publisher, outbox_ids=ids)
    second = publish_after_commit(conn=changes, publisher=publisher, outbox_ids=ids)
    # Then the first publishes and marks them all, in order; the second finds nothing to do
    assert first.published == tuple(event.event_id for event in events)
    assert first.ok
    assert second.published == ()
    assert outbox_rows(changes) == {event.event_id: (True, 1, None) for event in events}
    assert bus.received_ids() == [event.event_id for event in events]


def test_partial_put_events_failures_retry_only_the_failed_entries(
    changes: psycopg.Connection[Any], bus: MotoBus
) -> None:
    # Given 12 events (two PutEvents batches) of which two fail once with a per-entry error
    events = [new_event(f"r{i}") for i in range(12)]
    flaky = FlakyClient(bus.events, failing={events[1].event_id: 1, events[11].event_id: 1})
    ids = commit_without_publishing(changes, events)
    # When they are published
    result = publish_after_commit(conn=changes, publisher=make_publisher(flaky), outbox_ids=ids)
    # Then batches of at most 10 were sent, the retry carried only the two failed entries,
    # and every event was delivered exactly once and marked
    assert [len(call) for call in flaky.calls] == [10, 2, 2]
    assert set(flaky.calls[2]) == {events[1].event_id, events[11].event_id}
    assert result.ok
    assert sorted(bus.received_ids()) == sorted(event.event_id for event in events)
    assert all(row == (True, 1, None) for row in outbox_rows(changes).values())


def test_entries_that_keep_failing_stay_for_the_relay_with_their_error(
    changes: psycopg.Connection[Any], bus: MotoBus
) -> None:
    # Given an outbox transaction whose second event EventBridge refuses on every attempt
    events = [new_event("ok"), new_event("refused")]
    flaky = FlakyClient(bus.events, failing={events[1].event_id: 99})
    with outbox_transaction(changes, make_publisher(flaky)) as tx:
        for event in events:
            tx.add(event)
    # Then the first is published; the second is unpublished with its attempt and error recorded
    assert tx.publish_result is not None
    assert dict(tx.publish_result.failed) == {events[1].event_id: "ThrottlingException: slow down"}
    assert len(flaky.calls) == 3  # one call and two retries, bounded
    rows = outbox_rows(changes)
    assert rows[events[0].event_id] == (True, 1, None)
    assert rows[events[1].event_id] == (False, 1, "ThrottlingException: slow down")
    # When the relay runs with EventBridge healthy again
    result = relay(conn=changes, publisher=make_publisher(bus.events))
    # Then it publishes the leftover and marks it
    assert (result.published, result.failed, result.backlog.count) == (1, 0, 0)
    assert outbox_rows(changes)[events[1].event_id][:2] == (True, 2)
    assert sorted(bus.received_ids()) == sorted(event.event_id for event in events)


def test_a_crash_between_commit_and_publish_is_published_once_by_the_relay(
    changes: psycopg.Connection[Any], publisher: EventPublisher, bus: MotoBus
) -> None:
    # Given a writer that commits its change and event, then dies before publishing
    event = new_event()
    with pytest.raises(_Crash):
        write_change(changes, make_publisher(CrashingClient()), event)
    # Then the change is committed and its event waits in the outbox, unpublished
    assert changes.execute("SELECT count(*) FROM outbox_test_changes").fetchone() == (1,)
    assert outbox_rows(changes) == {event.event_id: (False, 0, None)}
    assert bus.received() == []
    # When the relay runs, twice
    first = relay(conn=changes, publisher=publisher)
    second = relay(conn=changes, publisher=publisher)
    # Then the event is published exactly once and marked
    assert (first.published, first.failed, first.backlog.count) == (1, 0, 0)
    assert (second.published, second.failed) == (0, 0)
    assert bus.received_ids() == [event.event_id]
    assert outbox_rows(changes) == {event.event_id: (True, 1, None)}


class SlowRecordingClient:
    """Forwards to moto after a pause (so relays overlap), recording every eventId sent."""

    def __init__(self, client: Any, sent: list[str], lock: threading.Lock) -> None:
        self._client = client
        self._sent = sent
        self._lock = lock

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        time.sleep(0.02)
        with self._lock:
            self._sent.extend(json.loads(entry["Detail"])["eventId"] for entry in Entries)
            return self._client.put_events(Entries=Entries)


def test_two_concurrent_relays_never_publish_the_same_row(
    changes: psycopg.Connection[Any], db_url: str, bus: MotoBus
) -> None:
    # Given 60 unpublished events and two relays starting at the same moment
    events = [new_event(f"r{i}") for i in range(60)]
    commit_without_publishing(changes, events)
    sent: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(2)
    results = []

    def run_relay() -> None:
        with psycopg.connect(db_url, autocommit=True) as conn:
            publisher = make_publisher(SlowRecordingClient(bus.events, sent, lock))
            start.wait()
            results.append(relay(conn=conn, publisher=publisher, batch_size=5))

    threads = [threading.Thread(target=run_relay) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then every event was sent exactly once, both relays took part, and all are marked
    assert Counter(sent) == Counter(event.event_id for event in events)
    assert sorted(result.published for result in results) != [0, 60]
    assert sum(result.published for result in results) == 60
    assert sorted(bus.received_ids()) == sorted(event.event_id for event in events)
    assert all(row == (True, 1, None) for row in outbox_rows(changes).values())


def test_backlog_counts_unpublished_events_and_their_age(
    changes: psycopg.Connection[Any], publisher: EventPublisher
) -> None:
    # Given an empty outbox
    # Then the backlog is empty
    assert (backlog(conn=changes).count, backlog(conn=changes).oldest_age_seconds) == (0, 0.0)
    # When three events commit unpublished, the oldest of them a minute ago
    commit_without_publishing(changes, [new_event(f"r{i}") for i in range(3)])
    changes.execute(
        "UPDATE cache_events_outbox SET created_at = now() - interval '60 seconds'"
        " WHERE id = (SELECT min(id) FROM cache_events_outbox)"
    )
    # Then the backlog counts them and reports the oldest one's age
    pending = backlog(conn=changes)
    assert pending.count == 3
    assert 60 <= pending.oldest_age_seconds < 120
    # When the relay publishes them, the backlog is empty again
    relay(conn=changes, publisher=publisher)
    assert backlog(conn=changes).count == 0


def test_the_relay_is_bounded_by_batches(changes: psycopg.Connection[Any], publisher: EventPublisher) -> None:
    # Given five unpublished events
    commit_without_publishing(changes, [new_event(f"r{i}") for i in range(5)])
    # When the relay may run one batch of two
    result = relay(conn=changes, publisher=publisher, batch_size=2, max_batches=1)
    # Then it publishes the two oldest and reports the three left
    assert (result.published, result.failed, result.backlog.count) == (2, 0, 3)


def test_an_unreadable_row_is_recorded_and_does_not_block_the_others(
    changes: psycopg.Connection[Any], publisher: EventPublisher, bus: MotoBus
) -> None:
    # Given an outbox row whose stored detail no longer fits its schema, older than a good row
    changes.execute(
        "INSERT INTO cache_events_outbox (event_id, detail_type, detail)"
        " VALUES (gen_random_uuid(), 'collection.updated', '{\"reason\": \"no address\"}')"
    )
    good = new_event()
    commit_without_publishing(changes, [good])
    # When the relay runs
    result = relay(conn=changes, publisher=publisher)
    # Then the good event is published and the bad row keeps its error for an operator
    assert (result.published, result.failed, result.backlog.count) == (1, 1, 1)
    assert bus.received_ids() == [good.event_id]
    bad = [row for event_id, row in outbox_rows(changes).items() if event_id != good.event_id]
    assert bad == [(False, 1, "the collection.updated detail lacks eventId, occurredAt, schemaVersion")]

"""The outbox relay handler with events/outbox_relay.json, a real database and a moto bus."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import outbox_relay
import psycopg
import pytest

from such_market.events.models import CollectionUpdated, Event, UserUpdated
from such_market.events.outbox import enqueue
from tests.conftest import MotoBus
from tests.functions.conftest import FakeContext

ROOT = Path(__file__).resolve().parents[2]
EVENT = json.loads((ROOT / "events" / "outbox_relay.json").read_text())
ADDRESS = "0x" + "ab" * 20


CONTEXT: Any = FakeContext()


@pytest.fixture
def queue_url(lambda_env: dict[str, str], moto_bus: MotoBus) -> str:
    """The queue that the moto bus named by EVENT_BUS_NAME delivers every such-market event to."""
    return moto_bus.queue_url


def received_ids(url: str) -> list[str]:
    sqs = boto3.client("sqs")
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    return sorted(json.loads(message["Body"])["detail"]["eventId"] for message in messages)


def test_the_relay_publishes_what_a_crash_left_behind(db: psycopg.Connection[Any], queue_url: str) -> None:
    # Given two events committed to the outbox but never published (the writer crashed)
    events = [
        Event(CollectionUpdated(contract_address=ADDRESS, reason="test")),
        Event(UserUpdated(fid=3, wallets=[ADDRESS])),
    ]
    with db.transaction():
        enqueue(conn=db, events=events)
    # When the scheduled event runs the handler, twice
    first = outbox_relay.lambda_handler(EVENT, CONTEXT)
    second = outbox_relay.lambda_handler(EVENT, CONTEXT)
    # Then the first run publishes both and leaves nothing; the second has nothing to do
    assert first == {"published": 2, "failed": 0, "remaining": 0}
    assert second == {"published": 0, "failed": 0, "remaining": 0}
    assert received_ids(queue_url) == sorted(event.event_id for event in events)
    assert db.execute("SELECT count(*) FROM cache_events_outbox WHERE published_at IS NULL").fetchone() == (0,)


def test_an_empty_outbox_publishes_nothing(queue_url: str) -> None:
    # Given an empty outbox
    # When the scheduled event runs the handler
    result = outbox_relay.lambda_handler(EVENT, CONTEXT)
    # Then it reports nothing to do
    assert result == {"published": 0, "failed": 0, "remaining": 0}
    assert received_ids(queue_url) == []

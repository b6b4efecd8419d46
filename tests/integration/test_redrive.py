"""Redriving dead letters (moto SQS and EventBridge, real Valkey): events come back on the bus once the
cache answers, nothing is lost, and what cannot be redriven stays for a human."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redrive_dead_letters

from local.services import free_port
from such_market.container import close_all
from such_market.events.models import Event, NftTransferred
from such_market.events.redrive import MAX_REDRIVES
from tests.conftest import MotoBus
from tests.functions.conftest import FakeContext

SENDER, RECEIVER = "0x" + "11" * 20, "0x" + "22" * 20
CONTRACT = "0x" + "ab" * 20


def transferred(token_id: int) -> Event:
    return Event(
        NftTransferred(
            contract_address=CONTRACT,
            token_id=str(token_id),
            from_=SENDER,
            to=RECEIVER,
            amount="1",
            block_number=1,
            tx_hash="0x" + "cd" * 32,
            log_index=token_id,
            removed=False,
        )
    )


def as_delivered(event: Event) -> dict[str, Any]:
    """The event as EventBridge delivers it to a target (and as a rule's DLQ keeps it)."""
    entry = event.to_entry("such-market", "such-market")
    return {"detail-type": entry["DetailType"], "source": "such-market", "detail": json.loads(entry["Detail"])}


@pytest.fixture
def dlq(lambda_env: dict[str, str], moto_bus: MotoBus, monkeypatch: pytest.MonkeyPatch) -> str:
    url: str = moto_bus.sqs.create_queue(QueueName="such-market-events-dlq")["QueueUrl"]  # type: ignore[attr-defined]
    monkeypatch.setenv("EVENTS_DLQ_URL", url)
    close_all()
    return url


def run() -> dict[str, Any]:
    return redrive_dead_letters.lambda_handler({}, FakeContext())  # type: ignore[arg-type]


def messages(moto_bus: MotoBus, url: str) -> int:
    attributes = moto_bus.sqs.get_queue_attributes(  # type: ignore[attr-defined]
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def test_dead_letters_of_both_shapes_are_published_again_and_removed(moto_bus: MotoBus, dlq: str) -> None:
    # Given a rule's dead letter (the event) and a Lambda OnFailure record (the event as requestPayload)
    first, second = transferred(1), transferred(2)
    sqs = moto_bus.sqs
    sqs.send_message(QueueUrl=dlq, MessageBody=json.dumps(as_delivered(first)))  # type: ignore[attr-defined]
    record = {
        "version": "1.0",
        "requestContext": {"condition": "RetriesExhausted"},
        "requestPayload": as_delivered(second),
    }
    sqs.send_message(QueueUrl=dlq, MessageBody=json.dumps(record))  # type: ignore[attr-defined]
    # When the redrive runs
    report = run()
    # Then both events are on the bus again, with their own eventIds, and the queue is empty
    assert report == {"redriven": 2, "left": 0, "skipped": None}
    assert sorted(moto_bus.received_ids()) == sorted([first.event_id, second.event_id])
    assert messages(moto_bus, dlq) == 0


def test_nothing_is_redriven_while_the_cache_is_down(
    moto_bus: MotoBus, dlq: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    moto_bus.sqs.send_message(QueueUrl=dlq, MessageBody=json.dumps(as_delivered(transferred(3))))  # type: ignore[attr-defined]
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    close_all()
    assert run()["skipped"] == "the cache does not answer yet"
    assert moto_bus.received_ids() == []
    assert messages(moto_bus, dlq) == 1


def test_what_is_not_an_event_or_keeps_failing_stays_in_the_queue(moto_bus: MotoBus, dlq: str) -> None:
    poison = transferred(4)
    sqs = moto_bus.sqs
    sqs.send_message(QueueUrl=dlq, MessageBody="not json at all")  # type: ignore[attr-defined]
    for _ in range(MAX_REDRIVES + 1):
        sqs.send_message(QueueUrl=dlq, MessageBody=json.dumps(as_delivered(poison)))  # type: ignore[attr-defined]
        run()
    assert moto_bus.received_ids() == [poison.event_id] * MAX_REDRIVES
    assert messages(moto_bus, dlq) == 2  # the junk and the event redriven too often

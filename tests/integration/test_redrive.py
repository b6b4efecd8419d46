"""Redriving dead letters (moto SQS and EventBridge, real Valkey): our events come back on the bus as soon as
the cache answers, nothing is lost, and what cannot or must not be redriven (not our event, redriven too
often) stays for a human."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import redrive_dead_letters

from local.services import free_port
from such_market.container import close_all
from such_market.events import dead_letters
from such_market.events.dead_letters import DeadLetterSettings
from such_market.events.models import Event, NftTransferred
from such_market.events.redrive import LATE_LETTERS_SECONDS, MAX_REDRIVES, POLL_SECONDS, redrive
from such_market.events.wire import put_events_entry
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
    entry = put_events_entry(event, "such-market", "such-market")
    return {"detail-type": entry["DetailType"], "source": "such-market", "detail": json.loads(entry["Detail"])}


@pytest.fixture
def dlq(lambda_env: dict[str, str], moto_bus: MotoBus, monkeypatch: pytest.MonkeyPatch) -> str:
    url: str = moto_bus.sqs.create_queue(QueueName="such-market-events-dlq")["QueueUrl"]  # type: ignore[attr-defined]
    monkeypatch.setenv("EVENTS_DLQ_URL", url)
    close_all()
    return url


class ShortContext(FakeContext):
    """An invocation with 2 s left: a run that waits for the cache gives up within the test's patience."""

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 2_000


def run(context: FakeContext | None = None) -> dict[str, Any]:
    return redrive_dead_letters.lambda_handler({}, context or FakeContext())  # type: ignore[arg-type]


def send(moto_bus: MotoBus, url: str, body: object) -> None:
    text = body if isinstance(body, str) else json.dumps(body)
    moto_bus.sqs.send_message(QueueUrl=url, MessageBody=text)  # type: ignore[attr-defined]


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
    assert report == {"redriven": 2, "left": 0, "rejected": 0, "skipped": None}
    assert sorted(moto_bus.received_ids()) == sorted([first.event_id, second.event_id])
    assert messages(moto_bus, dlq) == 0


def test_nothing_is_redriven_while_the_cache_is_down(
    moto_bus: MotoBus, dlq: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    moto_bus.sqs.send_message(QueueUrl=dlq, MessageBody=json.dumps(as_delivered(transferred(3))))  # type: ignore[attr-defined]
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    close_all()
    assert run(ShortContext())["skipped"] == "the cache does not answer yet"
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


def test_only_our_own_events_are_redriven_the_rest_stays_and_is_counted(
    moto_bus: MotoBus, dlq: str, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    # Given a genuine dead letter and forged ones: a valid event from another source (as a Lambda
    # destination record too), a detail type we do not have, and a detail without its eventId
    genuine, forged = transferred(6), transferred(7)
    foreign = {**as_delivered(forged), "source": "attacker.example"}
    unknown = {**as_delivered(transferred(8)), "detail-type": "wallet.drained"}
    no_id = as_delivered(transferred(9))
    del no_id["detail"]["eventId"]
    send(moto_bus, dlq, as_delivered(genuine))
    send(moto_bus, dlq, foreign)
    send(moto_bus, dlq, {"requestContext": {"condition": "RetriesExhausted"}, "requestPayload": foreign})
    send(moto_bus, dlq, unknown)
    send(moto_bus, dlq, no_id)
    capsys.readouterr()
    # When the redrive runs
    report = run()
    # Then only the genuine event was published, as ours; the four others stay in the queue, counted
    assert moto_bus.received_ids() == [genuine.event_id]
    assert report == {"redriven": 1, "left": 4, "rejected": 4, "skipped": None}
    assert messages(moto_bus, dlq) == 4
    output = capsys.readouterr().out
    metrics = [json.loads(line) for line in output.splitlines() if '"_aws"' in line]
    assert [(m["DeadLettersRedriven"], m["DeadLettersRejected"]) for m in metrics] == [([1.0], [4.0])]
    # And the log names the reasons, never a forged body
    logged = [str(vars(record)) for record in caplog.records]
    assert any("'not from our source': 2" in record for record in logged), logged
    assert not any("attacker.example" in record or CONTRACT in record for record in logged)


class Clock:
    """Time that passes only when the run sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_a_run_waits_for_the_cache_then_redrives_at_once_and_catches_late_letters(moto_bus: MotoBus, dlq: str) -> None:
    # Given a dead letter, and a cache that answers only from its fourth PING on
    queue = DeadLetterSettings(events_dlq_url=dlq)
    first, late = transferred(10), transferred(11)
    send(moto_bus, dlq, as_delivered(first))
    answers = iter([False, False, False])
    clock = Clock()
    published: list[str] = []

    def on_sleep(seconds: float) -> None:
        clock.sleep(seconds)
        if len(clock.slept) == 4:  # a failure just before the recovery reaches the queue a moment later
            send(moto_bus, dlq, as_delivered(late))

    def publish(event: Event) -> bool:
        published.append(event.event_id)
        return True

    counts: dict[str, int] = {}

    def count(event_id: str) -> int:
        counts[event_id] = counts.get(event_id, 0) + 1
        return counts[event_id]

    receive: Callable[[int], list[dead_letters.DeadLetter]] = lambda n: dead_letters.receive(  # noqa: E731
        queue, max_messages=n, visibility_timeout_seconds=60
    )
    # When one run goes (budget 55 s)
    report = redrive(
        receive=receive,
        delete=lambda handle: dead_letters.delete(queue, handle),
        publish=publish,
        cache_ready=lambda: next(answers, True),
        count_redrive=count,
        source="such-market",
        time_budget_seconds=55,
        clock=clock,
        sleep=on_sleep,
    )
    # Then it asked the cache every POLL_SECONDS, redrove the first letter as soon as the cache answered,
    # and the late one within the watch that follows, then stopped watching
    assert published == [first.event_id, late.event_id]
    assert (report.redriven, report.skipped_reason) == (2, None)
    assert clock.slept[:3] == [POLL_SECONDS] * 3
    assert 3 * POLL_SECONDS + LATE_LETTERS_SECONDS <= clock.now < 3 * POLL_SECONDS + LATE_LETTERS_SECONDS + 2
    assert messages(moto_bus, dlq) == 0


def test_a_run_that_finds_nothing_to_do_ends_at_once(moto_bus: MotoBus, dlq: str) -> None:
    clock = Clock()
    queue = DeadLetterSettings(events_dlq_url=dlq)
    report = redrive(
        receive=lambda n: dead_letters.receive(queue, max_messages=n, visibility_timeout_seconds=60),
        delete=lambda handle: dead_letters.delete(queue, handle),
        publish=lambda event: True,
        cache_ready=lambda: True,
        count_redrive=lambda event_id: 1,
        source="such-market",
        time_budget_seconds=55,
        clock=clock,
        sleep=clock.sleep,
    )
    assert (report.redriven, clock.slept) == (0, [])
